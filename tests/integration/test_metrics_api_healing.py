"""The metrics APIs heal (issue 25): a monitoring stack that repoints metrics.k8s.io at a backend it
does not run, and APIServices deleted under the engine, against the real apiserver and aggregator.

Each test runs its own engine with the takeover setting under test. A foreign APIService whose
backend is missing blocks namespace deletion cluster-wide, so it never outlives its test."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from k8sim.local.processes import free_port

from .conftest import Kubectl, engine_env, eventually, process, started

pytestmark = pytest.mark.integration

# manifests/prometheusAdapter-apiService.yaml of https://github.com/prometheus-operator/kube-prometheus
# (commit 4d719f1dea8853540b3823ab1fbe6be74a9953b3), Apache License 2.0, unchanged: what a user installing
# kube-prometheus applies. Its Service (monitoring/prometheus-adapter) is not applied with it here.
PROMETHEUS_ADAPTER_APISERVICE = """\
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  labels:
    app.kubernetes.io/component: metrics-adapter
    app.kubernetes.io/name: prometheus-adapter
    app.kubernetes.io/part-of: kube-prometheus
    app.kubernetes.io/version: 0.12.0
  name: v1beta1.metrics.k8s.io
spec:
  group: metrics.k8s.io
  groupPriorityMinimum: 100
  insecureSkipTLSVerify: true
  service:
    name: prometheus-adapter
    namespace: monitoring
  version: v1beta1
  versionPriority: 100
