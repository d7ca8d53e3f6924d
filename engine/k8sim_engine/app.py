"""The engine's HTTP faces: /metrics, /health and /snapshot on 6381 (:func:`create_app`), and the
metrics APIs (metrics.k8s.io, custom and external metrics) over TLS on 6382 for kube-aggregator
(:func:`create_metrics_app`). Both are routers (k8sim_engine.routes) over Annotated dependencies
(k8sim_engine.deps), as the API is."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from k8sim.kube import KubeError

from . import registration
from .deps import UsageSource
from .routes import custom_metrics, external_metrics, probes, resource_metrics, status
from .runner import Engine
from .settings import EngineSettings

log = logging.getLogger(__name__)


class EmbeddedServer(uvicorn.Server):
    """A second uvicorn server in the engine's loop: the main one owns the signals and stops it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def create_metrics_app(source: UsageSource) -> FastAPI:
    """The aggregated API server: JSON only, no OpenAPI (kube-aggregator does not need ours); errors
    are Kubernetes Status objects, as kubectl reads them."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.state.source = source

    @app.exception_handler(HTTPException)
    async def status_error(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                             "message": str(exc.detail), "reason": "NotFound" if exc.status_code == 404 else
                             "BadRequest", "code": exc.status_code}, status_code=exc.status_code)

    for module in (probes, resource_metrics, custom_metrics, external_metrics):
        app.include_router(module.router)
    return app


async def serve_metrics_apis(engine: Engine, settings: EngineSettings, folder: Path
                             ) -> tuple[EmbeddedServer, asyncio.Task[None]]:
    """The aggregated API server over TLS with a certificate made now (kept in ``folder``), and its
    APIServices applied."""
    authority = registration.Authority()
    engine.played.ca_bundle = authority.pem
    cert, key = authority.leaf(folder, [settings.metrics_api_host, "localhost"])
    config = uvicorn.Config(create_metrics_app(engine), host=settings.bind_address,
                            port=settings.metrics_api_port, ssl_certfile=str(cert), ssl_keyfile=str(key),
                            log_level=settings.log_level.lower(), access_log=False, lifespan="off")
    config.load()  # uvicorn keeps a loaded config: its SSL context then answers each Service's name
    assert config.ssl is not None
    authority.serve_names(config.ssl, folder)
    server = EmbeddedServer(config)
    task = asyncio.create_task(server.serve(), name="metrics APIs")
    while not server.started and not task.done():  # noqa: ASYNC110 (uvicorn offers a flag, no event)
        await asyncio.sleep(0.05)
    if task.done():
        task.result()  # it could not start (port taken …): say why
    if engine.registrar is not None:
        try:
            await engine.registrar.reconcile(startup=True)
        except KubeError as exc:
            log.warning("metrics APIs not registered yet (the cluster said: %s); kubectl top and HPAs will "
                        "not see the simulated load until they are", exc.message)
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
        tasks = [asyncio.create_task(engine.run(), name="engine")]
        if engine.registrar is not None:
            tasks.append(asyncio.create_task(engine.registrar.run(), name="metrics APIs registration"))
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # the registrar first: it would re-create them
        if engine.registrar is not None:
            await registration.unregister(engine.kube)  # a stopped engine must not block namespace deletion
        server.should_exit = True
        await asyncio.gather(serving, return_exceptions=True)
        await engine.close()
        tls.cleanup()

    app = FastAPI(title="k8s-simulator monitoring engine", lifespan=lifespan)
    app.state.engine = engine
    app.include_router(status.router)
    return app
