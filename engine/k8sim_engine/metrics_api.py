"""The Kubernetes metrics APIs, served from the model's last tick.

``metrics.k8s.io/v1beta1`` (what ``kubectl top`` and the HPA's resource metrics read),
``custom.metrics.k8s.io/v1beta2`` (per-pod and per-object figures: requests per second,
latency, errors, GPU) and ``external.metrics.k8s.io/v1beta1`` (per-service and per-tenant
figures). The numbers are the ones ``/metrics`` and ``/monitoring/*`` show.

These are the pure document builders (:func:`usage_from`, :func:`pod_metrics` …); the routes
that serve them over TLS for kube-aggregator are in :mod:`k8sim_engine.routes`, the app in
:func:`k8sim_engine.app.create_metrics_app`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from k8sim import model, resources

from .sources import Memo

GROUPS = {"metrics.k8s.io": "v1beta1", "custom.metrics.k8s.io": "v1beta2", "external.metrics.k8s.io": "v1beta1"}

#: What a node spends besides its pods (kubelet, runtime, OS): cores and bytes, plus a share of capacity.
NODE_OVERHEAD_CPU = (0.1, 0.01)
NODE_OVERHEAD_MEMORY = (512 * model.MIB, 0.02)


@dataclasses.dataclass(slots=True)  # not frozen: 10,000 are made per tick, and frozen init is slower
class PodUsage:
    namespace: str
    name: str
    labels: dict[str, str]
    node: str
    service: str
    tenant: str | None
    containers: list[tuple[str, float, float]]  # (name, cores, bytes)
    sample: model.PodSample


@dataclasses.dataclass(frozen=True)
class Usage:
    """One tick's figures, indexed for the metrics APIs. Per pod and per node they are worked out on
    first read: at thousands of pods that is a large part of a tick, and most ticks nobody asks."""

    taken_at: dt.datetime
    window_s: float
    services: dict[str, model.ServiceSample]
    # The tick's inputs: cluster objects (replaced on change, never mutated) and the model's pods as
    # (spec, last sample) at this tick, so a late first read still sees this tick.
    cluster_pods: list[Mapping[str, Any]] = dataclasses.field(default_factory=list, repr=False)
    cluster_nodes: list[Mapping[str, Any]] = dataclasses.field(default_factory=list, repr=False)
    modelled: dict[str, tuple[model.PodSpec, model.PodSample]] = dataclasses.field(default_factory=dict, repr=False)
    memo: Memo | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def empty(cls) -> Usage:
        return cls(dt.datetime.now(dt.UTC), 0.0, {})

    @functools.cached_property
    def pods(self) -> dict[tuple[str, str], PodUsage]:
        """(namespace, name) → usage, for every pod the model runs, split among its containers by request."""
        found: dict[tuple[str, str], PodUsage] = {}
        for pod in self.cluster_pods:
            meta = pod["metadata"]
            modelled = self.modelled.get(meta.get("uid", ""))
            if modelled is None:
                continue
            spec, sample = modelled
            containers = (container_requests(pod) if self.memo is None else
                          self.memo.get(meta["uid"], (meta.get("resourceVersion"),),
                                        functools.partial(container_requests, pod)))
            cpus = _split(sample.cpu_cores, [c[1] for c in containers])
            mems = _split(sample.memory_bytes, [c[2] for c in containers])
            usage = PodUsage(
                # The watch replaces an object on change, never mutates it: its labels can be shared.
                namespace=meta.get("namespace", ""), name=meta["name"], labels=meta.get("labels") or {},
                node=spec.node, service=spec.service, tenant=spec.tenant,
                containers=[(c[0], cpu, mem) for c, cpu, mem in zip(containers, cpus, mems, strict=True)],
                sample=sample)
            found[(usage.namespace, usage.name)] = usage
        return found

    @functools.cached_property
    def nodes(self) -> dict[str, tuple[float, float, dict[str, str]]]:
        """name → (cores, bytes, labels): what the node's own processes spend plus its modelled pods."""
        pod_cpu: dict[str, float] = {}
        pod_mem: dict[str, float] = {}
        for spec, sample in self.modelled.values():
            pod_cpu[spec.node] = pod_cpu.get(spec.node, 0.0) + sample.cpu_cores
            pod_mem[spec.node] = pod_mem.get(spec.node, 0.0) + sample.memory_bytes
        found = {}
        for node in self.cluster_nodes:
            meta, status = node["metadata"], node.get("status") or {}
            name = meta["name"]
            size = status.get("capacity") or {}
            cores = resources.quantity(size.get("cpu")) or 0.0
            memory = resources.quantity(size.get("memory")) or 0.0
            cpu = NODE_OVERHEAD_CPU[0] + NODE_OVERHEAD_CPU[1] * cores + pod_cpu.get(name, 0.0)
            mem = NODE_OVERHEAD_MEMORY[0] + NODE_OVERHEAD_MEMORY[1] * memory + pod_mem.get(name, 0.0)
            found[name] = (cpu, mem, dict(meta.get("labels") or {}))
        return found

    @functools.cached_property
    def by_namespace(self) -> dict[str | None, list[PodUsage]]:
        """Pods per namespace in name order (None: every pod), made once per tick: the HPA
        controller asks for a namespace's pods per HPA, every sync."""
        index: dict[str | None, list[PodUsage]] = {None: []}
        for (ns, _), pod in sorted(self.pods.items()):
            index[None].append(pod)
            index.setdefault(ns, []).append(pod)
        return index


