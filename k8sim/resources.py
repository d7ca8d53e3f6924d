"""What pods ask of nodes and nodes offer, in numbers: Kubernetes quantities and the scheduler's view of
a pod's requests. Pure, and the foundation both the capacity views and the lifecycle history use."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes.utils.quantity import parse_quantity

GPU = "nvidia.com/gpu"


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
