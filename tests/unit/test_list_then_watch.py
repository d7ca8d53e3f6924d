"""Kube.list_then_watch, the informer loop the recorder and the engine share: when it lists again
(only on 410: a relist sees current states only), where a dropped watch resumes, when it gives up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from k8sim.kube import Kube, KubeError, UnknownKind


def pod(uid: str, rv: str) -> dict[str, Any]:
    return {"metadata": {"uid": uid, "resourceVersion": rv}}


class Scripted(Kube):
    """A Kube whose listings and watch streams come from a script, one entry per call: a list of
    events to stream (then the stream ends), or an exception the call raises. ``drained`` is set
    when the loop watches again after the last scripted stream: it has handled every event."""

    def __init__(self, lists: list[Any], watches: list[Any]):  # no kubeconfig: nothing is dialled
        self.lists, self.watches = lists, watches
        self.watched_from: list[str | None] = []
        self.drained = asyncio.Event()

    async def list_versioned(self, api_version: str, kind: str, namespace: str | None = None, *,
                             label_selector: str | None = None, field_selector: str | None = None,
                             metadata_only: bool = False) -> tuple[list[dict[str, Any]], str]:
        step = self.lists.pop(0)
        if isinstance(step, Exception):
            raise step
        items, version = step
        return list(items), str(version)

    async def watch(self, api_version: str, kind: str, resource_version: str | None, *,
                    timeout_seconds: int = 290) -> AsyncIterator[dict[str, Any]]:
        self.watched_from.append(resource_version)
        if not self.watches:
            self.drained.set()
            await asyncio.Event().wait()  # the script ran out: a quiet stream
        step = self.watches.pop(0)
        if isinstance(step, Exception):
            raise step
        for event in step:
            yield event


async def take(kube: Kube, n: int, **kwargs: Any) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    async for item in kube.list_then_watch("v1", "Pod", max_backoff=0.01, **kwargs):
        out.append(item)
        if len(out) == n:
            break
    return out


def test_a_dropped_stream_resumes_from_the_last_version_seen_bookmarks_included() -> None:
    kube = Scripted(lists=[([pod("a", "5")], "10")],
                    watches=[[{"type": "ADDED", "object": pod("b", "11")}],  # the server ends the stream
                             KubeError(503, "Unavailable", "connection reset"),
                             [{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "20"}}}],
                             [{"type": "DELETED", "object": pod("a", "21")}]])
    got = asyncio.run(take(kube, 3))
    assert [c for c, _ in got] == ["LISTED", "ADDED", "DELETED"]
    assert got[2][1] == {**pod("a", "21"), "apiVersion": "v1", "kind": "Pod"}
    assert kube.watched_from == ["10", "11", "11", "20"]
    assert kube.lists == [], "listed once: no relist for an ended or failed stream"


def test_only_a_version_too_old_lists_again() -> None:
    kube = Scripted(lists=[([pod("a", "5")], "10"), KubeError(500, "InternalError", "etcd busy"), ([], "30"),
                           ([pod("b", "35")], "40")],
                    watches=[[{"type": "ERROR", "object": {"code": 410, "reason": "Expired", "message": "too old"}}],
                             KubeError(410, "Gone", "too old"),
                             [{"type": "ADDED", "object": pod("c", "41")}]])
    got = asyncio.run(take(kube, 4))
    assert got == [("LISTED", [pod("a", "5")]), ("LISTED", []), ("LISTED", [pod("b", "35")]),
                   ("ADDED", {**pod("c", "41"), "apiVersion": "v1", "kind": "Pod"})]
    assert kube.watched_from == ["10", "30", "40"], "the failed listing was retried, not watched without a version"


def test_keep_going_decides_which_errors_end_the_iteration() -> None:
    gone = Scripted(lists=[([], "1")], watches=[UnknownKind("v1", "Pod")])
    assert asyncio.run(take(gone, 5, keep_going=lambda exc: exc.status != 404)) == [("LISTED", [])]

    flaky = Scripted(lists=[([], "1")],
                     watches=[UnknownKind("v1", "Pod"), [{"type": "ADDED", "object": pod("x", "2")}]])
    got = asyncio.run(take(flaky, 2, keep_going=lambda exc: True))
    assert [c for c, _ in got] == ["LISTED", "ADDED"] and flaky.watched_from == ["1", "1"]


def test_an_error_event_carries_its_status() -> None:
    kube = Scripted(lists=[([], "1")], watches=[[{"type": "ERROR", "object": {"code": 403, "message": "forbidden"}}]])
    seen: list[int] = []

    def keep_going(exc: KubeError) -> bool:
        seen.append(exc.status)
        return False

    assert asyncio.run(take(kube, 5, keep_going=keep_going)) == [("LISTED", [])]
    assert seen == [403]


def test_the_engine_informer_follows_the_same_loop() -> None:
    from k8sim_engine.cache import Informer

    kube = Scripted(lists=[([pod("a", "5"), pod("b", "6")], "10")],
                    watches=[[{"type": "DELETED", "object": pod("a", "11")},
                              {"type": "MODIFIED", "object": pod("b", "12")},
                              {"type": "ADDED", "object": pod("c", "13")}]])
    informer = Informer(kube, "v1", "Pod")

    async def run() -> None:
        task = asyncio.create_task(informer.run())
        await asyncio.wait_for(kube.drained.wait(), 5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(run())
    assert sorted(informer.objects) == ["b", "c"]
    assert informer.objects["b"]["metadata"]["resourceVersion"] == "12"
    assert (informer.lists, informer.events) == (1, 3)
