"""The engine's HTTP face on 6381: /metrics for Prometheus, /health, /snapshot."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from .runner import Engine
from .settings import EngineSettings


def create_app(settings: EngineSettings | None = None) -> FastAPI:
    settings = settings or EngineSettings()
    logging.getLogger("k8sim_engine").setLevel(settings.log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    engine = Engine(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(engine.run(), name="engine")
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await engine.close()

    app = FastAPI(title="k8s-simulator monitoring engine", version="0.1.0", lifespan=lifespan)
    app.state.engine = engine

    @app.get("/metrics", summary="Prometheus exposition of the last tick (cAdvisor, kube-state-metrics, DCGM names)")
    async def metrics() -> Response:
        return Response(engine.exposition, media_type=CONTENT_TYPE_LATEST)

    @app.get("/health")
    async def health() -> JSONResponse:
        ok = engine.document is not None
        return JSONResponse({"status": "healthy" if ok else "starting", "ticks": engine.ticks,
                             "simulated_time": engine.sim_now().isoformat(), "speed": settings.speed},
                            status_code=200 if ok else 503)

    @app.get("/snapshot", summary="The last /monitoring/health document")
    async def snapshot() -> Any:
        if engine.document is None:
            return JSONResponse({"status": "error", "message": "no tick yet"}, status_code=503)
        return engine.document

    return app
