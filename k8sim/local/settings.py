"""How the local control plane is built and started (``python -m k8sim``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from k8sim.settings import NodeSettings


class ClusterSettings(NodeSettings):
    """How the local control plane is built and started (``python -m k8sim``)."""

    managed: bool = Field(
        True, description="Start the cluster with kwokctl; false uses the cluster at K8SIM_KUBECONFIG."
    )
    cluster_name: str = Field("k8sim", description="kwokctl cluster name.")
    apiserver_port: int = Field(6443, description="Fixed kube-apiserver port on loopback.")
    bin_cache: Path = Field(
        Path.home() / ".cache" / "k8s-simulator" / "bin",
        description="Versioned folder of built control-plane binaries, kept across clones.",
    )
    go: str = Field("go", description="Go toolchain used to build the control plane.")
    kubectl: str = Field(
        "",
        description="kubectl binary; empty means the one next to this Python, else PATH.",
    )
    ready_timeout: float = Field(180.0, description="Seconds to wait for the cluster and nodes.")
    control_plane_gogc: int = Field(400, ge=25, description=(
        "GOGC of etcd, kube-apiserver, controller-manager, scheduler and KWOK (set when the cluster starts): "
        "400 trades more memory for less CPU; 100 is Go's default."))
