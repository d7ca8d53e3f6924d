"""The aggregated API server's probes and discovery (what kube-aggregator checks for availability)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import PlainTextResponse

from ..metrics_api import GROUPS, resource_list

router = APIRouter()


async def ok() -> PlainTextResponse:
    return PlainTextResponse("ok")


for path in ("/healthz", "/livez", "/readyz"):
    router.add_api_route(path, ok, methods=["GET"])


@router.get("/apis/{group}/{version}")
async def discovery(group: str, version: str) -> dict[str, Any]:
    if GROUPS.get(group) != version:
        raise HTTPException(404, f"{group}/{version} is not served here")
    return resource_list(group)
