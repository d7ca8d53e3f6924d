"""The recorder resumes each kind's watch where its committed history ends: a kill -9 loses nothing
that happened before it or while the operator was dead (real apiserver, real PostgreSQL, the
operator as a real process, killed with SIGKILL). A resume point too old for the apiserver falls
back to a listing and a sweep."""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml
from k8sim_operator.recorder import Recorder, Watches
from k8sim_operator.settings import OperatorSettings

from k8sim import lifecycle, store
from k8sim.kube import Kube
from k8sim.local import supervisor
from k8sim.local.settings import ClusterSettings

from .conftest import Kubectl, eventually, process, scratch_pool
from .records import deployment, history, live, query

pytestmark = pytest.mark.integration

#: What a real (KWOK) pod's lifecycle records, watched from its creation to its readiness.
POD_LIFE = ["created", "pending", "scheduled", "running", "ready"]


@contextmanager
def scratch_database(settings: ClusterSettings) -> Iterator[str]:
    """The DSN of a new database beside the simulator's, migrated (only this test's operator writes
    there: no other recorder can fill in what ours lost), dropped afterwards."""
    name = f"k8sim_test_{uuid.uuid4().hex[:8]}"
    dsn = settings.database_url.rsplit("/", 1)[0] + f"/{name}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(settings.database_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def migrate() -> None:
        pool = await store.connect(dsn)
        try:
            await store.migrate(pool)
        finally:
            await pool.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        asyncio.run(migrate())
        yield dsn
    finally:
        asyncio.run(admin(f'DROP DATABASE "{name}" WITH (FORCE)'))


def test_a_kill_9_loses_no_step_of_pods_mid_lifecycle_or_born_while_dead(
        live_services: ClusterSettings, live_cluster: ClusterSettings, kubectl: Kubectl, namespace: str,
        tmp_path: Path) -> None:
    """SIGKILL right after a Deployment is created (its pods on their way, some observed, some in the
    writer's queue, some not yet seen), a scale-up while the operator is dead, then a restart: every
    pod's history is its whole lifecycle, each step once, and the Deployment's scaling is there."""
    cmd = [sys.executable, "-m", "kopf", *supervisor.KOPF_ARGS]
    with scratch_database(live_cluster) as dsn:
        env = {"K8SIM_SPOOL": str(tmp_path / "spool.jsonl"), "K8SIM_DATABASE_URL": dsn,
               "K8SIM_SWEEP_DELAY": "1", "K8SIM_LOG_LEVEL": "INFO"}
        log = tmp_path / "operator.log"
        with process(cmd, env, log) as first:
            kubectl("create", "configmap", "probe", "-n", namespace, "--from-literal=k=v")

            def recording() -> bool:
                if first.poll() is not None:
                    raise RuntimeError(f"the operator exited: {log.read_text()[-3000:]}")
                if not live(dsn, namespace, "ConfigMap"):
                    return False
                # Where the watches are is committed once each listing's sweep is done.
                if not query(dsn, "SELECT to_regclass('watch_positions') IS NOT NULL AS there")[0]["there"]:
                    return True
                kinds = {r["kind"] for r in query(dsn, "SELECT kind FROM watch_positions")}
                return {"Pod", "ReplicaSet", "Deployment", "Event"} <= kinds
            eventually(recording, 90, "the operator recording")
            kubectl("apply", "-n", namespace, "-f", "-", stdin=deployment("web", 4))
            first.send_signal(signal.SIGKILL)
            assert first.wait(10) == -signal.SIGKILL
        recorded_at_kill = history(dsn, namespace, "Pod")
        kubectl("scale", "-n", namespace, "deployment/web", "--replicas=6")
        kubectl("wait", "-n", namespace, "deployment/web", "--for=jsonpath={.status.readyReplicas}=6",
                "--timeout=90s")
        pods = {p["metadata"]["uid"] for p in kubectl.json("get", "pods", "-n", namespace)["items"]}
        assert len(pods) == 6
        with process(cmd, env, log) as second:
            def whole() -> bool:
                if second.poll() is not None:
                    raise RuntimeError(f"the operator exited: {log.read_text()[-3000:]}")
                rows = live(dsn, namespace, "Pod")
                return set(rows) == pods and all(r["ready"] for r in rows.values())
            eventually(whole, 90, "the six ready pods in the store")
            steps = history(dsn, namespace, "Pod")
            scaled = [r["detail"] for r in query(dsn, "SELECT detail FROM resource_events WHERE namespace = $1 "
                                                      "AND kind = 'Deployment' AND transition = 'scaled'", namespace)]
    assert len(recorded_at_kill) < 6, "some pods were born while the operator was dead"
    assert {uid: steps.get(uid) for uid in pods} == {uid: POD_LIFE for uid in pods}, recorded_at_kill
    assert scaled == [{"from": 4, "to": 6}]


POD = ("v1", "Pod")


@asynccontextmanager
async def scratch_recorder(settings: ClusterSettings, tmp_path: Path) -> AsyncIterator[tuple[Recorder, Watches]]:
    """A recorder on a scratch database, its writer and its sweep running, with resuming watches."""
    name = f"k8sim_test_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(settings.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    kube = Kube(settings.kubeconfig)
    conf = OperatorSettings(spool=tmp_path / "spool.jsonl", sweep_delay=0.1,
                            database_url=settings.database_url.rsplit("/", 1)[0] + f"/{name}")
    recorder = Recorder(conf, kube)
    tasks = [asyncio.create_task(recorder.run()), asyncio.create_task(recorder.sweep_forever())]
    try:
        yield recorder, Watches(kube, recorder, resume=True)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await recorder.close()
        await kube.close()
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


