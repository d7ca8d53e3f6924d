"""The whole autoscaling loop in one test (issue 26): an ECP-AI tenant deployed through the API, its
load stepped up through the API, the real HPA scaling out, the real Karpenter launching GPU nodes for
the pods that fit nowhere, and, once the load is gone, the HPA scaling in and Karpenter removing the
nodes left empty, every step recorded. No mocks: real controller-manager, scheduler and Karpenter."""

from __future__ import annotations

import datetime as dt
import functools
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from k8sim import model
from k8sim.local.settings import ClusterSettings

from .conftest import Kubectl, eventually
from .test_karpenter import nodeclaims, remove_nodeclaims_since, steps_of
from .test_metrics_api import hpa_replicas

pytestmark = pytest.mark.integration

SERVICE = "tts-server"
#: A GPU pod's profile when it names none (model.pick_profile): the loop engine runs it at a noiseless
#: weekday peak (conftest.engine_env), so its load is exactly peak_rps times the load factor.
PROFILE = model.PROFILES["gpu-inference"]
REQUEST_M = 1000  # the one container's CPU request in millicores: the HPA's denominator
TARGET = 70  # ECP-AI's HPAs aim at 70 % CPU (tests/ecp_ai.py)
LOW, HIGH = 1, 3
STEP = 3.4
#: The A10G NodePool only Karpenter serves (no static pool has A10Gs), and the cheapest type there
#: with a GPU, a core and 4Gi to spare.
POOL, CHEAPEST, CHEAPEST_PRICE = "gpu-a10g", "g5.xlarge", 1.006


def utilisation(pods: int, factor: float) -> int:
    """The CPU utilisation (%) the HPA computes for ``pods`` ready pods at ``factor`` times the peak: each
    pod burns its idle share plus its share of the requests, the metrics client rounds it up to
    millicores, the HPA sums over the pods' requests and truncates."""
    per_pod = PROFILE.cpu_idle + PROFILE.peak_rps * factor * PROFILE.cpu_per_request / pods
    milli = -(-round(per_pod * 1e9) // 1_000_000)
    return pods * milli * 100 // (pods * REQUEST_M)


def tenant_manifest(tenant: str) -> dict[str, str]:
    """ECP-AI's file name → YAML form: a namespace, a GPU service one replica per node (its pods ask for
    a whole A10G, which only Karpenter's nodes have) and its HPA, with the quick scale-down users give
    their HPAs when they do not want to wait five minutes."""
    ns = f"ecp-ai-{tenant}"
    labels = {"ecp.ai/tenant-id": tenant, "tenant": tenant, "app.kubernetes.io/part-of": "ecp-ai"}
    app = {**labels, "app": SERVICE}
    resources = {"requests": {"cpu": f"{REQUEST_M}m", "memory": "4Gi"},
                 "limits": {"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": "1"}}
    pod = {"containers": [{"name": SERVICE, "image": f"registry.ecp-ai.example/{SERVICE}:1.4.2",
                           "ports": [{"containerPort": 8080}], "resources": resources}],
           "nodeSelector": {"accelerator": "nvidia-a10g"},
           "tolerations": [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}],
           # One replica per node: Karpenter must add a node per replica, never pack them onto a bigger type.
           "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
               {"labelSelector": {"matchLabels": {"app": SERVICE}}, "topologyKey": "kubernetes.io/hostname"}]}}}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": SERVICE, "namespace": ns, "labels": app},
                  "spec": {"replicas": LOW, "selector": {"matchLabels": {"app": SERVICE}},
                           "template": {"metadata": {"labels": app}, "spec": pod}}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": SERVICE, "namespace": ns, "labels": app},
               "spec": {"selector": {"app": SERVICE}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
           "metadata": {"name": SERVICE, "namespace": ns, "labels": app},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": SERVICE},
                    "minReplicas": LOW, "maxReplicas": HIGH,
                    "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                        "type": "Utilization", "averageUtilization": TARGET}}}],
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0, "policies": [
                        {"type": "Percent", "value": 100, "periodSeconds": 15}]}}}}
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}}
    return {"01-namespace.yaml": yaml.safe_dump(namespace),
            "05-gpu-services.yaml": yaml.safe_dump_all([deployment, service]),
            "08-autoscaling.yaml": yaml.safe_dump(hpa)}



