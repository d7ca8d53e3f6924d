"""A simulated month of an ECP-AI tenant at high speed, with the realistic profile's background
failures: the 30-day SLA report is exactly what the recorded samples say, and the same seed
replays the same month."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from k8sim.local.settings import ClusterSettings
from tests.ecp_ai import tenant_files

from .conftest import Kubectl, eventually, free_port, process, started

pytestmark = pytest.mark.integration

START, END = "2026-10-01T00:00:00+00:00", "2026-10-31T00:00:00+00:00"  # 30 days
STEP = 300  # simulated seconds per tick: 8,640 ticks
DAY = 86400


def month_env(database_url: str, days: int = 30) -> dict[str, str]:
    end = END if days == 30 else f"2026-10-{1 + days:02d}T00:00:00+00:00"
    return {"K8SIM_ENGINE_PORT": str(free_port()), "K8SIM_METRICS_API_PORT": str(free_port()),
            "K8SIM_REGISTER_METRICS_APIS": "false", "K8SIM_TICK_SECONDS": "0.005",
            "K8SIM_SPEED": str(STEP / 0.005), "K8SIM_SIM_START": START, "K8SIM_SIM_END": end,
            "K8SIM_PROFILE": "realistic", "K8SIM_SEED": "7", "K8SIM_SNAPSHOT_EVERY": "3600",
            "K8SIM_SLA_WINDOW_SECONDS": str(30 * DAY), "K8SIM_DATABASE_URL": database_url,
            "K8SIM_REDIS_KEY": f"k8sim:month:{uuid.uuid4().hex}", "K8SIM_REDIS_CHANNEL": "k8sim:month"}


def run_engine(env: dict[str, str], log: Path, timeout: float, tenant: str, samples: int) -> float:
    """Run an engine until its clock stops at K8SIM_SIM_END and the tenant's samples of every tick
    are in (the last tick's writes follow its clock); returns the real seconds it took."""
    began = time.monotonic()
    with process([sys.executable, "-m", "k8sim_engine"], env, log) as proc:
        url = f"http://127.0.0.1:{env['K8SIM_ENGINE_PORT']}"
        started(f"{url}/health", proc, log)
        end = env["K8SIM_SIM_END"]

        def done() -> bool:
            body = httpx.get(f"{url}/health", timeout=10).json()
            return str(body["simulated_time"]) == end
        eventually(done, timeout, what=f"the simulated clock at {end}")
        eventually(lambda: count(env["K8SIM_DATABASE_URL"], tenant) >= samples, 60,
                   f"the {samples} samples of the month's ticks")
    return time.monotonic() - began


def count(database_url: str, tenant: str) -> int:
    async def fetch() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM sla_samples WHERE tenant = $1", tenant))
        finally:
            await conn.close()
    return asyncio.run(fetch())


def rows(database_url: str, tenant: str) -> list[tuple[Any, str, float, float]]:
    async def fetch() -> list[tuple[Any, str, float, float]]:
        conn = await asyncpg.connect(database_url)
        try:
            found = await conn.fetch("SELECT taken_at, service, good, total FROM sla_samples WHERE tenant = $1 "
                                     "ORDER BY taken_at, service", tenant)
        finally:
            await conn.close()
        return [(r["taken_at"], r["service"], r["good"], r["total"]) for r in found]
    return asyncio.run(fetch())


@pytest.fixture(scope="module")
def replay_database(live_services: ClusterSettings) -> Iterator[str]:
    """A second, empty database on the same server for the replay."""
    name = f"k8sim_replay_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(live_services.database_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()
    asyncio.run(admin(f"CREATE DATABASE {name}"))
    yield live_services.database_url.rsplit("/", 1)[0] + f"/{name}"
    asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def test_a_month_at_high_speed_reports_exactly_its_samples_and_replays(
        api_url: str, kubectl: Kubectl, live_services: ClusterSettings, replay_database: str,
        tmp_path: Path) -> None:
    tenant = f"mo{uuid.uuid4().hex[:5]}"
    resp = httpx.post(f"{api_url}/k8s/manifest/deploy", json={"manifest": tenant_files(tenant), "tenant_id": tenant},
                      timeout=120)
    assert resp.status_code == 200, resp.text
    try:
        took = run_engine(month_env(live_services.database_url), tmp_path / "month.log", 600, tenant,
                          14 * 30 * DAY // STEP)
        samples = rows(live_services.database_url, tenant)
        report = httpx.get(f"{api_url}/sla/report", params={"days": 30, "tenant_id": tenant}).json()
        # The same seed replays the same month (its first two days here) on the same cluster.
        run_engine(month_env(replay_database, days=2), tmp_path / "replay.log", 120, tenant, 14 * 2 * DAY // STEP)
        replayed = rows(replay_database, tenant)
    finally:
        httpx.delete(f"{api_url}/k8s/resources/tenant/{tenant}", timeout=120)
    print(f"30 simulated days in {took:.0f} s: {report['period']}")  # the measured figures, in the test log

    services = {s for _, s, _, _ in samples}
    assert len(services) == 14 and len(samples) == 14 * 30 * DAY // STEP  # every tick of every service
    good, total = sum(r[2] for r in samples), sum(r[3] for r in samples)
    period = report["period"]
    # The report is the recorded samples' own sum, never an extrapolation.
    assert period["availability"] == round(100 * good / total, 4)
    assert period["requests"] == round(total) and period["failed_requests"] == round(total - good)
    assert period["samples"] == len(samples) and period["coverage"] >= 0.999
    assert report["daily"], "the daily breakdown covers the month's last week"
    # Failures happened (incidents, crashes, node failures) and the month still lands near the 99.5 % target.
    worst = min(g / t for _, _, g, t in samples if t)
    assert worst < 0.9, "some tick had a real failure"
    assert 99.0 <= period["availability"] < 100.0

    # Sample for sample.
    first_two = [r for r in samples if r[0] <= replayed[-1][0]]
    assert len(replayed) == len(first_two) == 14 * 2 * DAY // STEP
    assert [(t, s) for t, s, _, _ in replayed] == [(t, s) for t, s, _, _ in first_two]
    assert all(a[2] == pytest.approx(b[2], rel=1e-9) and a[3] == pytest.approx(b[3], rel=1e-9)
               for a, b in zip(replayed, first_two, strict=True))
