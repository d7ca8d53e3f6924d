"""The engine's HTTP faces: /metrics, /health and /snapshot on 6381, and the metrics APIs
(metrics.k8s.io, custom and external metrics) over TLS on 6382 for kube-aggregator."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from k8sim.kube import KubeError

from . import metrics_api, registration
from .runner import Engine
from .settings import EngineSettings

log = logging.getLogger(__name__)


class EmbeddedServer(uvicorn.Server):
    """A second uvicorn server in the engine's loop: the main one owns the signals and stops it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_metrics_apis(engine: Engine, settings: EngineSettings, folder: Path
                             ) -> tuple[EmbeddedServer, asyncio.Task[None]]:
    """The aggregated API server over TLS with a certificate made now (kept in ``folder``), and its
    APIServices applied."""
    cert, key = registration.self_signed(folder, [settings.metrics_api_host, "localhost"])
    config = uvicorn.Config(metrics_api.create_app(engine), host=settings.bind_address,
                            port=settings.metrics_api_port, ssl_certfile=str(cert), ssl_keyfile=str(key),
                            log_level=settings.log_level.lower(), access_log=False, lifespan="off")
    server = EmbeddedServer(config)
    task = asyncio.create_task(server.serve(), name="metrics APIs")
    while not server.started and not task.done():  # noqa: ASYNC110 (uvicorn offers a flag, no event)
        await asyncio.sleep(0.05)
    if task.done():
        task.result()  # it could not start (port taken …): say why
    if settings.register_metrics_apis:
        try:
            await registration.register(engine.kube, settings.metrics_api_host, settings.metrics_api_port)
        except KubeError as exc:
            log.warning("metrics APIs not registered (the cluster said: %s); kubectl top and HPAs will "
                        "not see the simulated load", exc.message)
    return server, task


def create_app(settings: EngineSettings | None = None) -> FastAPI:
    settings = settings or EngineSettings()
    logging.getLogger("k8sim_engine").setLevel(settings.log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    engine = Engine(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A fresh key each start, in a private temporary folder: the state folder may be read-only
        # (the chart's containers) and nothing needs the key after the process.
        tls = tempfile.TemporaryDirectory(prefix="k8sim-tls-")
        server, serving = await serve_metrics_apis(engine, settings, Path(tls.name))
        task = asyncio.create_task(engine.run(), name="engine")
        yield
        if settings.register_metrics_apis:
            await registration.unregister(engine.kube)  # a stopped engine must not block namespace deletion
        server.should_exit = True
        task.cancel()
        await asyncio.gather(task, serving, return_exceptions=True)
        await engine.close()
        tls.cleanup()

    app = FastAPI(title="k8s-simulator monitoring engine", lifespan=lifespan)
    app.state.engine = engine

    @app.get("/metrics", summary="Prometheus exposition of the last tick (cAdvisor, kube-state-metrics, DCGM names)")
    async def metrics() -> Response:
        return Response(await engine.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/health")
    async def health() -> JSONResponse:
        ok = engine.document is not None
        return JSONResponse({"status": "healthy" if ok else "starting", "ticks": engine.ticks,
                             "simulated_time": engine.sim_now().isoformat(), "speed": settings.speed,
                             "watching": engine.cache is not None and engine.cache.synced},
                            status_code=200 if ok else 503)

    @app.get("/snapshot", summary="The last /monitoring/health document")
    async def snapshot() -> Any:
        if engine.document is None:
            return JSONResponse({"status": "error", "message": "no tick yet"}, status_code=503)
        return engine.document

    return app