@pytest.fixture
def tenant(karpenter_up: ClusterSettings, api_url: str, kubectl: Kubectl) -> Iterator[tuple[str, set[str]]]:
    """A fresh tenant id and the NodeClaims before the test. Afterwards, even on failure: its load
    override and the tenant go through the API (the pods first, so that nothing asks for a node again),
    then every NodeClaim the test made, and the test waits until their nodes are gone."""
    name = f"loop{uuid.uuid4().hex[:6]}"
    before = set(nodeclaims(kubectl))
    # A free A10G node from before would take the first pod and spoil the count of new nodes; an empty
    # one is consolidated within a minute.
    eventually(lambda: not kubectl("get", "nodes", "-l", f"karpenter.sh/nodepool={POOL}", "-o", "name").split(), 90,
               what=f"no {POOL} node from before the test")
    yield name, before
    httpx.post(f"{api_url}/monitoring/load", json={"tenant_id": name, "factor": 1}, timeout=30)
    httpx.delete(f"{api_url}/k8s/resources/tenant/{name}", timeout=60)
    kubectl("delete", "namespace", f"ecp-ai-{name}", "--ignore-not-found", "--timeout=120s", check=False)
    remove_nodeclaims_since(kubectl, before)


def test_a_load_step_scales_out_onto_new_gpu_nodes_and_the_empty_ones_go_when_it_ends(
        loop_engine: str, api_url: str, kubectl: Kubectl, tenant: tuple[str, set[str]]) -> None:
    name, before = tenant
    ns = f"ecp-ai-{name}"
    # Without noise every figure follows from the factor: one pod at 1x is at 59 % (the HPA keeps 1);
    # at 3.4x it is at 188 % (ceil(2.69) = 3, also from 2 pods at 96 %), and three pods share it at
    # 66 %, within the 10 % tolerance of 70: the HPA settles at exactly 3. Back at 1x three pods are
    # at 23 %: ceil(0.99) = 1.
    assert [utilisation(1, 1), utilisation(1, STEP), utilisation(2, STEP), utilisation(3, STEP),
            utilisation(3, 1)] == [59, 188, 96, 66, 23]
    assert [hpa_replicas(1, 59, TARGET), hpa_replicas(1, 188, TARGET), hpa_replicas(2, 96, TARGET),
            hpa_replicas(3, 66, TARGET), hpa_replicas(3, 23, TARGET)] == [1, HIGH, HIGH, HIGH, LOW]

    def made() -> dict[str, dict[str, Any]]:
        return {n: c for n, c in nodeclaims(kubectl).items() if n not in before}

    def claims_of_pods(count: int) -> dict[str, dict[str, Any]]:
        """node → its NodeClaim, for ``count`` Running pods each on a node of a NodeClaim the test made."""
        found = [p for p in kubectl.json("get", "pods", "-n", ns)["items"]
                 if not p["metadata"].get("deletionTimestamp")]
        assert len(found) == count and all(p["status"].get("phase") == "Running" for p in found), [
            (p["metadata"]["name"], p["status"].get("phase")) for p in found]
        by_node = {c.get("status", {}).get("nodeName"): c for c in made().values()}
        return {p["spec"]["nodeName"]: by_node[p["spec"]["nodeName"]] for p in found}

    def hpa_settled(count: int, percent: int) -> bool:
        status = kubectl.json("get", "hpa", SERVICE, "-n", ns)["status"]
        replicas = kubectl.json("get", "deployment", SERVICE, "-n", ns)["spec"].get("replicas")
        seen = (replicas, status.get("currentReplicas"), status.get("desiredReplicas"),
                status["currentMetrics"][0]["resource"]["current"]["averageUtilization"])
        assert seen == (count, count, count, percent), (seen, status.get("conditions"))
        return True

    started = time.monotonic()
    # As ECP-AI deploys: the answer waits until the tenant is ready, which needs Karpenter's first node.
    deployed = httpx.post(f"{api_url}/k8s/manifest/deploy", params={"timeout": 120},
                          json={"manifest": tenant_manifest(name), "tenant_id": name}, timeout=150)
    assert deployed.status_code == 200, deployed.text
    assert deployed.json()["status"] == "completed", deployed.json()
    first = claims_of_pods(1)
    deployed_at = time.monotonic()
    eventually(lambda: hpa_settled(LOW, utilisation(1, 1)), 60, what="the HPA measuring one pod at 1x")

    load = {"tenant_id": name, "duration_seconds": 600}
    resp = httpx.post(f"{api_url}/monitoring/load", json={**load, "factor": STEP}, timeout=30)
    assert resp.status_code == 200, resp.text
    stepped = time.monotonic()
    eventually(lambda: hpa_settled(HIGH, utilisation(HIGH, STEP)), 120,
               what=f"the HPA out to {HIGH}, every pod Running on its own new node and measured")
    out = claims_of_pods(HIGH)
    scaled_out = time.monotonic()
    assert set(first) < set(out) and len(out) == HIGH, (first, out)
    # Exactly one NodeClaim per replica, each of the cheapest fitting type, and no other.
    assert set(made()) == {c["metadata"]["name"] for c in out.values()}, sorted(made())
    for node, claim in out.items():
        labels = claim["metadata"]["labels"]
        assert (labels["karpenter.sh/nodepool"], labels["node.kubernetes.io/instance-type"],
                labels["karpenter.sh/capacity-type"]) == (POOL, CHEAPEST, "on-demand"), (node, labels)
        assert node.startswith(f"kwok-{POOL}-"), node

    resp = httpx.post(f"{api_url}/monitoring/load", json={**load, "factor": 1}, timeout=30)
    assert resp.status_code == 200, resp.text
    assert not [o for o in resp.json()["overrides"] if o["scope"] == f"tenant:{name}"]
    eventually(lambda: hpa_settled(LOW, utilisation(1, 1)), 60, what=f"the HPA back in to {LOW}")
    kept = claims_of_pods(LOW)
    scaled_in = time.monotonic()
    (kept_node,) = kept
    emptied = {node: claim["metadata"]["name"] for node, claim in out.items() if node != kept_node}
    assert len(emptied) == HIGH - LOW

    def consolidated() -> bool:
        nodes = {n["metadata"]["name"] for n in kubectl.json("get", "nodes")["items"]}
        assert set(made()) == {kept[kept_node]["metadata"]["name"]}, sorted(made())
        assert not set(emptied) & nodes and kept_node in nodes, sorted(nodes)
        return True
    eventually(consolidated, 150, what="the empty nodes consolidated and the busy one kept")
    gone = time.monotonic()
    assert claims_of_pods(LOW) == kept

    # The recorded lifecycle: each emptied node was launched as the cheapest type, then disrupted as
    # empty and deleted; the cluster view says why it came and why it went.
    def deletion_recorded(claim: str) -> list[dict[str, Any]]:
        steps = steps_of(api_url, "NodeClaim", claim)
        assert steps and steps[-1]["transition"] == "deleted", [s["transition"] for s in steps]
        return steps
    for node, claim in emptied.items():
        steps = eventually(functools.partial(deletion_recorded, claim), 60, what=f"the deletion of {claim} recorded")
        by_step = {s["transition"]: s for s in steps}
        assert by_step["launched"]["detail"]["instance_type"] == CHEAPEST
        assert by_step["launched"]["detail"]["pool"] == POOL
        disrupted = [s for s in steps if s["transition"] == "disrupted"]
        assert [s["detail"]["reason"] for s in disrupted] == ["Empty"], disrupted
        assert steps[-1]["detail"]["node"] == node and steps[-1]["detail"]["reason"] == "Empty"
    doc = httpx.get(f"{api_url}/cluster/nodes/history", params={"hours": 1}, timeout=30).json()
    lives = {n["node"]: n for n in doc["nodes"] if n["node"] in out}
    assert set(lives) == set(out), sorted(lives)
    for node, life in lives.items():
        went = "Empty" if node in emptied else None
        assert (life["nodeclaim"], life["autoscaled"], life["pool"], life["instance_type"], life["capacity_type"],
                life["came"], life["went"], life["hourly_price"]) == (
            out[node]["metadata"]["name"], True, POOL, CHEAPEST, "on-demand", "Karpenter: pending pods", went,
            CHEAPEST_PRICE), life
        if went:
            assert dt.datetime.fromisoformat(life["deleted_at"]) >= dt.datetime.fromisoformat(life["launched_at"])
        else:
            assert life["deleted_at"] is None
    print(f"\ndeployed with its first node in {deployed_at - started:.1f} s; out to {HIGH} on new nodes "
          f"{scaled_out - stepped:.1f} s after the step; in to {LOW} after {scaled_in - scaled_out:.1f} s; "
          f"empty nodes gone {gone - scaled_in:.1f} s later; {time.monotonic() - started:.1f} s in all")
