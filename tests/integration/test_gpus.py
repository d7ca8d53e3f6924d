"""GPU nodes as the GPU Operator makes them, against the real cluster: an upstream GPU manifest with
no toleration lands (ExtendedResourceToleration), GPU Feature Discovery's labels on the live nodes,
and DCGM exporter's default counters per device in the engine's /metrics and in a real Prometheus."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from k8sim_engine.collector import DCGM_COUNTERS
from prometheus_client.parser import text_string_to_metric_families

from k8sim import gpus, topology
from k8sim.local.processes import free_port
from k8sim.local.settings import ClusterSettings

from .conftest import Kubectl, eventually, process

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


@pytest.fixture(scope="module")
def prometheus(engine_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's Prometheus scraping the engine every second (installed by scripts/install-deps.sh)."""
    if shutil.which("prometheus") is None:
        pytest.skip("Debian's prometheus is installed by scripts/install-deps.sh")
    tmp = tmp_path_factory.mktemp("prometheus-gpu")
    port = free_port()
    (tmp / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs:\n  - job_name: dcgm\n    static_configs: [{{targets: ['{engine_url[7:]}']}}]\n")
    cmd = ["prometheus", f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
           f"--web.listen-address=127.0.0.1:{port}"]
    with process(cmd, {}, tmp / "prometheus.log"):
        yield f"http://127.0.0.1:{port}"


def promql(prometheus: str, query: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=10).json()
    assert body["status"] == "success", (query, body)
    return list(body["data"]["result"])


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
