"""The metrics APIs as a played prometheus-adapter answers them: its rules over the engine's series
(:mod:`k8sim.adapter`), in the documents and errors the real adapter serves.

custom.metrics.k8s.io in v1beta1 and v1beta2 (the adapter serves both, whichever its APIService
names), external.metrics.k8s.io/v1beta1, and metrics.k8s.io/v1beta1 from ``resourceRules``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from fastapi import HTTPException

from k8sim import adapter, promql

from .metrics_api import cpu_quantity, memory_quantity, stamp
from .played import Holder

CUSTOM, EXTERNAL = "custom.metrics.k8s.io", "external.metrics.k8s.io"
CUSTOM_VERSIONS = ("v1beta1", "v1beta2")
_SUFFIXES = ("", "k", "M", "G", "T", "P", "E")


def milli_quantity(value: float) -> str:
    """A quantity as the adapter writes one (``NewMilliQuantity(int64(v*1000), DecimalSI)``), canonical."""
    milli = adapter.milli_value(value)
    if milli % 1000:
        return f"{milli}m"
    whole, power = milli // 1000, 0
    while whole and whole % 1000 == 0 and power < len(_SUFFIXES) - 1:
        whole, power = whole // 1000, power + 1
    return f"{whole}{_SUFFIXES[power]}"


def rules_of(holder: Holder, rules: adapter.Adapter | None) -> adapter.Adapter:
    """The rules, or the 503 kube-aggregator gets from an adapter that is not running."""
    if rules is None:
        raise HTTPException(503, f"the prometheus-adapter behind {holder.backend.namespace}/{holder.backend.service} "
                                 f"is not running: {holder.problem}")
    return rules


def custom_resource_list(listed: Iterable[adapter.CustomMetric], version: str) -> dict[str, Any]:
    """Discovery from the adapter's last relist, as the adapter answers it (not a relist per request)."""
    resources = [{"name": m.name, "singularName": "", "namespaced": m.namespaced, "kind": "MetricValueList",
                  "verbs": ["get"]} for m in sorted(listed, key=lambda m: m.name)]
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{CUSTOM}/{version}",
            "resources": resources}


def external_resource_list(listed: Iterable[str]) -> dict[str, Any]:
    resources = [{"name": name, "singularName": "", "namespaced": True, "kind": "ExternalMetricValueList",
                  "verbs": ["get"]} for name in sorted(set(listed))]
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{EXTERNAL}/v1beta1",
            "resources": resources}


def metric_value(version: str, kind: str, namespace: str | None, name: str, api_version: str, metric: str,
                 value: float, when: dt.datetime, selector: str | None) -> dict[str, Any]:
    described = {"kind": kind, "name": name, "apiVersion": api_version}
    if namespace:
        described["namespace"] = namespace
    selector_doc = _selector_doc(selector)
    item: dict[str, Any] = {"describedObject": described}
    if version == "v1beta1":
        item.update({"metricName": metric, "timestamp": stamp(when), "value": milli_quantity(value)})
        if selector_doc is not None:
            item["selector"] = selector_doc
    else:
        item.update({"metric": {"name": metric, **({"selector": selector_doc} if selector_doc is not None else {})},
                     "timestamp": stamp(when), "value": milli_quantity(value)})
    return item


def _selector_doc(selector: str | None) -> dict[str, Any] | None:
    """A metricLabelSelector echoed back as a LabelSelector (equality requirements as matchLabels)."""
    if not selector:
        return None
    labels: dict[str, str] = {}
    expressions = []
    for key, op, found in adapter.parse_label_selector(selector):
        values = list(found)
        if op in ("=", "==") and len(values) == 1:
            labels[key] = values[0]
        else:
            expressions.append({"key": key, "operator": {"!=": "NotIn", "in": "In", "notin": "NotIn",
                                                          "exists": "Exists", "!": "DoesNotExist"}.get(op, op),
                                **({"values": values} if values else {})})
    doc: dict[str, Any] = {}
    if labels:
        doc["matchLabels"] = labels
    if expressions:
        doc["matchExpressions"] = expressions
    return doc


