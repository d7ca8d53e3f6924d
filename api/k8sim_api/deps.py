"""Dependencies of the routes: settings, the cluster client, the store, the broadcaster.

Routes take everything through these ``Annotated`` types and never read ``app.state``. Every
dependency is ``async``: FastAPI runs a plain ``def`` one in a worker thread, a thread hop per
request that was most of a cached answer's cost.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import asyncpg
import redis.asyncio as aioredis
from fastapi import Depends, HTTPException
from starlette.requests import HTTPConnection

from k8sim import store
from k8sim.kube import Kube
from k8sim_api.broadcast import Broadcaster, Update
from k8sim_api.core.config import ApiSettings


async def settings_dep(conn: HTTPConnection) -> ApiSettings:
    settings: ApiSettings = conn.app.state.settings
    return settings


async def kube_dep(conn: HTTPConnection) -> Kube:
    kube: Kube = conn.app.state.kube
    return kube


async def pool_dep(conn: HTTPConnection) -> asyncpg.Pool:
    """The store's pool, connecting on first use when PostgreSQL came up after the API; 503 without."""
    state = conn.app.state
    if state.pool is None:
        try:
            pool = await store.connect(state.settings.database_url, timeout=5)
            await store.migrate(pool)
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            raise HTTPException(503, f"PostgreSQL unavailable: {exc}") from exc
        state.pool = pool
    result: asyncpg.Pool = state.pool
    return result


async def maybe_pool_dep(conn: HTTPConnection) -> asyncpg.Pool | None:
    """The pool if the API has one; for answers that can do without the store."""
    pool: asyncpg.Pool | None = conn.app.state.pool
    return pool


async def broadcaster_dep(conn: HTTPConnection) -> Broadcaster:
    broadcaster: Broadcaster = conn.app.state.broadcaster
    return broadcaster


async def redis_dep(conn: HTTPConnection) -> aioredis.Redis:
    """The API's Redis client (load-control overrides)."""
    client: aioredis.Redis = conn.app.state.redis
    return client


async def tasks_dep(conn: HTTPConnection) -> set[asyncio.Task[Any]]:
    """Background work (wait=false deploys) the app cancels on shutdown."""
    tasks: set[asyncio.Task[Any]] = conn.app.state.tasks
    return tasks


async def snapshot_dep(broadcaster: Annotated[Broadcaster, Depends(broadcaster_dep)]) -> Update:
    """The engine's latest /monitoring/health document, or 503 while there is none."""
    update = await broadcaster.snapshot()
    if update is None:
        raise HTTPException(503, "no monitoring data yet: the monitoring engine has not published a snapshot")
    return update


SettingsDep = Annotated[ApiSettings, Depends(settings_dep)]
KubeDep = Annotated[Kube, Depends(kube_dep)]
PoolDep = Annotated[asyncpg.Pool, Depends(pool_dep)]
MaybePoolDep = Annotated[asyncpg.Pool | None, Depends(maybe_pool_dep)]
BroadcasterDep = Annotated[Broadcaster, Depends(broadcaster_dep)]
RedisDep = Annotated[aioredis.Redis, Depends(redis_dep)]
TasksDep = Annotated[set[asyncio.Task[Any]], Depends(tasks_dep)]
SnapshotDep = Annotated[Update, Depends(snapshot_dep)]
