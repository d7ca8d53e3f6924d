"""Karpenter (its KWOK cloud provider) and the node bootstrap as local processes of the cluster.

``cluster.up`` installs Karpenter's CRDs, writes the instance-type file, applies the profile's
NodePools and starts a small supervisor detached from the terminal (``python -m k8sim.local.karpenter
supervise``) that keeps both processes running, restarting either when it exits; ``cluster.down``
stops it. Logs: ``.state/logs/karpenter.log``, ``karpenter-nodes.log`` and ``karpenter-supervisor.log``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from k8sim import karpenter, topology
from k8sim.local import build, supervisor
from k8sim.local.processes import ClusterError, alive, run, say, terminate, wait_until
from k8sim.local.settings import ClusterSettings

#: In the supervisor's command line: how ``down`` finds it (with this state folder) after a lost pid file.
SUPERVISOR_MODULE = "k8sim.local.karpenter"


def folder(settings: ClusterSettings) -> Path:
    return settings.state_dir / "karpenter"


def instance_types_file(settings: ClusterSettings) -> Path:
    return folder(settings) / "instance-types.json"


def logs(settings: ClusterSettings) -> Path:
    return settings.state_dir / "logs"


def commands(settings: ClusterSettings, bindir: Path) -> dict[str, list[str]]:
    """Both processes; each names this state folder's instance-type file, so ``down`` finds them."""
    types = str(instance_types_file(settings))
    return {
        "karpenter": [str(bindir / build.KARPENTER_BINARY), f"--instance-types-file-path={types}"],
        "karpenter-nodes": [sys.executable, "-m", "k8sim.karpenter", "nodes", "--instance-types", types,
                            "--ip-range", settings.karpenter_node_ip_range],
    }


def environment(settings: ClusterSettings) -> dict[str, str]:
    """Karpenter's own settings (its environment variables): out of cluster through KUBECONFIG, one
    replica so no leader election, its endpoints on the bind address (our main's KARPENTER_BIND_ADDRESS)."""
    ours = {f"K8SIM_{name.upper()}": json.dumps(value) if isinstance(value, dict | list) else str(value)
            for name, value in settings.model_dump().items()}  # the supervisor reads the same settings
    return {**os.environ, **ours, "KUBECONFIG": str(settings.kubeconfig), "DISABLE_LEADER_ELECTION": "true",
            "KARPENTER_BIND_ADDRESS": settings.bind_address,
            "METRICS_PORT": str(settings.karpenter_metrics_port),
            "HEALTH_PROBE_PORT": str(settings.karpenter_health_port),
            "LOG_LEVEL": settings.karpenter_log_level, "PYTHONUNBUFFERED": "1"}


def supervisor_pids(settings: ClusterSettings) -> list[int]:
    mark = str(folder(settings))
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if SUPERVISOR_MODULE in cmdline and "supervise" in cmdline and mark in cmdline and alive(int(proc.name)):
            found.append(int(proc.name))
    return found


def process_pids(settings: ClusterSettings) -> list[int]:
    """Karpenter and the bootstrap of this state folder, whoever started them."""
    mark = str(instance_types_file(settings))
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if mark in cmdline and SUPERVISOR_MODULE not in cmdline and alive(int(proc.name)):
            found.append(int(proc.name))
    return found


def fingerprint(settings: ClusterSettings, bindir: Path) -> str:
    """What the running processes were started with: a change restarts them."""
    digest = hashlib.sha256(str(bindir).encode())
    digest.update(instance_types_file(settings).read_bytes())
    for key, value in sorted(environment(settings).items()):
        if key in {"KUBECONFIG", "DISABLE_LEADER_ELECTION", "KARPENTER_BIND_ADDRESS", "METRICS_PORT",
                   "HEALTH_PROBE_PORT", "LOG_LEVEL"}:
            digest.update(f"{key}={value}".encode())
    digest.update(settings.karpenter_node_ip_range.encode())
    digest.update(Path(karpenter.__file__).read_bytes())  # the node bootstrap's own code
    return digest.hexdigest()[:16]


