"""Local PostgreSQL and Redis from Debian's packages, with project-local data folders.

PostgreSQL refuses to run as root, so when we are root (CI is) its processes run as the
``postgres`` system user that Debian's package creates.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import time
from pathlib import Path

from k8sim.local.processes import ClusterError, run, say
from k8sim.settings import CommonSettings

PG_USER = "k8sim"
PG_DB = "k8sim"


def pg_bindir() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if not candidates:
        raise ClusterError("PostgreSQL not installed: apt-get install postgresql")
    return candidates[-1].parent


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


def _give_to_postgres(path: Path) -> None:
    """Let the postgres user own its folders and reach them through every parent."""
    if os.geteuid() != 0:
        return
    user = pwd.getpwnam("postgres")
    for sub in [path, *path.rglob("*")]:
        os.chown(sub, user.pw_uid, user.pw_gid)
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(parent, mode | stat.S_IXOTH)


def pg_paths(settings: CommonSettings) -> tuple[Path, Path]:
    base = settings.state_dir / "postgres"
    return base / "data", base / "run"


def pg_running(settings: CommonSettings) -> bool:
    data, _ = pg_paths(settings)
    if not (data / "PG_VERSION").exists():
        return False
    proc = run(_as_postgres([str(pg_bindir() / "pg_ctl"), "status", "-D", str(data)]), check=False)
    return proc.returncode == 0


def postgres_up(settings: CommonSettings) -> None:
    data, sockets = pg_paths(settings)
    bindir = pg_bindir()
    if pg_running(settings):
        say(f"PostgreSQL already running on 127.0.0.1:{settings.postgres_port}")
        return
    sockets.mkdir(parents=True, exist_ok=True)
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        _give_to_postgres(data.parent)
        run(_as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                          "--encoding=UTF8", "--locale=C.UTF-8"]))
    _give_to_postgres(data.parent)
    options = f"-p {settings.postgres_port} -k {sockets} -c listen_addresses={settings.bind_address}"
    run(_as_postgres([str(bindir / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(data),
                      "-l", str(data.parent / "postgres.log"), "-o", options]))
    psql = [str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(settings.postgres_port), "-U", "postgres",
            "-v", "ON_ERROR_STOP=1", "-tAc"]
    if run([*psql, f"SELECT 1 FROM pg_roles WHERE rolname='{PG_USER}'"]).stdout.strip() != "1":
        run([*psql, f"CREATE ROLE {PG_USER} LOGIN SUPERUSER"])
    if run([*psql, f"SELECT 1 FROM pg_database WHERE datname='{PG_DB}'"]).stdout.strip() != "1":
        run([*psql, f"CREATE DATABASE {PG_DB} OWNER {PG_USER}"])
    say(f"PostgreSQL running on 127.0.0.1:{settings.postgres_port} (data in {data})")


def postgres_down(settings: CommonSettings) -> None:
    data, _ = pg_paths(settings)
    if pg_running(settings):
        run(_as_postgres([str(pg_bindir() / "pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(data)]))
    say("PostgreSQL stopped")


def redis_cli(settings: CommonSettings, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["redis-cli", "-h", "127.0.0.1", "-p", str(settings.redis_port), *args], check=check)


def redis_running(settings: CommonSettings) -> bool:
    if not shutil.which("redis-cli"):
        return False
    proc = redis_cli(settings, "ping", check=False)
    return proc.returncode == 0 and proc.stdout.strip() == "PONG"


def redis_up(settings: CommonSettings) -> None:
    if redis_running(settings):
        say(f"Redis already running on 127.0.0.1:{settings.redis_port}")
        return
    if not shutil.which("redis-server"):
        raise ClusterError("Redis not installed: apt-get install redis-server")
    data = settings.state_dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    run(["redis-server", "--port", str(settings.redis_port), "--bind", settings.bind_address, "--dir", str(data),
         "--daemonize", "yes", "--pidfile", str(data / "redis.pid"), "--logfile", str(data / "redis.log"),
         "--appendonly", "yes", "--save", ""])
    deadline = time.monotonic() + 30
    while not redis_running(settings):
        if time.monotonic() > deadline:
            raise ClusterError(f"Redis did not start; see {data / 'redis.log'}")
        time.sleep(0.1)
    say(f"Redis running on 127.0.0.1:{settings.redis_port} (data in {data})")


def redis_down(settings: CommonSettings) -> None:
    if redis_running(settings):
        redis_cli(settings, "shutdown", "nosave", check=False)
    say("Redis stopped")


def up(settings: CommonSettings) -> None:
    postgres_up(settings)
    redis_up(settings)


def down(settings: CommonSettings) -> None:
    postgres_down(settings)
    redis_down(settings)