def _split(total: float, weights: list[float]) -> list[float]:
    """Share a pod's usage among its containers by request (equally without requests), never zero."""
    if len(weights) <= 1:
        return [total] * len(weights)  # most pods: one container, which gets it all
    weights = [w if w > 0 else 0.0 for w in weights]
    if sum(weights) <= 0:
        weights = [1.0] * len(weights)
    shares = [total * w / sum(weights) for w in weights]
    floor = total * 0.01 / len(shares)
    return [max(s, floor) for s in shares]


def container_requests(pod: Mapping[str, Any]) -> list[tuple[str, float, float]]:
    """(name, CPU request, memory request) of each container (0 where none is set)."""
    found = []
    for c in (pod.get("spec") or {}).get("containers") or [{}]:
        requests = (c.get("resources") or {}).get("requests") or {}
        found.append((str(c.get("name", "")), resources.quantity(requests.get("cpu")) or 0.0,
                      resources.quantity(requests.get("memory")) or 0.0))
    return found


def usage_from(pods: Iterable[Mapping[str, Any]], nodes: Iterable[Mapping[str, Any]], m: model.Model,
               services: Iterable[model.ServiceSample], taken_at: dt.datetime, window_s: float,
               memo: Memo | None = None) -> Usage:
    """Per pod, container and node usage from the model's last step (only pods it models)."""
    modelled = {uid: (pod.spec, pod.last) for uid, pod in m.pods.items() if pod.last is not None}
    return Usage(taken_at, window_s, {s.key: s for s in services}, list(pods), list(nodes), modelled, memo)


# --------------------------------------------------------------------------- selectors

_TERM = re.compile(r"\s*(!?)\s*([A-Za-z0-9_./-]+)(?:\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)|\s+(in|notin)\s*\(([^)]*)\))?\s*")


def parse_selector(text: str | None) -> Callable[[Mapping[str, str]], bool]:
    """A label (or field) selector as Kubernetes writes it: k=v, k==v, k!=v, k in (a,b), k notin (a),
    k, !k, comma-separated. Raises ValueError on anything else."""
    if not text:
        return lambda _: True
    tests: list[Callable[[Mapping[str, str]], bool]] = []
    rest = text
    while rest.strip():
        match = _TERM.match(rest)
        if not match or match.end() == 0:
            raise ValueError(f"invalid selector {text!r}")
        neg, key, op, value, set_op, values = match.groups()
        if op:
            tests.append((lambda k, v: lambda labels: labels.get(k) != v)(key, value) if op == "!=" else
                         (lambda k, v: lambda labels: labels.get(k) == v)(key, value))
        elif set_op:
            members = {x.strip() for x in values.split(",") if x.strip()}
            tests.append((lambda k, s: lambda labels: labels.get(k) in s)(key, members) if set_op == "in" else
                         (lambda k, s: lambda labels: labels.get(k) not in s)(key, members))
        elif neg:
            tests.append((lambda k: lambda labels: k not in labels)(key))
        else:
            tests.append((lambda k: lambda labels: k in labels)(key))
        rest = rest[match.end():]
        if rest.startswith(","):
            rest = rest[1:]
        elif rest.strip():
            raise ValueError(f"invalid selector {text!r}")
    return lambda labels: all(t(labels) for t in tests)


# --------------------------------------------------------------------------- quantities


def cpu_quantity(cores: float) -> str:
    return f"{max(1, round(cores * 1e9))}n"  # never zero: the HPA ignores pods that report none


def memory_quantity(size: float) -> str:
    return f"{max(1, round(size / 1024))}Ki"


def value_quantity(value: float) -> str:
    return f"{round(value * 1000)}m"


