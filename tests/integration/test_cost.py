"""What the cluster costs, against the real cluster, operator and PostgreSQL: /cluster/cost from the
recorded history equals node-hours × the price table's shares computed by hand, idle included; the
engine's OpenCost metrics in a real Prometheus; the tenant's cost in /sla/report; what Karpenter would
add in a what-if."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from k8sim import instancetypes

from .conftest import Kubectl, eventually, promql
from .workloads import deployment

pytestmark = pytest.mark.integration

#: Off Karpenter's nodes: the static cpu pool's c6i.8xlarge (32 cores, 128 GiB) only.
STATIC_CPU: dict[str, Any] = {"nodeSelector": {"k8sim.io/pool": "cpu"}, "affinity": {"nodeAffinity": {
    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "karpenter.sh/nodepool", "operator": "DoesNotExist"}]}]}}}}


def hourly(node: dict[str, Any]) -> float:
    """The node's $/h straight from the price table: on-demand, or spot at the catalog's discount."""
    catalog = instancetypes.load_catalog()
    labels = node["metadata"]["labels"]
    price = catalog.prices[labels["node.kubernetes.io/instance-type"]]
    return price * catalog.spot_discount if labels.get("karpenter.sh/capacity-type") == "spot" else price


def iso(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def tenants(kubectl: Kubectl) -> Iterator[tuple[str, str]]:
    """Two tenants whose ids collide as strings (…-1 and …-10), each with its own namespace."""
    base = f"c{uuid.uuid4().hex[:6]}"
    ids = (f"{base}-1", f"{base}-10")
    for tenant in ids:
        kubectl("create", "namespace", tenant)
        kubectl("label", "namespace", tenant, f"ecp.ai/tenant-id={tenant}")
    yield ids
    for tenant in ids:
        kubectl("delete", "namespace", tenant, "--wait=false", check=False)


def test_cost_per_namespace_and_tenant_to_the_cent(api_url: str, kubectl: Kubectl,
                                                   tenants: tuple[str, str]) -> None:
    one, ten = tenants
    # 3 pods of 1/8 of a c6i.8xlarge (4 of 32 cores, 16 of 128 GiB), and 1 pod of 1/4 of one
    kubectl("apply", "-n", one, "-f", "-", stdin=yaml.safe_dump(deployment("eighth", 3, "4", "16Gi", **STATIC_CPU)))
    kubectl("apply", "-n", ten, "-f", "-", stdin=yaml.safe_dump(deployment("quarter", 1, "8", "32Gi", **STATIC_CPU)))
    for tenant, name in ((one, "eighth"), (ten, "quarter")):
        kubectl("wait", "-n", tenant, f"deployment/{name}", "--for=condition=Available", "--timeout=90s")

    def recorded() -> bool:
        data = httpx.get(f"{api_url}/cluster/cost", params={"window": "1m"}, timeout=30).json()["data"][0]
        return bool(data[one]["cpuCoreRequestAverage"] > 0 and data[ten]["cpuCoreRequestAverage"] > 0)
    eventually(recorded, 60, "the operator to record the pods and their nodes")

    nodes_before = kubectl.json("get", "nodes")["items"]
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=1)
    end = start + dt.timedelta(seconds=20)
    eventually(lambda: dt.datetime.now(dt.UTC) > end + dt.timedelta(seconds=1), 30, "the window to pass")
    nodes = kubectl.json("get", "nodes")["items"]
    if {n["metadata"]["uid"] for n in nodes} != {n["metadata"]["uid"] for n in nodes_before}:
        pytest.skip("a node came or went during the window (Karpenter at work for another test)")
    hours = 20 / 3600
    by_name = {n["metadata"]["name"]: n for n in nodes}
    pods = {t: kubectl.json("get", "pods", "-n", t)["items"] for t in tenants}
    # by hand: every pod holds a fixed share of its node's cpu AND memory, so of its node's price
    want_one = sum(hourly(by_name[p["spec"]["nodeName"]]) / 8 * hours for p in pods[one])
    want_ten = sum(hourly(by_name[p["spec"]["nodeName"]]) / 4 * hours for p in pods[ten])
    assert len(pods[one]) == 3 and len(pods[ten]) == 1
    whole = sum(hourly(n) for n in nodes) * hours

    window = f"{iso(start)},{iso(end)}"
    body = httpx.get(f"{api_url}/cluster/cost", params={"window": window, "aggregate": "namespace"},
                     timeout=30).json()
    assert body["code"] == 200 and body["unpriced_nodes"] == []
    data = body["data"][0]
    assert data[one]["totalCost"] == pytest.approx(want_one, abs=1e-6)
    assert data[ten]["totalCost"] == pytest.approx(want_ten, abs=1e-6)
    assert data[one]["cpuCoreHours"] == pytest.approx(12 * hours, abs=1e-6)
    assert data[one]["window"] == {"start": iso(start), "end": iso(end)}
    # every node-hour is someone's or idle's: the allocations add up to the nodes' cost
    assert sum(a["totalCost"] for a in data.values()) == pytest.approx(whole, abs=0.005)
    assert data["__idle__"]["totalCost"] > 0
    by_tenant = httpx.get(f"{api_url}/cluster/cost", params={"window": window, "aggregate": "tenant"},
                          timeout=30).json()["data"][0]
    assert by_tenant[one]["totalCost"] == pytest.approx(want_one, abs=1e-6)  # not one's and ten's together
    assert by_tenant[ten]["totalCost"] == pytest.approx(want_ten, abs=1e-6)

    report = httpx.get(f"{api_url}/sla/report", params={"tenant_id": one, "days": 1}, timeout=30).json()
    other = httpx.get(f"{api_url}/sla/report", params={"tenant_id": ten, "days": 1}, timeout=30).json()
    # three eighths against one quarter of a node, over about the same time
    assert report["cost"]["totalCost"] / other["cost"]["totalCost"] == pytest.approx(1.5, rel=0.15)
    assert report["cost"]["idleCost"] is None

    bad = httpx.get(f"{api_url}/cluster/cost", params={"window": "since-lunch"}, timeout=30)
    assert bad.status_code == 422 and "since-lunch" in bad.json()["message"]

    # Gone, with nothing of its kind left to stand in for it: the window is billed from its recorded requests.
    kubectl("delete", "deployment", "quarter", "-n", ten, "--wait=true")
    kubectl("wait", "-n", ten, "pod", "-l", "app=quarter", "--for=delete", "--timeout=60s")

    def billed_after_deletion() -> dict[str, Any]:
        again = httpx.get(f"{api_url}/cluster/cost", params={"window": window, "aggregate": "namespace"},
                          timeout=30).json()
        assert not kubectl.json("get", "pods", "-n", ten)["items"]
        return dict(again)
    again = eventually(billed_after_deletion, 30, "the pod gone")
    assert again["data"][0][ten]["totalCost"] == pytest.approx(want_ten, abs=1e-6)
    assert again["pods_without_requests"] == 0


def test_opencost_metrics_in_prometheus(engine_url: str, prometheus: str, kubectl: Kubectl, namespace: str) -> None:
    t4 = {"nodeSelector": {"accelerator": "nvidia-t4"},
          "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(deployment("one-t4", 1, "2", "8Gi", 1, **t4)))
    volume = f"{namespace}-disk"  # cluster-wide: a name of this test's own
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": volume},
         "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"],
                  "hostPath": {"path": f"/tmp/{volume}"}, "persistentVolumeReclaimPolicy": "Delete"}}))
    kubectl("wait", "-n", namespace, "deployment/one-t4", "--for=condition=Available", "--timeout=90s")
    nodes = kubectl.json("get", "nodes")["items"]

    def scraped() -> list[dict[str, Any]]:
        found = promql(prometheus, f'container_gpu_allocation{{namespace="{namespace}"}}')
        assert found and float(found[0]["value"][1]) == 1.0
        return found
    (gpu,) = eventually(scraped, 60, "Prometheus to scrape the pod's GPU allocation")
    assert set(gpu["metric"]) >= {"namespace", "pod", "container", "instance", "node"}
    (cpu0,) = promql(prometheus, 'node_total_hourly_cost{node="cpu-0"}')
    assert float(cpu0["value"][1]) == 1.36
    assert set(cpu0["metric"]) >= {"instance", "node", "instance_type", "region", "provider_id"}
    assert cpu0["metric"]["instance_type"] == "c6i.8xlarge"
    (t4_price,) = promql(prometheus, 'sum(node_gpu_count{instance_type="g4dn.12xlarge"} * '
                                     'node_gpu_hourly_cost + node_cpu_hourly_cost * 48 + '
                                     'node_ram_hourly_cost * 192 - node_total_hourly_cost)')
    assert abs(float(t4_price["value"][1])) < 1e-6  # the split adds up to the price on every T4 node
    for name in ("node_cpu_hourly_cost", "node_ram_hourly_cost", "kubecost_node_is_spot",
                 "container_cpu_allocation", "container_memory_allocation_bytes"):
        assert promql(prometheus, name), name
    (total,) = promql(prometheus, "sum(node_total_hourly_cost)")
    assert float(total["value"][1]) == pytest.approx(sum(hourly(n) for n in nodes), abs=1e-6)
    # A volume at OpenCost's default storage price per GiB-hour.
    try:
        (pv,) = eventually(lambda: promql(prometheus, f'pv_hourly_cost{{persistentvolume="{volume}"}}'), 60,
                           "Prometheus to scrape the volume's price")
    finally:
        kubectl("delete", "pv", volume, "--wait=false")
    assert float(pv["value"][1]) == 0.00005479452 and pv["metric"]["volumename"] == volume


def test_what_if_names_the_nodes_karpenter_would_add(api_url: str) -> None:
    t4 = {"nodeSelector": {"accelerator": "nvidia-t4"},
          "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}
    # 5 pods of 4 T4s: the two static T4 nodes hold 2 at most
    manifest = yaml.safe_dump(deployment("t4-heavy", 5, "4", "16Gi", 4, **t4))
    answer = httpx.post(f"{api_url}/cluster/capacity/what-if", json={"manifest": manifest}, timeout=90).json()
    assert answer["unplaced"] >= 3
    # each unplaced pod takes a whole g4dn.12xlarge (4 T4s), the only type with T4s
    assert answer["karpenter_nodes"] == {"g4dn.12xlarge": answer["unplaced"]}
    assert answer["added_usd_per_month"] == round(answer["unplaced"] * 3.912 * 730, 2)
    assert answer["karpenter_unfit_pods"] == 0
