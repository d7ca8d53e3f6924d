"""Dependencies of the routes: settings, the cluster client and the store."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import Depends, HTTPException, Request

from k8sim import store
from k8sim.kube import Kube
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


SettingsDep = Annotated[ApiSettings, Depends(settings_dep)]
KubeDep = Annotated[Kube, Depends(kube_dep)]
PoolDep = Annotated[asyncpg.Pool, Depends(pool_dep)]
