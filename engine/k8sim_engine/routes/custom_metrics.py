"""custom.metrics.k8s.io/v1beta2: per-pod figures and per-object (Deployment, StatefulSet, Service) ones."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from ..deps import SelectorsDep, UsageDep
from ..metrics_api import OBJECT_RESOURCES, POD_METRICS, SERVICE_METRICS, custom_list, custom_value

router = APIRouter(prefix="/apis/custom.metrics.k8s.io/v1beta2")


@router.get("/namespaces/{namespace}/pods/{name}/{metric}")
async def custom_pods(namespace: str, name: str, metric: str, usage: UsageDep,
                      selectors: SelectorsDep) -> dict[str, Any]:
    read = POD_METRICS.get(metric)
    if read is None:
        raise HTTPException(404, f'the custom metric "{metric}" is not served for pods')
    pods = [p for (ns, n), p in sorted(usage.pods.items())
            if ns == namespace and (name == "*" or n == name) and selectors.labels(p.labels)]
    if name != "*" and not pods:
        raise HTTPException(404, f'no metric "{metric}" for pod {namespace}/{name}')
    return custom_list([custom_value("Pod", p.namespace, p.name, "/v1", metric, read(p.sample), usage)
                        for p in pods])


@router.get("/namespaces/{namespace}/{resource}/{name}/{metric}")
async def custom_objects(namespace: str, resource: str, name: str, metric: str, usage: UsageDep) -> dict[str, Any]:
    read = SERVICE_METRICS.get(metric)
    if resource not in OBJECT_RESOURCES or read is None:
        raise HTTPException(404, f'the custom metric "{metric}" is not served for {resource}')
    kind, api_version = OBJECT_RESOURCES[resource]
    names = sorted(k.split("/", 1)[1] for k in usage.services if k.split("/", 1)[0] == namespace)
    chosen = names if name == "*" else [name] if name in names else []
    if not chosen:
        raise HTTPException(404, f'no metric "{metric}" for {resource} {namespace}/{name}')
    return custom_list([custom_value(kind, namespace, n, api_version, metric,
                                     read(usage.services[f"{namespace}/{n}"]), usage) for n in chosen])
