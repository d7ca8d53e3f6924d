"""How failures answer: every error is ``{"status": "error", "message": …}`` with a 4xx or 5xx that says
whose fault it is (bad input 4xx, the cluster's or the store's trouble 502/503), never a bare 500 for input."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import Scope

from k8sim.kube import KubeError
from k8sim.manifests import ManifestError
from k8sim.traffic import TrafficError

log = logging.getLogger("k8sim_api")


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"status": "error", "message": message, **extra}, status_code=status)


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """The methods of the most specific routes at this request's path (fewest path parameters), as
    the schema documents them: /k8s/resources/history is GET's, though /k8s/resources/{resource_name}
    would also take a DELETE of a pod named "history"."""
    found: dict[int, set[str]] = {}
    # Included routers stay nested in app.router.routes; iter_route_contexts walks down to their routes.
    for route in iter_route_contexts(app.router.routes):
        match, _ = route.matches({**scope, "method": "GET", "type": "http"})
        if match != Match.NONE and route.methods:
            found.setdefault((route.path_format or "").count("{"), set()).update(route.methods)
    return sorted(found[min(found)]) if found else []


def install(app: FastAPI) -> None:
    """Register the handlers that turn every exception into the contract's error body."""

    @app.exception_handler(ManifestError)
    async def manifest_error(_: Request, exc: ManifestError) -> JSONResponse:
        return error(exc.status, str(exc), errors=[p.as_dict() for p in exc.problems])

    @app.exception_handler(TrafficError)
    async def traffic_error(_: Request, exc: TrafficError) -> JSONResponse:
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
