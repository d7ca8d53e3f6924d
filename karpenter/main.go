/*
Copyright The Kubernetes Authors.
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

// Command karpenter-kwok is Karpenter's KWOK cloud provider (sigs.k8s.io/karpenter/kwok/main.go) as the
// simulator runs it: a local process outside the cluster, its metrics and health endpoints on one
// address (KARPENTER_BIND_ADDRESS, loopback by default) instead of every interface. Its flags and
// environment variables are Karpenter's own (KUBECONFIG, --metrics-port, --health-probe-port,
// --disable-leader-election, INSTANCE_TYPES_FILE_PATH ...).
package main

import (
	"os"

	"github.com/samber/lo"
	"sigs.k8s.io/controller-runtime/pkg/log"

	kwok "sigs.k8s.io/karpenter/kwok/cloudprovider"
	"sigs.k8s.io/karpenter/pkg/cloudprovider/overlay"
	"sigs.k8s.io/karpenter/pkg/controllers"
	"sigs.k8s.io/karpenter/pkg/controllers/node/health"
	"sigs.k8s.io/karpenter/pkg/controllers/state"
)

func main() {
	ctx, op := newOperator(lo.CoalesceOrEmpty(os.Getenv("KARPENTER_BIND_ADDRESS"), "127.0.0.1"))
	instanceTypes, err := kwok.ConstructInstanceTypes(ctx)
	if err != nil {
		// Upstream logs this and runs on with no instance types: every NodeClaim would then fail.
		// A bad instance-type file is a configuration error; the supervisor shows the log.
		log.FromContext(ctx).Error(err, "failed constructing instance types")
		os.Exit(2)
	}

	// The KWOK provider with the cloud's capacity shortages (shortage.go).
	overlayUndecoratedCloudProvider := newShortageProvider(ctx, op.GetClient(), op.GetAPIReader(), instanceTypes)
	cloudProvider := overlay.Decorate(overlayUndecoratedCloudProvider, op.GetClient(), op.InstanceTypeStore)
	repairPolicyMatcher := lo.Must(health.NewRepairPolicyMatcher(ctx, cloudProvider))
	clusterState := state.NewCluster(op.Clock, op.GetClient(), cloudProvider, state.WithRepairPolicyMatcher(repairPolicyMatcher))
	op.
		WithControllers(ctx, controllers.NewControllers(
			ctx,
			op.Manager,
			op.Clock,
			op.GetClient(),
			op.EventRecorder,
			cloudProvider,
			overlayUndecoratedCloudProvider,
			clusterState,
			op.InstanceTypeStore,
			op.PredictionStore,
		)...).Start(ctx)
}
