"""The shared client against the real apiserver: metadata-only listings (the recorder's sweep) and
watches (aiohttp, orjson) that carry objects far larger than one read."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import yaml

from k8sim.kube import Kube
from k8sim.local.settings import ClusterSettings

from .conftest import Kubectl


def test_metadata_only_listings_name_every_object_and_an_empty_kind_is_an_empty_list(
        live_cluster: ClusterSettings, kubectl: Kubectl, namespace: str) -> None:
    for i in range(3):
        kubectl("create", "configmap", f"c{i}", "-n", namespace, f"--from-literal=k={'x' * 1000}")

    async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        kube = Kube(live_cluster.kubeconfig)
        try:
            return (await kube.list("v1", "ConfigMap", namespace, metadata_only=True),
                    await kube.list("v1", "ConfigMap", namespace),
                    # nothing of this kind in the namespace: the apiserver says "items": null
                    await kube.list("v1", "ReplicationController", namespace, metadata_only=True))
        finally:
            await kube.close()

    slim, full, empty = asyncio.run(run())
    assert {i["metadata"]["uid"] for i in slim} == {i["metadata"]["uid"] for i in full}
    assert {i["metadata"]["name"] for i in slim} >= {"c0", "c1", "c2"}
    assert all("data" not in i for i in slim) and all("data" in i for i in full if i["metadata"]["name"] == "c0")
    assert empty == []


def test_a_watch_carries_objects_larger_than_a_read_intact_in_order(
        live_cluster: ClusterSettings, kubectl: Kubectl, namespace: str) -> None:
    big = {f"k{i}": "v" * 1000 + str(i) for i in range(600)}  # about 600 KB: many reads of the stream
    manifest = yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": big})

    async def run() -> list[tuple[str, dict[str, Any]]]:
        kube = Kube(live_cluster.kubeconfig)
        seen: list[tuple[str, dict[str, Any]]] = []
        try:
            _, version = await kube.list_versioned("v1", "ConfigMap")
            await asyncio.to_thread(kubectl, "create", "-n", namespace, "-f", "-", stdin=manifest)
            await asyncio.to_thread(kubectl, "create", "configmap", "small", "-n", namespace)
            await asyncio.to_thread(kubectl, "delete", "configmap", "big", "-n", namespace)

            async def follow() -> None:
                async for event in kube.watch("v1", "ConfigMap", version, timeout_seconds=30):
                    obj = event["object"]
                    if obj["metadata"].get("namespace") == namespace:
                        seen.append((event["type"], obj))
                    if len(seen) == 3:
                        return
            await asyncio.wait_for(follow(), 30)
        finally:
            await kube.close()
        return seen

    seen = asyncio.run(run())
    assert [(t, o["metadata"]["name"]) for t, o in seen] == [("ADDED", "big"), ("ADDED", "small"), ("DELETED", "big")]
    assert seen[0][1]["data"] == big


def describe(aggregated: Any, each: Any) -> str:
    """What differs between two discoveries, by name (the whole structures are too long to read)."""
    parts = []
    for label, a, b in zip(("kinds", "preferred", "unreachable"), aggregated, each, strict=True):
        a, b = set(a), set(b)
        if a != b:
            parts.append(f"{label} only aggregated {sorted(a - b)[:10]}, only each {sorted(b - a)[:10]}")
    return "; ".join(parts) or "they agree"


def test_aggregated_discovery_finds_what_asking_each_group_version_finds(
        live_cluster: ClusterSettings, kubectl: Kubectl, namespace: str) -> None:
    """Two requests instead of one per group version, with the same answer: every kind and where it
    lives, each group's preferred version, and an aggregated API that cannot answer as unreachable
    (its kinds unknown, not gone) in both forms."""
    group = f"{namespace}.k8sim.io"  # a group of this test's own: APIServices are cluster-wide
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all([
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "nobody", "namespace": namespace},
         "spec": {"ports": [{"port": 443}]}},
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": f"v1.{group}"},
         "spec": {"group": group, "version": "v1", "groupPriorityMinimum": 100, "versionPriority": 10,
                  "insecureSkipTLSVerify": True, "service": {"name": "nobody", "namespace": namespace, "port": 443}}},
    ]))

    async def run() -> tuple[Any, Any]:
        kube = Kube(live_cluster.kubeconfig)
        try:
            # The aggregator lists a new APIService within seconds; discovery has no watch, so poll it. Nor
            # is it one snapshot: whatever the rest of the cluster changes between the two forms' reads (a
            # CRD established, an APIService turning available) differs, so both are read until they agree.
            deadline = time.monotonic() + 30
            while True:
                aggregated = await kube.discover_aggregated()
                assert aggregated is not None, "Kubernetes 1.30 and later serve aggregated discovery"
                each = await kube.discover_each()
                if f"{group}/v1" in aggregated[2] and aggregated == each:
                    break
                assert time.monotonic() < deadline, (
                    f"the two forms of discovery did not agree within 30 s, or {group}/v1 was not unreachable:"
                    f" {describe(aggregated, each)}")
                await asyncio.sleep(0.2)  # the poll's pace: the condition is checked above
            return aggregated, await kube.discover(refresh=True)
        finally:
            await kube.close()

    try:
        aggregated, found = asyncio.run(run())
    finally:
        kubectl("delete", "apiservice", f"v1.{group}", "--wait=false")
    assert found == aggregated[0]
    kinds, preferred, unreachable = aggregated
    assert f"{group}/v1" in unreachable and not any(gv == f"{group}/v1" for gv, _ in kinds)
    assert kinds[("apps/v1", "Deployment")].plural == "deployments" and kinds[("apps/v1", "Deployment")].namespaced
    assert not kinds[("v1", "Node")].namespaced and "no" in kinds[("v1", "Node")].short_names
    assert {"v1", "apps/v1", "autoscaling/v2", "k8sim.io/v1alpha1"} <= preferred
    assert "autoscaling/v1" not in preferred and ("autoscaling/v1", "HorizontalPodAutoscaler") in kinds
