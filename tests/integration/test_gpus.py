"""GPU nodes as the GPU Operator makes them, against the real cluster: an upstream GPU manifest with
no toleration lands (ExtendedResourceToleration), GPU Feature Discovery's labels on the live nodes,
and DCGM exporter's default counters per device in the engine's /metrics and in a real Prometheus."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from k8sim_engine.collector import DCGM_COUNTERS
from prometheus_client.parser import text_string_to_metric_families

from k8sim import gpus, topology
from k8sim.local.settings import ClusterSettings

from .conftest import Kubectl, eventually, promql
from .workloads import deployment

pytestmark = pytest.mark.integration

#: kubernetes/examples' vLLM Deployment, byte for byte (source and licence in the file's header).
VLLM = Path(__file__).parent / "manifests" / "vllm-deployment.yaml"


def pool_gpu_nodes(settings: ClusterSettings) -> dict[str, dict[str, Any]]:
    return {n["metadata"]["name"]: n for n in topology.node_manifests(topology.load_pools(settings.nodepools))
            if "nvidia.com/gpu" in n["status"]["capacity"]}


def test_live_gpu_nodes_carry_gpu_feature_discoverys_labels(kubectl: Kubectl, settings: ClusterSettings) -> None:
    live = {n["metadata"]["name"]: n for n in kubectl.json("get", "nodes")["items"]}
    wanted = pool_gpu_nodes(settings)
    assert wanted
    for name in wanted:
        labels = live[name]["metadata"]["labels"]
        key = labels["accelerator"].removeprefix("nvidia-")
        count = int(live[name]["status"]["capacity"]["nvidia.com/gpu"])
        expected = gpus.gfd_labels(key, count, labels["node.kubernetes.io/instance-type"])
        assert {k: labels.get(k) for k in expected} == expected, name
        assert labels["nvidia.com/gpu.product"] == gpus.MODELS[key].product
    products = {live[n]["metadata"]["labels"]["nvidia.com/gpu.product"] for n in wanted}
    assert products == {"Tesla-T4", "Tesla-V100-SXM2-16GB", "NVIDIA-L40S", "NVIDIA-A100-SXM4-40GB"}


def test_upstream_vllm_deployment_without_a_toleration_runs_on_a_gpu_node(kubectl: Kubectl, namespace: str) -> None:
    docs = list(yaml.safe_load_all(VLLM.read_text()))
    template = docs[0]["spec"]["template"]["spec"]
    assert "tolerations" not in template and "nodeSelector" not in template  # as upstream wrote it
    kubectl("apply", "-n", namespace, "-f", str(VLLM))

    def running() -> dict[str, Any]:
        (pod,) = kubectl.json("get", "pods", "-n", namespace, "-l", "app=gemma-server")["items"]
        assert pod["status"].get("phase") == "Running", pod["status"]
        return dict(pod)
    pod = eventually(running, 120, "the vLLM pod to run")
    node = kubectl.json("get", "node", pod["spec"]["nodeName"])
    assert node["metadata"]["labels"]["accelerator"].startswith("nvidia-")
    assert topology.GPU_TAINT in node["spec"]["taints"]
    # What the admission plugin added: the pod asked for nvidia.com/gpu, so it tolerates that taint.
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["spec"]["tolerations"]


def test_pods_without_gpus_still_stay_off_gpu_nodes(kubectl: Kubectl, namespace: str) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "cpu-only"},
           "spec": {"nodeSelector": {"accelerator": "nvidia-t4"},
                    "containers": [{"name": "c", "image": "registry.example/app:1"}]}}
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(pod))

    def unschedulable() -> bool:
        found = kubectl.json("get", "pod", "cpu-only", "-n", namespace)
        cond = {c["type"]: c for c in found["status"].get("conditions") or []}.get("PodScheduled", {})
        assert cond.get("reason") == "Unschedulable", found["status"]
        assert "untolerated taint" in cond.get("message", ""), cond
        return True
    eventually(unschedulable, 60, "the scheduler to refuse the pod")


def two_gpu_deployment(name: str) -> str:
    return yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {
                     "nodeSelector": {"accelerator": "nvidia-l40s"},
                     "containers": [{"name": "server", "image": "vllm/vllm-openai:v0.11.0",
                                     "resources": {"limits": {"nvidia.com/gpu": "2"}}}]}}},
    })


def scrape(url: str) -> str:
    return httpx.get(f"{url}/metrics", timeout=30).text


def series(text: str, name: str) -> list[dict[str, str]]:
    found = []
    for family in text_families(text):
        if family.name == name:
            found += [dict(s.labels) for s in family.samples]
    return found


def text_families(text: str) -> list[Any]:
    return list(text_string_to_metric_families(text))


def test_dcgm_default_counters_per_device_in_metrics_and_prometheus(
        kubectl: Kubectl, namespace: str, settings: ClusterSettings, engine_url: str, prometheus: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", stdin=two_gpu_deployment("two-gpus"))

    def pod_name() -> str:
        (pod,) = kubectl.json("get", "pods", "-n", namespace, "-l", "app=two-gpus")["items"]
        assert pod["status"].get("phase") == "Running"
        return str(pod["metadata"]["name"])
    name = eventually(pod_name, 120, "the two-GPU pod to run")

    def its_series() -> str:
        text = scrape(engine_url)
        assert len([s for s in series(text, "DCGM_FI_DEV_GPU_UTIL") if s["pod"] == name]) == 2
        return text
    text = eventually(its_series, 60, "the engine to give the pod its two devices")
    util = series(text, "DCGM_FI_DEV_GPU_UTIL")
    mine = sorted((s for s in util if s["pod"] == name), key=lambda s: s["gpu"])
    assert mine[0]["Hostname"] == mine[1]["Hostname"] and mine[0]["gpu"] != mine[1]["gpu"]
    assert {(s["namespace"], s["container"], s["modelName"]) for s in mine} == {(namespace, "server", "NVIDIA L40S")}
    # Every GPU of every pool node has its series, the idle ones with empty pod labels.
    by_device = {(s["Hostname"], s["gpu"]): s for s in util}
    for node_name, node in pool_gpu_nodes(settings).items():
        for index in range(int(node["status"]["capacity"]["nvidia.com/gpu"])):
            found = by_device[(node_name, str(index))]
            device = gpus.devices(node_name, node["metadata"]["labels"]["accelerator"][7:], index + 1)[index]
            assert (found["UUID"], found["pci_bus_id"], found["device"]) == (
                device.uuid, device.pci_bus_id, device.device)
            assert found["DCGM_FI_DRIVER_VERSION"] == gpus.DRIVER_VERSION
            if not found["pod"]:
                assert found["namespace"] == found["container"] == ""
    families = {f.name: f for f in text_families(text)}
    for metric, (kind, _) in DCGM_COUNTERS.items():
        assert families[metric].type == kind, metric
    # The names and labels as a real Prometheus stores them.

    def stored() -> list[dict[str, Any]]:
        found = promql(prometheus, f'DCGM_FI_DEV_POWER_USAGE{{pod="{name}",namespace="{namespace}"}}')
        assert len(found) == 2
        return found
    power = eventually(stored, 60, "Prometheus to scrape the pod's two devices")
    assert {r["metric"]["modelName"] for r in power} == {"NVIDIA L40S"}
    assert all(35 <= float(r["value"][1]) <= 350 for r in power)  # the L40S's idle draw up to its limit
    meta = httpx.get(f"{prometheus}/api/v1/metadata", params={"metric": "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"},
                     timeout=10).json()["data"]
    assert meta["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"][0]["type"] == "counter"
    idle = promql(prometheus, 'count(DCGM_FI_DEV_GPU_UTIL{pod=""})')
    assert idle and float(idle[0]["value"][1]) >= 1


# --------------------------------------------------------------------------- MIG and time-slicing

#: Pools of their own for these tests, registered on the shared cluster and removed after: the demo
#: profile's pools stay as they are, and three nodes cost the 2-core CI little.
EXTRA_POOLS = [
    {"name": "itest-mig-mixed", "count": 1, "instance_type": "p4d.24xlarge", "cpu": "96", "memory": "1152Gi",
     "gpu": {"type": "a100", "count": 2, "mig": {"strategy": "mixed", "layout": "all-balanced"}}},
    {"name": "itest-mig-single", "count": 1, "instance_type": "p5.48xlarge", "cpu": "192", "memory": "2048Gi",
     "gpu": {"type": "h100", "count": 1, "mig": {"strategy": "single", "layout": "all-1g.10gb"}}},
    {"name": "itest-ts", "count": 1, "instance_type": "g4dn.12xlarge", "cpu": "48", "memory": "192Gi",
     "gpu": {"type": "t4", "count": 2, "sharing": {"timeSlicing": {"replicas": 4}}}},
]


@pytest.fixture(scope="module")
def extra_gpu_nodes(kubectl: Kubectl) -> Iterator[dict[str, dict[str, Any]]]:
    """The extra pools' nodes, created as register_node does (one create carrying the status), on
    addresses of their own range."""
    nodes = {n["metadata"]["name"]: n for n in topology.node_manifests(EXTRA_POOLS, "10.250.0.0/16")}
    try:
        for node in nodes.values():
            kubectl("delete", "node", node["metadata"]["name"], "--ignore-not-found", "--wait=true")
            kubectl("create", "-f", "-", stdin=yaml.safe_dump(node))
        yield nodes
    finally:
        for name in nodes:
            kubectl("delete", "node", name, "--ignore-not-found", "--wait=false")


def test_mig_and_time_sliced_nodes_advertise_the_documented_counts(
        kubectl: Kubectl, extra_gpu_nodes: dict[str, dict[str, Any]]) -> None:
    def ready(name: str) -> dict[str, Any]:
        node = kubectl.json("get", "node", name)
        assert {c["type"]: c["status"] for c in node["status"].get("conditions") or []}.get("Ready") == "True"
        return dict(node)
    live = {name: eventually(functools.partial(ready, name), 60, f"KWOK to make {name} Ready")
            for name in extra_gpu_nodes}

    def gpu_resources(node: dict[str, Any], field: str) -> dict[str, str]:
        return {k: v for k, v in node["status"][field].items() if k.startswith("nvidia.com/")}
    mixed, single, shared = (live[f"{p['name']}-0"] for p in EXTRA_POOLS)
    # A100-40GB x2, all-balanced: 1g.5gb x2, 2g.10gb x1, 3g.20gb x1 per GPU, one resource each.
    expected = {"nvidia.com/mig-1g.5gb": "4", "nvidia.com/mig-2g.10gb": "2", "nvidia.com/mig-3g.20gb": "2"}
    assert gpu_resources(mixed, "capacity") == gpu_resources(mixed, "allocatable") == expected
    # H100 x1, all-1g.10gb under single: nvidia.com/gpu counts the seven MIG devices.
    assert gpu_resources(single, "capacity") == gpu_resources(single, "allocatable") == {"nvidia.com/gpu": "7"}
    # T4 x2 time-sliced 4 ways: 8.
    assert gpu_resources(shared, "capacity") == gpu_resources(shared, "allocatable") == {"nvidia.com/gpu": "8"}
    for name, node in live.items():  # the labels GFD and the MIG manager write, as the pool asked
        wanted = extra_gpu_nodes[name]["metadata"]["labels"]
        assert {k: v for k, v in node["metadata"]["labels"].items() if k.startswith("nvidia.com/")} == {
            k: v for k, v in wanted.items() if k.startswith("nvidia.com/")}
    labels = mixed["metadata"]["labels"]
    assert (labels["nvidia.com/mig.strategy"], labels["nvidia.com/mig-1g.5gb.count"],
            labels["nvidia.com/mig-1g.5gb.memory"], labels["nvidia.com/mig-3g.20gb.product"]) == (
        "mixed", "4", "4864", "NVIDIA-A100-SXM4-40GB-MIG-3g.20gb")
    labels = single["metadata"]["labels"]
    assert (labels["nvidia.com/mig.strategy"], labels["nvidia.com/gpu.product"], labels["nvidia.com/gpu.count"]) == (
        "single", "NVIDIA-H100-80GB-HBM3-MIG-1g.10gb", "7")
    labels = shared["metadata"]["labels"]
    assert (labels["nvidia.com/gpu.replicas"], labels["nvidia.com/gpu.sharing-strategy"],
            labels["nvidia.com/gpu.product"]) == ("4", "time-slicing", "Tesla-T4-SHARED")


def mig_deployment(name: str, replicas: int) -> str:
    return yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {
                     # ExtendedResourceToleration tolerates taints named after the resources asked for
                     # (nvidia.com/mig-1g.5gb); the GPU pools' taint is nvidia.com/gpu.
                     "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                     "containers": [{"name": "server", "image": "vllm/vllm-openai:v0.11.0",
                                     "resources": {"limits": {"nvidia.com/mig-1g.5gb": "1"}}}]}}},
    })


def test_pods_asking_for_mig_slices_land_and_their_dcgm_series_carry_gpu_i_profile_and_id(
        kubectl: Kubectl, namespace: str, engine_url: str, extra_gpu_nodes: dict[str, dict[str, Any]]) -> None:
    # Five pods for the four 1g.5gb devices the mixed node has: the real scheduler places four.
    kubectl("apply", "-n", namespace, "-f", "-", stdin=mig_deployment("slices", 5))

    def placed() -> list[dict[str, Any]]:
        pods = kubectl.json("get", "pods", "-n", namespace, "-l", "app=slices")["items"]
        running = [p for p in pods if p["status"].get("phase") == "Running"]
        pending = [p for p in pods if p["status"].get("phase") == "Pending"]
        assert len(running) == 4 and len(pending) == 1, [p["status"].get("phase") for p in pods]
        cond = {c["type"]: c for c in pending[0]["status"].get("conditions") or []}["PodScheduled"]
        assert "Insufficient nvidia.com/mig-1g.5gb" in cond.get("message", ""), cond
        return running
    running = eventually(placed, 120, "four pods on the four 1g.5gb devices, the fifth refused")
    assert {p["spec"]["nodeName"] for p in running} == {"itest-mig-mixed-0"}
    names = {p["metadata"]["name"] for p in running}

    def its_series() -> list[dict[str, str]]:
        found = [s for s in series(scrape(engine_url), "DCGM_FI_PROF_GR_ENGINE_ACTIVE")
                 if s["Hostname"] == "itest-mig-mixed-0"]
        assert {s["pod"] for s in found if s["pod"]} == names
        return found
    found = eventually(its_series, 60, "the engine to give each pod its MIG device")
    # Per GPU, largest first: 3g.20gb (GPU instance 1), 2g.10gb (3), 1g.5gb x2 (7, 8).
    assert sorted((s["gpu"], s["GPU_I_PROFILE"], s["GPU_I_ID"]) for s in found) == sorted(
        (str(g), p, i) for g in (0, 1) for p, i in (("3g.20gb", "1"), ("2g.10gb", "3"), ("1g.5gb", "7"),
                                                    ("1g.5gb", "8")))
    held = {(s["gpu"], s["GPU_I_ID"]) for s in found if s["pod"]}
    assert held == {("0", "7"), ("0", "8"), ("1", "7"), ("1", "8")}
    assert all(s["GPU_I_PROFILE"] == "1g.5gb" and s["namespace"] == namespace for s in found if s["pod"])
    devices = gpus.devices("itest-mig-mixed-0", "a100", 2)
    assert {(s["gpu"], s["UUID"]) for s in found} == {(str(d.index), d.uuid) for d in devices}
    # The GPUs themselves keep their device series, no utilisation (DCGM has none in MIG mode).
    text = scrape(engine_url)
    assert {s["gpu"] for s in series(text, "DCGM_FI_DEV_POWER_USAGE") if s["Hostname"] == "itest-mig-mixed-0"} == {
        "0", "1"}
    assert not [s for s in series(text, "DCGM_FI_DEV_GPU_UTIL") if s["Hostname"] == "itest-mig-mixed-0"]


def test_pods_share_a_time_sliced_gpu_and_each_gets_its_replicas_copy_of_its_series(
        kubectl: Kubectl, namespace: str, engine_url: str, extra_gpu_nodes: dict[str, dict[str, Any]]) -> None:
    # Six pods of one nvidia.com/gpu on the T4 x2 node sliced 4 ways (8 replicas): all run there, three per GPU
    # (the device plugin hands out the GPU with the most free replicas).
    pinned: dict[str, Any] = {"nodeSelector": {"kubernetes.io/hostname": "itest-ts-0"}}
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(deployment("sliced", 6, "1", gpus=1, **pinned)))
    kubectl("wait", "-n", namespace, "deployment/sliced", "--for=jsonpath={.status.readyReplicas}=6", "--timeout=90s")
    names = {p["metadata"]["name"] for p in kubectl.json("get", "pods", "-n", namespace, "-l", "app=sliced")["items"]}

    def its_series() -> list[dict[str, str]]:
        found = [s for s in series(scrape(engine_url), "DCGM_FI_DEV_GPU_UTIL") if s["Hostname"] == "itest-ts-0"]
        assert {s["pod"] for s in found} == names
        return found
    found = eventually(its_series, 60, "the engine to give each pod a replica of a shared T4")
    by_gpu: dict[str, list[dict[str, str]]] = {}
    for s in found:
        by_gpu.setdefault(s["gpu"], []).append(s)
    assert {g: sorted(s["vgpu"] for s in copies) for g, copies in by_gpu.items()} == {
        "0": ["0", "1", "2"], "1": ["0", "1", "2"]}
    # One device under the copies: the same figures in each (its pods' work added up), not a pod's own.
    text = scrape(engine_url)
    for metric in ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_POWER_USAGE"):
        values: dict[str, set[float]] = {}
        for family in text_families(text):
            for sample in family.samples:
                if sample.name == metric and sample.labels.get("Hostname") == "itest-ts-0":
                    values.setdefault(sample.labels["gpu"], set()).add(sample.value)
        assert sorted(values) == ["0", "1"] and all(len(v) == 1 for v in values.values()), (metric, values)


def test_cluster_capacity_counts_the_installed_gpus_and_every_device_resource(
        kubectl: Kubectl, namespace: str, api_url: str, extra_gpu_nodes: dict[str, dict[str, Any]]) -> None:
    # Two pods of a 1g.5gb slice: /cluster/capacity sees them requested on the mixed node's MIG devices.
    kubectl("apply", "-n", namespace, "-f", "-", stdin=mig_deployment("counted", 2))
    kubectl("wait", "-n", namespace, "deployment/counted", "--for=jsonpath={.status.readyReplicas}=2", "--timeout=120s")

    def counted() -> dict[str, Any]:
        doc: dict[str, Any] = httpx.get(f"{api_url}/cluster/capacity", timeout=30).raise_for_status().json()
        rows = {n["name"]: n for n in doc["nodes"] if n["name"] in extra_gpu_nodes}
        # Earlier tests' pods on these nodes go with their namespaces: wait for the count to be this test's.
        assert rows["itest-mig-mixed-0"]["gpu_devices"]["nvidia.com/mig-1g.5gb"]["requested"] == 2, rows
        assert rows["itest-ts-0"]["gpu_devices"]["nvidia.com/gpu"]["requested"] == 0, rows
        return doc
    doc = eventually(counted, 120, "the MIG slices requested by this test's two pods alone")
    rows = {n["name"]: n for n in doc["nodes"]}
    # A100-40GB x2, all-balanced, mixed: no nvidia.com/gpu, three MIG resources.
    mixed = rows["itest-mig-mixed-0"]
    assert (mixed["physical_gpus"], mixed["gpu_sharing"], mixed["allocatable"]["gpus"]) == (2, "mig-mixed", 0)
    assert mixed["gpu_devices"] == {"nvidia.com/mig-1g.5gb": {"allocatable": 4, "requested": 2},
                                    "nvidia.com/mig-2g.10gb": {"allocatable": 2, "requested": 0},
                                    "nvidia.com/mig-3g.20gb": {"allocatable": 2, "requested": 0}}
    single, shared = rows["itest-mig-single-0"], rows["itest-ts-0"]
    assert (single["physical_gpus"], single["gpu_sharing"], single["gpu_devices"]) == (
        1, "mig-single", {"nvidia.com/gpu": {"allocatable": 7, "requested": 0}})
    assert (shared["physical_gpus"], shared["gpu_sharing"], shared["gpu_devices"]) == (
        2, "time-slicing", {"nvidia.com/gpu": {"allocatable": 8, "requested": 0}})
    pools = {p["name"]: p for p in doc["pools"]}
    assert (pools["itest-mig-mixed"]["physical_gpus"], pools["itest-mig-mixed"]["gpu_devices"]) == (
        2, mixed["gpu_devices"])
    # By type: the installed GPUs of every node of the type, the demo pools' included.
    for kind, entry in doc["gpu_types"].items():
        of_kind = [n for n in doc["nodes"] if n["gpu_type"] == kind]
        assert (entry["nodes"], entry["physical_gpus"]) == (len(of_kind), sum(n["physical_gpus"] for n in of_kind))
    assert doc["gpu_types"]["a100"]["gpu_devices"]["nvidia.com/mig-1g.5gb"]["requested"] == 2


def test_cluster_cost_bills_a_mig_pod_its_share_of_a_gpu(
        kubectl: Kubectl, namespace: str, api_url: str, extra_gpu_nodes: dict[str, dict[str, Any]]) -> None:
    # One pod on a 1g.5gb slice of the mixed node's A100s: one compute slice of seven, so 1/7 of a GPU, at
    # the node's GPU price (OpenCost's split of a p4d.24xlarge over its 2 physical GPUs, not 0 GPUs).
    import datetime as dt

    from k8sim import cost, instancetypes

    kubectl("apply", "-n", namespace, "-f", "-", stdin=mig_deployment("billed", 1))
    kubectl("wait", "-n", namespace, "deployment/billed", "--for=jsonpath={.status.readyReplicas}=1", "--timeout=120s")
    (pod,) = kubectl.json("get", "pods", "-n", namespace, "-l", "app=billed")["items"]
    assert pod["spec"]["nodeName"] == "itest-mig-mixed-0"

    def recorded() -> bool:
        data = httpx.get(f"{api_url}/cluster/cost", params={"window": "1m"}, timeout=30).json()["data"][0]
        return bool(data[namespace]["gpuHours"] > 0)
    eventually(recorded, 60, "the operator to record the MIG pod")
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=1)
    end = start + dt.timedelta(seconds=20)
    eventually(lambda: dt.datetime.now(dt.UTC) > end + dt.timedelta(seconds=1), 30, "the window to pass")
    window = f"{cost.iso(start)},{cost.iso(end)}"
    body = httpx.get(f"{api_url}/cluster/cost", params={"window": window, "aggregate": "namespace"},
                     timeout=30).raise_for_status().json()
    mine = body["data"][0][namespace]
    node = kubectl.json("get", "node", "itest-mig-mixed-0")
    price = cost.split(instancetypes.load_catalog().prices["p4d.24xlarge"], cost.Capacity(96, 1152 * 2**30, 2))
    assert mine["gpuCount"] == round(1 / 7, 6)  # the slice's GPUs over its time
    assert mine["gpuHours"] == pytest.approx(20 / 3600 / 7, abs=1e-6)
    assert mine["gpuCost"] == pytest.approx(20 / 3600 / 7 * price.gpu, abs=1e-6)
    assert price.gpu > 0 and node["status"]["capacity"].get("nvidia.com/gpu") is None
