"""Where each kind's stream is, as the recorder commits it: a mark after the observations it covers,
held back from a listing until its sweep has run; and replays that record nothing twice."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

from k8sim_operator.recorder import Mark, Recorder, Shown, Watches, _fresh, _item
from k8sim_operator.settings import OperatorSettings

from k8sim import store

POD = ("v1", "Pod")
NOW = dt.datetime(2026, 11, 28, 10, 0, tzinfo=dt.UTC)


def pod(uid: str, rv: str, phase: str = "Pending") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "status": {"phase": phase},
            "metadata": {"uid": uid, "name": uid, "namespace": "t1", "resourceVersion": rv}}


def queued(recorder: Recorder) -> list[Any]:
    items = []
    while not recorder.queue.empty():
        items.append(recorder.queue.get_nowait())
    return items


def described(items: list[Any]) -> list[tuple[str, str]]:
    return [("mark", i.version) if isinstance(i, Mark) else (i.uid, i.resource_version) for i in items]


def test_a_listing_holds_its_kinds_marks_until_its_sweep_and_bookmarks_move_them(tmp_path: Path) -> None:
    recorder = Recorder(OperatorSettings(spool=tmp_path / "spool.jsonl"), kube=None)
    recorder.cluster = "c1"
    watches = Watches(None, recorder)
    shown = recorder.streamed[POD] = Shown()
    watches.consume(POD, shown, "LISTED", [pod("a", "90"), pod("b", "95")], "100")
    watches.consume(POD, shown, "ADDED", pod("c", "101"), "101")
    assert described(queued(recorder)) == [("a", "90"), ("b", "95"), ("c", "101")], "no mark before the sweep"
    assert shown.unswept == 1 and shown.listed_at == 0

    recorder._swept(POD, {POD: (1, shown.listed_at)}, settled=recorder.enqueued)
    assert [(m.cluster, m.api_version, m.kind, m.version) for m in queued(recorder)] == [("c1", "v1", "Pod", "101")]
    watches.consume(POD, shown, "BOOKMARK", {"kind": "Pod", "metadata": {"resourceVersion": "105"}}, "105")
    watches.consume(POD, shown, "MODIFIED", pod("c", "106", "Running"), "106")
    assert described(queued(recorder)) == [("mark", "105"), ("c", "106"), ("mark", "106")]

    # A relist whose predecessors are not in the store yet: its sweep is done again, later.
    watches.consume(POD, shown, "LISTED", [pod("c", "106", "Running")], "110")
    recorder._swept(POD, {POD: (shown.unswept, shown.listed_at)}, settled=shown.listed_at - 1)
    assert shown.unswept == 2 and recorder._deferred == {POD}
    assert described(queued(recorder)) == [("c", "106")]
    # A sweep that began before a newer listing does not answer it.
    recorder._swept(POD, {POD: (1, 0)}, settled=recorder.enqueued)
    assert shown.unswept == 2


def test_a_replay_changes_to_before_the_start_are_reconciled(tmp_path: Path) -> None:
    recorder = Recorder(OperatorSettings(spool=tmp_path / "spool.jsonl"), kube=None)
    recorder.cluster = "c1"
    watches = Watches(None, recorder)
    watches.since = 200
    shown = recorder.streamed[POD] = Shown()
    watches.consume(POD, shown, "MODIFIED", pod("a", "199"), "199")
    watches.consume(POD, shown, "MODIFIED", pod("a", "200"), "200")
    watches.consume(POD, shown, "MODIFIED", pod("a", "201"), "201")
    observed = [i for i in queued(recorder) if isinstance(i, store.Observation)]
    assert [(o.resource_version, o.reconciled) for o in observed] == [("199", True), ("200", True), ("201", False)]


def test_marks_round_trip_through_the_spool(tmp_path: Path) -> None:
    recorder = Recorder(OperatorSettings(spool=tmp_path / "spool.jsonl"), kube=None)
    items = [store.Observation.of(pod("a", "7"), observed_at=NOW), Mark("c1", "v1", "Pod", "7")]
    recorder._append_spool(items)
    lines = recorder.spool.read_text().splitlines()
    assert [_item(json.loads(line)) for line in lines] == items


def test_a_replayed_version_is_no_news_but_a_deletion_always_is() -> None:
    def obs(uid: str, rv: str, gone: bool = False) -> store.Observation:
        return store.Observation.of(pod(uid, rv), observed_at=NOW, gone=gone)

    versions = {"a": 10}
    kept = _fresh([obs("a", "9"), obs("a", "10"), obs("a", "11"), obs("a", "11"), obs("b", "3"), obs("a", "10", True)],
                  versions)
    assert [(o.uid, o.resource_version, o.state is None) for o in kept] == [
        ("a", "11", False), ("b", "3", False), ("a", "10", True)]
    assert versions == {"a": 11, "b": 3}


def test_without_postgresql_a_start_resumes_from_the_spools_marks_of_its_own_cluster(tmp_path: Path) -> None:
    """PostgreSQL down at start: what a spooled mark covers is in the spool, so its kind goes on from
    there; a kind the spool has no mark of lists; another cluster's marks are not this one's."""
    async def run() -> dict[tuple[str, str], str]:
        recorder = Recorder(OperatorSettings(spool=tmp_path / "spool.jsonl"), kube=None)
        recorder._append_spool([store.Observation.of(pod("a", "7"), observed_at=NOW), Mark("c1", "v1", "Pod", "7"),
                                Mark("c2", "v1", "Pod", "900"), Mark("c1", "apps/v1", "Deployment", "8"),
                                store.Observation.of(pod("a", "9"), observed_at=NOW), Mark("c1", "v1", "Pod", "9")])
        found: dict[tuple[str, str], str] = await recorder.resume_points("c1", wait=0.05)
        return found

    assert asyncio.run(run()) == {("v1", "Pod"): "9", ("apps/v1", "Deployment"): "8"}
