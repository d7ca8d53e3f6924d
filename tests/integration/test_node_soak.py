"""Nodes keep their shape: from its first version on, and over several heartbeats under churn, every
node carries its pool's capacity, allocatable, addresses and labels.

KWOK renders a stage from the version of a node it queued the stage for and patches without a
precondition, so a node registered bare and given its status by a second write could end up with
``node-initialize``'s defaults (cpu 1k, memory 1Ti, pods 1M). The test registers a pool the way the
simulator and the chart's Job do (:func:`k8sim.jobs.register_node`), records every version the
apiserver sends of its nodes while pods come and go on them, and checks each version.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import pytest

from k8sim import jobs, topology
from k8sim.kube import Kube
from k8sim.local.settings import ClusterSettings

pytestmark = pytest.mark.integration

HEARTBEATS = 3  # periods each node lives through after its registration
TAINT = {"key": "k8sim.io/soak", "value": "true", "effect": "NoSchedule"}


def soak_pool(name: str) -> dict[str, Any]:
    return {"name": name, "count": 4, "cpu": "8", "memory": "32Gi", "pods": 30, "instance_type": "m6i.2xlarge",
            "zones": ["us-east-1a", "us-east-1b"], "labels": {"k8sim.io/test": "node-soak"}}


def shape(node: dict[str, Any]) -> dict[str, Any]:
    status = node.get("status") or {}
    return {"capacity": status.get("capacity"), "allocatable": status.get("allocatable"),
            "addresses": status.get("addresses")}


def heartbeat(node: dict[str, Any]) -> str | None:
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready" and condition.get("status") == "True":
            return str(condition.get("lastHeartbeatTime"))
    return None


def churn(namespace: str, pool: str, replicas: int) -> list[dict[str, Any]]:
    """A Deployment and a DaemonSet whose pods run only on the soak pool's nodes."""
    spec = {"nodeSelector": {"k8sim.io/pool": pool}, "tolerations": [{**TAINT, "operator": "Equal"}],
            "containers": [{"name": "app", "image": "nginx:1.27",
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}
    template = {"metadata": {"labels": {"app": "soak"}}, "spec": spec}
    meta = {"namespace": namespace, "labels": {"app": "soak"}}
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "soak", **meta},
         "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "soak"}}, "template": template}},
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "soak-agent", **meta},
         "spec": {"selector": {"matchLabels": {"app": "soak-agent"}},
                  "template": {**template, "metadata": {"labels": {"app": "soak-agent"}}}}},
    ]


async def test_nodes_keep_their_shape_from_registration_over_heartbeats(live_cluster: ClusterSettings) -> None:
    suffix = uuid.uuid4().hex[:6]
    pool = soak_pool(f"soak-{suffix}")
    # Another range than the cluster's pools: InternalIPs stay unique (never contacted either way).
    nodes = topology.node_manifests([pool], "10.250.0.0/24")
    for node in nodes:
        node["spec"]["taints"] = [dict(TAINT)]
        node["metadata"]["annotations"].update({
            "node-heartbeat-with-lease.stage.kwok.x-k8s.io/delay": "1s",
            "node-heartbeat-with-lease.stage.kwok.x-k8s.io/jitter-delay": "2s"})
    expected = {n["metadata"]["name"]: n for n in nodes}
    versions: dict[str, list[dict[str, Any]]] = {name: [] for name in expected}
    listed = asyncio.Event()

    kube = Kube(live_cluster.kubeconfig, agent="k8sim-test-node-soak")

    async def record() -> None:
        async for change, obj in kube.list_then_watch("v1", "Node"):
            if change == "LISTED":
                listed.set()
            elif obj["metadata"]["name"] in versions and change in ("ADDED", "MODIFIED"):
                versions[obj["metadata"]["name"]].append(obj)

    def beats(name: str) -> int:
        return len({beat for beat in map(heartbeat, versions[name]) if beat})

    namespace = f"soak-{suffix}"
    recorder = asyncio.create_task(record())
    try:
        await asyncio.wait_for(listed.wait(), 30)
        for node in nodes:
            await jobs.register_node(kube, node)
        await kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        replicas = 0
        # Pods come and go on the pool (a DaemonSet among them) until every node has lived through
        # HEARTBEATS heartbeats: the first Ready version counts as one.
        async with asyncio.timeout(180):
            for obj in churn(namespace, pool["name"], replicas):
                await kube.apply(obj)
            while min(beats(name) for name in expected) < HEARTBEATS + 1:
                replicas = 60 if replicas == 0 else 0
                await kube.patch("apps/v1", "Deployment", "soak", {"spec": {"replicas": replicas}},
                                 namespace=namespace)
                await asyncio.sleep(1)  # the pace of the churn, not a wait for a condition
        pods = await kube.list("v1", "Pod", namespace)
        assert {p["spec"].get("nodeName") for p in pods} <= set(expected)
        for name, node in expected.items():
            seen = versions[name]
            assert seen, f"no version of {name} was seen"
            for version in seen:
                assert shape(version) == shape(node), f"{name} at {version['metadata']['resourceVersion']}"
                labels = version["metadata"]["labels"]
                assert {k: labels.get(k) for k in node["metadata"]["labels"]} == node["metadata"]["labels"]
    finally:
        recorder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await recorder
        await kube.delete("v1", "Namespace", namespace)
        for name in expected:
            await kube.delete("v1", "Node", name)
        await kube.close()


async def test_every_pool_node_has_its_pools_shape(live_cluster: ClusterSettings) -> None:
    """The cluster's own nodes, however long they have run: the shape their pools give them."""
    wanted = topology.node_manifests(topology.load_pools(live_cluster.nodepools), live_cluster.node_ip_range,
                                     live_cluster.kwok_shards)
    kube = Kube(live_cluster.kubeconfig, agent="k8sim-test-node-soak")
    try:
        live = {n["metadata"]["name"]: n for n in await kube.list("v1", "Node")}
    finally:
        await kube.close()
    for node in wanted:
        name = node["metadata"]["name"]
        assert name in live, f"node {name} is missing"
        assert shape(live[name]) == shape(node), name
        labels = live[name]["metadata"]["labels"]
        assert {k: labels.get(k) for k in node["metadata"]["labels"]} == node["metadata"]["labels"], name
