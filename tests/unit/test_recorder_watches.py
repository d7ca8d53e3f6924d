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

    async def discover(self, refresh: bool = False) -> dict[tuple[str, str], ResourceInfo]:
        self.unreachable = frozenset(self.failing & set(self.groups))
        self.preferred = frozenset(self.groups.values())
        return {(i.api_version, i.kind): i for gv in self.groups if gv not in self.failing for i in SERVED[gv]}


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
    task = asyncio.create_task(watches.run())
    for change in rounds:
        await asyncio.sleep(0.05)
        seen.append({k for k, t in watches.streams.items() if not t.done()})
        change()
    await asyncio.sleep(0.05)
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
