"""The aggregated API server's probes and discovery (what kube-aggregator checks for availability)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import PlainTextResponse

from .. import adapter_api
from ..deps import PlayedDep
from ..metrics_api import GROUPS, resource_list

router = APIRouter()


async def ok() -> PlainTextResponse:
    return PlainTextResponse("ok")


for path in ("/healthz", "/livez", "/readyz"):
    router.add_api_route(path, ok, methods=["GET"])


@router.get("/apis/{group}/{version}")
async def discovery(group: str, version: str, played: PlayedDep) -> dict[str, Any]:
    scaler = played.keda_holder(group) if played is not None else None
    if scaler is not None and version == "v1beta1":
        return scaler.resource_list()
    held = played.adapter(group) if played is not None else None
    if held is not None and group != "metrics.k8s.io":
        adapter_api.rules_of(*held)
        assert played is not None
        listed = played.listing(group)
        if group == adapter_api.CUSTOM and version in adapter_api.CUSTOM_VERSIONS:
            return adapter_api.custom_resource_list(listed.custom if listed else [], version)
        if group == adapter_api.EXTERNAL and version == "v1beta1":
            return adapter_api.external_resource_list(listed.external if listed else [])
    elif held is not None:
        adapter_api.rules_of(*held)  # a crash-looping adapter answers nothing
    if GROUPS.get(group) != version:
        raise HTTPException(404, f"{group}/{version} is not served here")
    return resource_list(group)
