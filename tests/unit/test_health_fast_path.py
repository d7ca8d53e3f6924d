"""The plain /monitoring/health answer outside the middleware stack: the snapshot's bytes when the
stack would answer them too, else the stack (token, CORS) and the route."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi.middleware.cors import CORSMiddleware
from k8sim_api.broadcast import Broadcaster, MemoryBackend
from k8sim_api.core.config import ApiSettings
from k8sim_api.main import Api
from k8sim_api.middleware import TokenAuth
from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

SNAPSHOT = json.dumps({"timestamp": "2026-11-28T10:00:00Z", "services": {}, "summary": {}}).encode()
ORIGIN = "http://localhost:3000"


def app_with(snapshot: bytes | None, token: str | None = None) -> Api:
    """The production class with create_app's middleware, and a route that says it answered."""
    async def route(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"route {request.url.query}")

    app = Api(routes=[Route("/monitoring/health", route, methods=["GET", "POST"])])
    app.state.settings = ApiSettings(api_token=SecretStr(token) if token else None)
    backend = MemoryBackend()
    app.state.broadcaster = Broadcaster(backend, "snap", "latest", "deploys")
    if snapshot is not None:
        backend.values["latest"] = snapshot
    app.add_middleware(CORSMiddleware, allow_origins=[ORIGIN], allow_credentials=True, allow_methods=["*"])
    app.state.through_stack = []

    @app.middleware("http")
    async def record(request: Request, call_next: Any) -> Any:
        app.state.through_stack.append(request.url.path)
        return await call_next(request)

    if token:
        app.add_middleware(TokenAuth, token=token)
    return app


def fast_client(snapshot: bytes, token: str | None = None) -> TestClient:
    """A client of an API that has received its first snapshot (the route loads it from the key)."""
    app = app_with(snapshot, token)
    asyncio.run(app.state.broadcaster.snapshot())
    return TestClient(app)


def test_the_snapshot_bytes_as_published_and_everything_else_to_the_route() -> None:
    client = fast_client(SNAPSHOT)
    resp = client.get("/monitoring/health")
    assert resp.status_code == 200 and resp.content == SNAPSHOT
    assert resp.headers["content-type"] == "application/json"
    assert client.app.state.through_stack == [], "answered before any middleware"  # type: ignore[attr-defined]
    assert client.get("/monitoring/health?tenant_id=t1").text == "route tenant_id=t1"
    assert client.post("/monitoring/health").text == "route "
    assert client.app.state.through_stack == ["/monitoring/health"] * 2  # type: ignore[attr-defined]
    assert TestClient(app_with(None)).get("/monitoring/health").text == "route ", "no snapshot yet: the route's 503"
    assert TestClient(app_with(SNAPSHOT)).get("/monitoring/health").text == "route ", "not loaded: the route loads it"


def test_a_browser_origin_gets_the_stack_and_its_cors_headers() -> None:
    resp = fast_client(SNAPSHOT).get("/monitoring/health", headers={"Origin": ORIGIN})
    assert resp.text == "route "
    assert resp.headers["access-control-allow-origin"] == ORIGIN


def test_the_token_still_guards_it() -> None:
    client = fast_client(SNAPSHOT, token="s3cret")
    assert client.get("/monitoring/health").status_code == 401
    assert client.get("/monitoring/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = client.get("/monitoring/health", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and ok.content == SNAPSHOT
    lower = client.get("/monitoring/health", headers={"Authorization": "bearer s3cret"})
    assert lower.status_code == 200 and lower.text == "route ", "another spelling of the token: the stack checks it"
    client.cookies.set(TokenAuth.COOKIE, "s3cret")
    assert client.get("/monitoring/health").text == "route "
