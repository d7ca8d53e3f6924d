"""Built-in alerts: what kube-prometheus' rules would page on in this cluster, and service figures.

Pure: the engine evaluates these every tick over the cluster it watches and the model's service
samples, fires each into the store and resolves it once it stops holding. Names follow
kube-prometheus (KubePodCrashLooping, KubeNodeNotReady …) so runbooks read the same.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from k8sim import gpus, lifecycle, model


@dataclasses.dataclass(frozen=True)
class Firing:
    """One alert holding now, keyed by (rule_id, subject)."""

    rule_id: str
    name: str
    severity: str
    subject: str  # namespace/pod, node name or namespace/service
    tenant: str | None
    value: float
    message: str


#: Service thresholds: (name, severity, read, comparison threshold, what it means).
SERVICE_RULES: list[tuple[str, str, Callable[[model.ServiceSample], float], str, float, str]] = [
    ("ServiceUnavailable", "critical", lambda s: s.ready_pods, "<", 1, "no ready replica serves"),
    ("ServiceErrorRateHigh", "critical", lambda s: 100 * s.error_rate, ">", 5.0, "% of requests fail"),
    ("ServiceLatencyHigh", "warning", lambda s: s.latency_ms, ">", 1000.0, "ms mean response time"),
    ("ServiceCPUSaturated", "warning", lambda s: s.cpu_percent, ">", 90.0, "% of its CPU limit in use"),
]
#: Container states kube-prometheus alerts on (KubePodCrashLooping, and the waiting reasons of
#: KubePodNotReady's usual causes).
WAITING_ALERTS = {"CrashLoopBackOff": ("KubePodCrashLooping", "warning"),
                  "ImagePullBackOff": ("KubePodImagePullBackOff", "warning"),
                  "ErrImagePull": ("KubePodImagePullBackOff", "warning")}
#: How long after an OOM kill KubeContainerOOMKilled keeps firing.
OOM_WINDOW = dt.timedelta(minutes=10)
#: A container that exited this recently and is not ready is still crash-looping between back-offs
#: (kube-prometheus looks at CrashLoopBackOff over 5 minutes, so the alert does not flap).
CRASH_WINDOW = dt.timedelta(minutes=5)


def service_alerts(samples: Iterable[model.ServiceSample]) -> list[Firing]:
    found = []
    for s in samples:
        for name, severity, read, op, threshold, meaning in SERVICE_RULES:
            value = float(read(s))
            if (value < threshold) if op == "<" else (value > threshold):
                found.append(Firing(f"builtin:{name}", name, severity, s.key, s.tenant, value,
                                    f"{s.key}: {value:g}{meaning if meaning.startswith('%') else ' ' + meaning}"
                                    f" ({op} {threshold:g})"))
    return found


def cluster_alerts(pods: Iterable[Mapping[str, Any]], nodes: Iterable[Mapping[str, Any]],
                   tenants: Mapping[str, str], now: dt.datetime) -> list[Firing]:
    """Pods crash-looping, OOM-killed lately, failing to pull; nodes not Ready."""
    found = []
    for node in nodes:
        ready = lifecycle.conditions(node).get("Ready", {})
        if ready.get("status") != "True":
            name = node["metadata"]["name"]
            found.append(Firing("builtin:KubeNodeNotReady", "KubeNodeNotReady", "warning", name, None, 1.0,
                                f"node {name} is not Ready ({ready.get('reason') or 'no status'}): "
                                f"{ready.get('message') or ''}".rstrip(": ")))
    for pod in pods:
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            continue
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        if all(c.get("ready") and not c.get("lastState") for c in statuses):
            continue  # the common case at thousands of pods: running, never restarted
        key = f"{meta.get('namespace', '')}/{meta['name']}"
        tenant = lifecycle.tenant_of(pod) or tenants.get(meta.get("namespace", ""))
        seen: set[str] = set()
        for c in statuses:
            waiting = ((c.get("state") or {}).get("waiting") or {}).get("reason")
            last = (c.get("lastState") or {}).get("terminated") or {}
            finished = lifecycle.parse_time(last.get("finishedAt"))
            if waiting is None and not c.get("ready") and finished and now - finished < CRASH_WINDOW:
                waiting = "CrashLoopBackOff"  # restarted between two back-offs
            if waiting in WAITING_ALERTS and WAITING_ALERTS[waiting][0] not in seen:
                name, severity = WAITING_ALERTS[waiting]
                seen.add(name)
                found.append(Firing(f"builtin:{name}", name, severity, key, tenant, float(c.get("restartCount") or 0),
                                    f"container {c.get('name')} of {key} is {waiting} "
                                    f"({c.get('restartCount') or 0} restarts)"))
            if last.get("reason") == "OOMKilled" and finished and now - finished < OOM_WINDOW \
                    and "KubeContainerOOMKilled" not in seen:
                seen.add("KubeContainerOOMKilled")
                found.append(Firing("builtin:KubeContainerOOMKilled", "KubeContainerOOMKilled", "warning", key,
                                    tenant, float(c.get("restartCount") or 0),
                                    f"container {c.get('name')} of {key} was OOM-killed at {last['finishedAt']}"))
    return found


#: GPU alerts under the names community rules over dcgm-exporter's series use (the GPU Operator ships
#: none): GPUXidError on ``DCGM_FI_DEV_XID_ERRORS > 0``, GPUFallenOffBus on XID 79,
#: GPUThermalThrottling on a GPU held at its slowdown clocks. Subject: ``<node>/gpu<index>``.
GPU_ALERTS = {"GPUXidError": "warning", "GPUFallenOffBus": "critical", "GPUThermalThrottling": "warning"}


def gpu_alerts(devices: Iterable[model.DeviceSample]) -> list[Firing]:
    """One firing per GPU (not per MIG device or time-sliced replica's copy of its series)."""
    found = []
    seen: set[tuple[str, str]] = set()
    for d in devices:
        subject = f"{d.device.node}/gpu{d.device.index}"
        where = f"GPU {d.device.index} ({d.device.uuid}) of node {d.device.node}"
        firing: list[tuple[str, float, str]] = []
        if d.xid:
            critical = gpus.xid_critical(d.xid)
            firing.append(("GPUXidError", float(d.xid),
                           f"{where} reported XID {d.xid} ({gpus.XID_TEXT.get(d.xid, 'Unknown Error')})"
                           + ("; the device plugin marked it unhealthy" if critical else "")))
            if d.xid == gpus.FALLEN_OFF_BUS:
                firing.append(("GPUFallenOffBus", float(d.xid), f"{where} has fallen off the bus (XID 79)"))
        if d.throttled:
            firing.append(("GPUThermalThrottling", d.sm_clock_mhz,
                           f"{where} is thermally throttled: SM clock {d.sm_clock_mhz:.0f} MHz of "
                           f"{d.device.model.sm_clock}, {d.temp_c:.0f} °C"))
        for name, value, message in firing:
            if (name, subject) in seen:
                continue
            seen.add((name, subject))
            severity = "critical" if name == "GPUXidError" and gpus.xid_critical(int(value)) else GPU_ALERTS[name]
            found.append(Firing(f"builtin:{name}", name, severity, subject, None, value, message))
    return found
