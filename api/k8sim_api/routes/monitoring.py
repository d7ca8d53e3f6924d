"""GET /monitoring/health, /monitoring/tenant/{id}, /monitoring/metrics and its history."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from k8sim import model, sla, store
from k8sim_api.deps import PoolDep, SettingsDep, SnapshotDep
from k8sim_api.schemas import ErrorResponse

router = APIRouter(prefix="/monitoring", tags=["monitoring"])
UNAVAILABLE: dict[int | str, dict[str, Any]] = {503: {"model": ErrorResponse, "description": "No data yet"}}


@router.get("/health", responses=UNAVAILABLE, summary="Every service's CPU, memory, network and health, with SLA")
async def health(snapshot: SnapshotDep) -> Response:
    # The engine's JSON as published: no decoding and re-encoding per request.
    return Response(snapshot.raw, media_type="application/json")


@router.get("/tenant/{tenant_id}", responses=UNAVAILABLE, summary="The same, for one tenant's services")
async def tenant(tenant_id: str, snapshot: SnapshotDep, request: Request, settings: SettingsDep) -> dict[str, Any]:
    figures = None
    pool = request.app.state.pool
    if pool is not None:
        async with pool.acquire() as conn:
            status = await sla.current(conn, target=settings.sla_target, window_s=settings.sla_window_seconds,
                                       tenant=tenant_id)
        if status["data_points"]:
            figures = (status["percentage"], status["status"])
    return model.tenant_document(snapshot.payload, tenant_id, figures)


@router.get("/metrics", responses=UNAVAILABLE, summary="The latest snapshot with per-tenant summaries")
async def metrics(snapshot: SnapshotDep) -> dict[str, Any]:
    document = snapshot.payload
    tenants = sorted({v.get("tenant_id") for v in document["services"].values() if v.get("tenant_id")})
    return {**document, "tenants": {t: model.tenant_document(document, t)["summary"] for t in tenants}}


@router.get("/metrics/history", summary="Past snapshots (downsampled), each under `data`")
async def history(pool: PoolDep, hours: Annotated[float, Query(gt=0, le=24 * 35)] = 1.0,
                  points: Annotated[int, Query(gt=0, le=2000)] = 360) -> list[dict[str, Any]]:
    async with pool.acquire() as conn:
        end = await store.latest_snapshot_time(conn)
        if end is None:
            return []
        rows = await store.snapshot_history(conn, end - dt.timedelta(hours=hours), end, points)
    return [{"timestamp": r["document"]["timestamp"], "data": r["document"]} for r in rows]
