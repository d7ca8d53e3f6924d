"""Removing a tenant: start every deletion, wait briefly, report what is still going.

A namespace takes the namespace controller seconds to empty (pods terminate, then everything else
in it), more the more it holds; ECP-AI's tenant removal gives the call 10 seconds and counts only
a 200. So the answer waits a bounded few seconds, then says what is still terminating; the
deletion goes on in the cluster, and a later listing (or a second delete) shows it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterable, Mapping
from typing import Any

from k8sim import inventory, lifecycle
from k8sim.kube import Kube, KubeError

#: Seconds between two looks at what is left during the wait.
POLL = 0.3


@dataclasses.dataclass(frozen=True)
class Pending:
    """An object not gone yet, and why when the cluster says (a namespace's conditions, finalizers)."""

    id: str
    reason: str | None = None


@dataclasses.dataclass
class Removal:
    """What a tenant delete did: every object it targeted (ids), how many are gone, what is not yet."""

    tenant: str
    resources: list[str]
    deleted_count: int
    pending_count: int
    pending: list[Pending]
    kept_namespaces: list[str]

    @property
    def message(self) -> str | None:
        notes = [f"{p.id}: {p.reason}" for p in self.pending if p.reason]
        if self.pending_count and not notes:
            notes.append(f"{self.pending_count} object(s) still terminating; their deletion goes on")
        if self.kept_namespaces:
            notes.append(f"kept the cluster's namespaces {', '.join(self.kept_namespaces)} (labelled for this tenant)")
        return "; ".join(notes) or None


def _key(obj: Mapping[str, Any]) -> tuple[str, str, str, str | None]:
    meta = obj["metadata"]
    return obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace")


def pending_reason(obj: Mapping[str, Any]) -> str | None:
    """Why an object a delete left is still there: a Terminating namespace's true conditions (for
    example NamespaceDeletionDiscoveryFailure while an aggregated API is unavailable), else its finalizers."""
    troubles = [f"{c.get('type')}: {c.get('message', '')}".strip()
                for c in (obj.get("status") or {}).get("conditions") or [] if c.get("status") == "True"]
    if troubles:
        return "; ".join(troubles)
    finalizers = (obj.get("metadata") or {}).get("finalizers") or (obj.get("spec") or {}).get("finalizers")
    return f"waiting for finalizers: {', '.join(finalizers)}" if finalizers else None


async def _delete(kube: Kube, obj: Mapping[str, Any]) -> None:
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return  # already going; deleting a terminating namespace again is a 409
    try:
        await kube.delete(*_key(obj))
    except KubeError as exc:
        if exc.status != 409:  # a namespace that started terminating since we listed it
            raise


async def remove(kube: Kube, tenant: str, found: Iterable[Mapping[str, Any]], *, wait: float) -> Removal:
    """Delete a tenant's objects (``found``, as listed), waiting at most ``wait`` seconds for them to go.

    Objects in one of the tenant's namespaces go with it (the namespace controller deletes them),
    so the calls made do not grow with what the namespaces hold; objects elsewhere (cluster-scoped,
    in shared namespaces) are deleted first, one by one. The cluster's own namespaces are never
    deleted, even labelled for a tenant; what the tenant put in them is.
    """
    targets = {o["metadata"]["uid"]: o for o in found}
    system = [uid for uid, o in targets.items()
              if o["kind"] == "Namespace" and o["metadata"]["name"] in lifecycle.SYSTEM_NAMESPACES]
    kept = sorted(targets.pop(uid)["metadata"]["name"] for uid in system)
    if not targets:
        return Removal(tenant, [], 0, 0, [], kept)
    namespaces = [o for o in targets.values() if o["kind"] == "Namespace"]
    names = {o["metadata"]["name"] for o in namespaces}
    outside = [o for o in targets.values() if o["kind"] != "Namespace" and o["metadata"].get("namespace") not in names]
    await asyncio.gather(*(_delete(kube, o) for o in outside))
    await asyncio.gather(*(_delete(kube, o) for o in namespaces))

    watched: list[Mapping[str, Any]] = [*outside, *namespaces]
    deadline = time.monotonic() + wait
    while True:
        current = await asyncio.gather(*(kube.get(*_key(o)) for o in watched))
        watched = [c for c in current if c is not None]
        if not watched or time.monotonic() >= deadline:
            break
        await asyncio.sleep(min(POLL, max(deadline - time.monotonic(), 0.0)))

    left = {o["metadata"]["name"] for o in watched if o["kind"] == "Namespace"}
    inside_left = sum(1 for o in targets.values() if o["kind"] != "Namespace"
                      and o["metadata"].get("namespace") in left)
    pending = [Pending(inventory.describe(o)["id"], pending_reason(o)) for o in watched]
    pending_count = len(watched) + inside_left
    return Removal(tenant, sorted(inventory.describe(o)["id"] for o in targets.values()),
                   len(targets) - pending_count, pending_count, pending, kept)
