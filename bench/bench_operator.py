"""The lifecycle recorder under churn: history rows per second and apiserver→commit lag.

N pods (default 1,000) are created (one Deployment) and deleted (the namespace) while the
operator runs as `k8sim run` starts it. Lag is each history row's commit time minus the time
its watch event reached the operator. A baseline of N/10 pods runs first in the same process.

    python bench/bench_operator.py [--pods 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid

import asyncpg
from bench_cluster import TAINT, bench_nodes, delete_nodes
from common import simulator

from k8sim import store
from k8sim.local import cluster
from k8sim.local.settings import ClusterSettings


async def rows(settings: ClusterSettings, ns: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(settings.database_url)
    await store.init_connection(conn)
    try:
        return list(await conn.fetch(
            "SELECT uid, kind, transition, observed_at, recorded_at FROM resource_events WHERE namespace = $1", ns))
    finally:
        await conn.close()


def churn(settings: ClusterSettings, pods: int, pool: str) -> dict[str, float]:
    ns = f"rec-{uuid.uuid4().hex[:6]}"
    cluster.kubectl(settings, "create", "namespace", ns)
    manifest = cluster.kubectl(settings, "create", "deployment", "churn", "-n", ns, "--image=app:1",
                               f"--replicas={pods}", "--dry-run=client", "-o", "json").stdout
    obj = json.loads(manifest)
    obj["spec"]["template"]["spec"]["nodeSelector"] = {"k8sim.io/bench": pool}
    obj["spec"]["template"]["spec"]["tolerations"] = [{**TAINT, "operator": "Equal"}]
    started = time.monotonic()
    cluster.kubectl(settings, "apply", "-f", "-", stdin=json.dumps(obj))
    cluster.kubectl(settings, "wait", "-n", ns, "deployment/churn", f"--for=jsonpath={{.status.readyReplicas}}={pods}",
                    "--timeout=900s")
    cluster.kubectl(settings, "delete", "namespace", ns, "--timeout=900s")
    cluster_done = time.monotonic()
    deadline = cluster_done + 300
    while True:
        found = asyncio.run(rows(settings, ns))
        deleted = {r["uid"] for r in found if r["kind"] == "Pod" and r["transition"] == "deleted"}
        if len(deleted) >= pods or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    lags = sorted((r["recorded_at"] - r["observed_at"]).total_seconds() for r in found)
    span = (max(r["recorded_at"] for r in found) - min(r["observed_at"] for r in found)).total_seconds()
    return {"rows": len(found), "seconds": span, "rate": len(found) / span, "cluster_s": cluster_done - started,
            "p50": lags[len(lags) // 2], "p95": lags[int(len(lags) * 0.95)], "max": lags[-1],
            "complete": float(len(deleted) >= pods)}


def show(label: str, m: dict[str, float]) -> None:
    print(f"{label}: {m['rows']:.0f} history rows in {m['seconds']:.1f} s ({m['rate']:.0f} rows/s); "
          f"lag p50 {m['p50'] * 1000:.0f} ms, p95 {m['p95'] * 1000:.0f} ms, max {m['max'] * 1000:.0f} ms; "
          f"all deletions recorded: {bool(m['complete'])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=1000)
    args = parser.parse_args()
    settings = ClusterSettings()
    with simulator(settings, "operator"):
        pool = f"bp{uuid.uuid4().hex[:4]}"
        bench_nodes(settings, pool, max(1, -(-args.pods // 1000)))
        time.sleep(5)  # the operator's initial listing settles
        try:
            base = churn(settings, max(10, args.pods // 10), pool)
            full = churn(settings, args.pods, pool)
        finally:
            delete_nodes(settings, pool)
    show(f"baseline {max(10, args.pods // 10)} pods", base)
    show(f"{args.pods} pods", full)
    print(f"throughput ratio {full['rate'] / base['rate']:.2f}x, p95 lag ratio {full['p95'] / base['p95']:.2f}x "
          "(full / baseline)")
    return 0


if __name__ == "__main__":
    from common import run_recorded

    sys.exit(run_recorded("bench_operator", main))
