"""The SLA figures a running simulator asks for, once its store holds days of samples.

Baseline: every raw sample of each window summed (what the engine did every tick before
``sla_minutes``). Measured: the same figures from per-minute sums plus the windows' partial minutes
(``store.window_sums`` and friends). Two workloads, over ``--days`` of samples (a tick every 5 s)
for ``--services`` services of ``--tenants`` tenants, in a scratch database:
- the engine's tick: the SLA window overall and per tenant, and the five burn-rate windows;
- ``GET /sla/status`` of one tenant (``sla.current``).
Prints PostgreSQL's CPU seconds (its backend's, from /proc) per call and the ratio.

    python bench/bench_sla.py [--days 3] [--services 50] [--tenants 10] [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_seconds, scratch_database

from k8sim import sla, store
from k8sim.local import services
from k8sim.local.settings import ClusterSettings

TICK = 5.0
END = dt.datetime(2026, 11, 27, 12, 0, 2, tzinfo=dt.UTC)


async def load(conn: asyncpg.Connection, days: float, service_count: int, tenant_count: int) -> int:
    """Days of samples by COPY, then their minutes' sums as migration 0006 makes them."""
    ticks = int(days * 86400 / TICK)
    start = END - dt.timedelta(seconds=ticks * TICK)
    tenants = [f"t{i}" for i in range(1, tenant_count + 1)]

    def rows() -> Any:
        for tick in range(ticks):
            at = start + dt.timedelta(seconds=(tick + 1) * TICK)
            for index in range(service_count):
                total = 100.0 + index
                good = total - (5.0 if (tick + index) % 997 == 0 else 0.0)
                yield at, f"ns/s{index}", tenants[index % tenant_count], good, total, good == total

    batch: list[tuple[Any, ...]] = []
    for row in rows():
        batch.append(row)
        if len(batch) == 200_000:
            await conn.copy_records_to_table("sla_samples", records=batch,
                                             columns=["taken_at", "service", "tenant", "good", "total", "healthy"])
            batch = []
    if batch:
        await conn.copy_records_to_table("sla_samples", records=batch,
                                         columns=["taken_at", "service", "tenant", "good", "total", "healthy"])
    sql = next(text for _, name, text in store.migrations() if name == "sla_minutes")
    await conn.execute(sql[sql.index("INSERT INTO sla_minutes"):])  # the migration's own fill
    await conn.execute("ANALYZE sla_samples; ANALYZE sla_minutes")
    return ticks * service_count


async def raw_window(conn: asyncpg.Connection, end: dt.datetime, seconds: float,
                     tenant: str | None = None) -> tuple[float, float]:
    args: list[Any] = [end - dt.timedelta(seconds=seconds), end]
    row = await conn.fetchrow(
        "SELECT COALESCE(sum(good), 0) AS good, COALESCE(sum(total), 0) AS total FROM sla_samples "
        "WHERE taken_at > $1 AND taken_at <= $2" + (" AND tenant = $3" if tenant else ""),
        *args, *([tenant] if tenant else []))
    return float(row["good"]), float(row["total"])


async def raw_tenants(conn: asyncpg.Connection, end: dt.datetime, seconds: float) -> dict[str, tuple[float, float]]:
    rows = await conn.fetch(
        "SELECT tenant, COALESCE(sum(good), 0) AS good, COALESCE(sum(total), 0) AS total FROM sla_samples "
        "WHERE taken_at > $1 AND taken_at <= $2 AND tenant IS NOT NULL GROUP BY tenant",
        end - dt.timedelta(seconds=seconds), end)
    return {r["tenant"]: (float(r["good"]), float(r["total"])) for r in rows}


async def raw_points(conn: asyncpg.Connection, end: dt.datetime, seconds: float, target: float, *,
                     tenant: str | None = None) -> tuple[int, int]:
    row = await conn.fetchrow(
        "SELECT count(*) AS points, count(*) FILTER (WHERE total = 0 OR 100 * good / total >= $3) AS healthy "
        "FROM (SELECT date_trunc('minute', taken_at) AS m, sum(good) AS good, sum(total) AS total "
        "      FROM sla_samples WHERE taken_at > $1 AND taken_at <= $2 AND ($4::text IS NULL OR tenant = $4)"
        "      GROUP BY 1) AS minutes", end - dt.timedelta(seconds=seconds), end, target, tenant)
    return int(row["points"]), int(row["healthy"])


def tick_work(window: Callable[..., Awaitable[tuple[float, float]]],
              tenants: Callable[..., Awaitable[dict[str, tuple[float, float]]]]
              ) -> Callable[[asyncpg.Connection], Awaitable[Any]]:
    async def run(conn: asyncpg.Connection) -> Any:
        return (await window(conn, END, 3600), await tenants(conn, END, 3600),
                {name: await window(conn, END, seconds) for name, seconds in sla.WINDOW_SECONDS.items()})
    return run


def status_work(window: Callable[..., Awaitable[tuple[float, float]]],
                points: Callable[..., Awaitable[tuple[int, int]]]) -> Callable[[asyncpg.Connection], Awaitable[Any]]:
    async def run(conn: asyncpg.Connection) -> Any:
        return (await window(conn, END, 3600, tenant="t1"), await points(conn, END, 3600, 99.5, tenant="t1"),
                {name: await window(conn, END, seconds, tenant="t1") for name, seconds in sla.WINDOW_SECONDS.items()})
    return run


async def timed(conn: asyncpg.Connection, pid: int, work: Callable[[asyncpg.Connection], Awaitable[Any]],
                rounds: int) -> tuple[float, Any]:
    result = await work(conn)  # warm: plans and pages
    began = cpu_seconds(pid)
    for _ in range(rounds):
        result = await work(conn)
    return (cpu_seconds(pid) - began) / rounds, result


def close(a: Any, b: Any) -> bool:
    """The two workloads' answers agree (float sums up to rounding)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1.0)


async def measure(dsn: str, days: float, service_count: int, tenant_count: int, rounds: int) -> None:
    pool = await store.connect(dsn)
    try:
        await store.migrate(pool)
        async with pool.acquire() as conn:
            began = time.monotonic()
            count = await load(conn, days, service_count, tenant_count)
            print(f"{count:,} samples ({days:g} days, {service_count} services, {tenant_count} tenants) "
                  f"loaded in {time.monotonic() - began:.1f} s", flush=True)
            pid = await conn.fetchval("SELECT pg_backend_pid()")
            for what, baseline, measured in (
                    ("engine tick (SLA window overall and per tenant, 5 burn-rate windows)",
                     tick_work(raw_window, raw_tenants), tick_work(store.window_sums, store.tenant_window_sums)),
                    ("GET /sla/status of one tenant",
                     status_work(raw_window, raw_points), status_work(store.window_sums, store.sla_points))):
                base_s, base_answer = await timed(conn, pid, baseline, rounds)
                new_s, new_answer = await timed(conn, pid, measured, rounds)
                agree = "same answers" if close(base_answer, new_answer) else "ANSWERS DIFFER"
                print(f"{what}: every raw sample {base_s * 1000:.1f} ms, minute sums {new_s * 1000:.1f} ms of "
                      f"PostgreSQL CPU a call, ratio {new_s / max(base_s, 1e-9):.3f} (minute sums / raw); {agree}",
                      flush=True)
    finally:
        await pool.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=3.0)
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    settings = ClusterSettings()
    services.up(settings)

    async def run() -> None:
        async with scratch_database(settings) as dsn:
            await measure(dsn, args.days, args.services, args.tenants, args.rounds)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    from common import run_recorded

    sys.exit(run_recorded("bench_sla", main))
