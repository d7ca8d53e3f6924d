"""The JSON documents of CONTRACT.md's monitoring endpoints, shaped from the model's samples.

Pure: one function per document, and one each for a service's health and the overall
summary, so /monitoring/health, /monitoring/tenant/{id}, /monitoring/metrics, the history
snapshots and the WebSocket all say the same thing the same way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from k8sim.model import ServiceSample


def service_health(sample: ServiceSample) -> str:
    """healthy, degraded or unhealthy, from readiness, incidents, errors and saturation."""
    if sample.ready_pods == 0 or sample.incident or sample.error_rate > 0.05:
        return "unhealthy"
    if sample.error_rate > 0.01 or sample.cpu_percent > 90 or sample.ready_pods < sample.pods:
        return "degraded"
    return "healthy"


def service_entry(sample: ServiceSample) -> dict[str, Any]:
    """One service of the health document."""
    desired = sample.desired if sample.desired is not None else sample.pods
    available = sample.available if sample.available is not None else sample.ready_pods
    entry = {
        "cpu": {"usage_percent": round(sample.cpu_percent, 1),
                "load_1m": round(sample.cpu_cores * (1 + min(sample.cpu_percent, 100) / 100), 2)},
        "memory": {"usage_mb": round(sample.memory_mb, 1), "usage_percent": round(sample.memory_percent, 1)},
        "network": {"requests_per_second": round(sample.rps, 1), "response_time_ms": round(sample.latency_ms, 1),
                    "error_rate_percent": round(100 * sample.error_rate, 3)},
        "health": {"status": service_health(sample), "uptime_seconds": int(sample.uptime_s)},
        "replicas": {"desired": desired, "ready": sample.ready_pods, "available": available},
        "tenant_id": sample.tenant, "profile": sample.profile,
        "pods": {"total": sample.pods, "ready": sample.ready_pods},
    }
    if sample.gpus:
        entry["gpu"] = {"count": sample.gpus, "utilization_percent": round(sample.gpu_util, 1),
                        "memory_used_mb": round(sample.gpu_memory_mib, 1)}
    return entry


def overall_health(statuses: list[str]) -> str:
    """healthy when every service is; unhealthy when most are; degraded between."""
    if all(s == "healthy" for s in statuses):
        return "healthy"
    return "unhealthy" if sum(1 for s in statuses if s == "unhealthy") * 2 > len(statuses) else "degraded"


def summary(services: Mapping[str, Mapping[str, Any]], sla: tuple[float, str] | None) -> dict[str, Any]:
    """The summary of a set of service entries. ``sla`` None means it cannot be measured now
    (the store is unreachable): the figure is null and the summary says it is degraded,
    rather than claiming 100 %."""
    statuses = [v["health"]["status"] for v in services.values()]
    total_rps = sum(v["network"]["requests_per_second"] for v in services.values())
    weighted = sum(v["network"]["response_time_ms"] * v["network"]["requests_per_second"]
                   for v in services.values())
    body: dict[str, Any] = {
        "overall_health": overall_health(statuses), "total_services": len(statuses),
        "healthy_services": statuses.count("healthy"),
        "sla_percentage": sla[0] if sla else None, "sla_status": sla[1] if sla else "unknown",
        "total_requests_per_second": round(total_rps, 1),
        "average_response_time": round(weighted / total_rps, 1) if total_rps > 0 else 0.0,
    }
    if sla is None:
        body["degraded"] = True
    return body


def health_document(samples: Iterable[ServiceSample], when: dt.datetime, sla: tuple[float, str] | None,
                    tenant_sla: Mapping[str, tuple[float, str]] | None = None) -> dict[str, Any]:
    """The /monitoring/health shape of CONTRACT.md, plus each tenant's SLA figure (``tenant_sla``)
    so that every tenant view (REST, WebSocket) can show the tenant's own."""
    services = {s.key: service_entry(s) for s in samples}
    return {"timestamp": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "services": services,
            "summary": summary(services, sla),
            "tenant_sla": {t: {"sla_percentage": p, "sla_status": st} for t, (p, st) in (tenant_sla or {}).items()}}


def belongs(entry: Mapping[str, Any], tenant: str) -> bool:
    """A service is a tenant's when its resolved tenant is exactly that id (never a substring)."""
    return entry.get("tenant_id") == tenant


def tenant_document(document: Mapping[str, Any], tenant: str,
                    sla: tuple[float, str] | None = None) -> dict[str, Any]:
    """The health document restricted to one tenant's services.

    The SLA is ``sla`` when given, else the tenant's figure in the document; a tenant with no
    measured traffic yet is at 100 %, unless the document's SLA itself is unknown (store down).
    """
    services = {k: v for k, v in document["services"].items() if belongs(v, tenant)}
    figure = sla
    if figure is None:
        known = (document.get("tenant_sla") or {}).get(tenant)
        if known:
            figure = (known["sla_percentage"], known["sla_status"])
        elif document["summary"].get("sla_percentage") is not None:
            figure = (100.0, "meeting")
    return {"timestamp": document["timestamp"], "tenant_id": tenant, "services": services,
            "summary": summary(services, figure)}
