"""What pods ask of nodes and nodes offer, in numbers: Kubernetes quantities and the scheduler's view of
a pod's requests. Pure, and the foundation both the capacity views and the lifecycle history use."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes.utils.quantity import parse_quantity

GPU = "nvidia.com/gpu"
#: The device plugin's other GPU devices: time-sliced replicas under renameByDefault, and MIG devices
#: under the mixed strategy (nvidia.com/mig-1g.5gb). Single MIG and plain time-slicing keep GPU.
SHARED_GPU = "nvidia.com/gpu.shared"
MIG_PREFIX = "nvidia.com/mig-"


def quantity(value: Any) -> float | None:
    """A Kubernetes quantity ("250m", "2Gi", "1e3", 3) as a float; None when absent or unreadable.

    The official client's parser: every suffix and exponent form the apiserver writes."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(parse_quantity(value))
    except (ValueError, TypeError, ArithmeticError):
        return None


@dataclasses.dataclass
class Resources:
    cpu: float = 0.0  # cores
    memory: float = 0.0  # bytes
    gpu: float = 0.0
    pods: float = 0.0

    def add(self, other: Resources) -> None:
        self.cpu += other.cpu
        self.memory += other.memory
        self.gpu += other.gpu
        self.pods += other.pods

    def fits(self, other: Resources) -> bool:
        return (other.cpu <= self.cpu + 1e-9 and other.memory <= self.memory + 1e-9
                and other.gpu <= self.gpu + 1e-9 and other.pods <= self.pods + 1e-9)

    def minus(self, other: Resources) -> Resources:
        return Resources(self.cpu - other.cpu, self.memory - other.memory, self.gpu - other.gpu,
                         self.pods - other.pods)

    def as_json(self) -> dict[str, float]:
        return {"cpu_cores": round(self.cpu, 3), "memory_bytes": round(self.memory), "gpus": round(self.gpu, 3),
                "pods": round(self.pods)}


def pod_requests(pod_spec: Mapping[str, Any]) -> Resources:
    """What the scheduler reserves for a pod: its containers' requests summed, or its largest init
    container's if that is more (limits stand in for missing requests), plus the pod itself."""
    def of(containers: Iterable[Mapping[str, Any]]) -> list[Resources]:
        found = []
        for c in containers:
            resources = c.get("resources") or {}
            req, lim = resources.get("requests") or {}, resources.get("limits") or {}
            pick = {k: quantity(req.get(k)) if req.get(k) is not None else quantity(lim.get(k))
                    for k in ("cpu", "memory", GPU)}
            found.append(Resources(pick["cpu"] or 0.0, pick["memory"] or 0.0, pick[GPU] or 0.0))
        return found
    main = Resources(pods=1)
    for r in of(pod_spec.get("containers") or []):
        main.add(r)
    for r in of(pod_spec.get("initContainers") or []):
        main.cpu, main.memory, main.gpu = max(main.cpu, r.cpu), max(main.memory, r.memory), max(main.gpu, r.gpu)
    return main


def is_gpu_device(resource: str) -> bool:
    """Whether an extended resource is one of the device plugin's GPU devices: whole GPUs (time-sliced:
    their replicas; MIG single: MIG devices), renamed replicas, or MIG devices of one profile."""
    return resource in (GPU, SHARED_GPU) or resource.startswith(MIG_PREFIX)


def device_requests(pod_spec: Mapping[str, Any]) -> dict[str, float]:
    """GPU devices a pod reserves, by resource name (nvidia.com/gpu included), counted as the scheduler
    counts them: containers summed, the largest init container's if more, a limit standing in for a
    missing request (extended resources are requested by their limits)."""
    def of(container: Mapping[str, Any]) -> dict[str, float]:
        res = container.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        found = {}
        for name in {*req, *lim}:
            if is_gpu_device(str(name)):
                value = quantity(req[name] if req.get(name) is not None else lim.get(name))
                if value:
                    found[str(name)] = value
        return found
    total: dict[str, float] = {}
    for container in pod_spec.get("containers") or []:
        for name, value in of(container).items():
            total[name] = total.get(name, 0.0) + value
    for container in pod_spec.get("initContainers") or []:
        for name, value in of(container).items():
            total[name] = max(total.get(name, 0.0), value)
    return dict(sorted(total.items()))


def other_devices(pod_spec: Mapping[str, Any]) -> tuple[tuple[str, float], ...]:
    """The GPU devices a pod reserves besides nvidia.com/gpu (MIG devices, renamed replicas), as sorted
    (resource, count) pairs: what ``pod_requests`` leaves out of its ``gpu``."""
    return tuple((k, v) for k, v in device_requests(pod_spec).items() if k != GPU)


_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_GO_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration(text: str) -> float:
    """Seconds of a Go duration as Kubernetes' flags and our Scenarios write them: ``90s``, ``5m``, ``1h30m``,
    ``250ms``; ValueError for anything else."""
    value = text.strip()
    parts = _GO_DURATION.findall(value)
    if not parts or _GO_DURATION.sub("", value):
        raise ValueError(f"{text!r} is not a duration")
    return sum(float(number) * _GO_UNITS[unit] for number, unit in parts)
