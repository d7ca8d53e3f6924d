"""The dashboard's pure parts: the API token gate, and the themes' contrast (WCAG AA)."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI, WebSocket
from fastapi.testclient import TestClient
from k8sim_api.middleware import TokenAuth
from k8sim_api.routes import ui
from starlette.websockets import WebSocketDisconnect

TOKEN = "s3cret-token"


def gated() -> TestClient:
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "healthy"}

    @app.get("/k8s/resources")
    async def resources() -> dict[str, int]:
        return {"count": 0}

    @app.websocket("/ws/monitoring")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hello")
        await websocket.close()

    app.add_middleware(TokenAuth, token=TOKEN)
    return TestClient(app)


def test_a_token_guards_everything_but_health() -> None:
    client = gated()
    assert client.get("/health").status_code == 200
    refused = client.get("/k8s/resources")
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
    assert refused.json()["status"] == "error"
    for wrong in ({"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"},
                  {"Authorization": f"Bearer {TOKEN}x"}, {"Cookie": "k8sim_token=nope"}, {"Cookie": "\x00;;=="}):
        assert client.get("/k8s/resources", headers=wrong).status_code == 401, wrong
    assert client.get("/k8s/resources", headers={"Authorization": f"Bearer {TOKEN}"}).json() == {"count": 0}
    assert client.options("/k8s/resources").status_code != 401  # CORS preflights carry no credentials


def test_a_browser_signs_in_once_with_the_query_and_keeps_a_cookie() -> None:
    client = gated()
    first = client.get(f"/k8s/resources?access_token={TOKEN}")
    assert first.status_code == 200
    cookie = first.headers["set-cookie"]
    assert cookie.startswith(f"k8sim_token={TOKEN}") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert client.get("/k8s/resources").status_code == 200  # the client kept the cookie
    with client.websocket_connect("/ws/monitoring") as ws:
        assert ws.receive_text() == "hello"
    stranger = TestClient(client.app)
    assert stranger.get("/k8s/resources?access_token=wrong").status_code == 401
    with pytest.raises(WebSocketDisconnect) as closed, stranger.websocket_connect("/ws/monitoring") as ws:
        ws.receive_text()
    assert closed.value.code == 1008


def contrast(a: str, b: str) -> float:
    def luminance(hex_colour: str) -> float:
        channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_text_colour_pair_meets_wcag_aa_in_both_themes(theme: str) -> None:
    css = (ui.ASSETS / "app.css").read_text()
    block = re.search(r":root \{(.*?)\}" if theme == "light" else r':root\[data-theme="dark"\] \{(.*?)\}', css, re.S)
    assert block is not None
    colours = dict(re.findall(r"--([a-z-]+): (#[0-9a-f]{6})", block.group(1)))
    pairs = [("fg", "bg"), ("fg", "panel"), ("muted", "panel"), ("muted", "bg"), ("accent", "panel"),
             ("accent-fg", "accent"), ("ok", "ok-bg"), ("warn", "warn-bg"), ("bad", "bad-bg"), ("bad", "panel")]
    low = {f"{a}/{b}": round(contrast(colours[a], colours[b]), 2) for a, b in pairs
           if contrast(colours[a], colours[b]) < 4.5}
    assert low == {}, low


def test_browsers_are_told_apart_from_programs() -> None:
    from starlette.requests import Request

    def request(accept: str | None) -> Request:
        headers = [(b"accept", accept.encode())] if accept is not None else []
        return Request({"type": "http", "headers": headers, "method": "GET", "path": "/"})

    chrome = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"
    assert ui.wants_html(request(chrome))
    for program in (None, "*/*", "application/json", "application/json, text/html"):
        assert not ui.wants_html(request(program)), program
    assert ui.tenant_view("t1/../x").headers["location"] == "/ui/#/tenants/t1%2F..%2Fx"