def kubectl(settings: ClusterSettings, *args: str, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([build.kubectl_binary(settings), "--kubeconfig", str(settings.kubeconfig), *args],
               stdin=stdin, check=check)


def install_crds(settings: ClusterSettings, bindir: Path) -> None:
    crds = sorted((bindir / "crds").glob("*.yaml"))
    kubectl(settings, "apply", "--server-side", "--force-conflicts", "--field-manager=k8sim",
            *[arg for crd in crds for arg in ("-f", str(crd))])
    names = [yaml.safe_load(crd.read_text())["metadata"]["name"] for crd in crds]
    kubectl(settings, "wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{n}" for n in names])


def apply_nodepools(settings: ClusterSettings) -> list[str]:
    """The profile's KWOKNodeClasses and NodePools; ours that the profile no longer has are deleted."""
    pools = topology.load_pools(settings.nodepools)
    types = karpenter.write_instance_types(instance_types_file(settings), settings.nodepools)
    docs = karpenter.nodepool_manifests(settings.profile, pools, types)
    kubectl(settings, "apply", "--server-side", "--force-conflicts", "--field-manager=k8sim", "-f", "-",
            stdin=yaml.safe_dump_all(docs, sort_keys=False))
    selector = ",".join(f"{k}={v}" for k, v in karpenter.MANAGED_BY.items())
    for kind, resource in (("NodePool", "nodepools.karpenter.sh"),
                           ("KWOKNodeClass", "kwoknodeclasses.karpenter.kwok.sh")):
        wanted = {d["metadata"]["name"] for d in docs if d["kind"] == kind}
        listed = kubectl(settings, "get", resource, "-l", selector, "-o", "name").stdout.split()
        stale = [name for name in listed if name.split("/", 1)[1] not in wanted]
        if stale:
            kubectl(settings, "delete", *stale, "--wait=false")
    return [d["metadata"]["name"] for d in docs if d["kind"] == "NodePool"]


def healthy(settings: ClusterSettings) -> bool:
    try:
        url = f"http://{settings.bind_address}:{settings.karpenter_health_port}/readyz"
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def up(settings: ClusterSettings) -> None:
    """CRDs, instance types, NodePools, then the supervised processes (restarted when what they run changed)."""
    if not settings.karpenter or not settings.managed:
        down(settings)
        return
    bindir = build.ensure_karpenter(settings)
    install_crds(settings, bindir)
    names = apply_nodepools(settings)
    stamp = folder(settings) / "running.fingerprint"
    want = fingerprint(settings, bindir)
    if supervisor_pids(settings) and stamp.exists() and stamp.read_text() == want:
        say(f"Karpenter already running (NodePools {', '.join(names)})")
        return
    down(settings)
    logs(settings).mkdir(parents=True, exist_ok=True)
    with (logs(settings) / "karpenter-supervisor.log").open("ab") as out:
        subprocess.Popen([sys.executable, "-m", SUPERVISOR_MODULE, "supervise", str(folder(settings))],
                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=environment(settings),
                         start_new_session=True)
    stamp.write_text(want)
    started = time.monotonic()
    wait_until(lambda: healthy(settings), settings.ready_timeout,
               f"Karpenter to be ready (see {logs(settings) / 'karpenter.log'})")
    say(f"Karpenter {build.KARPENTER_VERSION} ready in {time.monotonic() - started:.1f} s on "
        f"{settings.bind_address}:{settings.karpenter_metrics_port} (NodePools {', '.join(names)})")


def down(settings: ClusterSettings) -> None:
    """Stop the supervisor (it stops its processes), then anything of ours it left behind."""
    if not supervisor_pids(settings) and not process_pids(settings):
        return
    terminate(lambda: supervisor_pids(settings), "karpenter-down")
    terminate(lambda: process_pids(settings), "karpenter-down")
    (folder(settings) / "running.fingerprint").unlink(missing_ok=True)
    say("Karpenter stopped")


def supervise(settings: ClusterSettings) -> None:
    bindir = build.karpenter_dir(settings)
    if not (bindir / build.KARPENTER_BINARY).exists():
        raise ClusterError(f"Karpenter is not built in {bindir}; run `python -m k8sim setup`")
    supervisor.keep_running(commands(settings, bindir), logs(settings), environment(settings))


if __name__ == "__main__":
    if sys.argv[1:2] != ["supervise"]:
        sys.exit("usage: python -m k8sim.local.karpenter supervise STATE_FOLDER")
    supervise(ClusterSettings())
