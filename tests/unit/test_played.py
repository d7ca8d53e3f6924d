"""The add-ons the engine plays: recognising them, routing kube-apiserver's traffic to the engine, the
queries' metric names, the certificates kube-aggregator verifies, and letting go of an APIService."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8sim_engine import adapter_api, registration
from k8sim_engine.played import adapter_queries, job_of

from k8sim import adapter, played, promql, scenarios

ADDONS = Path(__file__).parents[1] / "integration" / "manifests" / "addons"
ENGINE = {"apiVersion": "v1", "kind": "Service",
          "metadata": {"name": "k8sim-metrics", "namespace": "kube-system",
                       "annotations": {played.ENGINE_PORT_ANNOTATION: "6382"}},
          "spec": {"type": "ExternalName", "externalName": "127.0.0.1"}}


def docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((ADDONS / name).read_text()) if d]


def of_kind(found: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in found if d["kind"] == kind]


def service(name: str, namespace: str, ip: str, selector: dict[str, str], port: int = 443) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterIP": ip, "clusterIPs": [ip], "selector": selector, "ports": [{"port": port}]}}


def apiservice(group: str, namespace: str, name: str, version: str = "v1beta1") -> dict[str, Any]:
    return {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": f"{version}.{group}"},
            "spec": {"group": group, "version": version, "service": {"namespace": namespace, "name": name}}}


@pytest.mark.parametrize(("image", "addon"), [
    ("registry.k8s.io/prometheus-adapter/prometheus-adapter:v0.12.0", played.Addon.PROMETHEUS_ADAPTER),
    ("directxman12/k8s-prometheus-adapter:v0.8.4", played.Addon.PROMETHEUS_ADAPTER),
    ("registry.k8s.io/metrics-server/metrics-server:v0.8.0", played.Addon.METRICS_SERVER),
    ("ghcr.io/kedacore/keda-metrics-apiserver:2.20.2", played.Addon.KEDA),
    ("ghcr.io/kedacore/keda-metrics-apiserver@sha256:abc", played.Addon.KEDA),
    ("ghcr.io/kedacore/keda:2.20.2", None),  # the operator: it serves no API
    ("example.com/prometheus-adapter-fork:1", None),
    ("nginx:1.27", None),
])
def test_add_ons_are_recognised_by_their_images_repository(image: str, addon: played.Addon | None) -> None:
    assert played.image_addon(image) == addon


def test_the_kube_prometheus_adapter_is_found_behind_its_apiservice_with_its_config_map() -> None:
    found = docs("kube-prometheus-adapter.yaml")
    backend = played.backend_of(of_kind(found, "APIService")[0], of_kind(found, "Service"),
                                of_kind(found, "Deployment"))
    assert backend == played.Backend(played.Addon.PROMETHEUS_ADAPTER, "monitoring", "prometheus-adapter",
                                     "prometheus-adapter", "adapter-config", "config.yaml")


def test_a_backend_the_simulator_does_not_play_is_named_with_why() -> None:
    found = docs("kube-prometheus-adapter.yaml")
    deployments = of_kind(found, "Deployment")
    deployments[0]["spec"]["template"]["spec"]["containers"][0]["image"] = "example.com/custom-metrics:1"
    backend = played.backend_of(of_kind(found, "APIService")[0], of_kind(found, "Service"), deployments)
    assert backend is not None and backend.addon is None and "plays" in (backend.problem or "")
    missing = played.backend_of(of_kind(found, "APIService")[0], [], deployments)
    assert missing is not None and missing.problem == "the Service monitoring/prometheus-adapter does not exist"


def test_an_adapter_config_is_read_through_sub_paths_and_items() -> None:
    pod = {"volumes": [{"name": "cfg", "configMap": {"name": "rules", "items": [{"key": "k", "path": "a.yaml"}]}}]}
    container = {"args": ["--config", "/etc/x/a.yaml"], "volumeMounts": [{"name": "cfg", "mountPath": "/etc/x"}]}
    assert played._config_source(pod, container) == ("rules", "k", "")
    assert played._config_source(pod, {"args": []})[2].startswith("the adapter has no --config")
    assert "no volume" in played._config_source(pod, {"args": ["--config=/other/c.yaml"]})[2]


def test_kube_apiserver_reaches_the_engine_for_a_played_service_only() -> None:
    adapter_svc = service("prometheus-adapter", "monitoring", "10.96.0.10", {"app": "a"})
    other = service("web", "shop", "10.96.0.11", {"app": "web"})
    apis = [apiservice("custom.metrics.k8s.io", "monitoring", "prometheus-adapter")]
    services = [ENGINE, adapter_svc, other]
    assert played.egress_target("10.96.0.10", 443, services, apis) == ("127.0.0.1", 6382)
    assert played.egress_target("10.96.0.10", 8443, services, apis) is None  # a port the Service lacks
    assert played.egress_target("10.96.0.11", 443, services, apis) is None  # not behind a metrics APIService
    # An APIService of another group (a webhook's, an aggregated API the simulator does not play).
    assert played.egress_target("10.96.0.10", 443, services, [apiservice("x.example.com", "monitoring",
                                                                         "prometheus-adapter")]) is None
    assert played.egress_target("10.96.0.10", 443, [adapter_svc], apis) is None  # no engine registered
    slices = [{"metadata": {"namespace": "monitoring", "labels": {"kubernetes.io/service-name": "prometheus-adapter"}},
               "endpoints": [{"addresses": ["10.0.0.7"]}]}]
    assert played.egress_target("10.0.0.7", 6443, services, apis, slices) == ("127.0.0.1", 6382)


def test_same_named_services_in_other_namespaces_are_not_confused() -> None:
    apis = [apiservice("custom.metrics.k8s.io", "t1", "adapter")]
    services = [ENGINE, service("adapter", "t1", "10.96.0.1", {}), service("adapter", "t10", "10.96.0.2", {})]
    assert played.egress_target("10.96.0.1", 443, services, apis) == ("127.0.0.1", 6382)
    assert played.egress_target("10.96.0.2", 443, services, apis) is None


def test_the_engine_own_apiservices_go_to_their_externalname_as_asked() -> None:
    ours = {"spec": {"group": "metrics.k8s.io", "service": {"namespace": "kube-system", "name": "k8sim-metrics"}}}
    assert played.is_engines(ours)
    assert played.egress_target("127.0.0.1", 6382, [ENGINE], [ours]) is None
    assert played.is_loopback("127.0.0.1") and not played.is_loopback("10.0.0.1")


def test_keda_acts_only_once_its_operator_is_applied() -> None:
    found = [d for d in yaml.safe_load_all((ADDONS.parent / "keda" / "keda-2.20.2.yaml").read_text()) if d]
    deployments = of_kind(found, "Deployment")
    assert played.keda_operator_present(deployments)
    assert not played.keda_operator_present([d for d in deployments if d["metadata"]["name"] != "keda-operator"])
    api = next(a for a in of_kind(found, "APIService") if a["spec"]["group"] == "external.metrics.k8s.io")
    backend = played.backend_of(api, of_kind(found, "Service"), deployments)
    assert backend is not None and backend.addon == played.Addon.KEDA


def test_the_queries_metric_names_cover_kube_prometheus_resource_rules() -> None:
    config_map = of_kind(docs("kube-prometheus-adapter.yaml"), "ConfigMap")[0]
    queries = adapter_queries(adapter.load(config_map["data"]["config.yaml"]))
    assert queries is not None
    names = set().union(*(promql.metric_names(q) or set() for q in queries))
    assert {"container_cpu_usage_seconds_total", "container_memory_working_set_bytes", "node_cpu_seconds_total",
            "node_namespace_pod:kube_pod_info:", "node_memory_MemTotal_bytes"} <= names


def test_the_vllm_examples_rules_read_their_series_only() -> None:
    config_map = of_kind(docs("vllm-prometheus-adapter-fixed.yaml"), "ConfigMap")[0]
    queries = adapter_queries(adapter.load(config_map["data"]["config.yaml"]))
    assert set().union(*(promql.metric_names(q) or set() for q in queries or [])) == {
        "vllm:num_requests_running", "dcgm_fi_dev_gpu_util_relabelled"}


def test_the_vllm_examples_adapter_config_does_not_parse_as_published() -> None:
    config_map = of_kind(docs("vllm-prometheus-adapter.yaml"), "ConfigMap")[0]
    with pytest.raises(adapter.AdapterConfigError, match="unable to load metrics discovery config"):
        adapter.load(config_map["data"]["config.yaml"])


def test_exporter_jobs_and_pod_owners() -> None:
    assert job_of("container_cpu_usage_seconds_total") == "kubelet"
    assert job_of("DCGM_FI_DEV_GPU_UTIL") == "dcgm-exporter"
    assert job_of("vllm:num_requests_waiting") is None
    # The crash loop finds an adapter's pods by their Deployment, as Scenarios find a pod's workload.
    pod = {"metadata": {"labels": {"pod-template-hash": "5988757564"},
                        "ownerReferences": [{"kind": "ReplicaSet", "name": "prometheus-adapter-5988757564",
                                             "controller": True}]}}
    assert scenarios.workload_of(pod) == ("Deployment", "prometheus-adapter")
    assert scenarios.workload_of({"metadata": {"ownerReferences": [{"kind": "StatefulSet", "name": "x"}]}}) \
        == ("StatefulSet", "x")  # not a Deployment: never an adapter's pod



@pytest.mark.parametrize(("value", "text"), [(16.5, "16500m"), (16.255, "16254m"), (20, "20"), (0, "0"), (2000, "2k"),
                                             (1500, "1500"), (float("nan"), "0")])
def test_adapter_quantities_are_canonical(value: float, text: str) -> None:
    assert adapter_api.milli_quantity(value) == text


def test_releasing_an_apiservice_drops_the_engines_port_and_labels() -> None:
    current = {"metadata": {"name": "v1beta1.metrics.k8s.io", "labels": registration.MANAGED_BY,
                            "managedFields": [{"manager": "k8s-simulator", "operation": "Apply"}]},
               "spec": {"group": "metrics.k8s.io", "version": "v1beta1", "groupPriorityMinimum": 100,
                        "versionPriority": 100, "insecureSkipTLSVerify": True,
                        "service": {"namespace": "monitoring", "name": "prometheus-adapter", "port": 6382}}}
    assert registration.applied_by_us(current)
    released = registration.released(current)
    assert released["spec"]["service"] == {"namespace": "monitoring", "name": "prometheus-adapter"}
    assert "labels" not in released["metadata"] and "insecureSkipTLSVerify" not in released["spec"]
    # What the user's own apply set too stays (kube-prometheus skips verification; KEDA's does not).
    current["metadata"]["managedFields"].append({"manager": "kubectl-client-side-apply", "operation": "Update",
                                                 "fieldsV1": {"f:spec": {"f:insecureSkipTLSVerify": {}}}})
    assert registration.released(current)["spec"]["insecureSkipTLSVerify"] is True
    current["metadata"]["managedFields"].pop()
    current["metadata"]["annotations"] = {registration.LAST_APPLIED: json.dumps(
        {"spec": {"insecureSkipTLSVerify": True, "service": {"name": "prometheus-adapter"}}})}
    assert registration.released(current)["spec"]["insecureSkipTLSVerify"] is True
    kubectl = {"metadata": {"managedFields": [{"manager": "kubectl", "operation": "Apply"}]}}
    assert not registration.applied_by_us(kubectl)


def test_the_engine_answers_each_service_name_with_a_certificate_its_ca_signed(tmp_path: Path) -> None:
    authority = registration.Authority()
    cert, key = authority.leaf(tmp_path, ["127.0.0.1", "localhost"])
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    authority.serve_names(server, tmp_path)
    (tmp_path / "ca.pem").write_bytes(authority.pem)
    client = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    for name in ("keda-metrics-apiserver.keda.svc", "localhost"):
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        back_in, back_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls_client = client.wrap_bio(incoming, outgoing, server_hostname=name)
        tls_server = server.wrap_bio(back_in, back_out, server_side=True)
        for _ in range(10):  # the handshake, by hand over memory buffers
            for side in (tls_client, tls_server):
                try:
                    side.do_handshake()
                except ssl.SSLWantReadError:
                    pass
            back_in.write(outgoing.read())
            incoming.write(back_out.read())
        assert tls_client.getpeercert() is not None  # verified against the CA, for this very name


def test_node_exporter_series_exist_only_where_its_pods_run_and_count_busy_time() -> None:
    from k8sim_engine.node_exporter import NodeExporter, NodeExporterCollector
    from prometheus_client.core import Metric

    nodes = [{"metadata": {"name": n}, "status": {"capacity": {"cpu": "4", "memory": "16Gi"}}} for n in ("a", "b")]
    exporter_pod = {"metadata": {"name": "node-exporter-x", "namespace": "monitoring"},
                    "spec": {"nodeName": "a", "containers": [{"image": "quay.io/prometheus/node-exporter:v1.12.1"}]},
                    "status": {"phase": "Running"}}
    other = {"metadata": {"name": "web", "namespace": "shop"},
             "spec": {"nodeName": "b", "containers": [{"image": "nginx:1.27"}]}, "status": {"phase": "Running"}}

    class Usage:
        nodes: dict[str, tuple[float, float, dict[str, str]]] = {"a": (1.0, 4 * 2**30, {}), "b": (2.0, 2**30, {})}

    class Engine:
        node_exporter = NodeExporter()
    for _ in range(10):
        Engine.node_exporter.step([exporter_pod, other], nodes, Usage(), 5.0)  # type: ignore[arg-type,unused-ignore]
    families: dict[str, Metric] = {f.name: f for f in NodeExporterCollector(Engine()).collect()}
    cpu = families["node_cpu_seconds"].samples  # a counter family's name, without _total
    assert {s.labels["instance"] for s in cpu} == {"a"}  # no node-exporter pod on b: no series
    assert len(cpu) == 4 * 3 and {s.labels["pod"] for s in cpu} == {"node-exporter-x"}
    idle = [s.value for s in cpu if s.labels["mode"] == "idle"]
    assert idle == [pytest.approx(50 * 0.75)] * 4  # 1 of 4 cores busy for 50 s
    busy = sum(s.value for s in cpu if s.labels["mode"] != "idle")
    assert busy == pytest.approx(50 * 1.0)
    (available,) = families["node_memory_MemAvailable_bytes"].samples
    assert available.value == 12 * 2**30
