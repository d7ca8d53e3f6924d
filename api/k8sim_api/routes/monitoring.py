"""GET /monitoring/health, /monitoring/tenant/{id}, /monitoring/metrics and its history; load control."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Iterator
from typing import Annotated, Any

import asyncpg
import redis.asyncio as aioredis
from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from fastapi.responses import RedirectResponse

from k8sim import contract, model, sla, store
from k8sim_api.broadcast import Update
from k8sim_api.deps import MaybePoolDep, PoolDep, RedisDep, SettingsDep, SnapshotDep
from k8sim_api.routes import ui
from k8sim_api.schemas import (
    BAD_BODY,
    TENANT_ID,
    ErrorResponse,
    HealthDocument,
    HistoryDocument,
    HistoryPoint,
    LoadOverrideOut,
    LoadOverrides,
    LoadRequest,
    MetricsDocument,
    TenantDocument,
)

log = logging.getLogger(__name__)
router = APIRouter(prefix="/monitoring", tags=["monitoring"])
UNAVAILABLE: dict[int | str, dict[str, Any]] = {503: {"model": ErrorResponse, "description": "No data yet"}}


@router.get("/health", response_model=HealthDocument | TenantDocument, responses=UNAVAILABLE,
            summary="Every service's CPU, memory, network and health, with SLA (`tenant_id`: one tenant's)")
async def health(snapshot: SnapshotDep, pool: MaybePoolDep, settings: SettingsDep,
                 tenant_id: Annotated[str | None, Query(**TENANT_ID)] = None) -> Response | TenantDocument:
    if tenant_id is not None:
        return await tenant_view(tenant_id, snapshot, pool, settings.sla_target, settings.sla_window_seconds)
    # The engine's JSON as published: no decoding and re-encoding per request.
    return Response(snapshot.raw, media_type="application/json")


@router.get("/tenant/{tenant_id}", response_model=TenantDocument,
            responses={**UNAVAILABLE, 303: {"description": "A browser (Accept: text/html) goes to the tenant's view"}},
            summary="The same, for one tenant's services")
async def tenant(tenant_id: Annotated[str, Path(**TENANT_ID)], request: Request, snapshot: SnapshotDep,
                 pool: MaybePoolDep, settings: SettingsDep) -> TenantDocument | RedirectResponse:
    if ui.wants_html(request):
        return ui.tenant_view(tenant_id)
    return await tenant_view(tenant_id, snapshot, pool, settings.sla_target, settings.sla_window_seconds)


async def tenant_view(tenant_id: str, snapshot: Update, pool: asyncpg.Pool | None, target: float,
                      window_s: float) -> TenantDocument:
    """One tenant's services (matched exactly) with the tenant's own SLA over the window."""
    figures = None
    if pool is not None:
        try:
            async with pool.acquire() as conn:
                status = await sla.current(conn, target=target, window_s=window_s, tenant=tenant_id)
            if status.data_points:
                figures = (status.percentage, status.status)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.info("tenant SLA from the engine's snapshot, the store is unreachable: %s", exc)
    return TenantDocument.model_validate(contract.tenant_document(snapshot.payload, tenant_id, figures))


@router.get("/metrics", response_model=MetricsDocument, responses=UNAVAILABLE,
            summary="The latest snapshot with per-tenant summaries")
async def metrics(snapshot: SnapshotDep) -> MetricsDocument:
    document = snapshot.payload
    tenants = sorted({v.get("tenant_id") for v in document["services"].values() if v.get("tenant_id")})
    return MetricsDocument.model_validate(
        {**document, "tenants": {t: contract.tenant_document(document, t)["summary"] for t in tenants}})


@router.get("/metrics/history", response_model=HistoryDocument,
            summary="Past snapshots (downsampled), each under `data`")
async def history(pool: PoolDep, hours: Annotated[float, Query(gt=0, le=24 * 35)] = 1.0,
                  points: Annotated[int, Query(gt=0, le=2000)] = 360,
                  service: Annotated[str | None, Query(max_length=317,
                                                      description="namespace/name: only this service")] = None,
                  ) -> HistoryDocument:
    """The shape ECP-AI's data adapter reads: an object whose ``history`` holds the snapshots."""
    async with pool.acquire() as conn:
        end = await store.latest_snapshot_time(conn)
        found = [] if end is None else await store.snapshot_history(conn, end - dt.timedelta(hours=hours), end,
                                                                     points)
    history = []
    for snapshot in found:
        data = snapshot.document
        if service is not None:
            data = {**data, "services": {k: v for k, v in data["services"].items() if k == service}}
        history.append(HistoryPoint.model_validate({"timestamp": data["timestamp"], "data": data}))
    return HistoryDocument(status="success", hours=hours, service_filter=service, data_points=len(history),
                           history=history)


@contextlib.contextmanager
def redis_answers() -> Iterator[None]:
    """Redis unreachable is a 503 with its reason, never a 500."""
    try:
        yield
    except (aioredis.RedisError, OSError) as exc:
        raise HTTPException(503, f"Redis unavailable: {exc}") from None


async def active_overrides(redis: aioredis.Redis, key: str) -> LoadOverrides:
    """Every override still in force, as the routes answer; expired ones are removed on the way."""
    found: list[model.LoadOverride] = []
    expired: list[str] = []
    now = time.time()
    for scope, value in (await redis.hgetall(key)).items():
        try:
            override = model.LoadOverride.stored(scope, value)
        except ValueError:
            expired.append(scope.decode() if isinstance(scope, bytes) else str(scope))  # unreadable: drop it
            continue
        if override.until > now:
            found.append(override)
        else:
            expired.append(override.scope)
    if expired:
        await redis.hdel(key, *expired)
    return LoadOverrides(overrides=[LoadOverrideOut.model_validate(o.as_json())
                                    for o in sorted(found, key=lambda o: o.scope)])


@router.post("/load", response_model=LoadOverrides, responses={**BAD_BODY, **UNAVAILABLE},
             summary="Scale a service's, namespace's or tenant's load for a while (the HPA follows)")
async def set_load(body: LoadRequest, redis: RedisDep, settings: SettingsDep) -> LoadOverrides:
    scope = model.load_scope(getattr(body, "namespace", None), getattr(body, "service", None),
                             getattr(body, "tenant_id", None))
    with redis_answers():
        if body.factor == 1:
            await redis.hdel(settings.load_key, scope)
        else:
            override = model.LoadOverride(scope, body.factor, time.time() + body.duration_seconds)
            await redis.hset(settings.load_key, scope, override.stored_value())
        return await active_overrides(redis, settings.load_key)


@router.get("/load", response_model=LoadOverrides, responses=UNAVAILABLE, summary="Load overrides in force")
async def get_load(redis: RedisDep, settings: SettingsDep) -> LoadOverrides:
    with redis_answers():
        return await active_overrides(redis, settings.load_key)


@router.delete("/load", response_model=LoadOverrides, responses=UNAVAILABLE, summary="Remove every load override")
async def clear_load(redis: RedisDep, settings: SettingsDep) -> LoadOverrides:
    with redis_answers():
        await redis.delete(settings.load_key)
    return LoadOverrides(overrides=[])
