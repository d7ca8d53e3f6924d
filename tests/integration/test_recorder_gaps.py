"""Where the recorder could lose a step it saw: a sweep that overtakes the stream still delivering
an object's changes, and a writer stopped while it holds a batch. Real apiserver, real PostgreSQL;
the only thing the test controls is when the stream's items reach the recorder (as a busy operator
or a reconnecting watch delays them)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml
from k8sim_operator.recorder import Recorder, Shown, Watches
from k8sim_operator.settings import OperatorSettings

from k8sim import lifecycle, store
from k8sim.kube import Kube
from k8sim.local.settings import ClusterSettings

from .conftest import Kubectl, scratch_pool

POD = ("v1", "Pod")


async def transitions(pool: Any, uid: str) -> list[str]:
    rows = await pool.fetch("SELECT transition FROM resource_events WHERE uid = $1 AND transition <> 'event' "
                            "ORDER BY id", uid)
    return [r["transition"] for r in rows]


def test_a_sweep_leaves_an_object_its_stream_has_not_finished_delivering(
        live_cluster: ClusterSettings, live_services: Any, kubectl: Kubectl, namespace: str, tmp_path: Path) -> None:
    """The PostgreSQL-outage test once found a pod without `running`: a sweep lists the cluster
    faster than a stream delivers, so it found the deleted pod gone while the stream still held its
    running, ready, terminating and deleted changes; its deletion went first and the writer dropped
    the rest (a late change cannot resurrect a deleted row)."""
    manifest = yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "late"},
                               "spec": {"containers": [{"name": "app", "image": "app:1"}]}})

    async def run() -> tuple[int, list[str]]:
        kube = Kube(live_cluster.kubeconfig)
        buffered: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        async def stream() -> None:  # the real stream, held back until the test delivers it
            async for change, payload in kube.list_then_watch(*POD):
                if change == "LISTED":
                    await buffered.put((change, [p for p in payload if p["metadata"]["namespace"] == namespace]))
                elif payload["metadata"]["namespace"] == namespace:
                    await buffered.put((change, payload))

        async def deliver(until: Any) -> None:
            while True:
                change, payload = await asyncio.wait_for(buffered.get(), 60)
                watches.consume(POD, shown, change, payload)
                if until(change, payload):
                    return

        watching = asyncio.create_task(stream())
        try:
            async with scratch_pool(live_cluster) as pool:
                recorder = Recorder(OperatorSettings(spool=tmp_path / "spool.jsonl"), kube)
                recorder.pool = pool
                watches = Watches(kube, recorder)
                shown = recorder.streamed[POD] = Shown()
                writer = asyncio.create_task(recorder.run())
                await deliver(lambda change, _: change == "LISTED")
                await asyncio.to_thread(kubectl, "apply", "-n", namespace, "-f", "-", stdin=manifest)
                await asyncio.to_thread(kubectl, "wait", "-n", namespace, "pod/late", "--for=condition=Ready",
                                        "--timeout=60s")
                # Delivered up to its scheduling; its start and its end stay in the stream.
                await deliver(lambda _, pod: pod["spec"].get("nodeName"))
                assert await recorder.drained(30)
                uid = (await kube.get("v1", "Pod", "late", namespace))["metadata"]["uid"]  # type: ignore[index]
                assert await transitions(pool, uid) == ["created", "pending", "scheduled"]
                await asyncio.to_thread(kubectl, "delete", "-n", namespace, "pod/late", "--wait=true")
                found = await recorder.sweep({POD})
                await deliver(lambda change, _: change == "DELETED")
                assert await recorder.drained(30)
                writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)
                return found, await transitions(pool, uid)
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
            await kube.close()

    found, steps = asyncio.run(run())
    assert found == 0, "the pod's stream had not delivered its deletion yet: not the sweep's to record"
    assert steps == ["created", "pending", "scheduled", "running", "ready", "updated", "terminating", "deleted"]


def test_a_sweep_records_what_went_before_its_stream_listed(
        live_cluster: ClusterSettings, live_services: Any, kubectl: Kubectl, namespace: str, tmp_path: Path) -> None:
    """What a stream has not shown (gone during a gap, before its listing) is the sweep's to record."""
    async def run() -> tuple[int, list[str]]:
        kube = Kube(live_cluster.kubeconfig)
        try:
            async with scratch_pool(live_cluster) as pool:
                recorder = Recorder(OperatorSettings(spool=tmp_path / "spool.jsonl"), kube)
                recorder.pool = pool
                now = lifecycle.now()
                gone = {"apiVersion": "v1", "kind": "Pod", "spec": {"nodeName": "n1"}, "status": {"phase": "Running"},
                        "metadata": {"uid": "gone-while-unwatched", "name": "old", "namespace": namespace,
                                     "resourceVersion": "1", "creationTimestamp": "2026-11-28T10:00:00Z"}}
                await recorder._write([store.Observation.of(gone, observed_at=now)])
                shown = recorder.streamed[POD] = Shown()
                found_unlisted = await recorder.sweep({POD})
                Watches(kube, recorder).consume(POD, shown, "LISTED", [])
                found = await recorder.sweep({POD})
                await recorder._write([recorder.queue.get_nowait() for _ in range(recorder.queue.qsize())])
                assert found_unlisted == 0, "before its stream listed, the sweep does not guess"
                return found, await transitions(pool, "gone-while-unwatched")
        finally:
            await kube.close()

    found, steps = asyncio.run(run())
    assert found == 1
    assert steps == ["created", "scheduled", "running", "deleted"]


