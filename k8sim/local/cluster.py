"""The local cluster's lifecycle: create, start, stop and delete it with kwokctl, and keep its nodes.

Drives real processes (``kwokctl --runtime binary``, ``kubectl``) from the binaries of
:mod:`k8sim.local.build`, the layout of :mod:`k8sim.local.layout` and the nodes of :mod:`k8sim.topology`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from k8sim import jobs, topology
from k8sim.local import build, egress, karpenter, layout
from k8sim.local.processes import ClusterError, alive, port_in_use, run, say, terminate, wait_until
from k8sim.local.settings import ClusterSettings


def kwokctl_env(settings: ClusterSettings) -> dict[str, str]:
    return {
        **os.environ,
        "KWOK_WORKDIR": str(layout.workdir(settings)),
        # kwokctl's own `kubectl` helper must not download one either.
        "KWOK_KUBECTL_BINARY": build.kubectl_binary(settings),
        # Inherited by every component kwokctl starts: at Go's default the control plane spends much
        # of its CPU in Go's garbage collector, and a simulator has memory to spare.
        "GOGC": str(settings.control_plane_gogc),
    }


def kwokctl(settings: ClusterSettings, bindir: Path, *args: str,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([str(bindir / "kwokctl"), *args], env=kwokctl_env(settings), check=check)


def kubectl(settings: ClusterSettings, *args: str, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [build.kubectl_binary(settings), "--kubeconfig", str(settings.kubeconfig), *args]
    return run(cmd, stdin=stdin, check=check)


def is_ready(settings: ClusterSettings) -> bool:
    if not settings.kubeconfig.exists():
        return False
    if settings.managed and not port_in_use(settings.apiserver_port):
        return False
    proc = kubectl(settings, "get", "--raw", "/readyz", "--request-timeout=5s", check=False)
    return proc.returncode == 0 and proc.stdout.strip() == "ok"


def up(settings: ClusterSettings) -> None:
    """Start the cluster (create or restart it) and make sure every configured node exists."""
    if not settings.managed:
        if not is_ready(settings):
            raise ClusterError(f"the cluster of {settings.kubeconfig} is not reachable")
        ensure_nodes(settings)
        return
    bindir = build.ensure_binaries(settings)
    exists = (layout.cluster_dir(settings) / "kwok.yaml").exists()
    if exists and is_ready(settings):
        say(f"cluster {settings.cluster_name} already running on 127.0.0.1:{settings.apiserver_port}")
    else:
        if port_in_use(settings.apiserver_port):
            raise ClusterError(
                f"port {settings.apiserver_port} is busy (another process listens there); "
                "free it or set K8SIM_APISERVER_PORT"
            )
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        layout.egress_config(settings).write_text(egress.selector_configuration(layout.egress_socket(settings)))
        started = time.monotonic()
        if exists:
            say(f"starting stopped cluster {settings.cluster_name}")
            saved = (layout.cluster_dir(settings) / "kwok.yaml").read_text()
            if f"bindAddress: {settings.bind_address}" not in saved:
                say(f"warning: this cluster was created listening beyond {settings.bind_address}; "
                    "`make cluster-delete` recreates it bound as configured (its objects are lost)")
            if "k8sim-egress" not in saved:
                say("note: this cluster predates the egress proxy: add-ons the engine plays (prometheus-adapter, "
                    "metrics-server, KEDA) stay unavailable; `make cluster-delete` recreates it with the proxy")
            if f"!{topology.SHARD_LABEL}" not in saved:
                say("note: this cluster's KWOK plays every node, sharded ones too; `make cluster-delete` "
                    "recreates it leaving nodes labelled for the chart's KWOK shards to them")
            kwokctl(settings, bindir, "start", "cluster", "--name", settings.cluster_name,
                    "--wait", f"{int(settings.ready_timeout)}s")
            wait_until(lambda: is_ready(settings), settings.ready_timeout, "the apiserver to be ready")
            # The new KWOK controller has a new identity; until the old one's node leases
            # expire it would leave those nodes' pods alone. Hand every lease over now.
            kubectl(settings, "delete", "leases", "-n", "kube-node-lease", "--all", "--wait=false")
        else:
            config = settings.state_dir / "kwokctl.yaml"
            config.write_text(layout.kwokctl_config(settings))
            say(f"creating cluster {settings.cluster_name} (profile {settings.profile})")
            kwokctl(settings, bindir, *layout.kwokctl_create_args(settings, bindir, config))
            wait_until(lambda: is_ready(settings), settings.ready_timeout, "the apiserver to be ready")
        say(f"control plane ready in {time.monotonic() - started:.1f} s")
    record_info(settings, created=not exists)
    ensure_nodes(settings)
    karpenter.up(settings)


def record_info(settings: ClusterSettings, created: bool) -> None:
    """Write how the cluster was made (its profile and timers' speed) where clients read it. A cluster made with
    other timers than asked keeps them, and says so; one made before it was written had Kubernetes' pace."""
    namespace, name = topology.CLUSTER_INFO
    found = kubectl(settings, "get", "configmap", "-n", namespace, name, "-o", "json", "--ignore-not-found")
    info = layout.cluster_info(settings)
    if found.stdout.strip():
        info = json.loads(found.stdout)
    elif not created:
        info["data"]["speed"] = "1"
    if float(info["data"].get("speed") or 1) != settings.cluster_speed:
        say(f"warning: this cluster's timers run at speed {info['data'].get('speed')}, not K8SIM_CLUSTER_SPEED="
            f"{settings.cluster_speed:g}; `make cluster-delete` recreates it with the new speed")
    if not found.stdout.strip():
        kubectl(settings, "apply", "-f", "-", stdin=json.dumps(info))


def ensure_nodes(settings: ClusterSettings) -> None:
    names = asyncio.run(jobs.nodes("apply", settings))
    kubectl(settings, "wait", "--for=condition=Ready", f"--timeout={int(settings.ready_timeout)}s",
            *[f"node/{n}" for n in names])
    say(f"{len(names)} nodes Ready")


def component_pids(settings: ClusterSettings) -> list[int]:
    """Live processes of this cluster: kwokctl's pid files plus any process whose command
    line names its work directory (a component kwokctl lost track of)."""
    marks = [str(layout.workdir(settings))]  # never the shared bin cache: other clusters run from it too
    candidates = set()
    for pidfile in (layout.cluster_dir(settings) / "pids").glob("*.pid"):
        try:
            candidates.add(int(pidfile.read_text().strip()))
        except (OSError, ValueError):
            continue
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        cmdline = b" ".join(argv).decode(errors="replace")
        if any(mark in cmdline for mark in marks) and Path(argv[0].decode(errors="replace")).name != "kwokctl":
            candidates.add(int(proc.name))
    return sorted(pid for pid in candidates if alive(pid))


def down(settings: ClusterSettings) -> None:
    """Stop every component, keeping etcd's data so `up` brings the same objects back."""
    if not settings.managed:
        return
    karpenter.down(settings)  # before the apiserver goes: it would only log its absence
    if (layout.cluster_dir(settings) / "kwok.yaml").exists():
        bindir = build.ensure_binaries(settings)
        kwokctl(settings, bindir, "stop", "cluster", "--name", settings.cluster_name, check=False)
    _reap(settings)
    say(f"cluster {settings.cluster_name} stopped")


def delete(settings: ClusterSettings) -> None:
    """Remove the cluster and its data."""
    karpenter.down(settings)
    if (layout.cluster_dir(settings) / "kwok.yaml").exists():
        bindir = build.ensure_binaries(settings)
        kwokctl(settings, bindir, "delete", "cluster", "--name", settings.cluster_name,
                "--kubeconfig", str(settings.kubeconfig), check=False)
    _reap(settings)
    shutil.rmtree(layout.cluster_dir(settings), ignore_errors=True)
    say(f"cluster {settings.cluster_name} deleted")


def _reap(settings: ClusterSettings) -> None:
    """Make sure no component outlives `down`."""
    terminate(lambda: component_pids(settings), "cluster-down")
    if settings.managed:
        wait_until(lambda: not port_in_use(settings.apiserver_port), 30, "the apiserver port to close")
