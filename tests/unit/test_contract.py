"""The monitoring documents of CONTRACT.md: exact tenant views, summaries ECP-AI charts, SLA honesty."""

from __future__ import annotations

import datetime as dt

import pytest

from k8sim import contract, model

WHEN = dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC)


def sample(key: str, tenant: str | None, *, rps: float = 10.0, latency: float = 100.0, ready: int = 2,
           pods: int = 2, desired: int | None = None, available: int | None = None) -> model.ServiceSample:
    return model.ServiceSample(key=key, tenant=tenant, profile="web", pods=pods, ready_pods=ready, rps=rps,
                               good=rps, total=rps, cpu_percent=20, cpu_cores=0.2, memory_mb=100,
                               memory_percent=10, latency_ms=latency, error_rate=0.0, incident=False,
                               uptime_s=60, desired=desired, available=available)


COLLIDING = [
    sample("ecp-ai-t1/callbot", "t1"), sample("ecp-ai-t10/callbot", "t10"), sample("t1-ecp-ai/chatbot", "t10"),
    sample("acme-ecp-ai/nginx", "acme"), sample("acme-small-ecp-ai/nginx", "acme-small"),
    sample("default/orphan", None),
]


@pytest.mark.parametrize(("tenant", "expected"), [
    ("t1", {"ecp-ai-t1/callbot"}),
    ("t10", {"ecp-ai-t10/callbot", "t1-ecp-ai/chatbot"}),
    ("acme", {"acme-ecp-ai/nginx"}),
    ("acme-small", {"acme-small-ecp-ai/nginx"}),
    ("t", set()), ("ecp-ai", set()), ("default", set()),
])
def test_a_tenant_sees_exactly_its_services_never_by_substring(tenant: str, expected: set[str]) -> None:
    document = contract.health_document(COLLIDING, WHEN, (99.9, "meeting"))
    view = contract.tenant_document(document, tenant)
    assert set(view["services"]) == expected
    assert view["summary"]["total_services"] == len(expected)


def test_summary_carries_what_ecp_ai_charts() -> None:
    document = contract.health_document([sample("a/x", "t", rps=30, latency=100),
                                         sample("a/y", "t", rps=10, latency=300)], WHEN, (99.9, "meeting"))
    summary = document["summary"]
    assert summary["total_requests_per_second"] == 40.0
    assert summary["average_response_time"] == 150.0  # weighted by requests: (30*100 + 10*300) / 40
    assert summary["sla_percentage"] == 99.9 and summary["sla_status"] == "meeting"
    assert "degraded" not in summary


def test_service_entries_carry_replicas_from_the_workload_else_the_pods() -> None:
    entries = contract.health_document([sample("a/x", "t", desired=5, available=3, ready=3, pods=3),
                                        sample("a/y", "t", ready=1, pods=2)], WHEN, None)["services"]
    assert entries["a/x"]["replicas"] == {"desired": 5, "ready": 3, "available": 3}
    assert entries["a/y"]["replicas"] == {"desired": 2, "ready": 1, "available": 1}


def test_sla_is_unknown_not_perfect_while_it_cannot_be_measured() -> None:
    document = contract.health_document([sample("a/x", "t")], WHEN, None)
    assert document["summary"]["sla_percentage"] is None
    assert document["summary"]["sla_status"] == "unknown" and document["summary"]["degraded"] is True
    view = contract.tenant_document(document, "t")
    assert view["summary"]["sla_percentage"] is None and view["summary"]["degraded"] is True


def test_tenant_sla_comes_from_the_tenants_own_figure() -> None:
    document = contract.health_document([sample("a/x", "t1"), sample("b/x", "t10")], WHEN, (98.0, "breached"),
                                        {"t10": (97.0, "breached")})
    assert contract.tenant_document(document, "t10")["summary"]["sla_percentage"] == 97.0
    # t1 has no samples of its own in the window: nothing of t10's (or the overall figure) leaks in.
    assert contract.tenant_document(document, "t1")["summary"]["sla_percentage"] == 100.0
    assert contract.tenant_document(document, "t1", (99.1, "at_risk"))["summary"]["sla_status"] == "at_risk"


@pytest.mark.parametrize(("statuses", "overall"), [
    ([], "healthy"), (["healthy", "healthy"], "healthy"), (["healthy", "degraded"], "degraded"),
    (["unhealthy", "healthy"], "degraded"), (["unhealthy", "unhealthy", "healthy"], "unhealthy"),
])
def test_overall_health(statuses: list[str], overall: str) -> None:
    assert contract.overall_health(statuses) == overall


def test_service_health_follows_readiness_errors_and_saturation() -> None:
    assert contract.service_health(sample("a/x", None)) == "healthy"
    assert contract.service_health(sample("a/x", None, ready=0)) == "unhealthy"
    assert contract.service_health(sample("a/x", None, ready=1, pods=2)) == "degraded"
