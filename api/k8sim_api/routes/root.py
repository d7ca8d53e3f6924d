"""GET / and GET /health: is the simulator there, and can it serve."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from k8sim_api.deps import KubeDep

router = APIRouter(tags=["health"])


@router.get("/", summary="Service information (ECP-AI's troubleshooting starts here)")
async def index() -> dict[str, Any]:
    return {"name": "k8s-simulator", "version": "0.1.0", "status": "running", "docs": "/docs",
            "openapi": "/openapi.json", "health": "/health"}


@router.get("/health", summary="Healthy when the cluster and the store answer",
            responses={503: {"description": "A dependency is down; `checks` says which"}})
async def health(request: Request, kube: KubeDep) -> JSONResponse:
    checks = {"kubernetes": "ok" if await kube.ready() else "unreachable"}
    pool = request.app.state.pool
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
    return JSONResponse({"status": "healthy" if healthy else "unhealthy", "checks": checks},
                        status_code=200 if healthy else 503)
