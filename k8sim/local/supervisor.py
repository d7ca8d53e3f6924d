"""`python -m k8sim run`: start the simulator's processes and keep them running.

Each component runs as its own process (as it would in the Helm chart), logging to
``.state/logs/<name>.log``; one that exits is restarted with backoff. Ctrl-C stops them
all; the cluster and the services stay up (``make down`` stops those).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from k8sim.local.processes import say
from k8sim.local.settings import ClusterSettings

#: kopf's arguments for the operator, as production runs it (tests run it the same way).
KOPF_ARGS = ["run", "-m", "k8sim_operator.handlers", "--all-namespaces", "--standalone", "--quiet"]


def components(settings: ClusterSettings) -> dict[str, list[str]]:
    py = sys.executable
    return {
        "operator": [py, "-m", "kopf", *KOPF_ARGS],
        "api": [py, "-m", "k8sim_api"],
        "engine": [py, "-m", "k8sim_engine"],
    }


def wait_healthy(url: str, *, timeout: float = 60, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll url until it answers 200; fail early if the process serving it has exited."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} not healthy after {timeout:.0f} s")
        time.sleep(0.2)


def run(settings: ClusterSettings) -> None:
    api_port = os.environ.get("K8SIM_API_PORT", "6360")  # the API's own setting, read as it reads it
    keep_running(components(settings), settings.state_dir / "logs", {**os.environ, "PYTHONUNBUFFERED": "1"},
                 started=f"simulator running: API http://127.0.0.1:{api_port}  kubeconfig {settings.kubeconfig}"
                         "  (Ctrl-C stops)")


def keep_running(wanted: dict[str, list[str]], logs: Path, env: dict[str, str], *, started: str = "") -> None:
    """Run each command logging to ``logs/<name>.log`` and restart it when it exits, with backoff (reset
    once it has run a minute); SIGTERM or SIGINT stops them all, then returns. ``make run`` runs the
    simulator's components in it; ``python -m k8sim up`` starts one detached from the terminal for Karpenter.

    Children get sessions of their own so that a Ctrl-C at the terminal reaches only this loop, which
    stops them in order."""
    logs.mkdir(parents=True, exist_ok=True)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    started_at: dict[str, float] = {}
    delays: dict[str, float] = {}
    stopping = False

    def start(name: str) -> None:
        with (logs / f"{name}.log").open("ab") as log_file:
            procs[name] = subprocess.Popen(wanted[name], stdout=log_file, stderr=subprocess.STDOUT, env=env,
                                           stdin=subprocess.DEVNULL, start_new_session=True)
        started_at[name] = time.monotonic()
        say(f"{name} started (pid {procs[name].pid}, log {logs / f'{name}.log'})")

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for name in wanted:
        start(name)
    if started:
        say(started)
    while not stopping:
        time.sleep(0.2)
        for name, proc in list(procs.items()):
            if proc.poll() is None or stopping:
                continue
            if time.monotonic() - started_at[name] > 60:
                delays[name] = 0.5
            delay = delays.get(name, 0.5)
            say(f"{name} exited with {proc.returncode}; restarting in {delay:.1f} s (see its log)")
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and not stopping:
                time.sleep(0.1)
            delays[name] = min(delay * 2, 30.0)
            if not stopping:
                start(name)
    for proc in procs.values():
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + 15
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    say("supervised processes stopped")