def stamp(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- metrics.k8s.io


def _meta(name: str, namespace: str | None, labels: Mapping[str, str], when: dt.datetime) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": dict(labels), "creationTimestamp": stamp(when)}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def pod_metrics(pod: PodUsage, usage: Usage) -> dict[str, Any]:
    return {"kind": "PodMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
            "metadata": _meta(pod.name, pod.namespace, pod.labels, usage.taken_at),
            "timestamp": stamp(usage.taken_at), "window": f"{usage.window_s:g}s",
            "containers": [{"name": name, "usage": {"cpu": cpu_quantity(cpu), "memory": memory_quantity(mem)}}
                           for name, cpu, mem in pod.containers]}


def node_metrics(name: str, usage: Usage) -> dict[str, Any]:
    cpu, mem, labels = usage.nodes[name]
    return {"kind": "NodeMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
            "metadata": _meta(name, None, labels, usage.taken_at), "timestamp": stamp(usage.taken_at),
            "window": f"{usage.window_s:g}s", "usage": {"cpu": cpu_quantity(cpu), "memory": memory_quantity(mem)}}


def listed(kind: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": kind, "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {}, "items": items}


def field_view(name: str, namespace: str | None) -> dict[str, str]:
    fields = {"metadata.name": name}
    if namespace is not None:
        fields["metadata.namespace"] = namespace
    return fields


# --------------------------------------------------------------------------- custom and external metrics

#: Per-pod figures of the custom metrics API, by name (aliases of the usual exporters included).
POD_METRICS: dict[str, Callable[[model.PodSample], float]] = {
    "requests_per_second": lambda s: s.rps,
    "http_requests_per_second": lambda s: s.rps,
    "response_time_ms": lambda s: s.latency_ms,
    "error_rate_percent": lambda s: 100 * s.error_rate,
    "gpu_utilization": lambda s: s.gpu_util,
    "DCGM_FI_DEV_GPU_UTIL": lambda s: s.gpu_util,
    "gpu_memory_used_bytes": lambda s: s.gpu_fb_used_mib * model.MIB,
    "cpu_usage_cores": lambda s: s.cpu_cores,
}
#: Per-service figures (custom object metrics and external metrics).
SERVICE_METRICS: dict[str, Callable[[model.ServiceSample], float]] = {
    "requests_per_second": lambda s: s.rps,
    "http_requests_per_second": lambda s: s.rps,
    "response_time_ms": lambda s: s.latency_ms,
    "error_rate_percent": lambda s: 100 * s.error_rate,
    "ready_pods": lambda s: float(s.ready_pods),
}
#: Object kinds the custom metrics API describes, as the HPA names their resources.
OBJECT_RESOURCES = {"deployments.apps": ("Deployment", "apps/v1"), "statefulsets.apps": ("StatefulSet", "apps/v1"),
                    "services": ("Service", "/v1")}


def custom_value(kind: str, namespace: str, name: str, api_version: str, metric: str, value: float,
                 usage: Usage) -> dict[str, Any]:
    return {"describedObject": {"kind": kind, "namespace": namespace, "name": name, "apiVersion": api_version},
            "metric": {"name": metric, "selector": None}, "timestamp": stamp(usage.taken_at),
            "windowSeconds": int(max(1, usage.window_s)), "value": value_quantity(value)}


def custom_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": "MetricValueList", "apiVersion": "custom.metrics.k8s.io/v1beta2", "metadata": {}, "items": items}


def external_items(usage: Usage, namespace: str, metric: str,
                   selector: Callable[[Mapping[str, str]], bool]) -> list[dict[str, Any]]:
    """``<metric>`` per service of the namespace; ``tenant_<metric>`` per tenant (summed, or averaged for
    rates and latencies), labelled so a selector picks one (service=…, tenant=…)."""
    per_tenant = metric.startswith("tenant_")
    read = SERVICE_METRICS.get(metric.removeprefix("tenant_"))
    if read is None:
        return []
    rows: list[tuple[dict[str, str], float]] = []
    if per_tenant:
        groups: dict[str, list[model.ServiceSample]] = {}
        for s in usage.services.values():
            if s.tenant:
                groups.setdefault(s.tenant, []).append(s)
        additive = metric.removeprefix("tenant_") in ("requests_per_second", "http_requests_per_second", "ready_pods")
        for tenant, members in sorted(groups.items()):
            values = [read(s) for s in members]
            rows.append(({"tenant": tenant}, sum(values) if additive else sum(values) / len(values)))
    else:
        for key, s in sorted(usage.services.items()):
            ns, service = key.split("/", 1)
            if ns != namespace:
                continue
            labels = {"namespace": ns, "service": service, **({"tenant": s.tenant} if s.tenant else {})}
            rows.append((labels, read(s)))
    return [{"metricName": metric, "metricLabels": labels, "timestamp": stamp(usage.taken_at),
             "windowSeconds": int(max(1, usage.window_s)), "value": value_quantity(value)}
            for labels, value in rows if selector(labels)]


def resource_list(group: str) -> dict[str, Any]:
    """Discovery of one group version (what kube-aggregator checks for availability)."""
    version = GROUPS[group]
    if group == "metrics.k8s.io":
        resources = [{"name": "nodes", "singularName": "", "namespaced": False, "kind": "NodeMetrics",
                      "verbs": ["get", "list"]},
                     {"name": "pods", "singularName": "", "namespaced": True, "kind": "PodMetrics",
                      "verbs": ["get", "list"]}]
    elif group == "custom.metrics.k8s.io":
        resources = [{"name": f"pods/{m}", "singularName": "", "namespaced": True, "kind": "MetricValueList",
                      "verbs": ["get"]} for m in POD_METRICS]
        resources += [{"name": f"{r}/{m}", "singularName": "", "namespaced": True, "kind": "MetricValueList",
                       "verbs": ["get"]} for r in OBJECT_RESOURCES for m in SERVICE_METRICS]
    else:
        resources = [{"name": name, "singularName": "", "namespaced": True, "kind": "ExternalMetricValueList",
                      "verbs": ["get"]} for m in SERVICE_METRICS for name in (m, f"tenant_{m}")]
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}",
            "resources": resources}
