"""The real Karpenter (its KWOK provider, built from sigs.k8s.io/karpenter) with the real scheduler:
pods that fit no node get the cheapest fitting instance type, the node looks like the static pools'
nodes, an empty node is consolidated, and a Karpenter killed with SIGKILL comes back and goes on."""

from __future__ import annotations

import ipaddress
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from k8sim import topology
from k8sim.local import build
from k8sim.local import karpenter as local_karpenter
from k8sim.local.processes import alive
from k8sim.local.settings import ClusterSettings

from .conftest import Kubectl, eventually
from .test_cluster import listening_sockets

pytestmark = pytest.mark.integration

A10G = {"nodeSelector": {"accelerator": "nvidia-a10g"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}
T4 = {"nodeSelector": {"accelerator": "nvidia-t4"},
      "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}


def deployment(name: str, replicas: int, gpus: int, cpu: str, placement: dict[str, Any]) -> str:
    resources = {"requests": {"cpu": cpu, "memory": "4Gi"}, "limits": {"nvidia.com/gpu": str(gpus)}}
    return yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": f"ecp-ai/{name}:1",
                                                       "resources": resources}], **placement}}}})


def nodeclaims(kubectl: Kubectl) -> dict[str, dict[str, Any]]:
    return {c["metadata"]["name"]: c for c in kubectl.json("get", "nodeclaims")["items"]}


@pytest.fixture
def karpenter_up(live_cluster: ClusterSettings) -> ClusterSettings:
    if not live_cluster.karpenter:
        pytest.skip("K8SIM_KARPENTER is off")
    local_karpenter.up(live_cluster)  # a no-op when it runs
    return live_cluster


@pytest.fixture
def launched(kubectl: Kubectl, namespace: str) -> Iterator[set[str]]:
    """NodeClaims that exist before the test; after it, the test's pods go first (so that nothing asks
    for a node again), then every NodeClaim it made, and the test waits until their nodes are gone."""
    before = set(nodeclaims(kubectl))
    yield before
    kubectl("delete", "namespace", namespace, "--timeout=120s", check=False)
    made = set(nodeclaims(kubectl)) - before
    if made:
        kubectl("delete", "nodeclaims", *sorted(made), "--wait=false", check=False)
    eventually(lambda: not set(nodeclaims(kubectl)) & made and not [
        n for n in kubectl.json("get", "nodes")["items"]
        if n["metadata"].get("labels", {}).get("karpenter.sh/nodeclaim") in made
        or any(o.get("name") in made for o in n["metadata"].get("ownerReferences", []))], 120,
        what="the test's NodeClaims and nodes gone")


def pods(kubectl: Kubectl, namespace: str) -> list[dict[str, Any]]:
    return list(kubectl.json("get", "pods", "-n", namespace)["items"])


def running(kubectl: Kubectl, namespace: str, count: int) -> list[dict[str, Any]]:
    found = pods(kubectl, namespace)
    assert len(found) == count and all(p["status"].get("phase") == "Running" for p in found), [
        (p["metadata"]["name"], p["status"].get("phase")) for p in found]
    return found


