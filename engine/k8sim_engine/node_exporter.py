"""node-exporter's series for the nodes its DaemonSet runs on, once users apply it (kube-prometheus'
manifests, the prometheus-community chart): CPU seconds per CPU and mode, and memory, from each node's
modelled usage. What kube-prometheus' adapter (``kubectl top nodes``) and its recording rules read.

As a real node-exporter, a node without one of its pods has no such series: the labels are those its
ServiceMonitor gives (``instance`` the node's name, the pod's namespace and name; the scrape adds ``job``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from k8sim import played, resources

from .metrics_api import Usage

#: The image repository of node-exporter's releases (quay.io/prometheus/node-exporter, prom/node-exporter).
IMAGE = "node-exporter"
#: How a busy CPU's time splits between user and system mode (a serving workload's usual ratio).
USER_SHARE = 0.85


class NodeExporter:
    """Per node with a running node-exporter pod: (namespace, pod, cores, memory bytes) and cumulative
    (idle, user, system) seconds of each of its CPUs (all alike: the model gives a node's total)."""

    def __init__(self) -> None:
        self.targets: dict[str, tuple[str, str, int, float, float]] = {}  # node → (ns, pod, cpus, total, used)
        self.seconds: dict[str, list[float]] = {}

    def step(self, pods: Iterable[Mapping[str, Any]], nodes: Iterable[Mapping[str, Any]], usage: Usage,
             dt_s: float) -> None:
        capacity = {n["metadata"]["name"]: (n.get("status") or {}).get("capacity") or {} for n in nodes}
        targets = {}
        for pod in pods:
            spec, status = pod.get("spec") or {}, pod.get("status") or {}
            node = str(spec.get("nodeName") or "")
            if status.get("phase") != "Running" or node not in capacity or not any(
                    played.image_name(str(c.get("image", ""))) == IMAGE for c in spec.get("containers") or []):
                continue
            size = capacity[node]
            cpus = max(1, int(resources.quantity(size.get("cpu")) or 1))
            total = float(resources.quantity(size.get("memory")) or 0.0)
            used_cores, used_bytes, _ = usage.nodes.get(node, (0.0, 0.0, {}))
            targets[node] = (pod["metadata"].get("namespace", ""), pod["metadata"]["name"], cpus, total,
                             min(total, used_bytes))
            busy = min(1.0, used_cores / cpus)
            idle, user, system = self.seconds.get(node, [0.0, 0.0, 0.0])
            self.seconds[node] = [idle + (1 - busy) * dt_s, user + busy * USER_SHARE * dt_s,
                                  system + busy * (1 - USER_SHARE) * dt_s]
        self.targets = targets
        for gone in set(self.seconds) - set(targets):
            del self.seconds[gone]


class HasNodeExporter(Protocol):
    node_exporter: NodeExporter


class NodeExporterCollector(Collector):
    def __init__(self, ref: HasNodeExporter):
        self.ref = ref

    def collect(self) -> Iterator[Metric]:
        exporter = self.ref.node_exporter
        if not exporter.targets:
            return
        # No job label: the scrape gives it (what the engine's played Prometheus store does too).
        labels = ["cpu", "mode", "instance", "namespace", "pod"]
        cpu = CounterMetricFamily("node_cpu_seconds_total", "Seconds the CPUs spent in each mode.", labels=labels)
        where = ["instance", "namespace", "pod"]
        total = GaugeMetricFamily("node_memory_MemTotal_bytes", "Memory information field MemTotal_bytes.",
                                  labels=where)
        available = GaugeMetricFamily("node_memory_MemAvailable_bytes",
                                      "Memory information field MemAvailable_bytes.", labels=where)
        for node, (ns, pod, cpus, mem_total, mem_used) in sorted(exporter.targets.items()):
            seconds = exporter.seconds.get(node, [0.0, 0.0, 0.0])
            for index in range(cpus):
                for mode, value in zip(("idle", "user", "system"), seconds, strict=True):
                    cpu.add_metric([str(index), mode, node, ns, pod], value)
            total.add_metric([node, ns, pod], mem_total)
            available.add_metric([node, ns, pod], mem_total - mem_used)
        yield from (cpu, total, available)
