"""Prometheus exposition under the names real exporters use (cAdvisor, kube-state-metrics, DCGM).

A custom Collector yields metric families from the engine's last tick; nothing here keeps
a mutable gauge per series.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

from prometheus_client import utils
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from k8sim import contract, gpus, lifecycle, model

PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")

#: dcgm-exporter's default counters (etc/default-counters.csv of NVIDIA/dcgm-exporter, in its order):
#: name → (Prometheus type, HELP). Its counters carry no ``_total``; :func:`render` keeps them so.
DCGM_COUNTERS: dict[str, tuple[str, str]] = {
    "DCGM_FI_DEV_SM_CLOCK": ("gauge", "SM clock frequency (in MHz)."),
    "DCGM_FI_DEV_MEM_CLOCK": ("gauge", "Memory clock frequency (in MHz)."),
    "DCGM_FI_DEV_MEMORY_TEMP": ("gauge", "Memory temperature (in C)."),
    "DCGM_FI_DEV_GPU_TEMP": ("gauge", "GPU temperature (in C)."),
    "DCGM_FI_DEV_POWER_USAGE": ("gauge", "Power draw (in W)."),
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": ("counter", "Total energy consumption since boot (in mJ)."),
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": ("counter", "Total number of PCIe retries."),
    "DCGM_FI_DEV_GPU_UTIL": ("gauge", "GPU utilization (in %)."),
    "DCGM_FI_DEV_MEM_COPY_UTIL": ("gauge", "Memory utilization (in %)."),
    "DCGM_FI_DEV_ENC_UTIL": ("gauge", "Encoder utilization (in %)."),
    "DCGM_FI_DEV_DEC_UTIL": ("gauge", "Decoder utilization (in %)."),
    "DCGM_FI_DEV_XID_ERRORS": ("gauge", "Value of the last XID error encountered."),
    "DCGM_FI_DEV_FB_FREE": ("gauge", "Framebuffer memory free (in MiB)."),
    "DCGM_FI_DEV_FB_USED": ("gauge", "Framebuffer memory used (in MiB)."),
    "DCGM_FI_DEV_FB_RESERVED": ("gauge", "Framebuffer memory reserved (in MiB)."),
    "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL": ("counter", "Total number of NVLink bandwidth counters for all lanes."),
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": ("counter", "Number of remapped rows for uncorrectable errors"),
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": ("counter", "Number of remapped rows for correctable errors"),
    "DCGM_FI_DEV_ROW_REMAP_FAILURE": ("gauge", "Whether remapping of rows has failed"),
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": ("gauge", "Ratio of time the graphics engine is active."),
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": ("gauge", "Ratio of cycles the tensor (HMMA) pipe is active."),
    "DCGM_FI_PROF_DRAM_ACTIVE": ("gauge", "Ratio of cycles the device memory interface is active sending or "
                                          "receiving data."),
    "DCGM_FI_PROF_PCIE_TX_BYTES": ("gauge", "The rate of data transmitted over the PCIe bus - including both "
                                            "protocol headers and data payloads - in bytes per second."),
    "DCGM_FI_PROF_PCIE_RX_BYTES": ("gauge", "The rate of data received over the PCIe bus - including both "
                                            "protocol headers and data payloads - in bytes per second."),
}
#: dcgm-exporter's err_msg of the XID_ERRORS series per code (its xid_errors.go), for every XID the
#: GPUXid Scenario plays.
XID_TEXT = {0: "No Error", **gpus.XID_TEXT}


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
        """dcgm-exporter's default counters (its etc/default-counters.csv), one series per GPU of every
        GPU node, idle ones with empty pod labels. Fields a model does not report are left out, as the
        exporter skips DCGM's blank values: MEMORY_TEMP on GDDR parts, the remapped-row fields before
        Ampere's HBM, VGPU_LICENSE_STATUS off vGPU. A GPU in MIG mode leaves its utilisation and
        profiling fields blank; each MIG device has its own FB_USED/FB_FREE and profiling series,
        labelled with its parent GPU, GPU_I_PROFILE and GPU_I_ID and the pod holding it. Each pod on a
        time-sliced GPU gets its copy of the GPU's series with the replica as ``vgpu``."""
        devices = state.model.devices if state.model else []
        families = {name: Metric(name, help_text, kind) for name, (kind, help_text) in DCGM_COUNTERS.items()}
        xid = families["DCGM_FI_DEV_XID_ERRORS"]
        for d in devices:
            gpu = d.device.model
            labels = {"gpu": str(d.device.index), "UUID": d.device.uuid, "pci_bus_id": d.device.pci_bus_id,
                      "device": d.device.device, "modelName": gpu.name, "Hostname": d.device.node,
                      "DCGM_FI_DRIVER_VERSION": gpus.DRIVER_VERSION, "container": d.container,
                      "namespace": d.namespace, "pod": d.pod}
            if d.vgpu is not None:
                labels["vgpu"] = d.vgpu
            if d.mig is not None:
                labels["GPU_I_PROFILE"], labels["GPU_I_ID"] = d.mig.profile.name, str(d.mig.gi_id)
                mig_values = {"DCGM_FI_DEV_FB_FREE": d.fb_free_mib, "DCGM_FI_DEV_FB_USED": d.fb_used_mib,
                          "DCGM_FI_PROF_GR_ENGINE_ACTIVE": d.gr_engine_active,
                          "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": d.tensor_active,
                          "DCGM_FI_PROF_DRAM_ACTIVE": d.dram_active}
                for name, figure in mig_values.items():
                    families[name].add_sample(name, labels, figure)
                continue
            whole = None if d.mig_enabled else 1.0  # in MIG mode DCGM has no whole-GPU utilisation
            values: dict[str, float | None] = {
                "DCGM_FI_DEV_SM_CLOCK": d.sm_clock_mhz, "DCGM_FI_DEV_MEM_CLOCK": d.mem_clock_mhz,
                "DCGM_FI_DEV_MEMORY_TEMP": d.memory_temp_c, "DCGM_FI_DEV_GPU_TEMP": d.temp_c,
                "DCGM_FI_DEV_POWER_USAGE": d.power_w, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": d.energy_mj,
                "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": d.pcie_replays, "DCGM_FI_DEV_GPU_UTIL": whole and d.util,
                "DCGM_FI_DEV_MEM_COPY_UTIL": whole and d.mem_copy_util, "DCGM_FI_DEV_ENC_UTIL": whole and 0.0,
                "DCGM_FI_DEV_DEC_UTIL": whole and 0.0, "DCGM_FI_DEV_FB_FREE": d.fb_free_mib,
                "DCGM_FI_DEV_FB_USED": d.fb_used_mib, "DCGM_FI_DEV_FB_RESERVED": float(gpu.reserved_mib),
                "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL": d.nvlink_bytes if gpu.nvlink else None,
                "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": 0.0 if gpu.row_remap else None,
                "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": 0.0 if gpu.row_remap else None,
                "DCGM_FI_DEV_ROW_REMAP_FAILURE": 0.0 if gpu.row_remap else None,
                "DCGM_FI_PROF_GR_ENGINE_ACTIVE": whole and d.gr_engine_active,
                "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": whole and d.tensor_active,
                "DCGM_FI_PROF_DRAM_ACTIVE": whole and d.dram_active,
                "DCGM_FI_PROF_PCIE_TX_BYTES": d.pcie_tx_bytes_s, "DCGM_FI_PROF_PCIE_RX_BYTES": d.pcie_rx_bytes_s,
            }
            for name, value in values.items():
                if value is not None:
                    # One labels dict per device, shared by its families: render() formats it once.
                    families[name].add_sample(name, labels, value)
            xid.add_sample("DCGM_FI_DEV_XID_ERRORS", {**labels, "err_code": str(d.xid),
                                                      "err_msg": XID_TEXT.get(d.xid, "Unknown Error")}, d.xid)
        yield from families.values()

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


