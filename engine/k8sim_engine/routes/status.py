"""GET /metrics, /health and /snapshot: the engine's own face on its port."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from ..deps import EngineDep

router = APIRouter()


@router.get("/metrics", summary="Prometheus exposition of the last tick (cAdvisor, kube-state-metrics, DCGM names)")
async def metrics(engine: EngineDep) -> Response:
    return Response(await engine.exposition(), media_type=CONTENT_TYPE_LATEST)


@router.get("/health", summary="healthy once a tick is done (503 before); degraded while another backend "
                               "holds one of the metrics APIs")
async def health(engine: EngineDep) -> JSONResponse:
    ok = engine.document is not None
    body: dict[str, Any] = {"status": "healthy" if ok else "starting", "ticks": engine.ticks,
                            "simulated_time": engine.sim_now().isoformat(), "speed": engine.settings.speed,
                            "watching": engine.cache is not None and engine.cache.synced,
                            # What a session replay must match (python -m k8sim replay checks them).
                            "seed": engine.settings.seed, "tick_seconds": engine.settings.tick_seconds,
                            "step_seconds": engine.step, "model_noise": engine.settings.model_noise,
                            "simulated_start": engine.start.isoformat(), "profile": engine.settings.profile}
    if engine.registrar is not None:
        apis = body["metrics_apis"] = engine.registrar.view()
        # An add-on the engine plays holds its group as the real one would: nothing is degraded.
        apis["foreign"] = [f for f in apis["foreign"] if f["apiservice"] not in engine.played.serving()]
        if ok and apis["foreign"]:
            body["status"] = "degraded"  # still serving: kubectl top and HPAs read the other backend
            body["message"] = "; ".join(f"{f['apiservice']} is served by {f['service']} (Available={f['available']})"
                                        for f in apis["foreign"])
    body["played"] = engine.played.view()
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/snapshot", summary="The last /monitoring/health document")
async def snapshot(engine: EngineDep) -> Any:
    if engine.document is None:
        return JSONResponse({"status": "error", "message": "no tick yet"}, status_code=503)
    return engine.document
