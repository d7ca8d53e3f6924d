"""custom.metrics.k8s.io: per-pod figures and per-object (Deployment, StatefulSet, Service) ones, or,
while a prometheus-adapter the engine plays holds the group, what that adapter's rules give (v1beta1 and
v1beta2, as the adapter serves both)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request

from k8sim.kube import KubeError

from .. import adapter_api
from ..deps import PlayedDep, SelectorsDep, UsageDep
from ..metrics_api import OBJECT_RESOURCES, POD_METRICS, SERVICE_METRICS, custom_list, custom_value

router = APIRouter(prefix="/apis/custom.metrics.k8s.io/{version}")

#: What a played adapter can describe: resource → (apiVersion, kind, namespaced).
KINDS = {"pods": ("v1", "Pod", True), "services": ("v1", "Service", True),
         "deployments.apps": ("apps/v1", "Deployment", True), "statefulsets.apps": ("apps/v1", "StatefulSet", True),
         "replicasets.apps": ("apps/v1", "ReplicaSet", True), "jobs.batch": ("batch/v1", "Job", True),
         "namespaces": ("v1", "Namespace", False), "nodes": ("v1", "Node", False)}


async def _from_adapter(request: Request, played: PlayedDep, selectors: SelectorsDep, version: str,
                        namespace: str | None, resource: str, name: str, metric: str) -> dict[str, Any] | None:
    """The played adapter's answer; None when no adapter holds the group."""
    held = played.adapter(adapter_api.CUSTOM) if played is not None else None
    if held is None or played is None:
        return None
    if version not in adapter_api.CUSTOM_VERSIONS:
        raise HTTPException(404, f"custom.metrics.k8s.io/{version} is not served here")
    rules = adapter_api.rules_of(*held)
    if resource not in KINDS:
        raise HTTPException(404, f"the server could not find the requested resource ({resource})")
    api_version, kind, namespaced = KINDS[resource]
    if name == "*":
        try:
            objects = await played.kube.list(api_version, kind, namespace if namespaced else None,
                                             label_selector=request.query_params.get("labelSelector"),
                                             metadata_only=True)
        except KubeError as exc:
            raise HTTPException(exc.status if exc.status in (400, 404) else 503, exc.message) from None
        names = adapter_api.select(objects, namespace if namespaced else None, "*", selectors.labels)
    else:
        names = [name]
    return adapter_api.custom_values(
        rules, played.store, played.now(), version=version, resource=resource, kind=kind,
        api_version=api_version if "/" in api_version else f"/{api_version}", namespace=namespace,
        names=names, requested=name, metric=metric, metric_selector=request.query_params.get("metricLabelSelector"),
        when=dt.datetime.now(dt.UTC))


@router.get("/namespaces/{namespace}/pods/{name}/{metric}")
async def custom_pods(request: Request, version: str, namespace: str, name: str, metric: str, usage: UsageDep,
                      selectors: SelectorsDep, played: PlayedDep) -> dict[str, Any]:
    answer = await _from_adapter(request, played, selectors, version, namespace, "pods", name, metric)
    if answer is not None:
        return answer
    _ours(version)
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
async def custom_objects(request: Request, version: str, namespace: str, resource: str, name: str, metric: str,
                         usage: UsageDep, selectors: SelectorsDep, played: PlayedDep) -> dict[str, Any]:
    answer = await _from_adapter(request, played, selectors, version, namespace, resource, name, metric)
    if answer is not None:
        return answer
    _ours(version)
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


@router.get("/{resource}/{name}/{metric}")
async def custom_root(request: Request, version: str, resource: str, name: str, metric: str,
                      selectors: SelectorsDep, played: PlayedDep,
                      _: str | None = Query(None, alias="labelSelector")) -> dict[str, Any]:
    """Root-scoped objects (nodes, namespaces): only a played adapter describes them."""
    answer = await _from_adapter(request, played, selectors, version, None, resource, name, metric)
    if answer is None:
        raise HTTPException(404, f'the custom metric "{metric}" is not served for {resource}')
    return answer


def _ours(version: str) -> None:
    if version != "v1beta2":
        raise HTTPException(404, f"custom.metrics.k8s.io/{version} is not served here")
