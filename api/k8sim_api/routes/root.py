"""GET / and GET /health: is the simulator there, and can it serve."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from k8sim import lifecycle
from k8sim.kube import Kube, KubeError
from k8sim_api.core.config import VERSION
from k8sim_api.deps import KubeDep, MaybePoolDep
from k8sim_api.routes import ui
from k8sim_api.schemas import ApiServiceProblem, HealthStatus, ServiceInfo

router = APIRouter(tags=["health"])


@router.get("/", response_model=ServiceInfo, summary="Service information (ECP-AI's troubleshooting starts here)",
            responses={303: {"description": "A browser (Accept: text/html) goes to the dashboard"}})
async def index(request: Request) -> ServiceInfo | RedirectResponse:
    if ui.wants_html(request):
        return ui.view("overview")
    return ServiceInfo(name="k8s-simulator", version=VERSION, status="running", docs="/docs",
                       openapi="/openapi.json", health="/health", dashboard="/ui/")


async def unavailable_apiservices(kube: Kube) -> list[ApiServiceProblem]:
    """Aggregated APIs the apiserver cannot reach: while one exists, discovery is partial and
    every namespace deletion (and garbage collection) stalls cluster-wide."""
    try:
        services = await kube.list("apiregistration.k8s.io/v1", "APIService")
    except KubeError:
        return []
    broken = []
    for svc in services:
        available = lifecycle.conditions(svc).get("Available")
        if available is not None and available.get("status") != "True":
            broken.append(ApiServiceProblem(name=svc["metadata"]["name"], reason=str(available.get("reason", "")),
                                            message=str(available.get("message", ""))))
    return broken


@router.get("/health", response_model=HealthStatus, response_model_exclude_none=True,
            summary="Healthy when the cluster and the store answer",
            responses={503: {"model": HealthStatus, "description": "A dependency is down; `checks` says which"}})
async def health(kube: KubeDep, pool: MaybePoolDep, response: Response) -> HealthStatus:
    """``healthy``; ``degraded`` (still 200) when an aggregated API is unavailable, naming it;
    ``unhealthy`` (503) when the cluster or the store does not answer."""
    reachable = await kube.ready()
    checks = {"kubernetes": "ok" if reachable else "unreachable"}
    if pool is None:
        checks["postgresql"] = "unavailable"
    else:
        try:
            async with asyncio.timeout(3):
                await pool.fetchval("SELECT 1")
            checks["postgresql"] = "ok"
        except Exception:  # any failure of the probe means not healthy
            checks["postgresql"] = "unreachable"
    healthy = all(v == "ok" for v in checks.values())
    broken = await unavailable_apiservices(kube) if reachable else []
    response.status_code = 200 if healthy else 503
    if not broken:
        return HealthStatus(status="healthy" if healthy else "unhealthy", checks=checks)
    checks["apiservices"] = "unavailable"
    return HealthStatus(status="degraded" if healthy else "unhealthy", checks=checks, unavailable_apiservices=broken,
                        message="aggregated API unavailable, namespace deletion is blocked cluster-wide: "
                                + "; ".join(f"{b.name}: {b.message}" for b in broken))
