"""The engine's two apps as routers over dependencies: the aggregated metrics APIs (answers and
Kubernetes Status errors as kubectl reads them) and /health naming a foreign metrics backend."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from k8sim_engine import metrics_api
from k8sim_engine.app import create_metrics_app
from k8sim_engine.played import Played
from k8sim_engine.routes import status

from .test_metrics_api import usage


@dataclasses.dataclass
class Source:
    usage: metrics_api.Usage


@pytest.fixture
def client() -> TestClient:
    return TestClient(create_metrics_app(Source(usage())))


def test_discovery_and_probes(client: TestClient) -> None:
    assert client.get("/healthz").text == "ok" and client.get("/readyz").status_code == 200
    assert client.get("/apis/metrics.k8s.io/v1beta1").json()["groupVersion"] == "metrics.k8s.io/v1beta1"
    missing = client.get("/apis/metrics.k8s.io/v1")
    assert missing.status_code == 404
    assert missing.json() == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                              "message": "metrics.k8s.io/v1 is not served here", "reason": "NotFound", "code": 404}


def test_pod_and_node_metrics_with_selectors(client: TestClient) -> None:
    base = "/apis/metrics.k8s.io/v1beta1"
    assert [i["metadata"]["name"] for i in client.get(f"{base}/pods").json()["items"]] == ["a", "b"]
    assert [i["metadata"]["name"] for i in client.get(f"{base}/namespaces/ns/pods",
                                                      params={"fieldSelector": "metadata.name=b"}).json()["items"]] \
        == ["b"]
    assert client.get(f"{base}/namespaces/other/pods").json()["items"] == []
    assert client.get(f"{base}/namespaces/ns/pods", params={"labelSelector": "app!=web"}).json()["items"] == []
    assert client.get(f"{base}/namespaces/ns/pods/a").json()["kind"] == "PodMetrics"
    gone = client.get(f"{base}/namespaces/ns/pods/unmodelled")
    assert gone.status_code == 404 and gone.json()["message"] == 'podmetrics.metrics.k8s.io "unmodelled" not found'
    assert client.get(f"{base}/nodes").json()["kind"] == "NodeMetricsList"
    assert client.get(f"{base}/nodes/cpu-0").json()["metadata"]["name"] == "cpu-0"
    assert client.get(f"{base}/nodes/cpu-9").status_code == 404


def test_a_bad_selector_is_a_400_status_not_a_500(client: TestClient) -> None:
    answer = client.get("/apis/metrics.k8s.io/v1beta1/pods", params={"labelSelector": "app in web"})
    assert answer.status_code == 400
    assert answer.json()["reason"] == "BadRequest" and answer.json()["code"] == 400


def test_custom_and_external_metrics(client: TestClient) -> None:
    custom = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/ns"
    pods = client.get(f"{custom}/pods/*/requests_per_second").json()["items"]
    assert [p["describedObject"]["name"] for p in pods] == ["a", "b"]
    assert client.get(f"{custom}/pods/a/nonsense").status_code == 404
    assert client.get(f"{custom}/pods/zzz/requests_per_second").status_code == 404
    (deployment,) = client.get(f"{custom}/deployments.apps/web/requests_per_second").json()["items"]
    assert deployment["describedObject"] == {"kind": "Deployment", "namespace": "ns", "name": "web",
                                             "apiVersion": "apps/v1"}
    assert client.get(f"{custom}/secrets/web/requests_per_second").status_code == 404
    external = "/apis/external.metrics.k8s.io/v1beta1/namespaces/ns"
    (item,) = client.get(f"{external}/requests_per_second", params={"labelSelector": "service=web"}).json()["items"]
    assert item["metricLabels"]["tenant"] == "t1"
    assert client.get(f"{external}/tenant_requests_per_second",
                      params={"labelSelector": "tenant=t10"}).json()["items"] == []
    assert client.get(f"{external}/nonsense").status_code == 404


class Registrar:
    def __init__(self, foreign: list[dict[str, Any]]):
        self.foreign = foreign

    def view(self) -> dict[str, Any]:
        return {"takeover": "never", "foreign": self.foreign, "takeovers": []}


@dataclasses.dataclass
class StubEngine:
    registrar: Registrar | None
    document: dict[str, Any] | None = dataclasses.field(default_factory=dict)
    ticks: int = 3
    cache: None = None
    settings: Any = dataclasses.field(default_factory=lambda: type("S", (), {
        "speed": 1.0, "seed": 42, "tick_seconds": 5.0, "model_noise": True, "profile": "demo"})())
    step: float = 5.0
    start: dt.datetime = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
    played: Played = dataclasses.field(default_factory=lambda: Played(None))

    def sim_now(self) -> dt.datetime:
        return dt.datetime(2026, 11, 23, tzinfo=dt.UTC)


def health(engine: StubEngine) -> Any:
    app = FastAPI()
    app.state.engine = engine
    app.include_router(status.router)
    return TestClient(app).get("/health")


def test_health_names_the_backend_that_holds_a_metrics_group() -> None:
    held = {"apiservice": "v1beta1.metrics.k8s.io", "service": "monitoring/prometheus-adapter", "available": "False"}
    answer = health(StubEngine(Registrar([held])))
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "degraded"
    assert body["metrics_apis"]["foreign"] == [held]
    assert body["message"] == "v1beta1.metrics.k8s.io is served by monitoring/prometheus-adapter (Available=False)"
    assert health(StubEngine(Registrar([]))).json()["status"] == "healthy"
    assert "metrics_apis" not in health(StubEngine(None)).json(), "not registering: nothing to say"
    assert health(StubEngine(Registrar([held]), document=None)).status_code == 503