def test_a_writer_stopped_while_it_holds_a_batch_spools_it(
        live_cluster: ClusterSettings, live_services: Any, tmp_path: Path) -> None:
    """Observations taken from the queue but not committed when the operator stops are spooled with
    the queue, and written by the next writer: the history is whole."""
    spool = tmp_path / "spool.jsonl"

    def pod(rv: int, phase: str, ready: bool) -> store.Observation:
        return store.Observation.of({
            "apiVersion": "v1", "kind": "Pod", "spec": {"nodeName": "n1"},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
            "metadata": {"uid": "held-1", "name": "held", "namespace": "t1", "resourceVersion": str(rv),
                         "creationTimestamp": "2026-11-28T10:00:00Z"}}, observed_at=lifecycle.now())

    async def run() -> tuple[int, list[str]]:
        async with scratch_pool(live_cluster) as pool:
            first = Recorder(OperatorSettings(spool=spool), kube=None)  # type: ignore[arg-type]
            first.pool = pool
            first.observe(pod(1, "Pending", False))
            writer = asyncio.create_task(first.run())
            assert await first.drained(30)
            async with pool.acquire() as blocker, blocker.transaction():
                # The writer's next statement waits for this lock: it holds its batch, uncommitted.
                await blocker.execute("LOCK TABLE resources IN ACCESS EXCLUSIVE MODE")
                first.observe(pod(2, "Running", True))
                # PostgreSQL says when the writer waits (asked outside the transaction, whose view is frozen).
                while not await pool.fetchval(  # noqa: ASYNC110
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database()"):
                    await asyncio.sleep(0.05)
                writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)
                first.pool = None  # the stopped operator's pool goes with it (terminated below)
                await first.close()
            spooled = len(spool.read_text().splitlines()) if spool.exists() else 0
            second = Recorder(OperatorSettings(spool=spool), kube=None)  # type: ignore[arg-type]
            second.pool = pool
            writer = asyncio.create_task(second.run())
            assert await second.drained(30)
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            return spooled, await transitions(pool, "held-1")

    spooled, steps = asyncio.run(run())
    assert spooled == 1
    assert steps == ["created", "scheduled", "pending", "running", "ready"]