def test_a_resume_point_too_old_for_the_apiserver_lists_and_sweeps(
        live_services: ClusterSettings, live_cluster: ClusterSettings, kubectl: Kubectl, namespace: str,
        tmp_path: Path) -> None:
    """A pod stream asked to go on from resourceVersion 1 gets 410 Gone: it lists (what exists now,
    marked reconciled), the sweep records what went meanwhile, and the resume point moves on."""
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "here"},
         "spec": {"containers": [{"name": "app", "image": "app:1"}]}}))
    kubectl("wait", "-n", namespace, "pod/here", "--for=condition=Ready", "--timeout=60s")
    here = kubectl.json("get", "pod", "here", "-n", namespace)["metadata"]["uid"]

    async def run() -> tuple[list[Any], list[Any], str]:
        async with scratch_recorder(live_cluster, tmp_path) as (recorder, watches):
            await watches.prepare()
            assert recorder.pool is not None and recorder.cluster is not None
            gone: dict[str, Any] = {
                "apiVersion": "v1", "kind": "Pod", "spec": {"nodeName": "n1"}, "status": {"phase": "Running"},
                "metadata": {"uid": f"gone-{namespace}", "name": "old", "namespace": namespace,
                             "resourceVersion": "1", "creationTimestamp": "2026-11-28T10:00:00Z"}}
            await recorder._write([store.Observation.of(gone, observed_at=lifecycle.now())])
            async with recorder.pool.acquire() as conn:
                await store.save_watch_positions(conn, {(recorder.cluster, "v1", "Pod"): "1"})
            watches.positions = {POD: "1"}
            streaming = asyncio.create_task(watches.stream(*POD))
            try:
                async def position() -> str:
                    async with recorder.pool.acquire() as conn:
                        return (await store.watch_positions(conn, recorder.cluster or ""))[POD]
                deadline = asyncio.get_running_loop().time() + 60
                while await position() == "1":
                    assert asyncio.get_running_loop().time() < deadline, "the resume point never moved"
                    await asyncio.sleep(0.1)
                assert await recorder.drained(30)
                steps = await recorder.pool.fetch(
                    "SELECT uid, transition, reconciled FROM resource_events WHERE uid = ANY($1::text[]) "
                    "AND transition <> 'event' ORDER BY id", [here, gone["metadata"]["uid"]])
                return ([(r["transition"], r["reconciled"]) for r in steps if r["uid"] == here],
                        [(r["transition"], r["reconciled"]) for r in steps if r["uid"] != here], await position())
            finally:
                streaming.cancel()
                await asyncio.gather(streaming, return_exceptions=True)

    here_steps, gone_steps, moved = asyncio.run(run())
    assert here_steps == [("created", True), ("scheduled", True), ("running", True), ("ready", True)]
    assert gone_steps == [("created", False), ("scheduled", False), ("running", False), ("deleted", True)]
    assert int(moved) > 1


def test_a_replayed_batch_records_nothing_twice(live_services: ClusterSettings, live_cluster: ClusterSettings,
                                                tmp_path: Path) -> None:
    """A restarted writer (empty caches) given versions already committed, as a resumed watch
    replays them from a position behind its last batch: no step again, no step back, the row
    untouched; a version after them is recorded."""

    def pod(rv: int, phase: str, node: str | None, ready: bool) -> store.Observation:
        return store.Observation.of({
            "apiVersion": "v1", "kind": "Pod", "spec": {"nodeName": node} if node else {},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
            "metadata": {"uid": "replayed-1", "name": "p", "namespace": "t1", "resourceVersion": str(rv),
                         "creationTimestamp": "2026-11-28T10:00:00Z"}}, observed_at=lifecycle.now())

    life = [pod(10, "Pending", None, False), pod(11, "Pending", "n1", False), pod(12, "Running", "n1", True)]

    async def run() -> tuple[list[str], list[str], Any, Any, list[str]]:
        async with scratch_pool(live_cluster) as pool:
            async def steps() -> list[str]:
                return [r["transition"] for r in await pool.fetch(
                    "SELECT transition FROM resource_events WHERE uid = 'replayed-1' ORDER BY id")]

            first = Recorder(OperatorSettings(spool=tmp_path / "spool.jsonl"), kube=None)
            first.pool = pool
            await first._write(life)
            before, row = await steps(), await pool.fetchrow("SELECT * FROM resources WHERE uid = 'replayed-1'")
            second = Recorder(OperatorSettings(spool=tmp_path / "spool.jsonl"), kube=None)
            second.pool = pool
            await second._write(life[1:])
            await second._write(life)
            replayed = await steps()
            again = await pool.fetchrow("SELECT * FROM resources WHERE uid = 'replayed-1'")
            await second._write([*life, pod(13, "Running", "n1", False)])
            return before, replayed, row, again, await steps()

    before, replayed, row, again, after = asyncio.run(run())
    assert before == POD_LIFE
    assert replayed == POD_LIFE
    assert dict(again) == dict(row)
    assert after == [*POD_LIFE, "not_ready"]