#: Numbers as Go (and generate_latest) write them.
_number: Callable[[float], str] = utils.floatToGoString


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


def render(registry: Collector) -> bytes:
    """Prometheus' text format, as prometheus_client's generate_latest writes it, with two changes:
    a counter whose samples carry its own name (DCGM's, Triton's and TGI's, without ``_total``) is
    declared under that name, as those exporters do (generate_latest would declare ``<name>_total`` and
    leave its samples untyped); and a labels dict shared by several samples is formatted once."""
    out: list[str] = []
    # By id, holding the dict: a dict freed while the scrape runs could otherwise lend its id to another.
    formatted: dict[int, tuple[dict[str, str], str]] = {}
    for metric in registry.collect():
        name, kind = metric.name, metric.type
        if kind == "counter" and name not in DCGM_COUNTERS and not (metric.samples and metric.samples[0].name == name):
            name += "_total"
        elif kind == "unknown":
            kind = "untyped"
        elif kind not in ("counter", "gauge", "histogram"):
            raise ValueError(f"{metric.name}: render() writes counters, gauges and histograms, not {kind}")
        doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {name} {doc}\n# TYPE {name} {kind}\n")
        for sample in metric.samples:
            found = formatted.get(id(sample.labels))
            if found is None:
                text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(sample.labels.items()))
                found = formatted[id(sample.labels)] = (sample.labels, f"{{{text}}}" if text else "")
            out.append(f"{sample.name}{found[1]} {_number(sample.value)}\n")
    return "".join(out).encode()
