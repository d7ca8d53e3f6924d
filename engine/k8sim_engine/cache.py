"""The cluster as the engine sees it: a watch-fed cache per kind, not a full listing every tick.

Each :class:`Informer` follows :meth:`Kube.list_then_watch`: one listing, then a watch from its
resourceVersion (with bookmarks), resuming where it stopped after a dropped stream and listing
again only when the apiserver says the version is too old (410 Gone). A tick then costs what changed, not the
size of the cluster, and the apiserver serves one watch per kind instead of a list per tick.
"""

from __future__ import annotations

import asyncio
from typing import Any

from k8sim.kube import Kube

#: What the model reads each tick: pods and nodes, workloads for replicas, namespaces for tenants.
KINDS = [("v1", "Pod"), ("v1", "Node"), ("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"), ("v1", "Namespace")]
#: What the cache follows: the model's kinds, and volumes for what they cost.
WATCHED = [*KINDS, ("v1", "PersistentVolume")]


def _slim(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without its managedFields, which nothing here reads (a large part of a pod's
    size: less to keep, and less for the garbage collector to walk, at thousands of pods)."""
    (obj.get("metadata") or {}).pop("managedFields", None)
    return obj


class Informer:
    """One kind's objects by uid, kept current by list-then-watch."""

    def __init__(self, kube: Kube, api_version: str, kind: str):
        self.kube, self.api_version, self.kind = kube, api_version, kind
        self.objects: dict[str, dict[str, Any]] = {}
        self.synced = asyncio.Event()
        self.events = 0  # watch events applied, for benchmarks and tests
        self.lists = 0  # full listings made (1 unless the watch fell too far behind)

    def items(self) -> list[dict[str, Any]]:
        return list(self.objects.values())

    def apply(self, change: str, payload: Any) -> None:
        """One step of :meth:`Kube.list_then_watch`: a whole listing, an object's new state, or its deletion."""
        if change == "LISTED":
            self.objects = {o["metadata"]["uid"]: _slim(o) for o in payload}
            self.lists += 1
            self.synced.set()
        elif change == "DELETED":
            self.objects.pop((payload.get("metadata") or {}).get("uid", ""), None)
            self.events += 1
        else:
            self.objects[payload["metadata"]["uid"]] = _slim(payload)
            self.events += 1

    async def run(self) -> None:
        async for change, payload in self.kube.list_then_watch(self.api_version, self.kind):
            self.apply(change, payload)


class ClusterCache:
    """An informer per kind, run as background tasks."""

    def __init__(self, kube: Kube, kinds: list[tuple[str, str]] = WATCHED):
        self.informers = {kind: Informer(kube, av, kind) for av, kind in kinds}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(i.run(), name=f"watch {k}") for k, i in self.informers.items()]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def synced(self) -> bool:
        return all(i.synced.is_set() for i in self.informers.values())

    def items(self, kind: str) -> list[dict[str, Any]]:
        return self.informers[kind].items()