"""
METRICS = "v1beta1.metrics.k8s.io"
OURS = ("v1beta1.metrics.k8s.io", "v1beta2.custom.metrics.k8s.io", "v1beta1.external.metrics.k8s.io")
ADAPTER = "monitoring/prometheus-adapter"


@contextmanager
def engine(tmp_path: Path, takeover: str, grace: float) -> Iterator[str]:
    env = {**engine_env(free_port()), "K8SIM_METRICS_API_TAKEOVER": takeover,
           "K8SIM_METRICS_API_TAKEOVER_GRACE": str(grace)}
    log = tmp_path / "engine.log"
    with process([sys.executable, "-m", "k8sim_engine"], env, log) as proc:
        url = f"http://127.0.0.1:{env['K8SIM_ENGINE_PORT']}"
        started(f"{url}/health", proc, log)
        yield url


def backend(kubectl: Kubectl, name: str) -> tuple[str, str]:
    """(the Service behind the APIService as namespace/name, its Available status); ("", "") without one."""
    found = kubectl("get", "apiservice", name, "--ignore-not-found", "-o", "json").strip()
    if not found:
        return "", ""
    item = json.loads(found)
    service = item["spec"].get("service") or {}
    conditions = {c["type"]: c["status"] for c in (item.get("status") or {}).get("conditions") or []}
    return f"{service.get('namespace')}/{service.get('name')}", conditions.get("Available", "Unknown")


def served_by_the_engine(kubectl: Kubectl, names: tuple[str, ...] = OURS) -> bool:
    for name in names:
        assert backend(kubectl, name) == ("kube-system/k8sim-metrics", "True"), name
    return True


def kubectl_top_answers(kubectl: Kubectl) -> bool:
    rows = kubectl("top", "nodes", "--no-headers").splitlines()
    assert len(rows) >= 18 and all(int(row.split()[1].removesuffix("m")) > 0 for row in rows), rows
    return True


def health(url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{url}/health", timeout=10).json())


@contextmanager
def kube_prometheus_adapter(kubectl: Kubectl) -> Iterator[None]:
    kubectl("apply", "-f", "-", stdin=PROMETHEUS_ADAPTER_APISERVICE)
    try:
        yield
    finally:
        # Only while it is still the adapter's: an APIService the engine took back is its own.
        if backend(kubectl, METRICS)[0] == ADAPTER:
            kubectl("delete", "apiservice", METRICS, "--ignore-not-found")


@pytest.mark.parametrize(("takeover", "grace"), [("unavailable", 3), ("always", 600)])
def test_an_adapter_without_a_backend_is_taken_back_and_kubectl_top_answers_again(
        takeover: str, grace: float, live_services: Any, kubectl: Kubectl, tmp_path: Path) -> None:
    with engine(tmp_path, takeover, grace) as url:
        eventually(lambda: served_by_the_engine(kubectl), 60, "the engine's APIServices to be available")
        with kube_prometheus_adapter(kubectl):
            eventually(lambda: served_by_the_engine(kubectl, (METRICS,)), 60,
                       f"the engine to take {METRICS} back ({takeover}) and be available again")
            eventually(lambda: kubectl_top_answers(kubectl), 60, "kubectl top nodes to answer again")
            (record,) = [t for t in health(url)["metrics_apis"]["takeovers"] if t["apiservice"] == METRICS]
            assert (record["from"], record["reason"]) == (ADAPTER, takeover)
            if takeover == "unavailable":
                assert "ServiceNotFound" in record["detail"], "what kube-aggregator reported decided it"
            body = health(url)
            assert body["metrics_apis"]["foreign"] == [] and body["status"] == "healthy", body


def test_with_takeover_never_the_adapter_is_named_and_deleting_it_brings_ours_back(
        live_services: Any, kubectl: Kubectl, tmp_path: Path) -> None:
    # grace 0: were the setting ignored, the pass that first sees the adapter unavailable would take it
    with engine(tmp_path, "never", 0) as url:
        eventually(lambda: served_by_the_engine(kubectl), 60, "the engine's APIServices to be available")
        with kube_prometheus_adapter(kubectl):
            def named() -> dict[str, Any]:
                body = health(url)
                (held,) = body["metrics_apis"]["foreign"]
                assert held["available"] == "False", held
                return body
            body = eventually(named, 60, "/health to name the unavailable adapter")
            (held,) = body["metrics_apis"]["foreign"]
            assert (held["apiservice"], held["group"], held["version"], held["service"], held["reason"]) == \
                (METRICS, "metrics.k8s.io", "v1beta1", ADAPTER, "ServiceNotFound")
            assert body["status"] == "degraded" and ADAPTER in body["message"]
            assert body["metrics_apis"]["takeover"] == "never" and body["metrics_apis"]["takeovers"] == []
            assert backend(kubectl, METRICS) == (ADAPTER, "False"), "'never' leaves the group to the adapter"

            def in_the_snapshot() -> bool:  # what the dashboard's banner reads
                snapshot = httpx.get(f"{url}/snapshot", timeout=10).json()
                assert [f["service"] for f in snapshot["metrics_apis"]["foreign"]] == [ADAPTER]
                return True
            eventually(in_the_snapshot, 30, "the published snapshot to name the adapter")
            kubectl("delete", "apiservice", METRICS)
            eventually(lambda: served_by_the_engine(kubectl, (METRICS,)), 60, "ours to be re-created")
        restored = [t for t in health(url)["metrics_apis"]["takeovers"] if t["apiservice"] == METRICS]
        assert [(t["from"], t["reason"]) for t in restored] == [(ADAPTER, "deleted")]
        eventually(lambda: kubectl_top_answers(kubectl), 60, "kubectl top nodes to answer again")
        assert health(url)["metrics_apis"]["foreign"] == []


def test_deleted_apiservices_and_service_are_registered_again(live_services: Any, kubectl: Kubectl,
                                                              tmp_path: Path) -> None:
    with engine(tmp_path, "unavailable", 30) as url:
        eventually(lambda: served_by_the_engine(kubectl), 60, "the engine's APIServices to be available")
        kubectl("delete", "apiservice", *OURS)
        eventually(lambda: served_by_the_engine(kubectl), 60, "every deleted APIService to be re-created")
        assert {t["apiservice"] for t in health(url)["metrics_apis"]["takeovers"]} == set(OURS)
        kubectl("delete", "service", "k8sim-metrics", "-n", "kube-system")

        def service_back() -> bool:
            assert kubectl("get", "service", "k8sim-metrics", "-n", "kube-system", "--ignore-not-found", "-o",
                           "name").strip()
            return served_by_the_engine(kubectl)
        eventually(service_back, 60, "the deleted Service to be applied again")
        eventually(lambda: kubectl_top_answers(kubectl), 60, "kubectl top nodes to answer")
