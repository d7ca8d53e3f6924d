"""How the local control plane is built and started (``python -m k8sim``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from k8sim.settings import ROOT, CommonSettings


class ClusterSettings(CommonSettings):
    """How the local control plane is built and started (``python -m k8sim``)."""

    managed: bool = Field(
        True, description="Start the cluster with kwokctl; false uses the cluster at K8SIM_KUBECONFIG."
    )
    cluster_name: str = Field("k8sim", description="kwokctl cluster name.")
    apiserver_port: int = Field(6443, description="Fixed kube-apiserver port on loopback.")
    nodepools: Path = Field(ROOT / "cluster" / "nodepools.yaml", description="Node-pool file.")
    bin_cache: Path = Field(
        Path.home() / ".cache" / "k8s-simulator" / "bin",
        description="Versioned folder of built control-plane binaries, kept across clones.",
    )
    go: str = Field("go", description="Go toolchain used to build the control plane.")
    kubectl: str = Field(
        "",
        description="kubectl binary; empty means the one next to this Python, else PATH.",
    )
    node_ip_range: str = Field(
        "10.240.0.0/16", description="CIDR the nodes' InternalIPs come from (addresses only, never contacted)."
    )
    kwok_shards: int = Field(1, ge=1, description=(
        "KWOK controllers sharing the chart's fake nodes: the node Job labels each node k8sim.io/kwok-shard "
        "(a hash of its name) and each controller plays its own shard. The local cluster has one."))
    ready_timeout: float = Field(180.0, description="Seconds to wait for the cluster and nodes.")
    control_plane_gogc: int = Field(400, ge=25, description=(
        "GOGC of etcd, kube-apiserver, controller-manager, scheduler and KWOK (set when the cluster starts): "
        "400 spends about twice the memory (apiserver 4 GiB at 10,000 pods) for about a fifth less CPU; "
        "100 is Go's default."))
