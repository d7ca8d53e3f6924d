"""The metrics APIs' pure parts: selectors, usage per container and node, custom and external values."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from k8sim_engine import metrics_api

from k8sim import model

MONDAY = dt.datetime(2026, 11, 23, 10, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize(("selector", "labels", "expected"), [
    ("app=web", {"app": "web"}, True),
    ("app==web,tier!=db", {"app": "web", "tier": "front"}, True),
    ("app in (web, api)", {"app": "api"}, True),
    ("app notin (web,api)", {"app": "api"}, False),
    ("gpu", {"gpu": "1"}, True),
    ("!gpu", {"gpu": "1"}, False),
    ("app=web,!gpu", {"app": "web"}, True),
    ("", {}, True),
])
def test_selectors_as_kubernetes_writes_them(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert metrics_api.parse_selector(selector)(labels) is expected


@pytest.mark.parametrize("bad", ["app=(", "a b c", "app in web"])
def test_a_bad_selector_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        metrics_api.parse_selector(bad)


def pod(name: str, node: str = "cpu-0") -> dict[str, Any]:
    return {"metadata": {"uid": name, "name": name, "namespace": "ns", "labels": {"app": "web"},
                         "ownerReferences": [{"kind": "ReplicaSet", "name": "web-h", "controller": True}]},
            "spec": {"nodeName": node, "containers": [
                {"name": "app", "resources": {"requests": {"cpu": "900m", "memory": "900Mi"}}},
                {"name": "sidecar", "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}}},
                {"name": "bare"}]}}


def spec(name: str) -> model.PodSpec:
    return model.PodSpec(uid=name, namespace="ns", name=name, service="ns/web", container="app", image="i",
                         node="cpu-0", tenant="t1", cpu_request=1.0, cpu_limit=2.0, memory_request=1024 * model.MIB,
                         memory_limit=2 * model.GIB, gpus=0, accelerator=None, ready=True, started=MONDAY)


def usage() -> metrics_api.Usage:
    m = model.Model(1)
    samples = m.tick([spec("a"), spec("b")], MONDAY, 5)
    node = {"metadata": {"name": "cpu-0", "labels": {}}, "status": {"capacity": {"cpu": "32", "memory": "128Gi"}}}
    return metrics_api.usage_from([pod("a"), pod("b"), pod("unmodelled")], [node], m, samples, MONDAY, 5)


def test_a_pods_usage_is_split_by_request_and_no_container_reports_zero() -> None:
    found = usage()
    assert set(found.pods) == {("ns", "a"), ("ns", "b")}, "only what the model runs"
    a = found.pods[("ns", "a")]
    cpu = {name: c for name, c, _ in a.containers}
    assert cpu["app"] == pytest.approx(9 * cpu["sidecar"], rel=0.01)
    assert cpu["bare"] > 0, "the HPA ignores pods that report zero"
    assert sum(cpu.values()) == pytest.approx(a.sample.cpu_cores, rel=0.02)


def test_usage_read_after_the_model_moved_on_is_still_its_own_ticks() -> None:
    """Per-pod usage is worked out on first read; a read after the next tick sees the tick it was made at."""
    m = model.Model(1)
    node = {"metadata": {"name": "cpu-0", "labels": {}}, "status": {"capacity": {"cpu": "32", "memory": "128Gi"}}}
    samples = m.tick([spec("a")], MONDAY, 5)
    first = metrics_api.usage_from([pod("a")], [node], m, samples, MONDAY, 5)
    sample = m.pods["a"].last
    m.tick([spec("a")], MONDAY + dt.timedelta(minutes=1), 5, factors={"ns/web": 10.0})
    assert m.pods["a"].last.cpu_cores != sample.cpu_cores
    m.tick([], MONDAY + dt.timedelta(minutes=2), 5)
    assert "a" not in m.pods, "the pod went"
    assert first.pods[("ns", "a")].sample is sample, "first read now, of the tick it was made at"
    assert first.nodes["cpu-0"][0] == pytest.approx(sample.cpu_cores + 0.1 + 0.01 * 32)


def test_a_nodes_usage_is_its_pods_plus_system_overhead() -> None:
    found = usage()
    cpu, memory, _ = found.nodes["cpu-0"]
    pods_cpu = sum(p.sample.cpu_cores for p in found.pods.values())
    assert cpu == pytest.approx(pods_cpu + 0.1 + 0.01 * 32)
    assert memory > sum(p.sample.memory_bytes for p in found.pods.values()) + 512 * model.MIB


def test_documents_have_the_shapes_clients_read() -> None:
    found = usage()
    doc = metrics_api.pod_metrics(found.pods[("ns", "a")], found)
    assert doc["kind"] == "PodMetrics" and doc["window"] == "5s" and doc["timestamp"] == "2026-11-23T10:30:00Z"
    assert all(c["usage"]["cpu"].endswith("n") and c["usage"]["memory"].endswith("Ki") for c in doc["containers"])
    assert metrics_api.node_metrics("cpu-0", found)["usage"]["cpu"].endswith("n")
    assert metrics_api.cpu_quantity(0.0) == "1n" and metrics_api.value_quantity(1.5) == "1500m"
    groups = {metrics_api.resource_list(g)["groupVersion"] for g in metrics_api.GROUPS}
    assert groups == {"metrics.k8s.io/v1beta1", "custom.metrics.k8s.io/v1beta2", "external.metrics.k8s.io/v1beta1"}


def test_external_metrics_per_service_and_per_tenant() -> None:
    found = usage()
    everything = metrics_api.parse_selector(None)
    (item,) = metrics_api.external_items(found, "ns", "requests_per_second", everything)
    assert item["metricLabels"] == {"namespace": "ns", "service": "web", "tenant": "t1"}
    assert not metrics_api.external_items(found, "other", "requests_per_second", everything)
    (tenant,) = metrics_api.external_items(found, "anywhere", "tenant_requests_per_second",
                                           metrics_api.parse_selector("tenant=t1"))
    assert tenant["value"] == item["value"]
    assert not metrics_api.external_items(found, "ns", "tenant_requests_per_second",
                                          metrics_api.parse_selector("tenant=t10"))
