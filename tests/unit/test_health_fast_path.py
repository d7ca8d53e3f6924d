"""The plain /monitoring/health answer before routing: the snapshot's bytes, else the route."""

from __future__ import annotations

import json

from k8sim_api.broadcast import Broadcaster, MemoryBackend
from k8sim_api.main import TokenAuth
from k8sim_api.routes.monitoring import HealthFastPath
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

SNAPSHOT = json.dumps({"timestamp": "2026-11-28T10:00:00Z", "services": {}, "summary": {}}).encode()


def app_with(snapshot: bytes | None, token: str | None = None) -> Starlette:
    async def route(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"route {request.url.query}")

    app = Starlette(routes=[Route("/monitoring/health", route, methods=["GET", "POST"])])
    backend = MemoryBackend()
    if snapshot is not None:
        backend.values["latest"] = snapshot
    app.state.broadcaster = Broadcaster(backend, "snap", "latest", "deploys")
    app.add_middleware(HealthFastPath)
    if token:
        app.add_middleware(TokenAuth, token=token)
    return app


def test_the_snapshot_bytes_as_published_and_everything_else_to_the_route() -> None:
    client = TestClient(app_with(SNAPSHOT))
    resp = client.get("/monitoring/health")
    assert resp.status_code == 200 and resp.content == SNAPSHOT
    assert resp.headers["content-type"] == "application/json"
    assert client.get("/monitoring/health?tenant_id=t1").text == "route tenant_id=t1"
    assert client.post("/monitoring/health").text == "route "
    assert TestClient(app_with(None)).get("/monitoring/health").text == "route ", "no snapshot yet: the route's 503"


def test_the_token_still_guards_it() -> None:
    client = TestClient(app_with(SNAPSHOT, token="s3cret"))
    assert client.get("/monitoring/health").status_code == 401
    ok = client.get("/monitoring/health", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and ok.content == SNAPSHOT
