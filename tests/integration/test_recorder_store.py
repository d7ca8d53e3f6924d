"""The recorder's writer against PostgreSQL: a new version of an object whose row would not change
(a pod's second deletion notice, a node's heartbeat) is not written again, and nothing it should
write is skipped: a label, an owner or a state that changes is written, and the history is whole."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

from k8sim_operator.recorder import Recorder
from k8sim_operator.settings import OperatorSettings

from k8sim import lifecycle, store
from k8sim.local.settings import ClusterSettings

from .conftest import scratch_pool


def pod(rv: int, *, labels: dict[str, str], phase: str = "Running", terminating: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"uid": "u-1", "name": "web-1", "namespace": "ns1", "resourceVersion": str(rv),
                            "labels": labels, "creationTimestamp": "2026-11-28T10:00:00Z",
                            "ownerReferences": [{"kind": "ReplicaSet", "name": "web", "uid": "rs-1",
                                                 "controller": True}]}
    if terminating:
        meta["deletionTimestamp"] = "2026-11-28T10:05:00Z"
        meta["deletionGracePeriodSeconds"] = 30
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"nodeName": "n1"},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True"}]}}


def test_a_version_that_changes_nothing_recorded_is_not_written_again(settings: ClusterSettings,
                                                                       live_services: Any, tmp_path: Path) -> None:
    at = dt.datetime(2026, 11, 28, 10, 0, tzinfo=dt.UTC)

    def seen(obj: dict[str, Any], second: int, gone: bool = False) -> store.Observation:
        return store.Observation.of(obj, observed_at=at + dt.timedelta(seconds=second), gone=gone)

    async def run() -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        async with scratch_pool(settings) as pool:
            recorder = Recorder(OperatorSettings(spool=tmp_path / "spool.jsonl"), kube=None)  # type: ignore[arg-type]
            recorder.pool = pool

            async def step(*batch: store.Observation) -> None:
                await recorder._write(list(batch))
                row = await pool.fetchrow("SELECT resource_version, labels, phase, deleted_at FROM resources")
                count = await pool.fetchval("SELECT count(*) FROM resource_events")
                rows.append((row["resource_version"], row["labels"], row["phase"], row["deleted_at"] is not None,
                             count, "u-1" in recorder.written))

            await step(seen(pod(1, labels={"app": "web"}), 0))
            await step(seen(pod(2, labels={"app": "web"}), 1))  # the same facts: not written
            await step(seen(pod(3, labels={"app": "web", "v": "2"}), 2))  # a label changed
            await step(seen(pod(4, labels={"app": "web", "v": "2"}, terminating=True), 3),
                       seen(pod(5, labels={"app": "web", "v": "2"}, terminating=True), 4))
            await step(seen(pod(6, labels={"app": "web", "v": "2"}, terminating=True), 5))  # grace 0: the same
            await step(seen(pod(7, labels={"app": "web", "v": "2"}, terminating=True), 6, gone=True))
            await step(seen(pod(8, labels={"app": "web", "v": "2"}), 7))  # late: cannot resurrect it
            history = await pool.fetch("SELECT transition FROM resource_events ORDER BY id")
            transitions = [r["transition"] for r in history]
        return [*rows, tuple(transitions)]

    *rows, transitions = asyncio.run(run())
    assert rows == [
        ("1", {"app": "web"}, "Running", False, 4, True),  # created, scheduled, running, ready
        ("1", {"app": "web"}, "Running", False, 4, True),
        ("3", {"app": "web", "v": "2"}, "Running", False, 4, True),
        ("4", {"app": "web", "v": "2"}, "Terminating", False, 5, True),  # once per batch: its first
        ("4", {"app": "web", "v": "2"}, "Terminating", False, 5, True),
        ("7", {"app": "web", "v": "2"}, "Deleted", True, 6, False),
        ("7", {"app": "web", "v": "2"}, "Deleted", True, 6, False),
    ]
    assert transitions == ("created", "scheduled", "running", "ready", "terminating", "deleted")


def test_without_the_written_facts_every_version_is_written(settings: ClusterSettings, live_services: Any) -> None:
    """store.record's callers that keep no facts (the benchmark) write every version, as before."""
    at = lifecycle.now()

    async def run() -> list[str]:
        versions = []
        async with scratch_pool(settings) as pool, pool.acquire() as conn:
            prior: dict[str, lifecycle.State | None] = {}
            for rv in (1, 2):
                await store.record(conn, [store.Observation.of(pod(rv, labels={"app": "web"}), observed_at=at)], prior)
                versions.append(await conn.fetchval("SELECT resource_version FROM resources"))
        return versions

    assert asyncio.run(run()) == ["1", "2"]
