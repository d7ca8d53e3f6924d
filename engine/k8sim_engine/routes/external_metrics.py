"""external.metrics.k8s.io/v1beta1: per-service and per-tenant figures, or what the played add-on holding
the group answers (a prometheus-adapter's externalRules)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, HTTPException, Request

from k8sim import keda

from .. import adapter_api
from ..deps import PlayedDep, SelectorsDep, UsageDep
from ..metrics_api import SERVICE_METRICS, external_items

router = APIRouter(prefix="/apis/external.metrics.k8s.io/v1beta1")


@router.get("/namespaces/{namespace}/{metric}")
async def external(request: Request, namespace: str, metric: str, usage: UsageDep, selectors: SelectorsDep,
                   played: PlayedDep) -> dict[str, Any]:
    scaler = played.keda_holder(adapter_api.EXTERNAL) if played is not None else None
    selector = request.query_params.get("labelSelector") or ""
    if scaler is None and played is not None and played.keda.installed and keda.SCALED_OBJECT_LABEL in selector:
        scaler = played.keda  # KEDA's HPA asking the engine's own APIService (KEDA's could not replace it)
    if scaler is not None:
        try:
            return scaler.external(namespace, metric, request.query_params.get("labelSelector"))
        except keda.KedaError as exc:
            raise HTTPException(500 if "encountered error" in str(exc) else 404, str(exc)) from None
    held = played.adapter(adapter_api.EXTERNAL) if played is not None else None
    if held is not None and played is not None:
        return adapter_api.external_values(adapter_api.rules_of(*held), played.store, played.now(), namespace, metric,
                                           request.query_params.get("labelSelector"), dt.datetime.now(dt.UTC))
    if metric.removeprefix("tenant_") not in SERVICE_METRICS:
        raise HTTPException(404, f'the external metric "{metric}" is not served')
    return {"kind": "ExternalMetricValueList", "apiVersion": "external.metrics.k8s.io/v1beta1", "metadata": {},
            "items": external_items(usage, namespace, metric, selectors.labels)}