def test_a_gpu_pod_no_node_fits_gets_the_cheapest_instance_type_and_the_empty_node_goes(
        karpenter_up: ClusterSettings, kubectl: Kubectl, namespace: str, launched: set[str]) -> None:
    started = time.monotonic()
    kubectl("apply", "-n", namespace, "-f", "-", stdin=deployment("tts", 1, 1, "2", A10G))
    pod = eventually(lambda: running(kubectl, namespace, 1), 120, what="the pod Running on a new node")[0]
    pending_to_running = time.monotonic() - started

    made = {name: c for name, c in nodeclaims(kubectl).items() if name not in launched}
    assert len(made) == 1, sorted(made)
    claim = next(iter(made.values()))
    labels = claim["metadata"]["labels"]
    # g5.xlarge: the cheapest a10g type with a GPU, 2 cores and 4Gi to spare ($1.006 an hour on demand).
    assert labels["node.kubernetes.io/instance-type"] == "g5.xlarge"
    assert labels["karpenter.sh/nodepool"] == "gpu-a10g" and labels["karpenter.sh/capacity-type"] == "on-demand"
    node_name = claim["status"]["nodeName"]
    assert pod["spec"]["nodeName"] == node_name and node_name.startswith("kwok-gpu-a10g-")

    node = kubectl.json("get", "node", node_name)
    meta, status = node["metadata"], node["status"]
    assert meta["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    assert {k: meta["labels"].get(k) for k in (
        "node.kubernetes.io/instance-type", "topology.kubernetes.io/region", "accelerator",
        "nvidia.com/gpu.product", "k8sim.io/pool", "kubernetes.io/os", "kubernetes.io/arch", "type")} == {
        "node.kubernetes.io/instance-type": "g5.xlarge", "topology.kubernetes.io/region": "us-east-1",
        "accelerator": "nvidia-a10g", "nvidia.com/gpu.product": "NVIDIA-A10G", "k8sim.io/pool": "gpu-a10g",
        "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "type": "kwok"}
    assert meta["labels"]["topology.kubernetes.io/zone"] in {"us-east-1a", "us-east-1b", "us-east-1c"}
    assert node["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    # The instance type's capacity, not the NodeClaim's requests (Karpenter's provider writes those).
    assert status["capacity"] == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1", "pods": "110",
                                  "ephemeral-storage": "500Gi"}
    assert status["allocatable"]["nvidia.com/gpu"] == "1"
    internal, hostname = status["addresses"]
    assert hostname == {"type": "Hostname", "address": node_name} and internal["type"] == "InternalIP"
    assert ipaddress.ip_address(internal["address"]) in ipaddress.ip_network(karpenter_up.karpenter_node_ip_range)
    assert ipaddress.ip_address(internal["address"]) not in ipaddress.ip_network(karpenter_up.node_ip_range)
    info = status["nodeInfo"]
    assert (info["osImage"], info["kernelVersion"], info["kubeletVersion"], info["containerRuntimeVersion"]) == (
        topology.OS_IMAGE, topology.KERNEL_VERSION, topology.KUBERNETES_VERSION, topology.CONTAINER_RUNTIME)

    started = time.monotonic()
    kubectl("scale", "-n", namespace, "deployment/tts", "--replicas=0")
    eventually(lambda: claim["metadata"]["name"] not in nodeclaims(kubectl)
               and node_name not in {n["metadata"]["name"] for n in kubectl.json("get", "nodes")["items"]},
               150, what="the empty node consolidated")
    print(f"\nPending to Running on a new node: {pending_to_running:.1f} s; "
          f"empty node removed after {time.monotonic() - started:.1f} s")


def test_gpu_pods_beyond_the_static_t4_nodes_get_a_t4_instance(
        karpenter_up: ClusterSettings, kubectl: Kubectl, namespace: str, launched: set[str]) -> None:
    nodes = [n for n in kubectl.json("get", "nodes", "-l", "k8sim.io/pool=gpu-t4,!karpenter.sh/nodepool")["items"]]
    assert len(nodes) == 2
    free = 0
    for node in nodes:
        on_it = kubectl.json("get", "pods", "-A", "--field-selector",
                             f"spec.nodeName={node['metadata']['name']},status.phase!=Succeeded,status.phase!=Failed")
        used = sum(int(c["resources"].get("limits", {}).get("nvidia.com/gpu", 0))
                   for p in on_it["items"] for c in p["spec"]["containers"])
        free += int(node["status"]["allocatable"]["nvidia.com/gpu"]) - used
    kubectl("apply", "-n", namespace, "-f", "-", stdin=deployment("asr", free + 2, 1, "1", T4))
    found = eventually(lambda: running(kubectl, namespace, free + 2), 120, what="every T4 pod Running")
    hosts = {p["spec"]["nodeName"] for p in found}
    extra = [h for h in hosts if h.startswith("kwok-gpu-t4-")]
    assert len(extra) == 1, hosts
    assert sum(p["spec"]["nodeName"] == extra[0] for p in found) == 2
    node = kubectl.json("get", "node", extra[0])
    assert node["metadata"]["labels"]["node.kubernetes.io/instance-type"] == "g4dn.12xlarge"
    assert node["status"]["capacity"]["nvidia.com/gpu"] == "4" and node["status"]["capacity"]["cpu"] == "48"


def karpenter_pid(settings: ClusterSettings) -> int | None:
    binary = build.KARPENTER_BINARY
    found = [pid for pid in local_karpenter.process_pids(settings)
             if Path(f"/proc/{pid}/exe").resolve().name == binary]
    return found[0] if len(found) == 1 else None


def test_karpenter_killed_comes_back_and_pending_pods_still_get_nodes(
        karpenter_up: ClusterSettings, kubectl: Kubectl, namespace: str, launched: set[str]) -> None:
    old = karpenter_pid(karpenter_up)
    assert old is not None
    os.kill(old, signal.SIGKILL)
    kubectl("apply", "-n", namespace, "-f", "-", stdin=deployment("llm", 1, 1, "2", A10G))
    new = eventually(lambda: (pid := karpenter_pid(karpenter_up)) not in (None, old) and pid, 30,
                     what="the supervisor to start Karpenter again")
    assert not alive(old) and alive(new)
    pod = eventually(lambda: running(kubectl, namespace, 1), 120, what="the pending pod Running on a new node")[0]
    assert pod["spec"]["nodeName"].startswith("kwok-gpu-a10g-")
    eventually(lambda: local_karpenter.healthy(karpenter_up), 60, what="Karpenter ready again")


def test_karpenter_listens_on_loopback_only(karpenter_up: ClusterSettings) -> None:
    pids = set(local_karpenter.process_pids(karpenter_up))
    sockets = {addr for addr, pid, _ in listening_sockets() if pid in pids}
    # Upstream binds ":port", every interface; our main binds the bind address.
    assert sockets == {f"127.0.0.1:{karpenter_up.karpenter_metrics_port}",
                       f"127.0.0.1:{karpenter_up.karpenter_health_port}"}, sockets
