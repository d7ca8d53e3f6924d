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


def test_tenants_are_inherited_within_one_batch_exactly(settings: ClusterSettings, live_services: Any) -> None:
    """A batch written in one go still gives each object the tenant it inherits from rows of the same
    batch: its namespace's (tenants t1 and t10 collide as substrings), its owner's, its owner's owner's,
    or the deploy request's; a label of its own wins; its history rows carry the same tenant."""
    at = lifecycle.now()

    def obj(kind: str, name: str, namespace: str, uid: str, *, owner: tuple[str, str] | None = None,
            tenant: str | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {"uid": uid, "name": name, "resourceVersion": "1", "labels": {"app": name},
                                "creationTimestamp": "2026-11-28T10:00:00Z"}
        if namespace:
            meta["namespace"] = namespace
        if owner:
            meta["ownerReferences"] = [{"kind": owner[0], "name": owner[0].lower(), "uid": owner[1],
                                        "controller": True}]
        if tenant:
            meta["labels"]["tenant"] = tenant
        api = {"Deployment": "apps/v1", "ReplicaSet": "apps/v1"}.get(kind, "v1")
        return {"apiVersion": api, "kind": kind, "metadata": meta, "status": {}}

    objects = []  # the hardest order: every heir before what it inherits from
    for ns in ("app-t1", "app-t10"):
        objects += [obj("Pod", "web-1", ns, f"{ns}-pod", owner=("ReplicaSet", f"{ns}-rs")),
                    obj("ReplicaSet", "web-1a", ns, f"{ns}-rs", owner=("Deployment", f"{ns}-dep")),
                    obj("Deployment", "web", ns, f"{ns}-dep")]
    objects += [obj("Pod", "own-1", "app-t1", "labelled-pod", tenant="t10"),  # its own label wins
                obj("Pod", "api-1", "shared", "shared-pod", owner=("ReplicaSet", "shared-rs")),
                obj("ReplicaSet", "api-1a", "shared", "shared-rs", owner=("Deployment", "shared-dep")),
                obj("Deployment", "api", "shared", "shared-dep"),  # made by t10's deploy request
                obj("Pod", "lone-1", "shared", "lone-pod"),  # no tenant anywhere
                obj("Namespace", "app-t1", "", "ns-t1", tenant="t1"),
                obj("Namespace", "app-t10", "", "ns-t10", tenant="t10"),
                obj("Namespace", "shared", "", "ns-shared")]
    event = {"apiVersion": "v1", "kind": "Event", "reason": "Scheduled", "type": "Normal",
             "metadata": {"uid": "ev-1", "name": "web-1.1", "namespace": "app-t10", "resourceVersion": "2"},
             "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "app-t10", "uid": "app-t10-pod"}}

    async def run() -> tuple[dict[str, str | None], dict[tuple[str, str], str | None]]:
        async with scratch_pool(settings) as pool, pool.acquire() as conn:
            await store.create_deployment(conn, tenant="t10", namespace="shared", mode="create", manifest="",
                                          objects=[("apps/v1", "Deployment", "shared", "api")])
            batch = [store.Observation.of(o, observed_at=at) for o in objects]
            note = store.Observation.of_event(event, observed_at=at)
            assert note is not None
            async with conn.transaction():
                await store.record(conn, [*batch, note], {})
            rows = {r["uid"]: r["tenant"] for r in await conn.fetch("SELECT uid, tenant FROM resources")}
            steps = {(r["uid"], r["transition"]): r["tenant"]
                     for r in await conn.fetch("SELECT uid, transition, tenant FROM resource_events")}
            return rows, steps

    rows, steps = asyncio.run(run())
    assert rows == {"app-t1-pod": "t1", "app-t1-rs": "t1", "app-t1-dep": "t1",
                    "app-t10-pod": "t10", "app-t10-rs": "t10", "app-t10-dep": "t10",
                    "labelled-pod": "t10", "shared-pod": "t10", "shared-rs": "t10", "shared-dep": "t10",
                    "lone-pod": None, "ns-t1": "t1", "ns-t10": "t10", "ns-shared": None}
    assert {uid: tenant for (uid, transition), tenant in steps.items() if transition == "created"} == rows
    assert steps[("app-t10-pod", "event")] == "t10"
