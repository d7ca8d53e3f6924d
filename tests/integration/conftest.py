"""Integration fixtures: the real cluster, PostgreSQL and Redis, started once per session."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from k8sim import store
from k8sim.local import cluster, services, supervisor
from k8sim.local import karpenter as local_karpenter
from k8sim.local.processes import free_port
from k8sim.local.settings import ClusterSettings


@asynccontextmanager
async def scratch_pool(settings: ClusterSettings, upto: int | None = None) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a new database beside the simulator's, with the migrations applied (only those up
    to ``upto``, without their bookkeeping, when given); the database is dropped afterwards."""
    name = f"k8sim_test_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(settings.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    pool = await store.connect(settings.database_url.rsplit("/", 1)[0] + f"/{name}")
    try:
        if upto is None:
            await store.migrate(pool)
        else:
            async with pool.acquire() as conn:
                for version, _, sql in store.migrations():
                    if version <= upto:
                        await conn.execute(sql)
        yield pool
    finally:
        await pool.close()
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="session")
def live_cluster(settings: ClusterSettings) -> ClusterSettings:
    """The simulated cluster, started if it is not running (a no-op when it is)."""
    cluster.up(settings)
    return settings


@pytest.fixture(scope="session")
def live_services(settings: ClusterSettings) -> ClusterSettings:
    services.up(settings)
    return settings


class Kubectl:
    """kubectl against the simulated cluster, JSON in and out."""

    def __init__(self, settings: ClusterSettings) -> None:
        self.settings = settings

    def __call__(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        return cluster.kubectl(self.settings, *args, stdin=stdin, check=check).stdout

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json"))


@pytest.fixture(scope="session")
def kubectl(live_cluster: ClusterSettings) -> Kubectl:
    return Kubectl(live_cluster)


@pytest.fixture
def namespace(kubectl: Kubectl) -> Iterator[str]:
    """A fresh namespace, deleted (without waiting) after the test."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)




@contextmanager
def process(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A simulator process started the way `python -m k8sim run` starts it, stopped after."""
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def started(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    try:
        supervisor.wait_healthy(url, proc=proc)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}; its log ends with:\n{log.read_text()[-3000:]}") from None


def eventually(check: Callable[[], Any], timeout: float = 60, what: str = "the condition") -> Any:
    """Poll check until it returns something truthy; its assertion errors count as not yet."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (AssertionError, KeyError, ValueError, OSError, httpx.HTTPError) as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")


@pytest.fixture(scope="module")
def operator_process(live_services: ClusterSettings, live_cluster: ClusterSettings,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen[bytes]]:
    """The operator as a separate process (module-scoped: operator tests run their own)."""
    tmp = tmp_path_factory.mktemp("operator")
    cmd = [sys.executable, "-m", "kopf", *supervisor.KOPF_ARGS]
    with process(cmd, {"K8SIM_SPOOL": str(tmp / "spool.jsonl")}, tmp / "operator.log") as proc:
        yield proc


@pytest.fixture(scope="module")
def api_url(live_services: ClusterSettings, live_cluster: ClusterSettings, operator_process: Any,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API on a free loopback port, as `python -m k8sim_api` runs it."""
    tmp = tmp_path_factory.mktemp("api")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with process([sys.executable, "-m", "k8sim_api"], {"K8SIM_API_PORT": str(port)}, tmp / "api.log") as proc:
        started(f"{url}/health", proc, tmp / "api.log")
        yield url


@pytest.fixture(scope="module")
def engine_url(live_services: ClusterSettings, live_cluster: ClusterSettings,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The monitoring engine on a free port, ticking every second."""
    tmp = tmp_path_factory.mktemp("engine")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"K8SIM_ENGINE_PORT": str(port), "K8SIM_METRICS_API_PORT": str(free_port()), "K8SIM_TICK_SECONDS": "1"}
    with process([sys.executable, "-m", "k8sim_engine"], env, tmp / "engine.log") as proc:
        started(f"{url}/health", proc, tmp / "engine.log")
        yield url


@contextmanager
def scraping(target: str, folder: Path) -> Iterator[str]:
    """Debian's Prometheus scraping ``target`` (host:port) every second, its data in ``folder``; its URL."""
    port = free_port()
    (folder / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs:\n  - job_name: k8sim\n    static_configs: [{{targets: ['{target}']}}]\n")
    cmd = ["prometheus", f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
           f"--web.listen-address=127.0.0.1:{port}"]
    with process(cmd, {}, folder / "prometheus.log"):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def prometheus(engine_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's Prometheus (installed by .ci/run) scraping the engine every second."""
    if shutil.which("prometheus") is None:
        pytest.skip("Debian's prometheus is installed by .ci/run")
    with scraping(engine_url.removeprefix("http://"), tmp_path_factory.mktemp("prometheus")) as url:
        yield url


@pytest.fixture
def karpenter_up(live_cluster: ClusterSettings) -> ClusterSettings:
    if not live_cluster.karpenter:
        pytest.skip("K8SIM_KARPENTER is off")
    local_karpenter.up(live_cluster)  # a no-op when it runs
    return live_cluster


def promql(prometheus: str, query: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=10).json()
    assert body["status"] == "success", (query, body)
    return list(body["data"]["result"])


#: A weekday's late-morning peak: the daily cycle is at its top (exactly 1) for the first 50 minutes.
PEAK = "2026-11-23T10:30:00Z"


def engine_env(metrics_port: int) -> dict[str, str]:
    """A closed-loop engine: at PEAK without noise, so what an HPA sees follows from the load factor."""
    return {"K8SIM_ENGINE_PORT": str(free_port()), "K8SIM_METRICS_API_PORT": str(metrics_port),
            "K8SIM_TICK_SECONDS": "1", "K8SIM_SIM_START": PEAK, "K8SIM_MODEL_NOISE": "false"}


@pytest.fixture(scope="module")
def loop_engine(live_services: ClusterSettings, live_cluster: ClusterSettings,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An engine at a weekday peak, ticking every second, registered as the cluster's metrics APIs."""
    tmp = tmp_path_factory.mktemp("loop-engine")
    env = engine_env(free_port())
    with process([sys.executable, "-m", "k8sim_engine"], env, tmp / "engine.log") as proc:
        url = f"http://127.0.0.1:{env['K8SIM_ENGINE_PORT']}"
        started(f"{url}/health", proc, tmp / "engine.log")
        yield url
