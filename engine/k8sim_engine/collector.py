"""Prometheus exposition under the names real exporters use (cAdvisor, kube-state-metrics, DCGM).

A custom Collector yields metric families from the engine's last tick; nothing here keeps
a mutable gauge per series.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from k8sim import contract, lifecycle, model

PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")


class State:
    """What the last tick saw; the engine swaps it whole, so a scrape sees one consistent tick."""

    def __init__(self) -> None:
        self.pods: list[dict[str, Any]] = []
        self.deployments: list[dict[str, Any]] = []
        self.model: model.Model | None = None
        self.services: list[model.ServiceSample] = []
        self.sla: dict[str, float] = {}


class HasState(Protocol):
    """What the collector reads from: the engine, whose ``state`` is its last tick."""

    state: State


class SimulatorCollector(Collector):
    def __init__(self, state_ref: HasState):
        self.ref = state_ref

    def collect(self) -> Iterator[Metric]:
        state: State = self.ref.state
        yield from self._cadvisor(state)
        yield from self._kube_state(state)
        yield from self._dcgm(state)
        yield from self._services(state)

    def _cadvisor(self, state: State) -> Iterator[Metric]:
        labels = ["namespace", "pod", "container", "image", "node"]
        cpu = CounterMetricFamily("container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.",
                                  labels=labels)
        mem = GaugeMetricFamily("container_memory_working_set_bytes", "Current working set in bytes.", labels=labels)
        limit = GaugeMetricFamily("container_spec_memory_limit_bytes", "Memory limit of the container.",
                                  labels=labels)
        rx = CounterMetricFamily("container_network_receive_bytes_total", "Cumulative bytes received.",
                                 labels=["namespace", "pod", "interface"])
        tx = CounterMetricFamily("container_network_transmit_bytes_total", "Cumulative bytes transmitted.",
                                 labels=["namespace", "pod", "interface"])
        pods = state.model.pods if state.model else {}
        for pod in pods.values():
            if pod.last is None:
                continue
            s = pod.spec
            values = [s.namespace, s.name, s.container, s.image, s.node]
            cpu.add_metric(values, pod.cpu_seconds)
            mem.add_metric(values, pod.last.memory_bytes)
            if s.memory_limit:
                limit.add_metric(values, s.memory_limit)
            rx.add_metric([s.namespace, s.name, "eth0"], pod.rx_bytes)
            tx.add_metric([s.namespace, s.name, "eth0"], pod.tx_bytes)
        yield from (cpu, mem, limit, rx, tx)

    def _kube_state(self, state: State) -> Iterator[Metric]:
        phase = GaugeMetricFamily("kube_pod_status_phase", "The pods current phase.",
                                  labels=["namespace", "pod", "uid", "phase"])
        info = GaugeMetricFamily("kube_pod_info", "Information about pod.",
                                 labels=["namespace", "pod", "uid", "node", "pod_ip", "created_by_kind",
                                         "created_by_name"])
        owner = GaugeMetricFamily("kube_pod_owner", "Information about the Pod's owner.",
                                  labels=["namespace", "pod", "uid", "owner_kind", "owner_name", "owner_is_controller"])
        ready = GaugeMetricFamily("kube_pod_status_ready", "Describes whether the pod is ready to serve requests.",
                                  labels=["namespace", "pod", "uid", "condition"])
        restarts = CounterMetricFamily("kube_pod_container_status_restarts_total",
                                       "The number of container restarts per container.",
                                       labels=["namespace", "pod", "uid", "container"])
        for pod in state.pods:
            meta, status = pod["metadata"], pod.get("status") or {}
            ns, name, uid = meta.get("namespace", ""), meta["name"], meta["uid"]
            current = status.get("phase", "Pending")
            for p in PHASES:
                phase.add_metric([ns, name, uid, p], 1.0 if p == current else 0.0)
            kind, owner_name, _ = lifecycle.owner_of(pod)
            info.add_metric([ns, name, uid, (pod.get("spec") or {}).get("nodeName", ""), status.get("podIP", ""),
                             kind or "<none>", owner_name or "<none>"], 1.0)
            owner.add_metric([ns, name, uid, kind or "<none>", owner_name or "<none>", "true" if kind else "false"],
                             1.0)
            is_ready = lifecycle.conditions(pod).get("Ready", {}).get("status") == "True"
            for cond in ("true", "false"):
                ready.add_metric([ns, name, uid, cond], 1.0 if (cond == "true") == is_ready else 0.0)
            for c in status.get("containerStatuses") or []:
                restarts.add_metric([ns, name, uid, c.get("name", "")], float(c.get("restartCount") or 0))
        yield from (phase, info, owner, ready, restarts)
        names = {
            "kube_deployment_spec_replicas": ("spec", "replicas"),
            "kube_deployment_status_replicas": ("status", "replicas"),
            "kube_deployment_status_replicas_available": ("status", "availableReplicas"),
            "kube_deployment_status_replicas_ready": ("status", "readyReplicas"),
            "kube_deployment_status_replicas_updated": ("status", "updatedReplicas"),
            "kube_deployment_status_replicas_unavailable": ("status", "unavailableReplicas"),
        }
        for metric, (section, field) in names.items():
            family = GaugeMetricFamily(metric, f"Deployment {section}.{field}.", labels=["namespace", "deployment"])
            for dep in state.deployments:
                value = (dep.get(section) or {}).get(field) or 0
                family.add_metric([dep["metadata"].get("namespace", ""), dep["metadata"]["name"]], float(value))
            yield family

    def _dcgm(self, state: State) -> Iterator[Metric]:
        labels = ["gpu", "UUID", "device", "modelName", "Hostname", "namespace", "pod", "container"]
        fams = {
            "util": GaugeMetricFamily("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", labels=labels),
            "used": GaugeMetricFamily("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", labels=labels),
            "free": GaugeMetricFamily("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", labels=labels),
            "power": GaugeMetricFamily("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", labels=labels),
            "temp": GaugeMetricFamily("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", labels=labels),
        }
        pods = state.model.pods if state.model else {}
        for pod in pods.values():
            s, last = pod.spec, pod.last
            if not s.gpus or last is None:
                continue
            for index in range(s.gpus):
                values = [str(index), f"GPU-{s.uid[:8]}-{index}", f"nvidia{index}",
                          f"NVIDIA {(s.accelerator or 'gpu').upper()}", s.node, s.namespace, s.name, s.container]
                fams["util"].add_metric(values, last.gpu_util)
                fams["used"].add_metric(values, last.gpu_fb_used_mib / s.gpus)
                fams["free"].add_metric(values, last.gpu_fb_free_mib / s.gpus)
                fams["power"].add_metric(values, last.gpu_power_w / s.gpus)
                fams["temp"].add_metric(values, last.gpu_temp_c)
        yield from fams.values()

    def _services(self, state: State) -> Iterator[Metric]:
        requests = CounterMetricFamily("http_requests_total", "Requests served, by status class.",
                                       labels=["namespace", "service", "code"])
        latency = GaugeMetricFamily("k8sim_service_latency_seconds", "Mean response time of a service.",
                                    labels=["namespace", "service", "tenant"])
        health = GaugeMetricFamily("k8sim_service_healthy", "1 when the service is healthy.",
                                   labels=["namespace", "service", "tenant", "status"])
        totals: dict[str, tuple[float, float]] = {}
        pods = state.model.pods if state.model else {}
        for pod in pods.values():
            good, bad = totals.get(pod.spec.service, (0.0, 0.0))
            totals[pod.spec.service] = (good + pod.requests - pod.errors, bad + pod.errors)
        for key, (good, bad) in totals.items():
            ns, svc = key.split("/", 1)
            requests.add_metric([ns, svc, "2xx"], good)
            requests.add_metric([ns, svc, "5xx"], bad)
        for sample in state.services:
            ns, svc = sample.key.split("/", 1)
            latency.add_metric([ns, svc, sample.tenant or ""], sample.latency_ms / 1000)
            status = contract.service_health(sample)
            health.add_metric([ns, svc, sample.tenant or "", status], 1.0 if status == "healthy" else 0.0)
        sla = GaugeMetricFamily("k8sim_sla_availability_percent", "Availability over the SLA window.",
                                labels=["scope"])
        for scope, value in state.sla.items():
            sla.add_metric([scope], value)
        yield from (requests, latency, health, sla)