def custom_values(rules: adapter.Adapter, store: promql.Store, at: float, *, version: str, resource: str,
                  kind: str, api_version: str, namespace: str | None, names: Sequence[str], requested: str,
                  metric: str, metric_selector: str | None, when: dt.datetime) -> dict[str, Any]:
    """One object's value or a list's (``requested`` ``*``), 404 as the adapter's for what it lacks."""
    try:
        values = rules.query_custom(store, at, resource, namespace, list(names), metric, metric_selector)
    except adapter.MetricNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except (adapter.AdapterQueryError, promql.PromQLError) as exc:
        raise HTTPException(500, str(exc)) from None
    if requested != "*" and requested not in values:
        raise HTTPException(404, f"the server could not find the metric {metric} for {resource} {requested}")
    items = [metric_value(version, kind, namespace, name, api_version, metric, values[name], when, metric_selector)
             for name in names if name in values]
    return {"kind": "MetricValueList", "apiVersion": f"{CUSTOM}/{version}", "metadata": {}, "items": items}


def external_values(rules: adapter.Adapter, store: promql.Store, at: float, namespace: str, metric: str,
                    selector: str | None, when: dt.datetime) -> dict[str, Any]:
    try:
        results = rules.query_external(store, at, namespace, metric, selector)
    except adapter.MetricNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except (adapter.AdapterQueryError, promql.PromQLError) as exc:
        raise HTTPException(500, str(exc)) from None
    items = [{"metricName": metric, "metricLabels": labels, "timestamp": stamp(when),
              "value": milli_quantity(value)} for labels, value in results]
    return {"kind": "ExternalMetricValueList", "apiVersion": f"{EXTERNAL}/v1beta1", "metadata": {}, "items": items}


def pod_metrics(rules: adapter.Adapter, store: promql.Store, at: float, pods: Iterable[Mapping[str, Any]],
                namespace: str | None, when: dt.datetime) -> list[dict[str, Any]]:
    """PodMetrics of these pods from the adapter's resourceRules (pods it has no figures for left out)."""
    by_namespace: dict[str, list[Mapping[str, Any]]] = {}
    for pod in pods:
        by_namespace.setdefault(pod["metadata"].get("namespace", ""), []).append(pod)
    window = f"{int(rules.window)}s" if rules.window else "0s"
    items = []
    for ns, members in sorted(by_namespace.items()):
        if namespace is not None and ns != namespace:
            continue
        names = [p["metadata"]["name"] for p in members]
        try:
            found = rules.query_resource(store, at, "pods", ns, names)
        except (adapter.MetricNotFound, adapter.AdapterQueryError, promql.PromQLError):
            continue
        for pod in members:
            meta = pod["metadata"]
            containers = found.get(meta["name"])
            if not containers:
                continue
            items.append({"metadata": {"name": meta["name"], "namespace": ns, "labels": meta.get("labels") or {},
                                       "creationTimestamp": stamp(when)},
                          "timestamp": stamp(when), "window": window,
                          "containers": [{"name": c, "usage": {"cpu": cpu_quantity(cpu),
                                                                "memory": memory_quantity(mem)}}
                                         for c, cpu, mem in containers]})
    return items


def node_metrics(rules: adapter.Adapter, store: promql.Store, at: float, nodes: Iterable[Mapping[str, Any]],
                 when: dt.datetime) -> list[dict[str, Any]]:
    nodes = list(nodes)
    names = [n["metadata"]["name"] for n in nodes]
    try:
        found = rules.query_resource(store, at, "nodes", None, names)
    except (adapter.MetricNotFound, adapter.AdapterQueryError, promql.PromQLError):
        return []
    window = f"{int(rules.window)}s" if rules.window else "0s"
    items = []
    for node in nodes:
        meta = node["metadata"]
        usage = found.get(meta["name"])
        if usage is None:
            continue
        cpu, mem = usage
        items.append({"metadata": {"name": meta["name"], "labels": meta.get("labels") or {},
                                   "creationTimestamp": stamp(when)},
                      "timestamp": stamp(when), "window": window,
                      "usage": {"cpu": cpu_quantity(cpu), "memory": memory_quantity(mem)}})
    return items


def select(objects: Iterable[Mapping[str, Any]], namespace: str | None, name: str,
           labels: Callable[[Mapping[str, str]], bool]) -> list[str]:
    """Names of the objects a request covers: one by name, or ``*`` with the labelSelector."""
    chosen = []
    for obj in objects:
        meta = obj.get("metadata") or {}
        if namespace is not None and meta.get("namespace") != namespace:
            continue
        if name != "*":
            if meta.get("name") == name:
                return [name]
            continue
        if labels(meta.get("labels") or {}):
            chosen.append(str(meta["name"]))
    return sorted(chosen) if name == "*" else [name]
