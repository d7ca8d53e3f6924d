"""Which kinds the recorder keeps watching when discovery fails (a relist would lose transitions)."""

from __future__ import annotations

import asyncio
from typing import Any

from k8sim_operator.recorder import Watches

from k8sim.kube import ResourceInfo


def info(api_version: str, kind: str, plural: str, *verbs: str) -> ResourceInfo:
    return ResourceInfo(api_version, kind, plural, True, frozenset(verbs))


SERVED = {
    "v1": [info("v1", "Pod", "pods", "list", "watch"), info("v1", "Binding", "bindings", "create")],
    "example.com/v1": [info("example.com/v1", "Widget", "widgets", "list", "watch")],
    "example.com/v1beta1": [info("example.com/v1beta1", "Widget", "widgets", "list", "watch")],
    "coordination.k8s.io/v1": [info("coordination.k8s.io/v1", "Lease", "leases", "list", "watch")],
}


class DiscoveryOnly:
    """Discovery from a table, as Kube.discover answers it; a group version in ``failing`` cannot be
    read (an apiserver under load), so its kinds are missing and it is named unreachable."""

    def __init__(self) -> None:
        self.groups = {"v1": "v1", "example.com/v1": "example.com/v1", "example.com/v1beta1": "example.com/v1",
                       "coordination.k8s.io/v1": "coordination.k8s.io/v1"}  # served → its group's preferred
        self.failing: set[str] = set()
        self.unreachable: frozenset[str] = frozenset()
        self.preferred: frozenset[str] = frozenset()
        self.calls = 0
        self.called: asyncio.Condition | None = None

    async def discover(self, refresh: bool = False) -> dict[tuple[str, str], ResourceInfo]:
        self.unreachable = frozenset(self.failing & set(self.groups))
        self.preferred = frozenset(self.groups.values())
        self.calls += 1
        if self.called is not None:
            async with self.called:
                self.called.notify_all()
        return {(i.api_version, i.kind): i for gv in self.groups if gv not in self.failing for i in SERVED[gv]}

    async def passes(self, n: int) -> None:
        """Wait until the watcher has begun n more discoveries: the pass before the last is then
        complete (a pass discovers, then starts and stops streams, then waits)."""
        assert self.called is not None
        target = self.calls + n
        async with self.called:
            await asyncio.wait_for(self.called.wait_for(lambda: self.calls >= target), 5)


class Sweeps:
    def __init__(self) -> None:
        self.requested: list[tuple[str, str]] = []

    def request_sweep(self, key: tuple[str, str]) -> None:
        self.requested.append(key)


async def _watching(kube: DiscoveryOnly, sweeps: Sweeps, rounds: list[Any]) -> list[set[tuple[str, str]]]:
    """Run the watcher's rescans; before each, ``rounds`` changes the fake cluster."""
    watches = Watches(kube, sweeps, rescan=0.01)  # type: ignore[arg-type]

    async def forever(api_version: str, kind: str) -> None:
        await asyncio.sleep(3600)

    watches.stream = forever  # type: ignore[method-assign]
    seen: list[set[tuple[str, str]]] = []
    kube.called = asyncio.Condition()
    task = asyncio.create_task(watches.run())
    for change in rounds:
        await kube.passes(2)
        seen.append({k for k, t in watches.streams.items() if not t.done()})
        change()
    await kube.passes(2)
    seen.append({k for k, t in watches.streams.items() if not t.done()})
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return seen


def test_streams_survive_a_discovery_that_could_not_read_their_group_version() -> None:
    kube, sweeps = DiscoveryOnly(), Sweeps()
    seen = asyncio.run(_watching(kube, sweeps, [lambda: kube.failing.add("v1")]))
    pods, widgets = ("v1", "Pod"), ("example.com/v1", "Widget")
    assert seen[0] == {pods, widgets}, "leases, create-only kinds and non-preferred versions are not recorded"
    assert seen[1] == {pods, widgets}, "a failed /api/v1 read must not stop (and later relist) the pod stream"
    assert sweeps.requested == []


def test_a_kind_whose_group_version_went_away_stops_and_is_swept() -> None:
    kube, sweeps = DiscoveryOnly(), Sweeps()
    def crd_deleted() -> None:
        del kube.groups["example.com/v1"], kube.groups["example.com/v1beta1"]
    seen = asyncio.run(_watching(kube, sweeps, [crd_deleted]))
    assert seen[-1] == {("v1", "Pod")}
    assert sweeps.requested == [("example.com/v1", "Widget")]


