"""The FastAPI application: its factory and lifespan (middleware in middleware.py, error answers in errors.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

from k8sim import deploy, store
from k8sim.kube import Kube, KubeError
from k8sim_api import errors
from k8sim_api.broadcast import Broadcaster, RedisBackend
from k8sim_api.core.config import VERSION, ApiSettings, get_settings
from k8sim_api.middleware import BodyLimit, HealthFastPath, TokenAuth
from k8sim_api.routes import (
    capacity,
    cost,
    imports,
    manifests,
    monitoring,
    nodes,
    resources,
    root,
    scenarios,
    services,
    sessions,
    sla,
    ui,
    ws,
)

log = logging.getLogger("k8sim_api")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: ApiSettings = app.state.settings
    app.state.kube = Kube(settings.kubeconfig, agent="k8sim-api")
    app.state.pool = None
    app.state.tasks = set()
    app.state.broadcaster = Broadcaster(RedisBackend(settings.redis_url), settings.redis_channel,
                                        settings.redis_key, settings.deploy_channel, settings.ws_queue)
    await app.state.broadcaster.start()
    app.state.redis = aioredis.Redis.from_url(settings.redis_url, socket_timeout=5)
    try:
        app.state.pool = await store.connect(settings.database_url, timeout=5)
        await store.migrate(app.state.pool)
        async with app.state.pool.acquire() as conn:
            interrupted = await store.fail_interrupted_deployments(conn)
        if interrupted:
            log.warning("marked %d deployment(s) interrupted by the last stop as failed", interrupted)
    except (TimeoutError, OSError) as exc:  # the store may come later; /health says so
        log.warning("PostgreSQL unavailable at start: %s", exc)
    try:
        await deploy.ensure_crds(app.state.kube, settings.crds)
    except KubeError as exc:
        log.warning("could not install the shipped CRDs yet: %s", exc.message)
    yield
    await app.state.broadcaster.stop()
    await app.state.redis.aclose()
    for task in list(app.state.tasks):
        task.cancel()
    await asyncio.gather(*app.state.tasks, return_exceptions=True)
    if app.state.pool is not None:
        await app.state.pool.close()
    await app.state.kube.close()


class Api(FastAPI):
    """The application, its plain health polls answered outside the middleware stack."""

    def build_middleware_stack(self) -> ASGIApp:
        token = self.state.settings.api_token
        return HealthFastPath(super().build_middleware_stack(),
                              token.get_secret_value() if token is not None else None)


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    logging.getLogger("k8sim_api").setLevel(settings.log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    app = Api(
        title="k8s-simulator",
        version=VERSION,
        summary="A Kubernetes simulator for ECP-AI: real control plane, fake kubelets.",
        description="Parses and deploys ECP-AI manifests into a simulated cluster (kube-apiserver, etcd, "
                    "controller-manager and scheduler, with KWOK playing the nodes). See CONTRACT.md.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_credentials=True,
                       allow_methods=["*"], allow_headers=["*"])
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.api_token is not None and settings.api_token.get_secret_value():
        app.add_middleware(TokenAuth, token=settings.api_token.get_secret_value())

    errors.install(app)

    for module in (root, manifests, resources, services, monitoring, sla, scenarios, capacity, cost, nodes,
                   imports, sessions, ws, ui):
        app.include_router(module.router)
    # Records the inputs a session export replays (load, traffic, Scenarios, deletions) beside their routes.
    app.add_middleware(sessions.Recorder)
    app.mount("/ui", ui.static(), name="ui")
    return app
