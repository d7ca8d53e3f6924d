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

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "sigs.k8s.io/karpenter/pkg/apis/v1"
	"sigs.k8s.io/karpenter/pkg/cloudprovider"
	"sigs.k8s.io/karpenter/pkg/scheduling"
)

func offering(zone, capacityType string, price float64) *cloudprovider.Offering {
	return &cloudprovider.Offering{Price: price, Available: true, Requirements: scheduling.NewRequirements(
		scheduling.NewRequirement(corev1.LabelTopologyZone, corev1.NodeSelectorOpIn, zone),
		scheduling.NewRequirement(v1.CapacityTypeLabelKey, corev1.NodeSelectorOpIn, capacityType))}
}

func instanceType(name string, price float64) *cloudprovider.InstanceType {
	return &cloudprovider.InstanceType{Name: name, Requirements: scheduling.NewRequirements(),
		Offerings: cloudprovider.Offerings{offering("us-east-1a", "on-demand", price),
			offering("us-east-1b", "on-demand", price)}}
}

func shortages(t *testing.T, entries map[string]shortage) *corev1.ConfigMap {
	data := map[string]string{}
	for k, s := range entries {
		raw, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		data[k] = string(raw)
	}
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: shortagesRef.Namespace, Name: shortagesRef.Name},
		Data: data}
}

func available(p *shortageProvider, name, zone string) bool {
	its, _ := p.GetInstanceTypes(context.Background(), nil)
	for _, it := range its {
		for _, o := range it.Offerings {
			if it.Name == name && o.Requirements.Get(corev1.LabelTopologyZone).Any() == zone {
				return o.Available
			}
		}
	}
	panic("no such offering")
}

func TestAShortOfferingFailsTheLaunchWithEC2sWordsAndIsUnavailableUntilTheShortageEnds(t *testing.T) {
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	cm := shortages(t, map[string]shortage{"ns.short": {InstanceTypes: []string{"g5.xlarge"},
		Until: time.Now().Add(time.Hour)}})
	kube := fake.NewClientBuilder().WithScheme(scheme).WithObjects(cm).Build()
	p := newShortageProvider(context.Background(), kube, kube,
		[]*cloudprovider.InstanceType{instanceType("g5.xlarge", 1.006), instanceType("g5.2xlarge", 1.212)})
	if !available(p, "g5.xlarge", "us-east-1a") {
		t.Fatal("Karpenter learns of a shortage from a failed launch, not before")
	}
	claim := &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: "gpu-a10g-x"}, Spec: v1.NodeClaimSpec{
		Requirements: []v1.NodeSelectorRequirementWithMinValues{{Key: corev1.LabelInstanceTypeStable,
			Operator: corev1.NodeSelectorOpIn, Values: []string{"g5.xlarge", "g5.2xlarge"}}}}}
	_, err := p.Create(context.Background(), claim)
	if !cloudprovider.IsInsufficientCapacityError(err) {
		t.Fatalf("want an insufficient-capacity error, got %v", err)
	}
	want := "InsufficientInstanceCapacity: We currently do not have sufficient g5.xlarge capacity in the " +
		"Availability Zone you requested (us-east-1a)."
	if !strings.HasPrefix(err.Error(), "creating instance, insufficient capacity, with fleet error(s), ") ||
		!strings.Contains(err.Error(), want) {
		t.Fatalf("%q lacks %q", err.Error(), want)
	}
	if available(p, "g5.xlarge", "us-east-1a") || available(p, "g5.xlarge", "us-east-1b") {
		t.Fatal("the short offerings the NodeClaim asked for are unavailable after the failure")
	}
	if !available(p, "g5.2xlarge", "us-east-1a") {
		t.Fatal("another type stays available")
	}
	// The shortage ends: the offering returns (once the ConfigMap is read again).
	if err := kube.Delete(context.Background(), cm); err != nil {
		t.Fatal(err)
	}
	p.readAt = time.Time{}
	if !available(p, "g5.xlarge", "us-east-1a") {
		t.Fatal("the offering returns at the shortage's end")
	}
}

func TestAKnownShortageIsUnavailableWithoutAFailedLaunch(t *testing.T) {
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	cm := shortages(t, map[string]shortage{"ns.spot.kwok-a": {InstanceTypes: []string{"g5.xlarge"},
		Zones: []string{"us-east-1a"}, Until: time.Now().Add(time.Minute), Known: true}})
	var kube client.Client = fake.NewClientBuilder().WithScheme(scheme).WithObjects(cm).Build()
	p := newShortageProvider(context.Background(), kube, kube, []*cloudprovider.InstanceType{instanceType("g5.xlarge", 1)})
	if available(p, "g5.xlarge", "us-east-1a") || !available(p, "g5.xlarge", "us-east-1b") {
		t.Fatal("only the interrupted zone's offering is unavailable")
	}
	// The notice is over and its entry gone: Karpenter keeps the mark for its TTL.
	if err := kube.Delete(context.Background(), cm); err != nil {
		t.Fatal(err)
	}
	p.readAt = time.Time{}
	if available(p, "g5.xlarge", "us-east-1a") {
		t.Fatal("a known mark outlives its entry")
	}
	for key, mark := range p.marked {
		mark.until = time.Now()
		p.marked[key] = mark
	}
	if !available(p, "g5.xlarge", "us-east-1a") {
		t.Fatal("the mark ends with its TTL")
	}
}