def test_an_event_becomes_a_step_of_its_object_and_round_trips_through_the_spool() -> None:
    import datetime as dt

    from k8sim import store
    now = dt.datetime(2026, 11, 28, 10, 0, tzinfo=dt.UTC)
    event = {"apiVersion": "v1", "kind": "Event", "reason": "BackOff", "type": "Warning", "count": 3,
             "message": "Back-off restarting failed container", "source": {"component": "kubelet"},
             "lastTimestamp": "2026-11-28T09:59:58Z",
             "metadata": {"name": "web-1.17f", "namespace": "t1", "uid": "e-1", "resourceVersion": "42"},
             "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": "web-1", "namespace": "t1", "uid": "p-1"}}
    obs = store.Observation.of_event(event, observed_at=now)
    assert obs is not None
    assert (obs.uid, obs.kind, obs.name, obs.namespace, obs.resource_version) == ("p-1", "Pod", "web-1", "t1", "42")
    assert obs.note == {"reason": "BackOff", "type": "Warning", "message": "Back-off restarting failed container",
                        "count": 3, "source": "kubelet", "event": "web-1.17f"}
    assert obs.created_at == dt.datetime(2026, 11, 28, 9, 59, 58, tzinfo=dt.UTC)
    assert store.Observation.from_json(obs.to_json()) == obs
    assert store.Observation.of_event({**event, "involvedObject": {"kind": "Node", "name": "n1"}},
                                      observed_at=now) is None


class Collecting(Sweeps):
    """The recorder's side of a stream: observations in the order enqueued."""

    def __init__(self) -> None:
        super().__init__()
        self.observed: list[tuple[str, str, bool]] = []  # (uid, transition kind, gone)

    def observe(self, obs: Any) -> None:
        self.observed.append((obs.uid, "note" if obs.note else "state", obs.state is None))


def obj(kind: str, uid: str, api_version: str = "v1", **extra: Any) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": {"uid": uid, "name": uid, "namespace": "t1",
                                                                  "resourceVersion": "1"}, **extra}


def test_a_stream_shows_what_exists_until_it_delivers_its_deletion() -> None:
    from k8sim_operator.recorder import Shown

    recorder = Collecting()
    watches = Watches(DiscoveryOnly(), recorder)  # type: ignore[arg-type]
    pods, shown = ("v1", "Pod"), Shown()
    watches.consume(pods, shown, "LISTED", [obj("Pod", "a"), obj("Pod", "b")])
    assert shown == {"a", "b"} and shown.listed and recorder.requested == [pods]
    watches.consume(pods, shown, "ADDED", obj("Pod", "c"))
    watches.consume(pods, shown, "DELETED", obj("Pod", "a"))
    assert shown == {"b", "c"}
    assert recorder.observed == [("a", "state", False), ("b", "state", False), ("c", "state", False),
                                 ("a", "state", True)]
    # A relist replaces what was shown: what went during the gap is the sweep's to find.
    watches.consume(pods, shown, "LISTED", [obj("Pod", "c")])
    assert shown == {"c"} and recorder.requested == [pods, pods]

    events, noted = ("v1", "Event"), Shown()
    note = obj("Event", "e1", involvedObject={"uid": "c", "kind": "Pod", "name": "c", "namespace": "t1"})
    watches.consume(events, noted, "LISTED", [note])
    watches.consume(events, noted, "ADDED", {**note, "metadata": {**note["metadata"], "uid": "e2"}})
    assert noted == set() and noted.listed, "an Event is a step of its object, not an object the sweep checks"
    assert recorder.observed[-2:] == [("c", "note", True), ("c", "note", True)]


def test_an_established_crd_is_looked_for_until_discovery_serves_its_kind() -> None:
    """Discovery serves a new CRD's kind a moment after it is established: the watcher asks again
    soon (not at the next rescan, an hour away here) until it is there, then streams it."""
    from k8sim_operator.recorder import Shown

    gadgets = ("example.org/v1", "Gadget")

    async def run() -> int:
        kube, recorder = DiscoveryOnly(), Collecting()
        watches = Watches(kube, recorder, rescan=3600)  # type: ignore[arg-type]
        streaming = asyncio.Event()

        async def forever(api_version: str, kind: str) -> None:
            if (api_version, kind) == gadgets:
                streaming.set()
            await asyncio.sleep(3600)

        watches.stream = forever  # type: ignore[method-assign]
        kube.called = asyncio.Condition()
        task = asyncio.create_task(watches.run())
        try:
            await kube.passes(1)
            crd = obj("CustomResourceDefinition", "crd-1", "apiextensions.k8s.io/v1",
                      spec={"group": "example.org", "names": {"kind": "Gadget", "plural": "gadgets"}},
                      status={"conditions": [{"type": "Established", "status": "True"}]})
            watches.consume(("apiextensions.k8s.io/v1", "CustomResourceDefinition"), Shown(), "MODIFIED", crd)
            await kube.passes(3)  # established, not served yet: discovery again and again
            assert not streaming.is_set()
            SERVED["example.org/v1"] = [info(*gadgets, "gadgets", "list", "watch")]
            kube.groups["example.org/v1"] = "example.org/v1"
            await asyncio.wait_for(streaming.wait(), 5)
            return kube.calls
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            SERVED.pop("example.org/v1", None)

    assert asyncio.run(run()) >= 5
