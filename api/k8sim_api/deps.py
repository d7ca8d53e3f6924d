"""Dependencies of the routes: settings, the cluster client and the store."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import Depends, HTTPException, Request

from k8sim import store
from k8sim.kube import Kube
from k8sim_api.broadcast import Broadcaster, Update
from k8sim_api.core.config import ApiSettings


def settings_dep(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


def kube_dep(request: Request) -> Kube:
    kube: Kube = request.app.state.kube
    return kube


async def pool_dep(request: Request) -> asyncpg.Pool:
    """The store's pool, connecting on first use when PostgreSQL came up after the API."""
    state = request.app.state
    if state.pool is None:
        try:
            pool = await store.connect(state.settings.database_url, timeout=5)
            await store.migrate(pool)
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            raise HTTPException(503, f"PostgreSQL unavailable: {exc}") from exc
        state.pool = pool
    result: asyncpg.Pool = state.pool
    return result


def broadcaster_dep(request: Request) -> Broadcaster:
    broadcaster: Broadcaster = request.app.state.broadcaster
    return broadcaster


async def snapshot_dep(broadcaster: Annotated[Broadcaster, Depends(broadcaster_dep)]) -> Update:
    """The engine's latest /monitoring/health document, or 503 while there is none."""
    update = await broadcaster.snapshot()
    if update is None:
        raise HTTPException(503, "no monitoring data yet: the monitoring engine has not published a snapshot")
    return update


SettingsDep = Annotated[ApiSettings, Depends(settings_dep)]
KubeDep = Annotated[Kube, Depends(kube_dep)]
PoolDep = Annotated[asyncpg.Pool, Depends(pool_dep)]
BroadcasterDep = Annotated[Broadcaster, Depends(broadcaster_dep)]
SnapshotDep = Annotated[Update, Depends(snapshot_dep)]
