"""The recorder's PostgreSQL cost per pod: store.record writing a pod's lifecycle as the watches
deliver it (created, scheduled, ContainerCreating, Running and Ready, an Event, then terminating and
deleted), in batches of 500 observations (--batch: the recorder's batches under load hold what
arrives within K8SIM_FLUSH_INTERVAL), into a scratch database that already holds one such round.

Baseline: pods labelled with their tenant (no lookup). Measured: tenantless pods, whose tenant the
database resolves for every row (namespace, owner, deploy): the case of every pod not made by a
tenant's deploy. Prints PostgreSQL's CPU seconds (its backend's, from /proc) and the ratio.

    python bench/bench_store.py [--pods 5000] [--batch 500]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import uuid
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_seconds, scratch_database

from k8sim import lifecycle, store
from k8sim.local import services
from k8sim.local.settings import ClusterSettings

BATCH = 500
State = lifecycle.State



def lifecycles(pods: int, namespace: str, tenant: str | None) -> tuple[list[store.Observation], ...]:
    """Every pod's observations while created, then while deleted (pods interleaved as in a rollout)."""
    created_at = lifecycle.now()
    labels = {"app": "web", "pod-template-hash": "5d9c7b"}
    owner = ("ReplicaSet", "web-5d9c7b", str(uuid.uuid4()))
    version = 1000

    def seen(uid: str, name: str, state: State | None, note: dict[str, object] | None = None) -> store.Observation:
        nonlocal version
        version += 1
        return store.Observation(uid=uid, api_version="v1", kind="Pod", namespace=namespace, name=name,
                                 resource_version=str(version), observed_at=lifecycle.now(), state=state,
                                 labels=labels, tenant=tenant if note is None else None, owner=owner,
                                 created_at=created_at, deleted_at=lifecycle.now() if state is None else None,
                                 note=note)

    create, delete = [], []
    for i in range(pods):
        uid, name, node = str(uuid.uuid4()), f"web-{i}", f"node-{random.randrange(100)}"
        create += [seen(uid, name, State("Pending", False, None, generation=1)),
                   seen(uid, name, State("Pending", False, node, generation=1)),
                   seen(uid, name, State("Pending", False, node, generation=1, reason="ContainerCreating")),
                   seen(uid, name, State("Running", True, node, generation=1)),
                   seen(uid, name, None, {"reason": "Scheduled", "type": "Normal", "event": f"{name}.1"})]
        delete += [seen(uid, name, State("Terminating", True, node, generation=2)), seen(uid, name, None)]
    return create, delete


async def write(conn: asyncpg.Connection, observations: list[store.Observation],
                prior: dict[str, lifecycle.State | None], batch: int = BATCH) -> None:
    for start in range(0, len(observations), batch):
        async with conn.transaction():
            await store.record(conn, observations[start:start + batch], prior)


async def measure(dsn: str, pods: int, batch: int = BATCH) -> dict[str, float]:
    """PostgreSQL CPU seconds per phase for labelled and for tenantless pods, in one scratch database."""
    pool = await store.connect(dsn)
    try:
        await store.migrate(pool)
        async with pool.acquire() as conn:
            pid = await conn.fetchval("SELECT pg_backend_pid()")
            warm = lifecycles(pods, "warm-up", None)  # history already there, as in a running simulator
            prior: dict[str, lifecycle.State | None] = {}
            for warm_phase in warm:
                await write(conn, warm_phase, prior)
            result = {}
            for label, tenant in (("labelled", "t1"), ("tenantless", None)):
                prior = {}
                for phase, observations in zip(("create", "delete"),
                                               lifecycles(pods, f"bench-{label}", tenant), strict=True):
                    began, wall = cpu_seconds(pid), time.perf_counter()
                    await write(conn, observations, prior, batch)
                    result[f"{label} {phase}"] = cpu_seconds(pid) - began
                    print(f"  {label:10} {phase}: {len(observations)} observations, PostgreSQL "
                          f"{result[f'{label} {phase}']:.2f} CPU s, {time.perf_counter() - wall:.2f} s", flush=True)
            return result
    finally:
        await pool.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=BATCH, help="observations per transaction")
    args = parser.parse_args()
    settings = ClusterSettings()
    services.up(settings)

    async def run() -> dict[str, float]:
        async with scratch_database(settings) as dsn:
            return await measure(dsn, args.pods, args.batch)

    result = asyncio.run(run())
    for phase in ("create", "delete"):
        base, measured = result[f"labelled {phase}"], result[f"tenantless {phase}"]
        print(f"{phase}: tenantless/labelled PostgreSQL CPU {measured / max(base, 1e-9):.2f} "
              f"({measured / args.pods * 1000:.2f} vs {base / args.pods * 1000:.2f} ms a pod)")
    return 0


if __name__ == "__main__":
    from common import run_recorded

    sys.exit(run_recorded("bench_store", main))
