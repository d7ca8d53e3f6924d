"""GET /monitoring/health, /monitoring/tenant/{id}, /monitoring/metrics and its history; load control; real
traffic replayed."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Iterator
from functools import lru_cache
from typing import Annotated, Any

import asyncpg
import redis.asyncio as aioredis
from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from fastapi.responses import RedirectResponse

from k8sim import contract, model, sla, store, traffic
from k8sim.settings import TrafficSettings
from k8sim_api.broadcast import Broadcaster, Update
from k8sim_api.deps import BroadcasterDep, MaybePoolDep, PoolDep, RedisDep, SettingsDep, SnapshotDep
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
    TrafficRequest,
    TrafficStatus,
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


# --------------------------------------------------------------------------- traffic replay

TRAFFIC_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorResponse, "description": "Over the size, point or series limit"},
    422: {"model": ErrorResponse, "description": "Not CSV or JSON, missing columns or labels, a non-numeric or "
                                                 "negative rps, a series of fewer than 2 points, or no series "
                                                 "naming a service the simulator runs (each problem named)"},
}


@lru_cache
def traffic_settings() -> TrafficSettings:
    return TrafficSettings()


async def modelled(broadcaster: Broadcaster) -> tuple[set[str] | None, float | None]:
    """The service keys the engine models and its simulated time (epoch s), from its latest snapshot (None:
    no snapshot yet)."""
    update = await broadcaster.snapshot()
    if update is None:
        return None, None
    document = update.payload
    try:
        now = dt.datetime.fromisoformat(str(document["timestamp"]).replace("Z", "+00:00")).timestamp()
    except (KeyError, ValueError):
        now = None
    return set(document.get("services") or {}), now


@router.post("/traffic", response_model=TrafficStatus, responses={**BAD_BODY, **TRAFFIC_ERRORS, **UNAVAILABLE},
             summary="Replay real traffic (Prometheus query_range or CSV) in place of services' synthetic load")
async def set_traffic(body: TrafficRequest, redis: RedisDep, broadcaster: BroadcasterDep,
                      settings: SettingsDep) -> TrafficStatus:
    """Each series becomes its service's requests per second (`namespace/name`, the Deployment's or StatefulSet's
    name), at the engine's simulated speed from the file's first timestamp (plus `shift_seconds`), linear between
    points, times `scale`; load overrides and Scenarios still apply. It replaces what was replayed before.
    A file none of whose series names a service the simulator runs is refused (422, each series named); when
    some do, the others are kept (`matched: false`) and play once such a service runs."""
    options = traffic_settings()
    limits = traffic.Limits(options.traffic_max_bytes, options.traffic_max_points, options.traffic_max_series)
    # Parsing a large file takes a while: off the event loop.
    replay = await asyncio.to_thread(
        traffic.parse, body.data, body.format, loop=body.loop, scale=body.scale, shift=body.shift_seconds,
        namespace_label=body.namespace_label, service_label=body.service_label, limits=limits, set_at=time.time())
    services, _ = await modelled(broadcaster)
    if services is not None and not traffic.matched(replay, services):
        problems = [traffic.Problem("no such service in the simulator (namespace/Deployment or StatefulSet name)",
                                    s.key) for s in replay.series]
        raise traffic.TrafficError("no series names a service the simulator runs",
                                   problems[:traffic.MAX_PROBLEMS])
    with redis_answers():
        async with redis.pipeline(transaction=True) as pipe:
            pipe.delete(settings.traffic_key)
            pipe.hset(settings.traffic_key, mapping={traffic.ID_FIELD: replay.id,
                                                     traffic.REPLAY_FIELD: replay.stored_value()})
            await pipe.execute()
    log.info("traffic replay %s: %d series, %d points", replay.id, len(replay.series), replay.points)
    return TrafficStatus.model_validate(replay.view(None, services))


@router.get("/traffic", response_model=TrafficStatus, responses=UNAVAILABLE,
            summary="What is replayed: services, points, duration, position now, loop, scale, state")
async def get_traffic(redis: RedisDep, broadcaster: BroadcasterDep, settings: SettingsDep) -> TrafficStatus:
    with redis_answers():
        replay_id, anchor = await redis.hmget(settings.traffic_key, [traffic.ID_FIELD, traffic.ANCHOR_FIELD])
        raw = None if replay_id is None else await redis.hget(settings.traffic_key, traffic.REPLAY_FIELD)
    if raw is None:
        return TrafficStatus(state="none")
    try:
        replay = traffic.Replay.stored(raw)
    except ValueError as exc:
        log.warning("%s", exc)
        return TrafficStatus(state="none")
    services, now = await modelled(broadcaster)
    start = traffic.anchor_of(anchor, replay.id)
    elapsed = None if start is None or now is None else max(0.0, now - start)
    return TrafficStatus.model_validate(replay.view(elapsed, services, start if elapsed is not None else None))


@router.delete("/traffic", response_model=TrafficStatus, responses=UNAVAILABLE,
               summary="Stop replaying: every service returns to its synthetic curve")
async def clear_traffic(redis: RedisDep, settings: SettingsDep) -> TrafficStatus:
    with redis_answers():
        await redis.delete(settings.traffic_key)
    return TrafficStatus(state="none")
