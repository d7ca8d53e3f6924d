"""GET /k8s/resources/history: the lifecycle the operator recorded, read back through the API
(real apiserver, operator and PostgreSQL), per tenant exactly, per object, paged and polled."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from .conftest import eventually

pytestmark = pytest.mark.integration


def manifest(tenant: str) -> str:
    ns = f"hist-{tenant}"
    labels = {"ecp.ai/tenant-id": tenant, "app": "asr"}
    return yaml.safe_dump_all([
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"ecp.ai/tenant-id": tenant}}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "asr", "namespace": ns, "labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "asr"}},
                  "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                      {"name": "asr", "image": "ecp-ai/asr:2.1",
                       "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}}}},
    ], sort_keys=False)


@pytest.fixture(scope="module")
def tenants(api_url: str) -> Iterator[tuple[str, str]]:
    """A tenant and one whose id extends it, each with a running pod."""
    base = f"h{uuid.uuid4().hex[:5]}"
    other = f"{base}0"
    for tenant in (base, other):
        resp = httpx.post(f"{api_url}/k8s/manifest/deploy", json={"manifest": manifest(tenant), "tenant_id": tenant},
                          timeout=120)
        assert resp.status_code == 200 and resp.json()["status"] == "completed", resp.text[:1000]
    yield base, other
    for tenant in (base, other):
        httpx.delete(f"{api_url}/k8s/resources/tenant/{tenant}", timeout=60)


def history(api_url: str, **params: Any) -> dict[str, Any]:
    resp = httpx.get(f"{api_url}/k8s/resources/history", params=params, timeout=30)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def test_a_tenants_history_is_exactly_its_own_and_each_object_reads_in_order(api_url: str,
                                                                            tenants: tuple[str, str]) -> None:
    tenant, other = tenants

    def pod_steps() -> list[dict[str, Any]]:
        steps = history(api_url, tenant_id=tenant, kind="pods")["steps"]
        assert {"created", "scheduled", "running", "ready"} <= {s["transition"] for s in steps}, steps
        return steps
    steps = eventually(pod_steps, 60, "the tenant's pod created, scheduled, running and ready")
    assert {s["tenant_id"] for s in steps} == {tenant}  # never the tenant whose id extends it
    assert {s["namespace"] for s in steps} == {f"hist-{tenant}"} and {s["kind"] for s in steps} == {"Pod"}

    everything = history(api_url, tenant_id=tenant)["steps"]
    assert {s["kind"] for s in everything} >= {"Namespace", "Deployment", "ReplicaSet", "Pod"}
    assert {s["tenant_id"] for s in everything} == {tenant}
    assert any(s["tenant_id"] == other for s in history(api_url, tenant_id=other)["steps"])

    # One object's steps, in the order they were recorded; "deploy" is resolved as kubectl would.
    pod = steps[0]["uid"]
    own = history(api_url, uid=pod)["steps"]
    ids = [s["id"] for s in own]
    assert ids == sorted(ids) and {s["uid"] for s in own} == {pod}
    # Events come on a stream of their own, so one may be recorded before its object's first step.
    lifecycle = [s["transition"] for s in own if s["transition"] != "event"]
    assert lifecycle[0] == "created" and lifecycle.index("created") < lifecycle.index("running"), lifecycle
    assert any(s["transition"] == "event" and s["detail"].get("reason") == "Scheduled" for s in own), own
    deployment = history(api_url, namespace=f"hist-{tenant}", kind="deploy", name="asr")["steps"]
    assert deployment and {(s["kind"], s["name"]) for s in deployment} == {("Deployment", "asr")}
    running = history(api_url, tenant_id=tenant, transition="running")["steps"]
    assert running and {s["transition"] for s in running} == {"running"}


def test_history_pages_and_polls_by_id(api_url: str, tenants: tuple[str, str]) -> None:
    tenant, _ = tenants
    whole = eventually(lambda: history(api_url, tenant_id=tenant)["steps"], 30, "the tenant's history")
    pages: list[dict[str, Any]] = []
    after = 0
    while True:
        page = history(api_url, tenant_id=tenant, limit=3, after_id=after)
        pages += page["steps"]
        assert page["count"] == len(page["steps"]) <= 3
        if page["next_after_id"] is None:
            break
        after = page["next_after_id"]
    assert [s["id"] for s in pages][:len(whole)] == [s["id"] for s in whole]

    # Polling: nothing newer than the last id until something happens, then exactly the new steps.
    last = pages[-1]["id"]
    future = history(api_url, tenant_id=tenant, since="2999-01-01T00:00:00Z")
    assert future == {"steps": [], "count": 0, "next_after_id": None}
    assert httpx.delete(f"{api_url}/k8s/resources/hist-{tenant}/Deployment/asr", timeout=30).status_code == 200
    gone = eventually(lambda: [s for s in history(api_url, tenant_id=tenant, after_id=last)["steps"]
                               if s["kind"] == "Deployment" and s["transition"] == "deleted"],
                      60, "the Deployment's deletion in the history")
    assert all(s["id"] > last for s in gone)


@pytest.mark.parametrize("params", [
    {"limit": 0}, {"limit": 5001}, {"after_id": -1}, {"after_id": "1e999"}, {"since": "yesterday"}, {"since": "0.5"},
    {"tenant_id": "t1' OR '1'='1"}, {"uid": "x; DROP TABLE resource_events"}, {"transition": "Running!"},
    {"kind": "Pod s"}, {"namespace": "UPPER"}, {"name": "-bad-"},
])
def test_bad_history_queries_are_refused_clearly(api_url: str, params: dict[str, Any]) -> None:
    resp = httpx.get(f"{api_url}/k8s/resources/history", params=params, timeout=30)
    assert resp.status_code == 422, resp.text
    assert [e["field"] for e in resp.json()["errors"]] == list(params)  # names what was wrong
