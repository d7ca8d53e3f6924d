"""Real traffic replayed through the real engine, Redis, API and apiserver: a service's requests per second follow
a 24-point file at speed, twice it with `scale: 2`; its SLA samples count the replayed requests, its HPA follows
the replayed load and its cost follows the HPA."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml

from k8sim.local.processes import free_port
from k8sim.local.settings import ClusterSettings

from .conftest import Kubectl, engine_env, eventually, process, started
from .test_metrics_api import WEB, deployment, hpa, hpa_replicas, hpa_utilisation, replicas

pytestmark = pytest.mark.integration

#: Simulated seconds per real second, and between the file's points: each point is two 1-second ticks apart, so
#: the 24 points play in 48 s and every point lands exactly on a tick.
SPEED, SPACING = 3, 6
#: Requests per second of the file's 24 points: low enough that one web pod stays under its HPA's target even at
#: twice the file (29 % at 90 rps; at most 160 rps keeps it under 55 %).
CURVE = [12, 20, 35, 50, 64, 72, 80, 78, 70, 61, 55, 48, 44, 40, 38, 45, 58, 66, 74, 60, 42, 30, 22, 15]
START = dt.datetime(2025, 11, 28, 0, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def keys() -> dict[str, str]:
    """Redis keys of this module's own engine and API: no other engine's snapshot or replay reaches them."""
    tag = uuid.uuid4().hex[:8]
    return {"K8SIM_REDIS_KEY": f"k8sim:test-traffic:{tag}:latest", "K8SIM_REDIS_CHANNEL": f"k8sim:test-traffic:{tag}",
            "K8SIM_TRAFFIC_KEY": f"k8sim:test-traffic:{tag}:traffic"}


@pytest.fixture(scope="module")
def traffic_engine(live_services: ClusterSettings, live_cluster: ClusterSettings, keys: dict[str, str],
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A noiseless engine at a weekday peak running 3x (no background failures), registered as the metrics APIs."""
    tmp = tmp_path_factory.mktemp("traffic-engine")
    env = {**engine_env(free_port()), **keys, "K8SIM_SPEED": str(SPEED),
           "K8SIM_BACKGROUND": json.dumps({"pod_crashes_per_day": 0, "node_failures_per_day": 0})}
    with process([sys.executable, "-m", "k8sim_engine"], env, tmp / "engine.log") as proc:
        url = f"http://127.0.0.1:{env['K8SIM_ENGINE_PORT']}"
        started(f"{url}/health", proc, tmp / "engine.log")
        yield url


