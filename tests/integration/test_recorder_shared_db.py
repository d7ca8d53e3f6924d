"""Two simulators recording into one PostgreSQL. The rows do not say which cluster holds an
object, so one recorder's sweep took the other cluster's live nodes, absent from its own
listing, for deleted; a deleted row stays deleted, and the owner's later NotReady of those nodes
was dropped (the node_not_ready scenario test failed so twice while a second simulator, its
PostgreSQL port moved, still wrote to the default one). Real apiserver and PostgreSQL; the other
cluster is a second recorder with another cluster identity, its node one that ours does not list."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from k8sim_operator.recorder import Recorder
from k8sim_operator.settings import OperatorSettings

from k8sim import lifecycle, store
from k8sim.kube import Kube
from k8sim.local.settings import ClusterSettings

from .conftest import scratch_pool

NODE = ("v1", "Node")


def node(uid: str, version: str, ready: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    condition = {"type": "Ready", "status": ready}
    if ready != "True":
        condition["reason"] = "NodeStatusUnknown"
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "cpu-1", "uid": uid, "resourceVersion": version, "annotations": annotations or {},
                         "creationTimestamp": "2026-12-07T06:45:31Z"},
            "status": {"conditions": [condition]}}


def test_a_sweep_leaves_the_objects_of_another_cluster_recording_into_the_same_database(
        live_cluster: ClusterSettings, live_services: Any, tmp_path: Path) -> None:
    scenario = "ecp-ai-s1/node-down"

    async def history(pool: Any, uid: str) -> list[tuple[str, str | None]]:
        rows = await pool.fetch("SELECT transition, detail->>'scenario' AS scenario FROM resource_events "
                                "WHERE uid = $1 ORDER BY id", uid)
        return [(r["transition"], r["scenario"]) for r in rows]

    async def run() -> None:
        kube = Kube(live_cluster.kubeconfig)
        system = await kube.get("v1", "Namespace", "kube-system")
        assert system is not None
        async with scratch_pool(live_cluster) as pool:
            ours = Recorder(OperatorSettings(spool=tmp_path / "ours.jsonl"), kube)
            theirs = Recorder(OperatorSettings(spool=tmp_path / "theirs.jsonl"), kube)
            ours.pool, theirs.pool = pool, pool
            ours.cluster, theirs.cluster = str(system["metadata"]["uid"]), str(uuid.uuid4())
            writers = [asyncio.create_task(ours.run()), asyncio.create_task(theirs.run())]
            try:
                uid = str(uuid.uuid4())  # their node: no node of our cluster has it
                theirs.observe(store.Observation.of(node(uid, "5", "True"), observed_at=lifecycle.now()))
                theirs.mark(NODE, "5")
                assert await theirs.drained(30)

                found = await ours.sweep({NODE})
                assert await ours.drained(30)
                assert found == 0 and ours.foreign == [theirs.cluster]

                # Their node goes NotReady under a Scenario: its step is recorded, naming it.
                down = node(uid, "9", "Unknown", {lifecycle.SCENARIO_ANNOTATION: scenario})
                theirs.observe(store.Observation.of(down, observed_at=lifecycle.now()))
                theirs.mark(NODE, "9")
                assert await theirs.drained(30)
                assert await history(pool, uid) == [("created", None), ("ready", None), ("notready", scenario),
                                                    ("not_ready", scenario)]

                # Their recorder long gone (their cluster was recreated, say): its leftovers are swept.
                await pool.execute("UPDATE watch_positions SET updated_at = now() - interval '1 hour' "
                                   "WHERE cluster = $1", theirs.cluster)
                found = await ours.sweep({NODE})
                assert await ours.drained(30)
                assert found == 1 and ours.foreign == []
                assert (await history(pool, uid))[-1] == ("deleted", scenario)
            finally:
                for writer in writers:
                    writer.cancel()
                await asyncio.gather(*writers, return_exceptions=True)
                await kube.close()

    asyncio.run(run())
