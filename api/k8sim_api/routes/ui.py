"""GET /ui: the dashboard, static files shipped in the package (vendored assets, no build step);
and the rule that sends a browser asking for a JSON route to the view showing the same thing."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

router = APIRouter(tags=["dashboard"])

#: index.html, app.js, app.css and vendor/ (uPlot from npm, see scripts/vendor-ui.sh).
ASSETS = Path(__file__).resolve().parent.parent / "ui"


def wants_html(request: Request) -> bool:
    """A browser navigating here (it asks for text/html first); programs ask for JSON or anything."""
    accept = request.headers.get("accept", "")
    return accept.split(",", 1)[0].strip().startswith("text/html")


def view(fragment: str) -> RedirectResponse:
    """A redirect to one of the dashboard's views (the part after # never reaches a server)."""
    return RedirectResponse(f"/ui/#/{fragment}", status_code=303)


def tenant_view(tenant_id: str) -> RedirectResponse:
    return view(f"tenants/{quote(tenant_id, safe='')}")


def static() -> StaticFiles:
    return StaticFiles(directory=ASSETS, html=True)


@router.get("/ui", include_in_schema=False)
async def ui() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)
