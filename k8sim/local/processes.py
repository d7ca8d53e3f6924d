"""Processes of the local tooling: running commands, waiting, progress for humans, reaping.

Generic helpers with no knowledge of what they run; the cluster and the services use them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


class ClusterError(RuntimeError):
    """A user-facing failure of the local cluster tooling."""


def say(message: str) -> None:
    """Progress for humans: one line on stderr, flushed (long work shows progress)."""
    print(f"[k8sim] {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], *, env: dict[str, str] | None = None, stdin: str | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, input=stdin, env=env, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        shown = " ".join(Path(cmd[0]).name if i == 0 else a for i, a in enumerate(cmd[:4]))
        raise ClusterError(f"{shown} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}".rstrip())
    return proc


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    """A TCP port free on loopback right now (for test and benchmark servers)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}")


def alive(pid: int) -> bool:
    """True for a running process; an exiting one (zombie) no longer counts."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def terminate(pids: Callable[[], list[int]], what: str) -> None:
    """TERM, then KILL, whatever ``pids`` still returns; fail if anything survives."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        found = pids()
        if not found:
            break
        for pid in found:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and pids():
            time.sleep(0.2)
    leftover = pids()
    if leftover:
        raise ClusterError(f"processes survived {what}: {leftover}")
