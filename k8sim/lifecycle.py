"""What an object's state means, and which lifecycle transitions a change amounts to.

Pure functions over plain dicts: the operator feeds them watch events, the API uses
:func:`summarise` for readiness. Nothing here talks to a server.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

TENANT_LABELS = ("ecp.ai/tenant-id", "tenant")

#: Transitions that happen at most once in an object's life.
ONCE = frozenset({"created", "scheduled", "deleted"})


@dataclasses.dataclass(frozen=True)
class State:
    """The facts of an object that its lifecycle history follows."""

    phase: str | None = None
    ready: bool | None = None
    node: str | None = None
    restarts: int = 0
    replicas: int | None = None
    ready_replicas: int | None = None
    generation: int | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> State:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})


def now() -> dt.datetime:
    """The wall clock, timezone-aware (UTC): every 'now' of the library and the operator."""
    return dt.datetime.now(dt.UTC)


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def conditions(obj: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {c.get("type", ""): c for c in (obj.get("status") or {}).get("conditions") or []}


def tenant_of(obj: Mapping[str, Any]) -> str | None:
    """A resource's tenant from its own labels (namespace and request come later)."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for key in TENANT_LABELS:
        if labels.get(key):
            return str(labels[key])
    return None


def owner_of(obj: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    owners = (obj.get("metadata") or {}).get("ownerReferences") or []
    owner = next((o for o in owners if o.get("controller")), owners[0] if owners else None)
    if not owner:
        return None, None, None
    return owner.get("kind"), owner.get("name"), owner.get("uid")


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def summarise(obj: Mapping[str, Any]) -> State:
    """The phase and readiness of any object, in its own kind's sense."""
    kind = obj.get("kind", "")
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    conds = conditions(obj)
    generation = _int(meta.get("generation"))
    terminating = bool(meta.get("deletionTimestamp"))

    def cond_true(name: str) -> bool | None:
        return None if name not in conds else conds[name].get("status") == "True"

    if kind == "Pod":
        statuses = (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or [])
        restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
        phase = "Terminating" if terminating else status.get("phase", "Pending")
        reason = status.get("reason")
        if not reason and phase == "Pending" and conds.get("PodScheduled", {}).get("status") == "False":
            reason = conds["PodScheduled"].get("reason")
        return State(phase=phase, ready=bool(cond_true("Ready")), node=spec.get("nodeName"), restarts=restarts,
                     generation=generation, reason=reason)
    if kind in ("Deployment", "ReplicaSet", "StatefulSet", "ReplicationController"):
        desired = _int(spec.get("replicas"))
        desired = 1 if desired is None else desired
        ready_n = _int(status.get("readyReplicas")) or 0
        available = _int(status.get("availableReplicas")) or 0
        updated = _int(status.get("updatedReplicas"))
        observed = _int(status.get("observedGeneration")) or 0
        current = observed >= (generation or 0)
        is_ready = current and available >= desired and ready_n >= desired
        if kind in ("Deployment", "StatefulSet") and updated is not None:
            is_ready = is_ready and updated >= desired
        if kind == "Deployment" and cond_true("ReplicaFailure"):
            phase, reason = "Failed", conds["ReplicaFailure"].get("reason")
        elif is_ready:
            phase, reason = "Available", None
        else:
            phase = "Progressing"
            reason = conds.get("Progressing", {}).get("reason")
            if conds.get("Progressing", {}).get("reason") == "ProgressDeadlineExceeded":
                phase = "Failed"
        return State(phase="Terminating" if terminating else phase, ready=is_ready, replicas=desired,
                     ready_replicas=ready_n, generation=generation, reason=reason)
    if kind == "DaemonSet":
        desired = _int(status.get("desiredNumberScheduled")) or 0
        ready_n = _int(status.get("numberReady")) or 0
        is_ready = ready_n >= desired and (_int(status.get("observedGeneration")) or 0) >= (generation or 0)
        return State(phase="Available" if is_ready else "Progressing", ready=is_ready, replicas=desired,
                     ready_replicas=ready_n, generation=generation)
    if kind == "Job":
        if cond_true("Complete"):
            phase = "Complete"
        elif cond_true("Failed"):
            phase = "Failed"
        elif spec.get("suspend"):
            phase = "Suspended"
        else:
            phase = "Running" if (_int(status.get("active")) or 0) > 0 else "Pending"
        reason = conds.get("Failed", {}).get("reason") if phase == "Failed" else None
        return State(phase=phase, ready=phase == "Complete", generation=generation, reason=reason,
                     replicas=_int(spec.get("completions")), ready_replicas=_int(status.get("succeeded")) or 0)
    if kind == "CronJob":
        phase = "Suspended" if spec.get("suspend") else "Active"
        return State(phase=phase, ready=True, generation=generation)
    if kind == "PersistentVolumeClaim":
        phase = status.get("phase", "Pending")
        return State(phase=phase, ready=phase == "Bound", generation=generation)
    if kind == "PersistentVolume":  # an Available volume is ready to be claimed
        phase = status.get("phase", "Pending")
        return State(phase=phase, ready=phase in ("Available", "Bound"), generation=generation)
    if kind == "Namespace":
        return State(phase=status.get("phase", "Active"), ready=status.get("phase", "Active") == "Active")
    if kind == "Node":
        return State(phase="Ready" if cond_true("Ready") else "NotReady", ready=bool(cond_true("Ready")))
    if kind == "Service":
        is_lb = spec.get("type") == "LoadBalancer"
        has_ip = bool(spec.get("clusterIP")) or spec.get("type") == "ExternalName"
        lb_ready = bool((status.get("loadBalancer") or {}).get("ingress"))
        is_ready = has_ip and (lb_ready or not is_lb)
        return State(phase="Active" if is_ready else "Pending", ready=is_ready, generation=generation)
    if kind == "Ingress":
        has_address = bool((status.get("loadBalancer") or {}).get("ingress"))
        return State(phase="Active" if has_address else "Pending", ready=has_address, generation=generation)
    if kind == "HorizontalPodAutoscaler":
        able = cond_true("AbleToScale")
        active = cond_true("ScalingActive")
        reason = conds.get("ScalingActive", {}).get("reason") if active is False else None
        if able is False:
            reason = conds["AbleToScale"].get("reason")
        return State(phase="Active" if able else "Pending", ready=bool(able),
                     replicas=_int(status.get("desiredReplicas")), ready_replicas=_int(status.get("currentReplicas")),
                     generation=generation, reason=reason)
    if kind == "CustomResourceDefinition":
        return State(phase="Established" if cond_true("Established") else "Pending",
                     ready=bool(cond_true("Established")), generation=generation)
    phase = status.get("phase") if isinstance(status.get("phase"), str) else None
    return State(phase=phase or ("Terminating" if terminating else "Active"), ready=None, generation=generation)


@dataclasses.dataclass(frozen=True)
class Transition:
    name: str
    detail: dict[str, Any]


def transitions(before: State | None, after: State | None) -> list[Transition]:
    """The lifecycle steps between two observed states (``None``: absent / deleted)."""
    if after is None:
        return [] if before is None else [Transition("deleted", {"phase": before.phase})]
    steps: list[Transition] = []
    prior = before or State()
    if before is None:
        steps.append(Transition("created", {"phase": after.phase}))
    if after.node and after.node != prior.node:
        steps.append(Transition("scheduled", {"node": after.node}))
    if before is not None and after.replicas != before.replicas and after.replicas is not None:
        steps.append(Transition("scaled", {"from": before.replicas, "to": after.replicas}))
    if before is not None and after.generation and before.generation and after.generation > before.generation:
        steps.append(Transition("updated", {"generation": after.generation}))
    if after.phase != prior.phase and after.phase and not (before is None and after.phase == "Active"):
        detail: dict[str, Any] = {"from": prior.phase, "to": after.phase}
        if after.reason:
            detail["reason"] = after.reason
        steps.append(Transition(after.phase.lower(), detail))
    if after.restarts > prior.restarts:
        steps.append(Transition("restarted", {"restarts": after.restarts}))
    if after.ready is True and prior.ready is not True:
        steps.append(Transition("ready", {}))
    elif after.ready is False and prior.ready is True:
        steps.append(Transition("not_ready", {"reason": after.reason} if after.reason else {}))
    return steps
