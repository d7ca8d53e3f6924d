"""HPAs written for real adapters work unchanged (issue 28 §2): the metrics add-ons users apply
(kubernetes/examples' vLLM prometheus-adapter, kube-prometheus' adapter, metrics-server, KEDA) are played
by the engine behind their own APIServices, reached through the cluster's egress proxy. Real apiserver,
real kube-aggregator, real HPA controller; the manifests are the projects' own (see each file's header)."""

from __future__ import annotations

import functools
import json
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from k8sim import inference
from k8sim.local.processes import ClusterError

from .conftest import Kubectl, eventually

pytestmark = pytest.mark.integration

ADDONS = Path(__file__).parent / "manifests" / "addons"
KEDA = Path(__file__).parent / "manifests" / "keda" / "keda-2.20.2.yaml"
VLLM = Path(__file__).parent / "manifests" / "vllm-deployment.yaml"
BASE_RPS = 18.0  # a GPU pod's peak load at the loop engine's noiseless weekday peak (test_inference)


def apiservice(kubectl: Kubectl, name: str) -> dict[str, Any]:
    return dict(kubectl.json("get", "apiservice", name))


def available(kubectl: Kubectl, name: str) -> dict[str, Any]:
    conditions = apiservice(kubectl, name).get("status", {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Available"), {})


def backend_of(kubectl: Kubectl, name: str) -> str:
    service = apiservice(kubectl, name)["spec"].get("service") or {}
    return f"{service.get('namespace')}/{service.get('name')}"


def health(engine: str) -> dict[str, Any]:
    return dict(httpx.get(f"{engine}/health", timeout=10).json())


def raw(kubectl: Kubectl, path: str) -> Any:
    """GET path through kube-apiserver (and kube-aggregator); an error answer is an AssertionError naming it."""
    try:
        return json.loads(kubectl("get", "--raw", path))
    except ClusterError as exc:
        raise AssertionError(str(exc).splitlines()[-1]) from None


@pytest.fixture
def applied(kubectl: Kubectl) -> Iterator[list[Path]]:
    """Files applied in the test (kubectl apply, as users do), deleted afterwards with their namespaces;
    the engine then registers its own APIServices again."""
    files: list[Path] = []
    yield files
    for path in reversed(files):
        kubectl("delete", "-f", str(path), "--ignore-not-found", "--wait=false", check=False)
    # The next test creates them again: wait until they are gone.
    kubectl("delete", "namespace", "monitoring", "keda", "--ignore-not-found", "--timeout=180s", check=False)


def apply(kubectl: Kubectl, applied: list[Path], path: Path, *extra: str) -> None:
    applied.append(path)
    kubectl("apply", "-f", str(path), *extra)


def top(kubectl: Kubectl, *args: str) -> dict[str, tuple[int, int]]:
    """kubectl top's table as name → (millicores, MiB)."""
    rows = {}
    try:
        table = kubectl("top", *args, "--no-headers")
    except ClusterError as exc:
        raise AssertionError(str(exc).splitlines()[-1]) from None
    for line in table.splitlines():
        name, cpu, *rest = line.split()
        if cpu == "<unknown>":
            continue  # kubectl top nodes lists a node it has no metrics for so
        memory = next(c for c in rest if c.endswith("Mi"))  # kubectl top nodes puts CPU% between them
        rows[name] = (int(cpu.removesuffix("m")), int(memory.removesuffix("Mi")))
    return rows


def test_the_vllm_examples_adapter_crash_loops_as_published_and_its_gpu_hpa_scales_once_fixed(
        loop_engine: str, api_url: str, kubectl: Kubectl, applied: list[Path]) -> None:
    kubectl("create", "namespace", "monitoring")
    # As published, the ConfigMap's second rule is indented under the first: the adapter exits at start.
    apply(kubectl, applied, ADDONS / "vllm-prometheus-adapter.yaml")

    def crash_looping() -> dict[str, Any]:
        (pod,) = kubectl.json("get", "pods", "-n", "monitoring", "-l", "app=prometheus-adapter")["items"]
        status = pod["status"]["containerStatuses"][0]
        last = status.get("lastState", {}).get("terminated") or status.get("state", {}).get("terminated") or {}
        assert "unable to load metrics discovery config" in last.get("message", "")
        assert status.get("restartCount", 0) >= 1 and not status["ready"]
        return dict(pod)
    pod = eventually(crash_looping, 60, "the adapter's pod crash-looping with the parse error")
    assert "expected <block end>, but found '-'" in json.dumps(pod["status"])
    eventually(lambda: available(kubectl, "v1beta1.custom.metrics.k8s.io").get("status") == "False", 30,
               "its APIService unavailable")
    (held,) = [h for h in health(loop_engine)["played"]["holders"] if h["group"] == "custom.metrics.k8s.io"]
    assert held["addon"] == "prometheus-adapter" and "unable to load metrics discovery config" in held["problem"]
    assert held["config"] == "monitoring/prometheus-adapter:config.yaml"
    # The snapshot the API and the dashboard's banner read names it as well.
    snapshot = httpx.get(f"{loop_engine}/snapshot", timeout=10).json()
    (named,) = [f for f in snapshot["metrics_apis"]["foreign"] if f["apiservice"] == "v1beta1.custom.metrics.k8s.io"]
    assert named["service"] == "monitoring/prometheus-adapter" and "unable to load" in named["reason"]
    # Nothing else stops working: kubectl top (metrics.k8s.io) is still the engine's.
    assert top(kubectl, "pods", "-n", "monitoring")

    # The same file with the rule where it belongs; the DCGM relabelling rule it relies on; the vLLM server
    # and the GPU HPA, all from kubernetes/examples.
    apply(kubectl, applied, ADDONS / "vllm-prometheus-adapter-fixed.yaml")
    apply(kubectl, applied, ADDONS / "vllm-prometheus-rule.yaml", "-n", "monitoring")
    eventually(lambda: available(kubectl, "v1beta1.custom.metrics.k8s.io").get("status") == "True", 90,
               "the fixed adapter's APIService available")
    ns = "vllm-example"
    kubectl("create", "namespace", ns)
    kubectl("create", "secret", "generic", "hf-secret", "-n", ns, "--from-literal=hf_token=placeholder")
    deployment = next(yaml.safe_load_all(VLLM.read_text()))
    deployment["spec"]["template"]["spec"]["nodeSelector"] = {"accelerator": "nvidia-t4"}
    kubectl("apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump(deployment))
    applied.append(ADDONS / "vllm-gpu-hpa.yaml")
    kubectl("apply", "-n", ns, "-f", str(ADDONS / "vllm-gpu-hpa.yaml"))
    try:
        def metric() -> dict[str, Any]:
            found = raw(kubectl, f"/apis/custom.metrics.k8s.io/v1beta1/namespaces/{ns}/pods/*/gpu_utilization_percent")
            assert found["items"]
            return dict(found)
        values = eventually(metric, 90, "gpu_utilization_percent of the vLLM pod through the adapter")
        resources = {r["name"] for r in raw(kubectl, "/apis/custom.metrics.k8s.io/v1beta1")["resources"]}
        assert {"pods/gpu_utilization_percent", "namespaces/gpu_utilization_percent"} <= resources
        assert values["items"][0]["describedObject"]["kind"] == "Pod"

        def reading() -> dict[str, Any]:
            hpa = kubectl.json("get", "hpa", "gemma-server-gpu-hpa", "-n", ns)
            conditions = {c["type"]: c for c in hpa["status"].get("conditions") or []}
            assert conditions["ScalingActive"]["reason"] == "ValidMetricFound", conditions
            return dict(hpa)
        hpa = eventually(reading, 90, "the GPU HPA reading gpu_utilization_percent")
        assert hpa["status"]["currentMetrics"][0]["pods"]["metric"]["name"] == "gpu_utilization_percent"
        first = hpa["status"]["currentReplicas"]

        server = inference.recognise(kubectl.json("get", "pods", "-n", ns, "-l", "app=gemma-server")["items"][0])
        assert server is not None
        peak = inference.capacity(server, "t4", 1).max_rps(server.output_tokens)
        load = {"namespace": ns, "duration_seconds": 900}
        factor = round(3 * peak / BASE_RPS, 2)
        assert httpx.post(f"{api_url}/monitoring/load", json={**load, "factor": factor}, timeout=30).status_code == 200
        try:
            eventually(lambda: kubectl.json("get", "hpa", "gemma-server-gpu-hpa", "-n", ns)["status"]
                       .get("desiredReplicas", 0) > first, 120, "the HPA scaling out on the GPU's utilisation")
            events = kubectl("get", "events", "-n", ns, "--field-selector",
                             "involvedObject.name=gemma-server-gpu-hpa", "-o", "json")
            assert "pods metric gpu_utilization_percent above target" in events
        finally:
            httpx.post(f"{api_url}/monitoring/load", json={**load, "factor": 1}, timeout=30)
    finally:
        kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_kube_prometheus_adapter_keeps_kubectl_top_working_from_its_resource_rules(
        loop_engine: str, kubectl: Kubectl, applied: list[Path], namespace: str) -> None:
    kubectl("create", "namespace", "monitoring")
    kubectl("create", "deployment", "web", "-n", namespace, "--image=nginx:1.27", "--replicas=2")
    kubectl("wait", "-n", namespace, "deployment/web", "--for=condition=Available", "--timeout=60s")
    # What kube-prometheus' adapter reads besides cAdvisor: node-exporter and its node.rules.
    apply(kubectl, applied, ADDONS / "kube-prometheus-node-exporter.yaml")
    apply(kubectl, applied, ADDONS / "kube-prometheus-control-plane-rules.yaml")
    kubectl("rollout", "status", "-n", "monitoring", "daemonset/node-exporter", "--timeout=120s")
    time.sleep(3)  # a few ticks with node-exporter's own pods in the nodes' load
    ours = eventually(lambda: top(kubectl, "pods", "-n", namespace), 60, "kubectl top from the engine")
    our_nodes = top(kubectl, "nodes")
    apply(kubectl, applied, ADDONS / "kube-prometheus-adapter.yaml")
    eventually(lambda: backend_of(kubectl, "v1beta1.metrics.k8s.io") == "monitoring/prometheus-adapter", 30,
               "the adapter's APIService in place of the engine's")
    eventually(lambda: available(kubectl, "v1beta1.metrics.k8s.io").get("status") == "True", 90,
               "kube-prometheus' adapter available (its pods Ready, its Service reached through the egress proxy)")
    # The engine let go of the field only it had set: the APIService names the Service's own port.
    assert "port" not in apiservice(kubectl, "v1beta1.metrics.k8s.io")["spec"]["service"] or \
        apiservice(kubectl, "v1beta1.metrics.k8s.io")["spec"]["service"]["port"] == 443

    def through_adapter() -> dict[str, tuple[int, int]]:
        rows = top(kubectl, "pods", "-n", namespace)
        assert set(rows) == set(ours)
        return rows
    rows = eventually(through_adapter, 60, "kubectl top pods through the adapter's containerQuery")
    for name, (cpu, memory) in rows.items():
        # irate over the engine's own cAdvisor counters, and its working set: the engine's figures.
        assert cpu == pytest.approx(ours[name][0], abs=max(5, ours[name][0] * 0.3)), name
        assert memory == pytest.approx(ours[name][1], rel=0.3), name
    def nodes_through_adapter() -> dict[str, tuple[int, int]]:
        rows = top(kubectl, "nodes")
        assert set(rows) == set(our_nodes)
        return rows
    # The nodeQuery: 1 - irate of node-exporter's idle seconds, joined to each node by the recording rule.
    nodes = eventually(nodes_through_adapter, 90, "kubectl top nodes through the adapter's nodeQuery")
    for name, (cpu, memory) in nodes.items():
        # The adapter's own two pods land on nodes after our_nodes was read, and add their load there.
        assert cpu == pytest.approx(our_nodes[name][0], abs=max(250, our_nodes[name][0] * 0.3)), name
        assert memory == pytest.approx(our_nodes[name][1], rel=0.1), name
    status = health(loop_engine)
    assert status["status"] == "healthy", (status.get("message"), status["played"])
    assert status["played"]["recording_rules"] > 10
    (held,) = [h for h in status["played"]["holders"] if h["group"] == "metrics.k8s.io"]
    assert held == {"group": "metrics.k8s.io", "apiservice": "v1beta1.metrics.k8s.io",
                    "addon": "prometheus-adapter", "service": "monitoring/prometheus-adapter",
                    "deployment": "prometheus-adapter", "config": "monitoring/adapter-config:config.yaml",
                    "problem": None}

    # Removing it gives the group back to the engine (its APIService registered again).
    kubectl("delete", "-f", str(ADDONS / "kube-prometheus-adapter.yaml"), "--wait=false")
    applied.remove(ADDONS / "kube-prometheus-adapter.yaml")
    eventually(lambda: backend_of(kubectl, "v1beta1.metrics.k8s.io") == "kube-system/k8sim-metrics", 60,
               "the engine's own metrics API back")
    eventually(lambda: top(kubectl, "pods", "-n", namespace), 60, "kubectl top from the engine again")


def test_metrics_server_release_manifest_is_played(loop_engine: str, kubectl: Kubectl,
                                                   applied: list[Path]) -> None:
    apply(kubectl, applied, ADDONS / "metrics-server-components.yaml")
    eventually(lambda: backend_of(kubectl, "v1beta1.metrics.k8s.io") == "kube-system/metrics-server", 30,
               "metrics-server's APIService applied")
    eventually(lambda: available(kubectl, "v1beta1.metrics.k8s.io").get("status") == "True", 90,
               "metrics-server available")
    nodes = top(kubectl, "nodes")
    assert len(nodes) >= 10 and all(cpu > 0 for cpu, _ in nodes.values())
    status = health(loop_engine)
    assert status["status"] == "healthy" and status["metrics_apis"]["foreign"] == []


def so_manifest(name: str, target: str, query: str, trigger: dict[str, str], **spec: Any) -> str:
    """A ScaledObject polling every second with one prometheus trigger (its server is never dialed)."""
    metadata = {"serverAddress": "http://prometheus-k8s.monitoring.svc:9090", "query": query, **trigger}
    return yaml.safe_dump({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": name},
                           "spec": {"scaleTargetRef": {"name": target}, "pollingInterval": 1, **spec,
                                    "triggers": [{"type": "prometheus", "metadata": metadata}]}})


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in obj.get("status", {}).get("conditions") or [] if c["type"] == kind), {})


def test_keda_scaled_objects_scale_on_vllm_queue_with_activation_and_cooldown(
        loop_engine: str, api_url: str, kubectl: Kubectl, applied: list[Path], namespace: str) -> None:
    apply(kubectl, applied, KEDA, "--server-side", "--force-conflicts")
    eventually(lambda: available(kubectl, "v1beta1.external.metrics.k8s.io").get("status") == "True"
               and backend_of(kubectl, "v1beta1.external.metrics.k8s.io") == "keda/keda-metrics-apiserver", 90,
               "KEDA's metrics server available (its caBundle the engine's CA, as KEDA's operator sets its own)")
    assert apiservice(kubectl, "v1beta1.external.metrics.k8s.io")["spec"].get("caBundle")
    ns = namespace
    deployment = next(yaml.safe_load_all(VLLM.read_text()))
    deployment["spec"]["template"]["spec"]["nodeSelector"] = {"accelerator": "nvidia-t4"}
    kubectl("apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump(deployment))
    kubectl("create", "deployment", "gateway", "-n", ns, "--image=nginx:1.27")
    kubectl("create", "deployment", "worker", "-n", ns, "--image=busybox:1.36", "--replicas=1")
    for name in ("vllm-gemma-deployment", "gateway"):
        kubectl("wait", "-n", ns, f"deployment/{name}", "--for=condition=Available", "--timeout=120s")
    waiting = f'sum(vllm:num_requests_waiting{{namespace="{ns}"}})'
    kubectl("apply", "-n", ns, "-f", "-", stdin=so_manifest(
        "llm", "vllm-gemma-deployment", waiting, minReplicaCount=1, maxReplicaCount=4,
        trigger={"threshold": "10"}))
    gateway = f'sum(rate(http_requests_total{{namespace="{ns}",service="gateway"}}[10s]))'
    worker_so = functools.partial(so_manifest, "worker", "worker", gateway, minReplicaCount=0, maxReplicaCount=2,
                                  cooldownPeriod=8)
    kubectl("apply", "-n", ns, "-f", "-", stdin=worker_so(trigger={"threshold": "100000",
                                                                   "activationThreshold": "1000000000"}))

    def ready(name: str) -> dict[str, Any]:
        so = kubectl.json("get", "scaledobject", name, "-n", ns)
        assert condition(so, "Ready")["status"] == "True", so.get("status")
        return dict(so)
    llm = eventually(lambda: ready("llm"), 60, "the vLLM ScaledObject ready")
    assert llm["status"]["externalMetricNames"] == ["s0-prometheus"] and llm["status"]["hpaName"] == "keda-hpa-llm"
    hpa = kubectl.json("get", "hpa", "keda-hpa-llm", "-n", ns)
    assert hpa["spec"]["metrics"][0]["external"]["metric"] == {
        "name": "s0-prometheus", "selector": {"matchLabels": {"scaledobject.keda.sh/name": "llm"}}}
    selector = urllib.parse.quote("scaledobject.keda.sh/name=llm")
    value = raw(kubectl, f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/s0-prometheus"
                         f"?labelSelector={selector}")
    assert value["items"][0]["metricName"] == "s0-prometheus"

    # Cooldown: the gateway's load is below the worker's activation threshold; 8 s after KEDA last saw it
    # active (never), the worker goes to zero.
    eventually(lambda: kubectl.json("get", "deployment", "worker", "-n", ns)["spec"]["replicas"] == 0, 60,
               "the idle worker scaled to zero")
    assert condition(ready("worker"), "Active")["status"] == "False"

    def gateway_rate() -> float:
        found = raw(kubectl, f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/s0-prometheus"
                             f"?labelSelector={urllib.parse.quote('scaledobject.keda.sh/name=worker')}")
        return float(found["items"][0]["value"])  # KEDA writes %.3f: no suffix below a thousand
    def steady() -> float:
        first = gateway_rate()
        time.sleep(3)
        second = gateway_rate()
        assert first > 0 and abs(second - first) <= 0.03 * first, (first, second)  # past its pod's warm-up
        return second
    base = eventually(steady, 120, "the gateway's steady request rate through KEDA's metrics server")
    # Activation at twice the gateway's own rate: the load step below passes it, its end falls back under it.
    kubectl("apply", "-n", ns, "-f", "-", stdin=worker_so(trigger={"threshold": "100000",
                                                                   "activationThreshold": f"{2 * base:.0f}"}))
    time.sleep(3)
    assert kubectl.json("get", "deployment", "worker", "-n", ns)["spec"]["replicas"] == 0  # still idle

    load = {"namespace": ns, "duration_seconds": 900}
    server = inference.recognise(kubectl.json("get", "pods", "-n", ns, "-l", "app=gemma-server")["items"][0])
    assert server is not None
    peak = inference.capacity(server, "t4", 1).max_rps(server.output_tokens)
    factor = round(2.5 * peak / BASE_RPS, 2)
    assert httpx.post(f"{api_url}/monitoring/load", json={**load, "factor": factor}, timeout=30).status_code == 200
    try:
        # Activation: the gateway's rate passes 2x its base, the worker comes back from zero.
        eventually(lambda: kubectl.json("get", "deployment", "worker", "-n", ns)["spec"]["replicas"] == 1, 60,
                   "the worker activated from zero")
        assert condition(ready("worker"), "Active")["status"] == "True"
        # 1 → N: the vLLM queue per pod above 10, KEDA's HPA scales out.
        eventually(lambda: kubectl.json("get", "hpa", "keda-hpa-llm", "-n", ns)["status"]
                   .get("desiredReplicas", 0) >= 2, 120, "KEDA's HPA scaling the vLLM server out")
    finally:
        httpx.post(f"{api_url}/monitoring/load", json={**load, "factor": 1}, timeout=30)
    def idle_again() -> bool:
        replicas = kubectl.json("get", "deployment", "worker", "-n", ns)["spec"]["replicas"]
        assert replicas == 0, (replicas, kubectl.json("get", "scaledobject", "worker", "-n", ns)["status"],
                               raw(kubectl, f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/s0-prometheus"
                                            f"?labelSelector={urllib.parse.quote('scaledobject.keda.sh/name=worker')}"))
        return True
    eventually(idle_again, 90, "the worker back to zero after its cooldown")
    eventually(lambda: kubectl.json("get", "hpa", "keda-hpa-llm", "-n", ns)["status"]
               .get("desiredReplicas") == 1, 180, "the vLLM server back to one replica")


def test_a_scaled_object_whose_query_returns_several_series_is_not_ready(
        loop_engine: str, kubectl: Kubectl, applied: list[Path], namespace: str) -> None:
    apply(kubectl, applied, KEDA, "--server-side", "--force-conflicts")
    kubectl("create", "deployment", "web", "-n", namespace, "--image=nginx:1.27", "--replicas=2")
    kubectl("apply", "-n", namespace, "-f", "-", stdin=so_manifest(
        "many", "web", f'container_memory_working_set_bytes{{namespace="{namespace}"}}', minReplicaCount=1,
        trigger={"threshold": "10"}))

    def failing() -> str:
        events = kubectl("get", "events", "-n", namespace, "--field-selector", "involvedObject.name=many",
                         "-o", "json")
        assert "returned multiple elements" in events
        return events
    eventually(failing, 60, "KEDA's KEDAScalerFailed event naming the query")
    so = kubectl.json("get", "scaledobject", "many", "-n", namespace)
    assert condition(so, "Ready")["status"] == "False", so["status"]
