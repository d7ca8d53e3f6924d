"""Helpers of the benchmarks: the simulator's processes on free ports, timing, ratios."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import asyncpg

from k8sim.local import cluster, services, supervisor
from k8sim.local.processes import free_port
from k8sim.local.settings import ClusterSettings


@contextmanager
def simulator(settings: ClusterSettings, *names: str) -> Iterator[dict[str, str]]:
    """Services and cluster up, then the named components (operator, api) as `k8sim run` starts them."""
    services.up(settings)
    cluster.up(settings)
    logs = settings.state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "K8SIM_API_PORT": str(port), "K8SIM_SPOOL": str(logs / "bench-spool.jsonl")}
    procs = []
    commands = supervisor.components(settings)
    for name in names:
        with (logs / f"bench-{name}.log").open("ab") as out:
            procs.append(subprocess.Popen(commands[name], env=env, stdout=out, stderr=subprocess.STDOUT))
    urls = {"api": f"http://127.0.0.1:{port}"}
    try:
        if "api" in names:
            supervisor.wait_healthy(f"{urls['api']}/health", proc=procs[list(names).index("api")])
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@asynccontextmanager
async def scratch_database(settings: ClusterSettings) -> AsyncIterator[str]:
    """The DSN of a new, empty database beside the simulator's (PostgreSQL must be up), dropped afterwards."""
    name = f"k8sim_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(settings.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield settings.database_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def ratio_line(what: str, baseline: str, base_s: float, measured: str, seconds: float) -> str:
    return (f"{what}: {baseline} {base_s:.2f} s, {measured} {seconds:.2f} s, "
            f"ratio {seconds / base_s:.2f} ({measured} / {baseline})")


def repo_path(*parts: str) -> Path:
    return Path(__file__).resolve().parent.parent.joinpath(*parts)
