"""The real Karpenter (its KWOK provider, built from sigs.k8s.io/karpenter) with the real scheduler:
pods that fit no node get the cheapest fitting instance type, the node looks like the static pools'
nodes, an empty node is consolidated, and a Karpenter killed with SIGKILL comes back and goes on."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from k8sim import gpus, topology
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



def remove_nodeclaims_since(kubectl: Kubectl, before: set[str]) -> None:
    """Delete every NodeClaim not in ``before`` and wait until they and their nodes are gone."""
    made = set(nodeclaims(kubectl)) - before
    if made:
        kubectl("delete", "nodeclaims", *sorted(made), "--wait=false", check=False)
    eventually(lambda: not set(nodeclaims(kubectl)) & made and not [
        n for n in kubectl.json("get", "nodes")["items"]
        if n["metadata"].get("labels", {}).get("karpenter.sh/nodeclaim") in made
        or any(o.get("name") in made for o in n["metadata"].get("ownerReferences", []))], 120,
        what="the test's NodeClaims and nodes gone")


@pytest.fixture
def launched(kubectl: Kubectl, namespace: str) -> Iterator[set[str]]:
    """NodeClaims that exist before the test; after it, the test's pods go first (so that nothing asks
    for a node again), then every NodeClaim it made, and the test waits until their nodes are gone."""
    before = set(nodeclaims(kubectl))
    yield before
    kubectl("delete", "namespace", namespace, "--timeout=120s", check=False)
    remove_nodeclaims_since(kubectl, before)


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

    gfd = gpus.gfd_labels("a10g", 1, "g5.xlarge")
    # The bootstrap's labels follow Karpenter's registration, which the pod need not wait for.
    node = eventually(lambda: (n := kubectl.json("get", "node", node_name))["metadata"]["labels"].get(
        "nvidia.com/gpu.count") == "1" and n, 30, what="the node's GFD labels")
    meta, status = node["metadata"], node["status"]
    # As a kubelet's: the hostname label is the node's name and its Hostname address (not the NodeClaim's name).
    assert meta["labels"]["kubernetes.io/hostname"] == node_name
    assert {k: v for k, v in meta["labels"].items() if k in gfd} == gfd
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
    node = eventually(lambda: (n := kubectl.json("get", "node", extra[0]))["metadata"]["labels"].get(
        "nvidia.com/gpu.count") and n, 30, what="the node's GFD labels")
    assert node["metadata"]["labels"]["node.kubernetes.io/instance-type"] == "g4dn.12xlarge"
    # GPU Feature Discovery's labels as on the static T4 nodes of the same instance type.
    gfd = [k for k in nodes[0]["metadata"]["labels"] if k.startswith(("nvidia.com/", "feature.node.kubernetes.io/"))]
    assert {k: node["metadata"]["labels"].get(k) for k in gfd} == {k: nodes[0]["metadata"]["labels"][k] for k in gfd}
    assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == "Tesla-T4"
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


# --------------------------------------------------------------------------- scenarios on Karpenter's cloud

SPOT_POOL = "test-spot-a10g"
GPU_TOLERATION = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def start_scenario(api_url: str, ns: str, name: str, spec: dict[str, Any]) -> None:
    resp = httpx.post(f"{api_url}/scenarios", json={"metadata": {"name": name, "namespace": ns}, "spec": spec})
    assert resp.status_code == 201, resp.text


def scenario_status(api_url: str, ns: str, name: str) -> dict[str, Any]:
    return dict(httpx.get(f"{api_url}/scenarios/{ns}/{name}").json().get("status") or {})


def events_of(kubectl: Kubectl, name: str) -> list[dict[str, Any]]:
    """Events of a cluster-scoped object (Node, NodeClaim): in ``default``, as every recorder writes them."""
    return list(kubectl.json("get", "events", "-n", "default", "--field-selector",
                             f"involvedObject.name={name}")["items"])


def claim_of(kubectl: Kubectl, node: str) -> dict[str, Any]:
    """The NodeClaim of a node (KeyError until Karpenter has registered it)."""
    return {c.get("status", {}).get("nodeName"): c for c in nodeclaims(kubectl).values()}[node]


@pytest.fixture
def spot_pool(karpenter_up: ClusterSettings, kubectl: Kubectl) -> Iterator[str]:
    """A spot NodePool of the two smallest g5 sizes (the demo profile's are on-demand only), on the
    gpu-a10g class; deleting it deletes what it launched."""
    labels = {"type": "kwok", "k8sim.io/pool": SPOT_POOL, "accelerator": "nvidia-a10g",
              "nvidia.com/gpu.product": gpus.MODELS["a10g"].product}
    pool = {"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": SPOT_POOL},
            "spec": {"template": {"metadata": {"labels": labels}, "spec": {
                "nodeClassRef": {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass", "name": "gpu-a10g"},
                "requirements": [
                    {"key": "node.kubernetes.io/instance-type", "operator": "In",
                     "values": ["g5.xlarge", "g5.2xlarge"]},
                    {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]}],
                "taints": [dict(topology.GPU_TAINT)], "expireAfter": "Never"}},
                "disruption": {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "30s"},
                "limits": {"nodes": "4"}}}
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(pool))
    yield SPOT_POOL
    kubectl("delete", "nodepool", SPOT_POOL, "--timeout=120s", check=False)


def test_a_spot_interruption_replaces_the_node_and_its_pods_move(
        api_url: str, kubectl: Kubectl, namespace: str, launched: set[str], spot_pool: str) -> None:
    placement = {"nodeSelector": {"k8sim.io/pool": spot_pool}, "tolerations": GPU_TOLERATION}
    kubectl("apply", "-n", namespace, "-f", "-", stdin=deployment("stt", 1, 1, "2", placement))
    pod = eventually(lambda: running(kubectl, namespace, 1), 120, what="the pod Running on a spot node")[0]
    old_node = pod["spec"]["nodeName"]
    old_claim = claim_of(kubectl, old_node)
    old_labels = old_claim["metadata"]["labels"]
    assert (old_labels["karpenter.sh/capacity-type"], old_labels["node.kubernetes.io/instance-type"]) == (
        "spot", "g5.xlarge")

    start_scenario(api_url, namespace, "reclaimed", {"type": "SpotInterruption", "target": {"nodes": [old_node]},
                                                     "parameters": {"notice": 40}})
    status = eventually(lambda: (s := scenario_status(api_url, namespace, "reclaimed")).get("phase") == "Active" and s,
                        30, what="the notice given")
    assert status["affected"] == [{"kind": "Node", "name": old_node}]
    for name, kind in ((old_node, "Node"), (old_claim["metadata"]["name"], "NodeClaim")):
        found = {(e["reason"], e["message"], e["involvedObject"]["kind"]) for e in events_of(kubectl, name)}
        assert ("SpotInterrupted", "Spot interruption warning was triggered", kind) in found, found
        assert ("TerminatingOnInterruption", f"Interruption triggered termination for the {kind}", kind) in found

    def moved() -> dict[str, Any] | None:
        found = [p for p in pods(kubectl, namespace) if not p["metadata"].get("deletionTimestamp")]
        if len(found) == 1 and found[0]["status"].get("phase") == "Running" \
                and found[0]["spec"]["nodeName"] != old_node:
            return found[0]
        return None
    new_pod = eventually(moved, 150, what="the pod Running on the replacement node")
    new_claim = claim_of(kubectl, new_pod["spec"]["nodeName"])
    new_labels = new_claim["metadata"]["labels"]
    assert new_labels["karpenter.sh/nodepool"] == spot_pool and new_labels["karpenter.sh/capacity-type"] == "spot"
    # The interrupted offering is unavailable to Karpenter for a while (as its AWS provider marks it).
    assert (new_labels["node.kubernetes.io/instance-type"], new_labels["topology.kubernetes.io/zone"]) != (
        "g5.xlarge", old_labels["topology.kubernetes.io/zone"])
    eventually(lambda: old_node not in {n["metadata"]["name"] for n in kubectl.json("get", "nodes")["items"]}, 120,
               what="the interrupted node gone")
    assert old_claim["metadata"]["name"] not in nodeclaims(kubectl)
    eventually(lambda: scenario_status(api_url, namespace, "reclaimed").get("phase") == "Completed", 90,
               what="the notice over")
    cm = kubectl.json("get", "configmap", "-n", "kube-system", "k8sim-capacity-shortages")
    assert not [k for k in cm.get("data") or {} if k.startswith(f"{namespace}.reclaimed.")]


def test_a_capacity_shortage_fails_the_nodeclaim_with_ec2s_words_and_karpenter_falls_back(
        api_url: str, karpenter_up: ClusterSettings, kubectl: Kubectl, namespace: str, launched: set[str]) -> None:
    start_scenario(api_url, namespace, "no-g5-xlarge", {
        "type": "CapacityShortage", "duration": "10m",
        "target": {"instanceType": "g5.xlarge", "capacityType": "on-demand"}})
    eventually(lambda: scenario_status(api_url, namespace, "no-g5-xlarge").get("phase") == "Active", 30,
               what="the shortage on")
    kubectl("apply", "-n", namespace, "-f", "-", stdin=deployment("tts", 1, 1, "2", A10G))
    pod = eventually(lambda: running(kubectl, namespace, 1), 150, what="the pod Running on a fallback type")[0]
    claim = claim_of(kubectl, pod["spec"]["nodeName"])
    # g5.xlarge is the cheapest fit (the first test); the next is g5.2xlarge.
    assert claim["metadata"]["labels"]["node.kubernetes.io/instance-type"] == "g5.2xlarge"

    failed = [e for e in kubectl.json("get", "events", "-n", "default", "--field-selector",
                                      "reason=InsufficientCapacityError")["items"]
              if e["involvedObject"]["kind"] == "NodeClaim" and e["involvedObject"]["name"] not in launched
              and e["involvedObject"]["name"].startswith("gpu-a10g-")]
    assert failed, "no NodeClaim failed"
    message = failed[-1]["message"]
    assert "InsufficientInstanceCapacity: We currently do not have sufficient g5.xlarge capacity in the " \
           "Availability Zone you requested (us-east-1" in message, message
    assert failed[-1]["involvedObject"]["name"] not in nodeclaims(kubectl)  # Karpenter deleted it
    # The pod was told why, as Karpenter tells it.
    pod_events = kubectl.json("get", "events", "-n", namespace, "--field-selector", "reason=InsufficientCapacityError")
    assert any("InsufficientInstanceCapacity" in e["message"] for e in pod_events["items"])

    # The shortage ends: the offering returns, and the next node is the cheapest again.
    resp = httpx.delete(f"{api_url}/scenarios/{namespace}/no-g5-xlarge", timeout=30)
    assert resp.status_code == 200, resp.text
    cm = kubectl.json("get", "configmap", "-n", "kube-system", "k8sim-capacity-shortages")
    assert f"{namespace}.no-g5-xlarge" not in (cm.get("data") or {})
    kubectl("scale", "-n", namespace, "deployment/tts", "--replicas=2")

    def on_g5_xlarge() -> bool:
        # The second pod's new node, or (consolidation may be quicker) the first's cheaper replacement.
        found = running(kubectl, namespace, 2)
        return any(claim_of(kubectl, p["spec"]["nodeName"])["metadata"]["labels"][
            "node.kubernetes.io/instance-type"] == "g5.xlarge" for p in found)
    eventually(on_g5_xlarge, 150, what="a pod on a g5.xlarge again")


# --------------------------------------------------------------------------- the recorded lifecycle of its nodes

def steps_of(api_url: str, kind: str, name: str) -> list[dict[str, Any]]:
    resp = httpx.get(f"{api_url}/k8s/resources/history", params={"kind": kind, "name": name, "limit": 5000},
                     timeout=30)
    assert resp.status_code == 200, resp.text
    return [s for s in resp.json()["steps"] if s["transition"] != "event"]


def test_the_history_records_the_nodeclaims_and_the_nodes_steps_and_why_the_node_went(
        api_url: str, karpenter_up: ClusterSettings, kubectl: Kubectl, namespace: str, launched: set[str]) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", stdin=deployment("tts", 1, 1, "2", A10G))
    pod = eventually(lambda: running(kubectl, namespace, 1), 120, what="the pod Running on a new node")[0]
    node = pod["spec"]["nodeName"]
    claim = claim_of(kubectl, node)
    name, labels = claim["metadata"]["name"], claim["metadata"]["labels"]
    facts = {"instance_type": "g5.xlarge", "capacity_type": "on-demand", "pool": "gpu-a10g",
             "zone": labels["topology.kubernetes.io/zone"]}

    def claim_steps(*wanted: str) -> list[dict[str, Any]]:
        found = steps_of(api_url, "NodeClaim", name)
        assert {s["transition"] for s in found} >= set(wanted), [s["transition"] for s in found]
        return found
    found = eventually(lambda: claim_steps("launched", "registered", "initialized", "ready"), 60,
                       what="the NodeClaim's launch, registration and initialization recorded")
    order = [s["transition"] for s in found]
    assert order.index("created") < order.index("launched") < order.index("registered") < order.index("initialized")
    by_step = {s["transition"]: s for s in found}
    assert by_step["launched"]["detail"] == facts
    assert by_step["registered"]["detail"] == {**facts, "node": node}
    assert by_step["launched"]["kind"] == "NodeClaim" and by_step["launched"]["api_version"] == "karpenter.sh/v1"

    node_steps = eventually(lambda: (s := steps_of(api_url, "Node", node)) and {"registered", "ready", "initialized"}
                            <= {x["transition"] for x in s} and s, 60, what="the node's steps recorded")
    registered = next(s for s in node_steps if s["transition"] == "registered")
    assert registered["detail"]["nodeclaim"] == name and registered["detail"]["instance_type"] == "g5.xlarge"

    kubectl("scale", "-n", namespace, "deployment/tts", "--replicas=0")
    gone = eventually(lambda: (s := steps_of(api_url, "NodeClaim", name)) and s[-1]["transition"] == "deleted" and s,
                      150, what="the NodeClaim consolidated and its deletion recorded")
    disrupted = [s for s in gone if s["transition"] == "disrupted"]
    assert len(disrupted) == 1 and disrupted[0]["detail"]["reason"] in ("Empty", "Underutilized"), disrupted
    reason = disrupted[0]["detail"]["reason"]
    assert gone[-1]["detail"] == {"phase": "Terminating", **facts, "node": node, "reason": reason}
    node_gone = eventually(lambda: (s := steps_of(api_url, "Node", node)) and s[-1]["transition"] == "deleted" and s,
                           60, what="the node's deletion recorded")
    assert [s["transition"] for s in node_gone].index("disrupted") < len(node_gone) - 1
    assert node_gone[-1]["detail"]["nodeclaim"] == name

    # The cluster view's route: the node's interval, its price, its steps and why it went.
    doc = httpx.get(f"{api_url}/cluster/nodes/history", params={"hours": 1}, timeout=30).json()
    mine = [n for n in doc["nodes"] if n["node"] == node]
    assert len(mine) == 1, doc["nodes"]
    life = mine[0]
    assert (life["nodeclaim"], life["autoscaled"], life["pool"], life["instance_type"], life["capacity_type"],
            life["came"], life["went"], life["hourly_price"]) == (
        name, True, "gpu-a10g", "g5.xlarge", "on-demand", "Karpenter: pending pods", reason, 1.006)
    at = {k: dt.datetime.fromisoformat(life[f"{k}_at"]) for k in (
        "claimed", "launched", "registered", "initialized", "disrupted", "deleted")}
    assert at["claimed"] <= at["launched"] <= at["registered"] <= at["initialized"] <= at["disrupted"]
    # The deletion is the node's deletionTimestamp, in whole seconds: it may read up to 1 s before the taint was seen.
    assert at["deleted"] >= at["disrupted"] - dt.timedelta(seconds=1)
    assert life["ready_at"] is not None
    resp = httpx.get(f"{api_url}/cluster/nodes/history", params={"hours": "soon"}, timeout=30)
    assert resp.status_code == 422, resp.text


def test_a_nodepool_asking_for_an_unknown_instance_type_launches_nothing_and_says_why(
        karpenter_up: ClusterSettings, kubectl: Kubectl, namespace: str, launched: set[str]) -> None:
    """A user's NodePool naming an instance type the price table lacks: Karpenter launches nothing for it,
    says so in its log naming the NodePool, and the pod's event lists no candidate; the static pools go on
    placing pods meanwhile."""
    pool_name = f"unknown-{namespace}"[:63]
    labels = {"type": "kwok", "k8sim.io/pool": pool_name}
    log = local_karpenter.logs(karpenter_up) / "karpenter.log"
    logged_before = log.stat().st_size
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(
        {"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": pool_name},
         "spec": {"template": {"metadata": {"labels": labels}, "spec": {
             "nodeClassRef": {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass", "name": "cpu"},
             "requirements": [{"key": "node.kubernetes.io/instance-type", "operator": "In",
                               "values": ["x99.mega"]}], "expireAfter": "Never"}},
             "limits": {"nodes": "2"}}}))
    try:
        kubectl("apply", "-n", namespace, "-f", "-", stdin=deployment(
            "lost", 1, 0, "1", {"nodeSelector": {"k8sim.io/pool": pool_name}}))
        kubectl("apply", "-n", namespace, "-f", "-", stdin=deployment("static", 2, 0, "1", {
            "nodeSelector": {"k8sim.io/pool": "cpu", "node.kubernetes.io/instance-type": "c6i.8xlarge"}}))

        def karpenter_skipped() -> list[dict[str, Any]]:
            with log.open() as f:
                f.seek(logged_before)
                lines = [json.loads(line) for line in f if pool_name in line]
            return [e for e in lines if e.get("message") == "skipping, nodepool requirements filtered out all "
                    "instance types" and e.get("NodePool", {}).get("name") == pool_name]
        eventually(karpenter_skipped, 90, what="Karpenter to log why it skips the NodePool")

        def pod_event() -> list[str]:
            found = [e["message"] for e in kubectl.json("get", "events", "-n", namespace)["items"]
                     if e["reason"] == "FailedScheduling" and e["message"].startswith("Failed to schedule pod")
                     and e["involvedObject"]["name"].startswith("lost-")]
            assert found
            return found
        said = eventually(pod_event, 60, what="Karpenter's event on the pod")
        # Every other NodePool is named as incompatible; the one the pod selects offers nothing to try.
        assert f"k8sim.io/pool In [{pool_name}] not in k8sim.io/pool In [cpu]" in said[-1]
        assert f"k8sim.io/pool In [{pool_name}]" not in said[-1].replace(f"In [{pool_name}] not in", "")
        lost = [p for p in pods(kubectl, namespace) if p["metadata"]["labels"]["app"] == "lost"]
        assert len(lost) == 1 and lost[0]["status"].get("phase") == "Pending"
        static = eventually(lambda: [p for p in pods(kubectl, namespace) if p["metadata"]["labels"]["app"] == "static"
                                     and p["status"].get("phase") == "Running"], 60, what="the static pool's pods")
        assert len(static) == 2 and all(p["spec"]["nodeName"].startswith("cpu-") for p in static)
        assert not [c for name, c in nodeclaims(kubectl).items()
                    if name not in launched and c["metadata"]["labels"].get("karpenter.sh/nodepool") == pool_name]
    finally:
        kubectl("delete", "nodepool", pool_name, "--timeout=60s", check=False)
