"""Aggregated discovery read as the per-version form reads: kinds, preferred versions, unreachable."""

from __future__ import annotations

from k8sim.kube import ResourceInfo, from_aggregated

CORE = {"kind": "APIGroupDiscoveryList", "items": [{"metadata": {}, "versions": [{"version": "v1", "resources": [
    {"resource": "pods", "responseKind": {"group": "", "version": "", "kind": "Pod"}, "scope": "Namespaced",
     "verbs": ["get", "list", "watch"], "shortNames": ["po"],
     "subresources": [{"subresource": "status", "responseKind": {"kind": "Pod"}, "verbs": ["get", "patch"]}]},
    {"resource": "nodes", "responseKind": {"kind": "Node"}, "scope": "Cluster", "verbs": ["list"]}]}]}]}
GROUPS = {"kind": "APIGroupDiscoveryList", "items": [
    {"metadata": {"name": "autoscaling"}, "versions": [
        {"version": "v2", "resources": [{"resource": "horizontalpodautoscalers", "scope": "Namespaced",
                                         "responseKind": {"kind": "HorizontalPodAutoscaler"}, "verbs": ["list"]}]},
        {"version": "v1", "resources": [{"resource": "horizontalpodautoscalers", "scope": "Namespaced",
                                         "responseKind": {"kind": "HorizontalPodAutoscaler"}, "verbs": ["list"]}]}]},
    {"metadata": {"name": "metrics.k8s.io"}, "versions": [{"version": "v1beta1", "freshness": "Stale"}]},
    {"metadata": {"name": "empty.example"}, "versions": [{"version": "v1", "freshness": "Current"}]},
]}


def test_kinds_their_paths_preferred_versions_and_stale_ones() -> None:
    kinds, preferred, unreachable = from_aggregated([CORE, GROUPS])
    assert kinds[("v1", "Pod")] == ResourceInfo("v1", "Pod", "pods", True, frozenset({"get", "list", "watch"}),
                                                 frozenset({"po"}))
    assert kinds[("v1", "Node")].path(name="n1") == "/api/v1/nodes/n1"  # cluster-scoped
    assert kinds[("autoscaling/v1", "HorizontalPodAutoscaler")].path("ns") == \
        "/apis/autoscaling/v1/namespaces/ns/horizontalpodautoscalers"
    assert set(kinds) == {("v1", "Pod"), ("v1", "Node"), ("autoscaling/v2", "HorizontalPodAutoscaler"),
                          ("autoscaling/v1", "HorizontalPodAutoscaler")}  # subresources are not kinds
    assert preferred == {"v1", "autoscaling/v2", "metrics.k8s.io/v1beta1", "empty.example/v1"}  # first listed
    assert unreachable == {"metrics.k8s.io/v1beta1"}  # stale: its kinds unknown, not gone
