"""The FastAPI application: factory, lifespan, error mapping and request limits."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

import asyncpg
import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from k8sim import deploy, store
from k8sim.kube import Kube, KubeError
from k8sim.manifests import ManifestError
from k8sim_api.broadcast import Broadcaster, RedisBackend
from k8sim_api.core.config import VERSION, ApiSettings, get_settings
from k8sim_api.routes import capacity, manifests, monitoring, resources, root, scenarios, services, sla, ui, ws

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


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"status": "error", "message": message, **extra}, status_code=status)


class BodyLimit:
    """Refuse bodies over the limit before reading them whole (Content-Length or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await error(413, f"request body is larger than {self.max_bytes} bytes")(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise ManifestError(f"request body is larger than {self.max_bytes} bytes", status=413)
            return message

        await self.app(scope, limited, send)


class TokenAuth:
    """With a token configured, every request but ``GET /health`` (probes) and CORS preflights must
    carry it: ``Authorization: Bearer``, the dashboard's cookie, or ``?access_token=`` (a browser's
    first visit; the answer sets the cookie, so WebSockets and fetches carry it from then on)."""

    COOKIE = "k8sim_token"

    def __init__(self, app: ASGIApp, token: str):
        self.app, self.token = app, token.encode()

    def _valid(self, offered: str | None) -> bool:
        return offered is not None and hmac.compare_digest(offered.encode(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] == "/health" or scope.get("method") == "OPTIONS":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # an unparsable Cookie header is simply no cookie
            cookie = SimpleCookie()
        from_cookie = cookie[self.COOKIE].value if self.COOKIE in cookie else None
        if (scheme.lower() == "bearer" and self._valid(credentials.strip())) or self._valid(from_cookie):
            await self.app(scope, receive, send)
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("access_token")
        if query and self._valid(query[0]):
            await self.app(scope, receive, self._setting_cookie(send, query[0]) if scope["type"] == "http" else send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "a valid token is required"})
            return
        response = error(401, "a valid bearer token is required (Authorization: Bearer <token>)")
        response.headers["WWW-Authenticate"] = 'Bearer realm="k8s-simulator"'
        await response(scope, receive, send)

    def _setting_cookie(self, send: Send, token: str) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append(
                    "set-cookie", f"{self.COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict")
            await send(message)
        return wrapped


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route serves at this request's path."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches({**scope, "method": "GET", "type": "http"})
        if match != Match.NONE and isinstance(route, BaseRoute) and getattr(route, "methods", None):
            methods |= set(route.methods)  # type: ignore[attr-defined]
    return sorted(methods)


class Api(FastAPI):
    """The application, its plain health polls answered outside the middleware stack."""

    def build_middleware_stack(self) -> ASGIApp:
        token = self.state.settings.api_token
        return monitoring.HealthFastPath(super().build_middleware_stack(),
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

    @app.exception_handler(ManifestError)
    async def manifest_error(_: Request, exc: ManifestError) -> JSONResponse:
        return error(exc.status, str(exc), errors=[p.as_dict() for p in exc.problems])

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"field": ".".join(str(p) for p in e.get("loc", ())[1:]), "message": e.get("msg", "")}
                    for e in exc.errors()]
        summary = "; ".join(f"{p['field'] or 'body'}: {p['message']}" for p in problems[:5])
        return error(422, f"invalid request: {summary}", errors=problems)

    @app.exception_handler(KubeError)
    async def kube_error(_: Request, exc: KubeError) -> JSONResponse:
        status = exc.status if 400 <= exc.status < 500 or exc.status in (503, 504) else 502
        return error(status, exc.message, reason=exc.reason)

    @app.exception_handler(asyncpg.PostgresConnectionError)
    @app.exception_handler(asyncpg.exceptions.OperatorInterventionError)  # e.g. the server shutting down
    @app.exception_handler(asyncpg.exceptions.CannotConnectNowError)
    @app.exception_handler(asyncpg.InterfaceError)
    @app.exception_handler(ConnectionError)
    async def store_down(_: Request, exc: Exception) -> JSONResponse:
        return error(503, f"PostgreSQL unavailable: {exc}")

    @app.exception_handler(asyncpg.exceptions.DataError)
    async def unstorable(_: Request, exc: asyncpg.exceptions.DataError) -> JSONResponse:
        return error(422, f"value cannot be stored: {exc}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = error(exc.status_code, str(exc.detail))
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            # Starlette's Allow names the first route of the path only; GET and POST of one path
            # are two routes here.
            response.headers["Allow"] = ", ".join(allowed_methods(app, request.scope))
        return response

    @app.exception_handler(Exception)
    async def internal(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error(500, f"internal error: {type(exc).__name__}")

    for module in (root, manifests, resources, services, monitoring, sla, scenarios, capacity, ws, ui):
        app.include_router(module.router)
    app.mount("/ui", ui.static(), name="ui")
    return app
