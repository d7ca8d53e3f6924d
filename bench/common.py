"""Helpers of the benchmarks: the simulator's processes on free ports, timing, ratios."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import platform
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import asyncpg

from k8sim.local import cluster, services, supervisor
from k8sim.local.processes import free_port
from k8sim.local.settings import ClusterSettings


@contextmanager
def simulator(settings: ClusterSettings, *names: str, services_up: bool = True) -> Iterator[dict[str, str]]:
    """Services (unless ``services_up`` is false: a second cluster shares them) and cluster up, then the named
    components (operator, api) as `k8sim run` starts them."""
    if services_up:
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


#: Where each run leaves its machine-readable result ('' for nowhere); the documentation's scale
#: page is generated from these files, so the figures it shows are the ones a run measured.
RESULTS_ENV = "K8SIM_BENCH_RESULTS"


def machine() -> dict[str, Any]:
    """What a figure depends on besides the code: cores, memory, CPU model, kernel, Python."""
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    total_kib = next((int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal:")), 0)
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
                 platform.processor())
    return {"nproc": os.cpu_count(), "memory_gib": round(total_kib / 2**20, 1), "cpu": model,
            "kernel": platform.release(), "python": platform.python_version()}


def commit() -> str | None:
    """The checkout's commit, with ``-dirty`` when it has uncommitted changes (None outside git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo_path(), capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo_path(),
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head}-dirty" if dirty else head


def write_results(name: str, arguments: dict[str, Any], figures: dict[str, Any],
                  started: dt.datetime | None = None) -> Path | None:
    """``bench/results/<name>-<UTC time>.json``: when, where, with what, and what was measured."""
    folder = os.environ.get(RESULTS_ENV, str(repo_path("bench", "results")))
    if not folder:
        return None
    now = dt.datetime.now(dt.UTC)
    started = started or now
    document = {"benchmark": name, "date": started.isoformat(timespec="seconds"),
                "seconds": round((now - started).total_seconds(), 1), "machine": machine(), "commit": commit(),
                "arguments": arguments, "figures": figures}
    path = Path(folder) / f"{name}-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1, default=str) + "\n")
    print(f"results: {path}")
    return path


class _Tee(io.TextIOBase):
    """Stdout that also keeps every line, so a benchmark's printed figures become its result."""

    def __init__(self, out: Any) -> None:
        self.out, self._partial = out, ""
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        self.out.write(text)
        self._partial += text
        *done, self._partial = self._partial.split("\n")
        self.lines.extend(done)
        return len(text)

    def flush(self) -> None:
        self.out.flush()


def run_recorded(name: str, main: Callable[[], int]) -> int:
    """Run a benchmark's ``main`` and, when it succeeds, write what it printed as its result file."""
    started = dt.datetime.now(dt.UTC)
    tee = _Tee(sys.stdout)
    real, sys.stdout = sys.stdout, tee
    try:
        code = main()
    finally:
        sys.stdout = real
    if code == 0:
        lines = [*tee.lines, *([tee._partial] if tee._partial else [])]
        write_results(name, {"argv": sys.argv[1:]}, {"output": lines}, started)
    return code
