"""SLA sums from per-minute sums plus the partial minutes' raw samples equal the sums of every raw
sample, for any window, overall and per tenant (colliding ids t1 and t10), and the migration that
introduced the minutes fills them from the samples already recorded."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import random
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from k8sim import store
from k8sim.local.settings import ClusterSettings

from .conftest import scratch_pool

pytestmark = pytest.mark.integration

START = dt.datetime(2026, 3, 1, 22, 0, tzinfo=dt.UTC)  # the samples cross midnight: two days in a report
TENANTS = ["t1", "t10", None]


def ticks(rng: random.Random, count: int) -> list[list[tuple[Any, ...]]]:
    """Ticks every 7-23 s (never on whole minutes on purpose), a sample per service of three tenants."""
    found, at = [], START + dt.timedelta(seconds=0.25)
    for _ in range(count):
        at += dt.timedelta(seconds=rng.uniform(7, 23))
        rows = []
        for index, tenant in enumerate([*TENANTS, "t1"]):
            total = rng.choice([0.0, rng.uniform(1, 500)])
            good = total * rng.choice([1.0, rng.uniform(0.5, 1.0)])
            rows.append((at, f"ns/s{index}", tenant, good, total, good >= total * 0.99))
        found.append(rows)
    return found


async def raw(conn: asyncpg.Connection, start: dt.datetime, end: dt.datetime, tenant: str | None,
              *, inclusive_start: bool = False) -> dict[str, Any]:
    """What the old queries said: every raw sample of the window, summed."""
    op = ">=" if inclusive_start else ">"
    args: list[Any] = [start, end]
    where = f"taken_at {op} $1 AND taken_at <= $2" + (" AND tenant = $3" if tenant else "")
    args += [tenant] if tenant else []
    row = await conn.fetchrow(
        "SELECT COALESCE(sum(good), 0) AS good, COALESCE(sum(total), 0) AS total, count(*) AS samples, "
        "count(DISTINCT date_trunc('minute', taken_at)) AS minutes, min(taken_at) AS first "
        f"FROM sla_samples WHERE {where}", *args)
    points = await conn.fetch(
        "SELECT sum(good) AS good, sum(total) AS total FROM sla_samples "
        f"WHERE {where} GROUP BY date_trunc('minute', taken_at)", *args)
    return {**dict(row), "points": points}


def windows(rng: random.Random, last: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
    """Random windows, and the awkward ones: on whole minutes, shorter than a minute, empty."""
    found = []
    for _ in range(25):
        end = START + dt.timedelta(seconds=rng.uniform(0, (last - START).total_seconds() + 60))
        found.append((end - dt.timedelta(seconds=rng.choice([20, 59, 60, 61, 300, 1800, 3600, 20000])), end))
    on_minute = START + dt.timedelta(minutes=37)
    found += [(on_minute, on_minute + dt.timedelta(minutes=20)), (on_minute - dt.timedelta(seconds=1), on_minute),
              (on_minute, on_minute + dt.timedelta(seconds=30)), (START - dt.timedelta(days=1), START),
              (START, last + dt.timedelta(days=4))]
    return found


def same(found: float, expected: float) -> bool:
    return found == pytest.approx(expected, rel=1e-9, abs=1e-6)


async def check_windows(conn: asyncpg.Connection, rng: random.Random, last: dt.datetime) -> tuple[int, int]:
    """Every figure of random windows against the raw samples; (windows checked, days in the report)."""
    checked = days = 0
    for start, end in windows(rng, last):
        seconds = (end - start).total_seconds()
        for tenant in TENANTS:
            expected = await raw(conn, start, end, tenant)
            good, total = await store.window_sums(conn, end, seconds, tenant=tenant)
            assert same(good, expected["good"]) and same(total, expected["total"]), (start, end, tenant)
            points, healthy = await store.sla_points(conn, end, seconds, 99.5, tenant=tenant)
            assert points == len(expected["points"]), (start, end, tenant)
            assert healthy == sum(1 for p in expected["points"]
                                  if p["total"] == 0 or 100 * p["good"] / p["total"] >= 99.5)
            period = await store.period_sums(conn, start, end, tenant=tenant)
            assert same(period.good, expected["good"]) and same(period.total, expected["total"])
            assert (period.samples, period.minutes, period.first) == \
                (expected["samples"], expected["minutes"], expected["first"]), (start, end, tenant)
            checked += 1
        per_tenant = await store.tenant_window_sums(conn, end, seconds)
        for tenant in ("t1", "t10"):
            expected = await raw(conn, start, end, tenant)
            found = per_tenant.get(tenant, (0.0, 0.0))
            assert same(found[0], expected["good"]) and same(found[1], expected["total"]), (start, end, tenant)
    for since in (START + dt.timedelta(minutes=3, seconds=17), START + dt.timedelta(minutes=5), START):
        for tenant in TENANTS:
            report = [dataclasses.asdict(r) for r in await store.sla_report(conn, "day", since, tenant=tenant)]
            # The old query: every raw sample since then, per day.
            expected = await conn.fetch(
                "SELECT date_trunc('day', taken_at) AS period, sum(good) AS good, sum(total) AS total, "
                "count(DISTINCT date_trunc('minute', taken_at)) AS minutes FROM sla_samples "
                "WHERE taken_at >= $1 AND ($2::text IS NULL OR tenant = $2) GROUP BY 1 ORDER BY 1", since, tenant)
            assert [(r["period"], r["minutes"]) for r in report] == [(r["period"], r["minutes"]) for r in expected]
            days = max(days, len(expected))
            assert all(same(f["good"], e["good"]) and same(f["total"], e["total"])
                       for f, e in zip(report, expected, strict=True)), (since, tenant)
    return checked, days


def run(body: Callable[[], Any]) -> Any:
    return asyncio.run(body())


def test_minute_sums_answer_every_window_as_the_raw_samples_do(settings: ClusterSettings,
                                                               live_services: Any) -> None:
    rng = random.Random(13)
    recorded = ticks(rng, 700)  # about 2.9 hours

    async def body() -> tuple[int, int]:
        async with scratch_pool(settings) as pool, pool.acquire() as conn:
            for rows in recorded:
                await store.insert_samples(conn, rows)
            assert await conn.fetchval("SELECT count(*) FROM sla_minutes WHERE scope = 'tenant' AND tenant = ''") == 0
            return await check_windows(conn, rng, recorded[-1][0][0])

    checked, days = run(body)
    assert checked >= 75 and days == 2, "every window checked; the report's samples cross midnight"


def test_the_migration_sums_the_samples_recorded_before_it(settings: ClusterSettings, live_services: Any) -> None:
    rng = random.Random(29)
    recorded = ticks(rng, 400)
    minutes = next(version for version, name, _ in store.migrations() if name == "sla_minutes")

    async def body() -> tuple[int, int]:
        async with scratch_pool(settings, upto=minutes - 1) as pool, pool.acquire() as conn:
            # Samples as the engine wrote them before the minutes existed.
            await conn.executemany("INSERT INTO sla_samples (taken_at, service, tenant, good, total, healthy) "
                                   "VALUES ($1, $2, $3, $4, $5, $6)", [r for rows in recorded[:300] for r in rows])
            for version, _, sql in store.migrations():
                if version >= minutes:
                    await conn.execute(sql)
            for rows in recorded[300:]:  # and some after it, partly into the same minutes
                await store.insert_samples(conn, rows)
            return await check_windows(conn, rng, recorded[-1][0][0])

    assert run(body)[0] >= 75


def test_pruning_keeps_the_minutes_and_samples_in_step(settings: ClusterSettings, live_services: Any) -> None:
    """Retention cuts both at the same whole minute, so no kept minute counts a pruned sample."""
    rng = random.Random(31)
    recorded = ticks(rng, 300)
    cut = START + dt.timedelta(minutes=40, seconds=10)

    async def body() -> tuple[int, int, int]:
        async with scratch_pool(settings) as pool, pool.acquire() as conn:
            for rows in recorded:
                await store.insert_samples(conn, rows)
            await store.prune_monitoring(conn, cut)
            await check_windows(conn, rng, recorded[-1][0][0])
            minute = cut.replace(second=0)
            return (await conn.fetchval("SELECT count(*) FROM sla_minutes WHERE minute < $1", minute),
                    await conn.fetchval("SELECT count(*) FROM sla_samples WHERE taken_at < $1", minute),
                    await conn.fetchval("SELECT count(*) FROM sla_samples WHERE taken_at < $1", cut))

    minutes_before, samples_before, samples_in_the_cut_minute = run(body)
    assert (minutes_before, samples_before) == (0, 0)
    assert samples_in_the_cut_minute > 0, "the cut's own minute is kept whole"