@pytest.fixture(scope="module")
def traffic_api(traffic_engine: str, keys: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("traffic-api")
    port = free_port()
    with process([sys.executable, "-m", "k8sim_api"], {**keys, "K8SIM_API_PORT": str(port)}, tmp / "api.log") as proc:
        url = f"http://127.0.0.1:{port}"
        started(f"{url}/health", proc, tmp / "api.log")
        yield url
        httpx.delete(f"{url}/monitoring/traffic")


def csv_file(namespace: str, service: str, curve: list[float]) -> str:
    return "timestamp,namespace,service,rps\n" + "".join(
        f"{(START + dt.timedelta(seconds=SPACING * i)).isoformat().replace('+00:00', 'Z')},{namespace},{service},{v}\n"
        for i, v in enumerate(curve))


def rps_of(engine: str, key: str) -> tuple[float, float]:
    """(simulated epoch seconds, the service's requests/s) of the engine's last tick."""
    document = httpx.get(f"{engine}/snapshot", timeout=5).json()
    when = dt.datetime.fromisoformat(document["timestamp"].replace("Z", "+00:00")).timestamp()
    return when, float(document["services"][key]["network"]["requests_per_second"])


def follow(engine: str, api: str, key: str, expected: list[float],
           timeout: float = 110) -> tuple[dict[int, float], dict[int, float]]:
    """Poll the engine until every point of the file was seen on its tick: point index → requests/s seen, and point
    index → the simulated time (epoch seconds) of that tick."""
    status = eventually(lambda: (s := httpx.get(f"{api}/monitoring/traffic").json())["state"] == "playing" and s,
                        30, "the engine to start playing the replay")
    begun = dt.datetime.fromisoformat(status["started"].replace("Z", "+00:00")).timestamp()
    period = len(expected) * SPACING
    seen: dict[int, float] = {}
    ticks: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < len(expected) and time.monotonic() < deadline:
        when, rps = rps_of(engine, key)
        position = (when - begun) % period
        if position % SPACING == 0:
            seen[int(position // SPACING)], ticks[int(position // SPACING)] = rps, when
        time.sleep(0.2)
    missing = sorted(set(range(len(expected))) - set(seen))
    assert not missing, f"points never seen on their tick: {missing}"
    return seen, ticks


def wall_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def sla_samples(settings: ClusterSettings, service: str, times: list[float]) -> dict[float, tuple[float, float]]:
    """The engine's stored SLA samples of one service on the given ticks: epoch seconds → (good, total)."""
    async def read() -> dict[float, tuple[float, float]]:
        conn = await asyncpg.connect(settings.database_url)
        try:
            rows = await conn.fetch("SELECT taken_at, good, total FROM sla_samples WHERE service = $1 AND "
                                    "taken_at = ANY($2::timestamptz[])", service,
                                    [dt.datetime.fromtimestamp(t, dt.UTC) for t in times])
        finally:
            await conn.close()
        return {r["taken_at"].timestamp(): (float(r["good"]), float(r["total"])) for r in rows}
    return asyncio.run(read())


def core_hours(api: str, namespace: str, since: dt.datetime, until: dt.datetime) -> float:
    """The namespace's CPU core-hours charged over a wall-clock window (GET /cluster/cost, OpenCost's allocation)."""
    window = f"{since.isoformat().replace('+00:00', 'Z')},{until.isoformat().replace('+00:00', 'Z')}"
    answer = httpx.get(f"{api}/cluster/cost", params={"window": window, "aggregate": "namespace"}, timeout=30)
    assert answer.status_code == 200, answer.text
    return float(answer.json()["data"][0][namespace]["cpuCoreHours"])


def test_a_service_follows_a_24_point_file_scaled_and_its_hpa_follows(
        traffic_engine: str, traffic_api: str, operator_process: Any, settings: ClusterSettings, kubectl: Kubectl,
        namespace: str, tmp_path: Path) -> None:
    key = f"{namespace}/web"
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all([
        deployment("web"), hpa("web", {"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": 50}}})]))
    # Before any replay: the synthetic peak, exactly (no noise).
    eventually(lambda: rps_of(traffic_engine, key)[1] == WEB.peak_rps, 60, "the web service at its synthetic peak")

    # Nothing in it names a running service: refused, each series named.
    stray = httpx.post(f"{traffic_api}/monitoring/traffic",
                       json={"format": "csv", "data": csv_file(f"{namespace}-x", "web", [1, 2])})
    assert stray.status_code == 422, stray.text
    assert [e["series"] for e in stray.json()["errors"]] == [f"{namespace}-x/web"]
    bad = httpx.post(f"{traffic_api}/monitoring/traffic",
                     json={"format": "csv", "data": csv_file(namespace, "web", [1, -2, "x"])})
    assert bad.status_code == 422 and [e["line"] for e in bad.json()["errors"]] == [3, 4], bad.text

    text = csv_file(namespace, "web", CURVE)
    posted = httpx.post(f"{traffic_api}/monitoring/traffic", json={"format": "csv", "data": text, "loop": True,
                                                                   "scale": 1.0, "shift_seconds": 0})
    assert posted.status_code == 200, posted.text
    body = posted.json()
    assert (body["points"], body["duration_seconds"], body["period_seconds"]) == (24, 23 * SPACING, 24 * SPACING)
    assert body["services"] == [{"service": key, "points": 24, "matched": True, "rps": None}]
    seen, ticks = follow(traffic_engine, traffic_api, key, CURVE)
    for i, want in enumerate(CURVE):
        assert abs(seen[i] - want) <= 0.05 * want, (i, seen[i], want)
    # The SLA counts the replayed requests: each point's tick holds its rps times the tick's simulated seconds.
    samples = sla_samples(settings, key, list(ticks.values()))
    step = float(httpx.get(f"{traffic_engine}/health").json()["step_seconds"])
    for i in range(len(CURVE)):
        good, total = samples[ticks[i]]
        assert total == pytest.approx(seen[i] * step, rel=1e-6), (i, total, seen[i], step)
        assert 0.99 * total <= good <= total  # one pod at under 30 % of its CPU serves nearly all of them

    # Twice the file, through the command line.
    path = tmp_path / "traffic.csv"
    path.write_text(text)
    cli = subprocess.run([sys.executable, "-m", "k8sim", "traffic", str(path), "--scale", "2", "--api", traffic_api],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert "replaying 1 series, 24 points" in cli.stderr
    doubled, _ = follow(traffic_engine, traffic_api, key, [2 * v for v in CURVE])
    for i, want in enumerate(CURVE):
        assert abs(doubled[i] - 2 * want) <= 0.05 * 2 * want, (i, doubled[i], 2 * want)
    # Through it all one pod stayed under the target (2 x 80 rps at most: under 55 %).
    assert hpa_utilisation(1, 2 * max(CURVE) / WEB.peak_rps) <= 55
    assert replicas(kubectl, namespace, "web") == 1
    one_replica_until = wall_now()

    # The HPA follows the replayed load: 193.5 rps x 2 is the 4.3x step of test_metrics_api, 3 replicas exactly.
    level = 4.3 * WEB.peak_rps / 2
    assert [hpa_utilisation(1, 4.3), hpa_utilisation(3, 4.3)] == [124, 42]
    assert hpa_replicas(1, 124, 50) == 3 and hpa_replicas(3, 42, 50) == 3
    flat = httpx.post(f"{traffic_api}/monitoring/traffic",
                      json={"format": "csv", "data": csv_file(namespace, "web", [level, level]), "scale": 2})
    assert flat.status_code == 200, flat.text

    def settled() -> bool:
        status = kubectl.json("get", "hpa", "web", "-n", namespace)["status"]
        seen = (replicas(kubectl, namespace, "web"), status.get("currentReplicas"),
                status["currentMetrics"][0]["resource"]["current"]["averageUtilization"])
        assert seen == (3, 3, hpa_utilisation(3, 4.3)), seen
        return True
    eventually(settled, 120, "the HPA at 3 replicas on the replayed load")
    assert rps_of(traffic_engine, key)[1] == pytest.approx(2 * level)
    # The cost follows: the same wall time at three replicas is charged three times one's.
    three_replicas = wall_now()
    time.sleep(20)
    assert replicas(kubectl, namespace, "web") == 3
    span = dt.timedelta(seconds=20)
    before = core_hours(traffic_api, namespace, one_replica_until - span, one_replica_until)
    after = core_hours(traffic_api, namespace, three_replicas, three_replicas + span)
    assert before == pytest.approx(1.25 * 20 / 3600, rel=0.02), before  # one pod's 1200m + 50m requests
    assert after == pytest.approx(3 * before, rel=0.02), (before, after)

    # Played once from near its end: it finishes and the service is back on its synthetic curve.
    once = httpx.post(f"{traffic_api}/monitoring/traffic",
                      json={"format": "csv", "data": text, "loop": False, "shift_seconds": 23 * SPACING - SPACING})
    assert once.status_code == 200, once.text
    eventually(lambda: httpx.get(f"{traffic_api}/monitoring/traffic").json()["state"] == "finished", 30,
               "the replay played once to finish")
    eventually(lambda: rps_of(traffic_engine, key)[1] == WEB.peak_rps, 30, "the synthetic peak again")
    assert httpx.delete(f"{traffic_api}/monitoring/traffic").json()["state"] == "none"
    assert httpx.get(f"{traffic_api}/monitoring/traffic").json()["state"] == "none"
