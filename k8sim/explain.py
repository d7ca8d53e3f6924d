"""Why an object is not ready, in the words kubectl describe would use.

The cluster already knows: the newest Warning event of the object, of the ReplicaSets or
Jobs it owns and of its pods (FailedScheduling, FailedCreate, BackOff …), and how many of
its pods are pending or unschedulable (else the pods' own conditions, when no event has come
yet). :class:`Explainer` reads Warning events, pods and ReplicaSets once per namespace and per
call, so explaining a whole listing costs at most three requests per namespace.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from k8sim import lifecycle
from k8sim.kube import Kube, KubeError

#: Kinds whose pods (and owned ReplicaSets or Jobs) explain their readiness.
WORKLOADS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController"})


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions) against an object's labels."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return bool(selector.get("matchLabels") or selector.get("matchExpressions"))


def event_time(event: Mapping[str, Any]) -> str:
    return str(event.get("lastTimestamp") or event.get("eventTime")
               or (event.get("metadata") or {}).get("creationTimestamp") or "")


def newest_warning(events: Sequence[Mapping[str, Any]], uids: set[str]) -> Mapping[str, Any] | None:
    mine = [e for e in events if (e.get("involvedObject") or {}).get("uid") in uids]
    return max(mine, key=event_time) if mine else None


def pod_counts(pods: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    """(pending, unschedulable) among these pods."""
    pending = [p for p in pods if (p.get("status") or {}).get("phase", "Pending") == "Pending"]
    unschedulable = [p for p in pending
                     if lifecycle.conditions(p).get("PodScheduled", {}).get("reason") == "Unschedulable"]
    return len(pending), len(unschedulable)


def pod_trouble(pods: Sequence[Mapping[str, Any]]) -> dict[str, str] | None:
    """What the pods' own status says when no event does (yet): a scheduling condition or a
    container's waiting reason, as kubectl describe shows them."""
    for pod in pods:
        status = pod.get("status") or {}
        scheduled = lifecycle.conditions(pod).get("PodScheduled", {})
        if scheduled.get("status") == "False" and scheduled.get("message"):
            return {"reason": str(scheduled.get("reason") or "Unschedulable"), "message": str(scheduled["message"])}
        for container in status.get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") not in (None, "ContainerCreating", "PodInitializing"):
                return {"reason": str(waiting["reason"]), "message": str(waiting.get("message") or "")}
    return None


def compose(event: Mapping[str, Any] | None, pending: int, unschedulable: int) -> str | None:
    """'FailedScheduling: 0/18 nodes are available: … (2 pods pending, 2 unschedulable)'."""
    parts = []
    if event is not None:
        parts.append(f"{event.get('reason', 'Warning')}: {str(event.get('message', '')).strip()}")
    if pending:
        parts.append(f"({pending} pod{'s' if pending != 1 else ''} pending"
                     + (f", {unschedulable} unschedulable)" if unschedulable else ")"))
    return " ".join(parts) or None


class Explainer:
    """Reasons for objects of one moment; caches each namespace's Warning events and pods."""

    def __init__(self, kube: Kube):
        self.kube = kube
        self._events: dict[str, list[dict[str, Any]]] = {}
        self._objects: dict[tuple[str, str, str], list[dict[str, Any]]] = {}

    async def _list(self, api_version: str, kind: str, namespace: str) -> list[dict[str, Any]]:
        key = (api_version, kind, namespace)
        if key not in self._objects:
            try:
                self._objects[key] = await self.kube.list(api_version, kind, namespace)
            except KubeError:
                self._objects[key] = []
        return self._objects[key]

    async def _warnings(self, namespace: str) -> list[dict[str, Any]]:
        if namespace not in self._events:
            try:
                self._events[namespace] = await self.kube.list("v1", "Event", namespace,
                                                               field_selector="type=Warning")
            except KubeError:
                self._events[namespace] = []
        return self._events[namespace]

    async def reason(self, obj: Mapping[str, Any]) -> str | None:
        """Why this object is not ready (None when the cluster says nothing)."""
        meta = obj.get("metadata") or {}
        kind, namespace, uid = obj.get("kind", ""), meta.get("namespace") or "", meta.get("uid", "")
        if not namespace:
            return None
        uids = {uid}
        pods: list[dict[str, Any]] = []
        if kind == "Pod":
            pods = [dict(obj)]
        elif kind in WORKLOADS:
            selector = (obj.get("spec") or {}).get("selector") or {}
            if kind == "Deployment":
                owned = [rs for rs in await self._list("apps/v1", "ReplicaSet", namespace)
                         if lifecycle.owner_of(rs)[2] == uid]
                uids |= {rs["metadata"]["uid"] for rs in owned}
            pods = [p for p in await self._list("v1", "Pod", namespace)
                    if selector_matches(selector, (p.get("metadata") or {}).get("labels") or {})]
            if kind == "Job":
                pods = [p for p in pods if lifecycle.owner_of(p)[2] == uid] or pods
        else:
            event = newest_warning(await self._warnings(namespace), uids)
            return compose(event, 0, 0)
        uids |= {p["metadata"]["uid"] for p in pods}
        event = newest_warning(await self._warnings(namespace), uids) or pod_trouble(pods)
        pending, unschedulable = pod_counts(pods)
        return compose(event, pending, unschedulable)
