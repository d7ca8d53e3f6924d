"""The local cluster's layout as kwokctl runs it: its working folders, its configuration (every
component's flags, the profile's stages, the audit policy) and the arguments of ``kwokctl create
cluster``. Pure builders over :mod:`k8sim.topology`, unit-tested.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from k8sim import topology
from k8sim.local.settings import ClusterSettings
from k8sim.settings import CLUSTER_DATA

#: Deletes of what the whole cluster leans on (namespaces, nodes, CRDs), with the client that sent them.
AUDIT_POLICY = CLUSTER_DATA / "audit-policy.yaml"


def workdir(settings: ClusterSettings) -> Path:
    """kwokctl's working folder (KWOK_WORKDIR)."""
    return settings.state_dir / "kwok"


def cluster_dir(settings: ClusterSettings) -> Path:
    """The local cluster's own folder: kwok.yaml, pki/, logs/, pids/."""
    return workdir(settings) / "clusters" / settings.cluster_name


def delegated_auth_flags(settings: ClusterSettings) -> dict[str, str]:
    """The scheduler and controller-manager check a caller's client certificate against the cluster's
    CA and its rights with the apiserver, as kubeadm sets them up: their /debug/pprof then answers the
    cluster's admins (``bench_scale.py --pprof``) instead of refusing everyone but their probes."""
    return {"client-ca-file": str(cluster_dir(settings) / "pki" / "ca.crt"),
            "authorization-kubeconfig": str(cluster_dir(settings) / "kubeconfig.yaml")}


def egress_socket(settings: ClusterSettings) -> Path:
    """The Unix socket of the cluster's egress proxy (short: a socket path has at most 107 bytes)."""
    return settings.state_dir / "egress.sock"


def egress_config(settings: ClusterSettings) -> Path:
    """kube-apiserver's EgressSelectorConfiguration (written by ``cluster.up``)."""
    return settings.state_dir / "egress-selector.yaml"


def egress_component(settings: ClusterSettings) -> dict[str, Any]:
    """The egress proxy as a kwokctl component: started, stopped and listed with the control plane."""
    return {"name": "k8sim-egress", "binary": sys.executable, "links": ["kube-apiserver"],
            "workDir": str(cluster_dir(settings)),
            "args": ["-m", "k8sim", "egress", "--socket", str(egress_socket(settings)),
                     "--kubeconfig", str(settings.kubeconfig)]}


def kwokctl_configuration(settings: ClusterSettings) -> dict[str, Any]:
    """kwokctl's own options: every component (etcd, controllers, KWOK) listens on one address,
    with the profile's flags. (In the configuration, not as --extra-args: kwokctl v0.8.0 indexes
    those wrongly past two components.)"""
    flags = {"kwok-controller": topology.KWOK_FLAGS,
             **{c: topology.component_flags(settings.profile, c, settings.cluster_speed)
                for c in topology.PROFILE_COMPONENTS}}
    for component in ("kube-controller-manager", "kube-scheduler"):
        flags[component] = {**delegated_auth_flags(settings), **flags[component]}
    # No pod network: APIService backends (the add-ons the engine plays) are reached through the proxy.
    flags["kube-apiserver"] = {**flags.get("kube-apiserver", {}),
                               "egress-selector-config-file": str(egress_config(settings))}
    patches = [{"name": name, "extraArgs": [{"key": k, "value": v} for k, v in values.items()]}
               for name, values in flags.items() if values]
    return {"apiVersion": "config.kwok.x-k8s.io/v1alpha1", "kind": "KwokctlConfiguration",
            "options": {"bindAddress": settings.bind_address, "kubeAuditPolicy": str(AUDIT_POLICY)},
            "componentsPatches": patches, "components": [egress_component(settings)]}


def kwokctl_config(settings: ClusterSettings) -> str:
    docs = [kwokctl_configuration(settings), *topology.stages_for_profile(settings.profile, settings.cluster_speed)]
    return yaml.safe_dump_all(docs, sort_keys=False)


def cluster_info(settings: ClusterSettings) -> dict[str, Any]:
    """The ConfigMap that tells clients how this cluster was made (:data:`k8sim.topology.CLUSTER_INFO`)."""
    namespace, name = topology.CLUSTER_INFO
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
            "data": {"profile": settings.profile, "speed": repr(settings.cluster_speed).removesuffix(".0")}}


def kwokctl_create_args(settings: ClusterSettings, bindir: Path, config: Path) -> list[str]:
    """Arguments of `kwokctl create cluster`: every component from the local build."""
    args = [
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
        "--kubeconfig",
        str(settings.kubeconfig),
        "--config",
        str(config),
        "--wait",
        f"{int(settings.ready_timeout)}s",
    ]
    return args
