"""metrics.k8s.io/v1beta1: what kubectl top and the HPA's resource metrics read."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, HTTPException

from .. import adapter_api
from ..deps import PlayedDep, SelectorsDep, UsageDep
from ..metrics_api import Usage, field_view, listed, node_metrics, pod_metrics

router = APIRouter(prefix="/apis/metrics.k8s.io/v1beta1")


GROUP = "metrics.k8s.io"


def _adapter_pods(played: PlayedDep, usage: Usage, selectors: SelectorsDep, namespace: str | None,
                  name: str | None = None) -> list[dict[str, Any]] | None:
    """PodMetrics from a played prometheus-adapter's resourceRules; None when no adapter holds the group."""
    held = played.adapter(GROUP) if played is not None else None
    if held is None or played is None:
        return None
    rules = adapter_api.rules_of(*held)
    pods = [p for p in usage.cluster_pods
            if (namespace is None or p["metadata"].get("namespace") == namespace)
            and (name is None or p["metadata"]["name"] == name)
            and selectors.labels(p["metadata"].get("labels") or {})
            and selectors.fields(field_view(p["metadata"]["name"], p["metadata"].get("namespace")))
            and (p.get("status") or {}).get("phase") == "Running"]
    return adapter_api.pod_metrics(rules, played.store, played.now(), pods, namespace, dt.datetime.now(dt.UTC))


def _adapter_nodes(played: PlayedDep, usage: Usage, selectors: SelectorsDep,
                   name: str | None = None) -> list[dict[str, Any]] | None:
    held = played.adapter(GROUP) if played is not None else None
    if held is None or played is None:
        return None
    rules = adapter_api.rules_of(*held)
    nodes = [n for n in usage.cluster_nodes if (name is None or n["metadata"]["name"] == name)
             and selectors.labels(n["metadata"].get("labels") or {})
             and selectors.fields(field_view(n["metadata"]["name"], None))]
    return adapter_api.node_metrics(rules, played.store, played.now(), nodes, dt.datetime.now(dt.UTC))


def pods_in(usage: Usage, selectors: SelectorsDep, namespace: str | None, played: PlayedDep) -> dict[str, Any]:
    items = _adapter_pods(played, usage, selectors, namespace)
    if items is None:
        items = [pod_metrics(p, usage) for p in usage.by_namespace.get(namespace, [])
                 if selectors.labels(p.labels) and selectors.fields(field_view(p.name, p.namespace))]
    return listed("PodMetricsList", items)


@router.get("/pods")
async def all_pods(usage: UsageDep, selectors: SelectorsDep, played: PlayedDep) -> dict[str, Any]:
    return pods_in(usage, selectors, None, played)


@router.get("/namespaces/{namespace}/pods")
async def namespace_pods(namespace: str, usage: UsageDep, selectors: SelectorsDep, played: PlayedDep) -> dict[str, Any]:
    return pods_in(usage, selectors, namespace, played)


@router.get("/namespaces/{namespace}/pods/{name}")
async def one_pod(namespace: str, name: str, usage: UsageDep, selectors: SelectorsDep,
                  played: PlayedDep) -> dict[str, Any]:
    items = _adapter_pods(played, usage, selectors, namespace, name)
    if items is not None:
        if not items:
            raise HTTPException(404, f'podmetrics.metrics.k8s.io "{name}" not found')
        return items[0]
    pod = usage.pods.get((namespace, name))
    if pod is None:
        raise HTTPException(404, f'podmetrics.metrics.k8s.io "{name}" not found')
    return pod_metrics(pod, usage)


@router.get("/nodes")
async def all_nodes(usage: UsageDep, selectors: SelectorsDep, played: PlayedDep) -> dict[str, Any]:
    items = _adapter_nodes(played, usage, selectors)
    if items is not None:
        return listed("NodeMetricsList", items)
    return listed("NodeMetricsList", [node_metrics(n, usage) for n in sorted(usage.nodes)
                                      if selectors.labels(usage.nodes[n][2]) and selectors.fields(field_view(n, None))])


@router.get("/nodes/{name}")
async def one_node(name: str, usage: UsageDep, selectors: SelectorsDep, played: PlayedDep) -> dict[str, Any]:
    items = _adapter_nodes(played, usage, selectors, name)
    if items is not None:
        if not items:
            raise HTTPException(404, f'nodemetrics.metrics.k8s.io "{name}" not found')
        return items[0]
    if name not in usage.nodes:
        raise HTTPException(404, f'nodemetrics.metrics.k8s.io "{name}" not found')
    return node_metrics(name, usage)
