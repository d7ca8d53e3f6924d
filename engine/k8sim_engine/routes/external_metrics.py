"""external.metrics.k8s.io/v1beta1: per-service and per-tenant figures."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from ..deps import SelectorsDep, UsageDep
from ..metrics_api import SERVICE_METRICS, external_items

router = APIRouter(prefix="/apis/external.metrics.k8s.io/v1beta1")


@router.get("/namespaces/{namespace}/{metric}")
async def external(namespace: str, metric: str, usage: UsageDep, selectors: SelectorsDep) -> dict[str, Any]:
    if metric.removeprefix("tenant_") not in SERVICE_METRICS:
        raise HTTPException(404, f'the external metric "{metric}" is not served')
    return {"kind": "ExternalMetricValueList", "apiVersion": "external.metrics.k8s.io/v1beta1", "metadata": {},
            "items": external_items(usage, namespace, metric, selectors.labels)}
