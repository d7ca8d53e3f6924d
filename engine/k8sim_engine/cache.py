"""The cluster as the engine sees it: a watch-fed cache per kind, not a full listing every tick.

Each :class:`Informer` lists its kind once, then watches from that resourceVersion (with
bookmarks), resuming where it stopped after a dropped stream and listing again only when the
apiserver says the version is too old (410 Gone). A tick then costs what changed, not the
size of the cluster, and the apiserver serves one watch per kind instead of a list per tick.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from k8sim.kube import Kube, KubeError

log = logging.getLogger(__name__)

#: What the engine follows: pods and nodes for the model, workloads for replicas, namespaces for tenants.
KINDS = [("v1", "Pod"), ("v1", "Node"), ("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"), ("v1", "Namespace")]


class Informer:
    """One kind's objects by uid, kept current by list-then-watch."""

    def __init__(self, kube: Kube, api_version: str, kind: str):
        self.kube, self.api_version, self.kind = kube, api_version, kind
        self.objects: dict[str, dict[str, Any]] = {}
        self.synced = asyncio.Event()
        self.version: str | None = None
        self.events = 0  # watch events applied, for benchmarks and tests
        self.lists = 0  # full listings made (1 unless the watch fell too far behind)

    def items(self) -> list[dict[str, Any]]:
        return list(self.objects.values())

    async def relist(self) -> None:
        items, self.version = await self.kube.list_versioned(self.api_version, self.kind)
        self.objects = {o["metadata"]["uid"]: o for o in items}
        self.lists += 1
        self.synced.set()

    def apply(self, event: dict[str, Any]) -> None:
        """One watch event: the object's new state, its deletion, or a bookmark's version."""
        kind, obj = event.get("type"), event.get("object") or {}
        meta = obj.get("metadata") or {}
        if kind == "ERROR":
            raise KubeError(int(obj.get("code") or 500), str(obj.get("reason", "")), str(obj.get("message", "")))
        self.version = meta.get("resourceVersion") or self.version
        if kind == "BOOKMARK":
            return
        obj.setdefault("apiVersion", self.api_version)
        obj.setdefault("kind", self.kind)
        if kind == "DELETED":
            self.objects.pop(meta.get("uid", ""), None)
        else:
            self.objects[meta["uid"]] = obj
        self.events += 1

    async def run(self) -> None:
        backoff = 0.5
        while True:
            try:
                if self.version is None:
                    await self.relist()
                async for event in self.kube.watch(self.api_version, self.kind, self.version):
                    self.apply(event)
                    backoff = 0.5
            except KubeError as exc:
                if exc.status == 410:  # our version was compacted away: start again from a listing
                    self.version = None
                    continue
                log.warning("watch of %s %s interrupted (%s); retrying in %.1f s", self.api_version, self.kind,
                            exc.message, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)


class ClusterCache:
    """An informer per kind, run as background tasks."""

    def __init__(self, kube: Kube, kinds: list[tuple[str, str]] = KINDS):
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
