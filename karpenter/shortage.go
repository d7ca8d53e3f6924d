/*
Copyright k8s-simulator authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package main

// Capacity shortages, as a cloud has them. The KWOK provider's loader marks every offering of its
// instance-type file available and reads the file once, so an offering cannot run out there. This
// decorator is the cloud's side: a CapacityShortage Scenario lists the short offerings in a ConfigMap
// (the operator writes it); a launch whose offering is short fails with EC2's
// InsufficientInstanceCapacity, Karpenter deletes the NodeClaim, and, as the AWS provider's
// unavailable-offerings cache does, the short offerings it asked for are reported unavailable to
// Karpenter's scheduler for three minutes (never past the shortage's end), so the next NodeClaim
// falls back to another instance type or zone.

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/samber/lo"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	kwok "sigs.k8s.io/karpenter/kwok/cloudprovider"
	v1 "sigs.k8s.io/karpenter/pkg/apis/v1"
	"sigs.k8s.io/karpenter/pkg/cloudprovider"
	"sigs.k8s.io/karpenter/pkg/scheduling"
)

// The ConfigMap the operator writes (k8sim.scenarios.SHORTAGES): one key per playing Scenario.
var shortagesRef = types.NamespacedName{Namespace: "kube-system", Name: "k8sim-capacity-shortages"}

const (
	// The AWS provider's UnavailableOfferingsTTL.
	unavailableTTL = 3 * time.Minute
	// A launch reads the ConfigMap at most this often.
	shortagesRefresh = time.Second
)

type shortage struct {
	InstanceTypes []string  `json:"instanceTypes"`
	Zones         []string  `json:"zones"`
	CapacityTypes []string  `json:"capacityTypes"`
	Until         time.Time `json:"until"`
	// Known: Karpenter already knows (a spot interruption's offering, which the AWS provider marks
	// unavailable on the notice), so no launch has to fail first; and, as there, the mark lasts its
	// three minutes once the notice is over (the entry is removed then).
	Known bool `json:"known"`
}

func (s shortage) hits(instanceType, zone, capacityType string, now time.Time) bool {
	if !s.Until.IsZero() && !now.Before(s.Until) {
		return false
	}
	in := func(values []string, v string) bool { return len(values) == 0 || lo.Contains(values, v) }
	return in(s.InstanceTypes, instanceType) && in(s.Zones, zone) && in(s.CapacityTypes, capacityType)
}

type offeringKey struct{ instanceType, zone, capacityType string }

type unavailable struct {
	until    time.Time
	shortage string // the shortage that made it so: its end makes the offering available again
	known    bool   // ... unless Karpenter was told (a spot interruption): then only the TTL ends it
}

type shortageProvider struct {
	cloudprovider.CloudProvider
	kubeClient    client.Client
	reader        client.Reader
	instanceTypes []*cloudprovider.InstanceType

	mu        sync.Mutex
	readAt    time.Time
	shortages map[string]shortage
	marked    map[offeringKey]unavailable
}

func newShortageProvider(ctx context.Context, kubeClient client.Client, reader client.Reader,
	instanceTypes []*cloudprovider.InstanceType) *shortageProvider {
	return &shortageProvider{
		CloudProvider: kwok.NewCloudProvider(ctx, kubeClient, instanceTypes),
		kubeClient:    kubeClient, reader: reader, instanceTypes: instanceTypes,
		marked: map[offeringKey]unavailable{},
	}
}

func offeringOf(it *cloudprovider.InstanceType, o *cloudprovider.Offering) offeringKey {
	return offeringKey{it.Name, o.Requirements.Get(corev1.LabelTopologyZone).Any(),
		o.Requirements.Get(v1.CapacityTypeLabelKey).Any()}
}

// current reads the shortages (a missing or unreadable ConfigMap is none) and drops marks whose
// shortage is over.
func (p *shortageProvider) current(ctx context.Context) (map[string]shortage, map[offeringKey]unavailable) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if now.Sub(p.readAt) >= shortagesRefresh {
		found := map[string]shortage{}
		cm := &corev1.ConfigMap{}
		if err := p.reader.Get(ctx, shortagesRef, cm); err == nil {
			for key, raw := range cm.Data {
				var s shortage
				if err := json.Unmarshal([]byte(raw), &s); err != nil {
					log.FromContext(ctx).Error(err, "unreadable capacity shortage", "key", key)
					continue
				}
				found[key] = s
			}
		} else if client.IgnoreNotFound(err) != nil {
			log.FromContext(ctx).Error(err, "reading capacity shortages")
			found = p.shortages
		}
		p.shortages, p.readAt = found, now
	}
	for name, s := range p.shortages {
		if !s.Known {
			continue
		}
		for _, it := range p.instanceTypes {
			for _, o := range it.Offerings {
				key := offeringOf(it, o)
				if _, done := p.marked[key]; !done && s.hits(key.instanceType, key.zone, key.capacityType, now) {
					p.marked[key] = unavailable{until: now.Add(unavailableTTL), shortage: name, known: true}
				}
			}
		}
	}
	for key, mark := range p.marked {
		s, ok := p.shortages[mark.shortage]
		over := !ok || (!s.Until.IsZero() && !now.Before(s.Until))
		if !now.Before(mark.until) || (over && !mark.known) {
			delete(p.marked, key)
		}
	}
	return p.shortages, lo.Assign(p.marked)
}

// withAvailability copies the instance types with the marked offerings unavailable.
func withAvailability(its []*cloudprovider.InstanceType, marked map[offeringKey]unavailable) []*cloudprovider.InstanceType {
	if len(marked) == 0 {
		return its
	}
	return lo.Map(its, func(it *cloudprovider.InstanceType, _ int) *cloudprovider.InstanceType {
		return &cloudprovider.InstanceType{
			Name: it.Name, Requirements: it.Requirements, Capacity: it.Capacity, Overhead: it.Overhead,
			VolumeAttachmentLimits: it.VolumeAttachmentLimits, DynamicResources: it.DynamicResources,
			Offerings: lo.Map(it.Offerings, func(o *cloudprovider.Offering, _ int) *cloudprovider.Offering {
				copied := *o
				if _, short := marked[offeringOf(it, o)]; short {
					copied.Available = false
				}
				return &copied
			}),
		}
	})
}

func (p *shortageProvider) GetInstanceTypes(ctx context.Context, _ *v1.NodePool) ([]*cloudprovider.InstanceType, error) {
	_, marked := p.current(ctx)
	return withAvailability(p.instanceTypes, marked), nil
}

// Create launches what the KWOK provider would launch, the cheapest offering the NodeClaim allows;
// when every offering of that price is short, the launch fails as EC2's does.
func (p *shortageProvider) Create(ctx context.Context, nodeClaim *v1.NodeClaim) (*v1.NodeClaim, error) {
	shortages, marked := p.current(ctx)
	if len(shortages) == 0 {
		return kwok.NewCloudProvider(ctx, p.kubeClient, withAvailability(p.instanceTypes, marked)).Create(ctx, nodeClaim)
	}
	now := time.Now()
	reqs := scheduling.NewNodeSelectorRequirementsWithMinValues(nodeClaim.Spec.Requirements...)
	wanted := reqs.Get(corev1.LabelInstanceTypeStable)
	type candidate struct {
		it       *cloudprovider.InstanceType
		offering *cloudprovider.Offering
		short    string
	}
	var candidates []candidate
	for _, it := range p.instanceTypes {
		if !wanted.Has(it.Name) {
			continue
		}
		for _, o := range it.Offerings.Available().Compatible(reqs) {
			if _, gone := marked[offeringOf(it, o)]; gone {
				continue
			}
			key := offeringOf(it, o)
			names := lo.Keys(shortages)
			sort.Strings(names)
			short, _ := lo.Find(names, func(n string) bool {
				return shortages[n].hits(key.instanceType, key.zone, key.capacityType, now)
			})
			candidates = append(candidates, candidate{it, o, short})
		}
	}
	if len(candidates) == 0 {
		return kwok.NewCloudProvider(ctx, p.kubeClient, withAvailability(p.instanceTypes, marked)).Create(ctx, nodeClaim)
	}
	cheapest := lo.MinBy(candidates, func(a, b candidate) bool { return a.offering.Price < b.offering.Price }).offering.Price
	atPrice := lo.Filter(candidates, func(c candidate, _ int) bool { return c.offering.Price == cheapest })
	p.mu.Lock()
	for _, c := range candidates {
		if c.short != "" {
			p.marked[offeringOf(c.it, c.offering)] = unavailable{until: now.Add(unavailableTTL), shortage: c.short}
			marked[offeringOf(c.it, c.offering)] = p.marked[offeringOf(c.it, c.offering)]
		}
	}
	p.mu.Unlock()
	if lo.EveryBy(atPrice, func(c candidate) bool { return c.short != "" }) {
		first := lo.MinBy(atPrice, func(a, b candidate) bool {
			return offeringOf(a.it, a.offering).zone < offeringOf(b.it, b.offering).zone
		})
		key := offeringOf(first.it, first.offering)
		others := lo.Uniq(lo.FilterMap(first.it.Offerings, func(o *cloudprovider.Offering, _ int) (string, bool) {
			k := offeringOf(first.it, o)
			_, gone := marked[k]
			return k.zone, k.capacityType == key.capacityType && k.zone != key.zone && !gone
		}))
		sort.Strings(others)
		// Wrapped as the AWS provider wraps EC2 Fleet's errors ("creating instance, insufficient capacity, ...").
		return nil, fmt.Errorf("creating instance, %w", cloudprovider.NewInsufficientCapacityError(
			fmt.Errorf("with fleet error(s), %s", ec2Message(key, others))))
	}
	// Only what is left: the KWOK provider picks among them as it always does.
	allowed := lo.Uniq(lo.Map(lo.Filter(candidates, func(c candidate, _ int) bool { return c.short == "" }),
		func(c candidate, _ int) string { return c.it.Name }))
	narrowed := nodeClaim.DeepCopy()
	for i, r := range narrowed.Spec.Requirements {
		if r.Key == corev1.LabelInstanceTypeStable {
			narrowed.Spec.Requirements[i].Values = lo.Filter(r.Values, func(v string, _ int) bool { return lo.Contains(allowed, v) })
		}
	}
	created, err := kwok.NewCloudProvider(ctx, p.kubeClient, withAvailability(p.instanceTypes, marked)).Create(ctx, narrowed)
	if err != nil {
		return nil, err
	}
	return created, nil
}

// ec2Message is EC2's own wording for an offering it has no capacity for.
func ec2Message(key offeringKey, otherZones []string) string {
	if key.capacityType == v1.CapacityTypeSpot {
		return fmt.Sprintf("InsufficientInstanceCapacity: There is no Spot capacity available that matches your "+
			"request. (%s, %s)", key.instanceType, key.zone)
	}
	msg := fmt.Sprintf("InsufficientInstanceCapacity: We currently do not have sufficient %s capacity in the "+
		"Availability Zone you requested (%s). Our system will be working on provisioning additional capacity.",
		key.instanceType, key.zone)
	if len(otherZones) > 0 {
		msg += fmt.Sprintf(" You can currently get %s capacity by not specifying an Availability Zone in your "+
			"request or choosing %s.", key.instanceType, strings.Join(otherZones, ", "))
	}
	return msg
}
