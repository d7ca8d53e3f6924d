"""metrics.k8s.io/v1beta1: what kubectl top and the HPA's resource metrics read."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from ..deps import SelectorsDep, UsageDep
from ..metrics_api import Usage, field_view, listed, node_metrics, pod_metrics

router = APIRouter(prefix="/apis/metrics.k8s.io/v1beta1")


def pods_in(usage: Usage, selectors: SelectorsDep, namespace: str | None) -> dict[str, Any]:
    items = [pod_metrics(p, usage) for p in usage.by_namespace.get(namespace, [])
             if selectors.labels(p.labels) and selectors.fields(field_view(p.name, p.namespace))]
    return listed("PodMetricsList", items)


@router.get("/pods")
async def all_pods(usage: UsageDep, selectors: SelectorsDep) -> dict[str, Any]:
    return pods_in(usage, selectors, None)


@router.get("/namespaces/{namespace}/pods")
async def namespace_pods(namespace: str, usage: UsageDep, selectors: SelectorsDep) -> dict[str, Any]:
    return pods_in(usage, selectors, namespace)


@router.get("/namespaces/{namespace}/pods/{name}")
async def one_pod(namespace: str, name: str, usage: UsageDep) -> dict[str, Any]:
    pod = usage.pods.get((namespace, name))
    if pod is None:
        raise HTTPException(404, f'podmetrics.metrics.k8s.io "{name}" not found')
    return pod_metrics(pod, usage)


@router.get("/nodes")
async def all_nodes(usage: UsageDep, selectors: SelectorsDep) -> dict[str, Any]:
    return listed("NodeMetricsList", [node_metrics(n, usage) for n in sorted(usage.nodes)
                                      if selectors.labels(usage.nodes[n][2]) and selectors.fields(field_view(n, None))])


@router.get("/nodes/{name}")
async def one_node(name: str, usage: UsageDep) -> dict[str, Any]:
    if name not in usage.nodes:
        raise HTTPException(404, f'nodemetrics.metrics.k8s.io "{name}" not found')
    return node_metrics(name, usage)
