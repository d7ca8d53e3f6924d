"""ASGI middleware of the API: request body limits, the bearer token, and the health poll's fast path."""

from __future__ import annotations

import hmac
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from k8sim.manifests import ManifestError
from k8sim_api.errors import error


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


class HealthFastPath:
    """ASGI wrapper around the whole application (``Api``): a plain ``GET /monitoring/health``
    (ECP-AI polls it; dashboards too) is answered with the latest snapshot's bytes before any
    middleware, routing or dependency, which cost several times the answer. Only requests the stack
    would answer with those same bytes: no query (a tenant), no Origin (CORS adds headers), the bearer
    token when one is set, a snapshot already received. Everything else goes through the stack."""

    PATH = "/monitoring/health"

    def __init__(self, app: ASGIApp, token: str | None = None):
        self.app = app
        self.authorization = f"Bearer {token}".encode() if token else None

    def _plain(self, scope: Scope) -> bool:
        if not (scope["type"] == "http" and scope["path"] == self.PATH and scope["method"] == "GET"
                and not scope["query_string"]):
            return False
        authorized = self.authorization is None
        for name, value in scope["headers"]:
            if name == b"origin":
                return False
            if name == b"authorization" and self.authorization is not None:
                authorized = hmac.compare_digest(value, self.authorization)
        return authorized  # any other form of the token (cookie, query) is the stack's to check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        update = scope["app"].state.broadcaster.latest if self._plain(scope) else None
        if update is None:
            await self.app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(update.raw)).encode())]})
        await send({"type": "http.response.body", "body": update.raw})
