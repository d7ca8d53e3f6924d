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
    cluster_speed: float = Field(1.0, gt=0, le=1000, description=(
        "How many times faster than Kubernetes' the cluster's timers run (set when the cluster is created): the "
        "HPA's sync and stabilisation, KWOK's pod delays, eviction tolerations. A session recorded at speed 1 "
        "replays at --speed N into a cluster made with N (`python -m k8sim replay` says so)."))
    ready_timeout: float = Field(180.0, description="Seconds to wait for the cluster and nodes.")
    control_plane_gogc: int = Field(400, ge=25, description=(
        "GOGC of etcd, kube-apiserver, controller-manager, scheduler and KWOK (set when the cluster starts): "
        "400 trades more memory for less CPU; 100 is Go's default."))
    karpenter: bool = Field(True, description=(
        "Run Karpenter (its KWOK cloud provider) with the cluster: nodes come and go with pending pods "
        "(on or off; off leaves the static pools alone, as before)."))
    karpenter_node_ip_range: str = Field("10.241.0.0/16", description=(
        "CIDR the InternalIPs of Karpenter's nodes come from (apart from the static nodes' K8SIM_NODE_IP_RANGE)."))
    karpenter_build_jobs: int = Field(2, ge=1, description="Packages Go compiles at once when it builds Karpenter "
                                                           "(-p; low keeps a 2-core machine usable).")
    karpenter_metrics_port: int = Field(6371, description="Karpenter's Prometheus metrics port on the bind address.")
    karpenter_health_port: int = Field(6372, description="Karpenter's health-probe port on the bind address.")
    karpenter_log_level: str = Field("info", description="Karpenter's own log level (debug, info or error).")
