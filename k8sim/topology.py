"""What the simulated cluster is made of: node pools, the Node objects a kubelet would register,
KWOK's stages per delay profile and its in-cluster options. Pure builders over the package's data
(:data:`k8sim.settings.CLUSTER_DATA`), used by the Helm chart's Jobs (:mod:`k8sim.jobs`) and by the
local tooling (:mod:`k8sim.local`) alike; and the one read of a running cluster, how fast its timers run.
"""

from __future__ import annotations

import ipaddress
import math
import zlib
from pathlib import Path
from typing import Any

import yaml

from k8sim import gpus, resources
from k8sim.kube import Kube, KubeError
from k8sim.settings import CLUSTER_DATA

#: The Kubernetes release the control plane is built from, which every node's kubelet reports.
KUBERNETES_VERSION = "v1.36.3"
#: The KWOK release the controller is built from; its stages and options are that release's.
KWOK_VERSION = "v0.8.0"

STAGES = CLUSTER_DATA / "stages"
PROFILES = CLUSTER_DATA / "profiles.yaml"

#: GPU types a pool may name (gpu.type): the models of :data:`k8sim.gpus.MODELS`.
GPU_TYPES = tuple(gpus.MODELS)
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
#: What a node says of its host, as an Ubuntu 24.04 cloud image with containerd would.
OS_IMAGE = "Ubuntu 24.04.3 LTS"
KERNEL_VERSION = "6.8.0-1024-aws"
CONTAINER_RUNTIME = "containerd://2.1.4"


class TopologyError(ValueError):
    """A node-pool file or a profile that cannot make a cluster (the message says why)."""


def load_pools(path: Path) -> list[dict[str, Any]]:
    data = yaml.safe_load(path.read_text()) or {}
    pools = data.get("pools")
    if not isinstance(pools, list) or not pools:
        raise TopologyError(f"{path}: expected a non-empty 'pools' list")
    for pool in pools:
        if not isinstance(pool, dict) or not pool.get("name"):
            raise TopologyError(f"{path}: every pool needs a name")
        gpu = pool.get("gpu")
        if gpu is None:
            continue
        if not isinstance(gpu, dict):
            raise TopologyError(f"{path}: pool {pool['name']}: gpu must be a mapping (type, count, mig, sharing)")
        if gpu.get("type") not in GPU_TYPES:
            raise TopologyError(f"{path}: pool {pool['name']}: gpu.type must be one of {GPU_TYPES}")
        try:
            gpus.setup(gpu)
        except gpus.GPUError as exc:
            raise TopologyError(f"{path}: pool {pool['name']}: {exc}") from None
    return pools


def node_ip(network: str, index: int) -> str:
    """The InternalIP of the index-th node: hosts of the range in order (never contacted)."""
    net = ipaddress.ip_network(network)
    if index + 10 >= net.num_addresses - 1:
        raise TopologyError(f"node IP range {network} is too small for {index + 1} nodes")
    return str(net.network_address + 10 + index)  # .1-.9 are left for gateways, as clouds do


def node_manifests(pools: list[dict[str, Any]], ip_range: str = "10.240.0.0/16",
                   shards: int = 1, gfd_timestamp: int | None = None) -> list[dict[str, Any]]:
    """KWOK Node objects for every pool, registered as a real kubelet would: capacity, a unique
    InternalIP and Hostname, OS and kernel, instance type and zone (round robin in a region). GPU
    nodes carry what the GPU Operator adds (:func:`k8sim.gpus.gfd_labels`; ``gfd_timestamp`` is
    GFD's nvidia.com/gfd.timestamp, left out when None) and the GPU taint."""
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
            if shards > 1:
                labels[SHARD_LABEL] = str(shard_of(name, shards))
            spec: dict[str, Any] = {"providerID": f"kwok://{name}"}
            gpu = pool.get("gpu")
            if gpu:
                try:
                    found = gpus.setup(gpu)
                except gpus.GPUError as exc:
                    raise TopologyError(f"pool {pool['name']}: {exc}") from None
                capacity.update({k: str(v) for k, v in found.resources().items()})
                labels["accelerator"] = f"nvidia-{gpu['type']}"
                labels.update(gpus.node_labels(found, labels["node.kubernetes.io/instance-type"],
                                               timestamp=gfd_timestamp))
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


#: A node labelled with this is played by the KWOK controller of that shard (the chart's
#: ``kwok.shards``), never by the local cluster's own controller.
SHARD_LABEL = "k8sim.io/kwok-shard"

#: Flags of KWOK's controller in every profile.
KWOK_FLAGS = {
    # A node lease outliving its KWOK controller stalls that node's pods for this long
    # (kwokctl's own --node-lease-duration-seconds does not reach the controller).
    "node-lease-duration-seconds": "40",
    # Every node but those a sharded controller owns (kwokctl starts KWOK with --manage-all-nodes).
    "manage-all-nodes": "false",
    "manage-nodes-with-label-selector": f"!{SHARD_LABEL}",
}


def shard_of(name: str, shards: int) -> int:
    """The KWOK shard that plays a node: stable across runs and processes (not Python's hash)."""
    return zlib.crc32(name.encode()) % shards


#: Stages only the profiles that name them play, each with the stage whose pods it takes: that
#: stage's weight drops to 0, and KWOK then gives it only the pods the shortcut's selector leaves.
SHORTCUTS = {"pod-start": "pod-create"}


def _faster(milliseconds: Any, speed: float) -> int:
    return max(1, round(int(milliseconds) / speed)) if int(milliseconds) else 0


def stages_for_profile(profile: str, speed: float = 1.0) -> list[dict[str, Any]]:
    """KWOK Stage objects with the delays of one profile from the package's profiles.yaml, every fixed delay and
    jitter ``speed`` times shorter (a cluster whose timers run fast, :func:`timer_flags`). A delay a pod's
    annotation gives (``durationFrom``) is the pod's own and keeps its value."""
    profiles = yaml.safe_load(PROFILES.read_text())
    if profile not in profiles:
        raise TopologyError(f"unknown profile {profile!r}; choose one of {sorted(profiles)}")
    delays = profiles[profile]
    stages = []
    taken = {SHORTCUTS[name] for name in SHORTCUTS if name in delays}
    for path in sorted(STAGES.glob("*.yaml")):
        stage = yaml.safe_load(path.read_text())
        name = stage["metadata"]["name"]
        if name in SHORTCUTS and name not in delays:
            continue
        if name in taken:
            stage["spec"]["weight"] = 0
        if name in delays:
            conf = delays[name]
            delay = stage["spec"].setdefault("delay", {})
            delay["durationMilliseconds"] = int(conf["delay"])
            delay["jitterDurationMilliseconds"] = max(int(conf["jitter"]), int(conf["delay"]))
            if not conf.get("graceful", False):
                delay.pop("jitterDurationFrom", None)
        delay = stage["spec"].get("delay")
        # Node heartbeats keep their pace: node leases and the node controller's grace period do not scale.
        if speed != 1 and delay and stage["spec"]["resourceRef"]["kind"] == "Pod":
            for key in ("durationMilliseconds", "jitterDurationMilliseconds"):
                if key in delay:
                    delay[key] = _faster(delay[key], speed)
        stages.append(stage)
    return stages


#: Control-plane components whose flags a profile may set (its sections of profiles.yaml).
PROFILE_COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


#: The control-plane timers a cluster running ``speed`` times faster shortens, with Kubernetes' defaults (a profile
#: may set its own): the HPA's sync, scale-in stabilisation and start-up windows, and the tolerations that decide
#: when a failed node's pods are evicted. Node monitoring is left alone: KWOK's node leases keep their pace.
TIMERS: dict[str, dict[str, str]] = {
    "kube-controller-manager": {"horizontal-pod-autoscaler-sync-period": "15s",
                                "horizontal-pod-autoscaler-downscale-stabilization": "5m",
                                "horizontal-pod-autoscaler-cpu-initialization-period": "5m",
                                "horizontal-pod-autoscaler-initial-readiness-delay": "30s"},
    "kube-apiserver": {"default-not-ready-toleration-seconds": "300", "default-unreachable-toleration-seconds": "300"},
}
def timer_flags(component: str, flags: dict[str, str], speed: float) -> dict[str, str]:
    """``flags`` with the component's :data:`TIMERS` ``speed`` times shorter: durations to the millisecond, whole
    seconds (the tolerations) no shorter than one."""
    if speed == 1:
        return dict(flags)
    if speed <= 0:
        raise TopologyError(f"a cluster's speed must be above 0, not {speed:g}")
    scaled = dict(flags)
    for flag, default in TIMERS.get(component, {}).items():
        value = str(flags.get(flag, default))
        if value.isdigit():
            scaled[flag] = str(max(1, round(int(value) / speed)))
        else:
            try:
                seconds = resources.go_duration(value)
            except ValueError as exc:
                raise TopologyError(f"{component} --{flag}: {exc}") from None
            scaled[flag] = f"{max(1, round(seconds * 1000 / speed))}ms"
    return scaled


def component_flags(profile: str, component: str, speed: float = 1.0) -> dict[str, str]:
    """Flags of one control-plane component in a profile (the HPA's timers, eviction tolerations,
    etcd's fsync), its timers ``speed`` times shorter (:func:`timer_flags`)."""
    profiles = yaml.safe_load(PROFILES.read_text())
    if profile not in profiles:
        raise TopologyError(f"unknown profile {profile!r}; choose one of {sorted(profiles)}")
    flags = {str(k): str(v) for k, v in (profiles[profile].get(component) or {}).items()}
    return timer_flags(component, flags, speed)


#: The ConfigMap (namespace, name) where a cluster the local tooling started says how it was made: its profile and
#: the speed of its timers (what a replay checks, :mod:`k8sim.sessions`).
CLUSTER_INFO = ("kube-system", "k8sim-cluster")


async def cluster_speed(kube: Kube) -> float | None:
    """How many times faster than Kubernetes' a running cluster's timers run, as :data:`CLUSTER_INFO` says; None
    when it does not say (a cluster the local tooling did not make) or cannot be read."""
    namespace, name = CLUSTER_INFO
    try:
        found = await kube.get("v1", "ConfigMap", name, namespace)
        speed = float((found or {}).get("data", {}).get("speed"))
    except (KubeError, TypeError, ValueError):
        return None
    return speed if speed > 0 and math.isfinite(speed) else None


#: KWOK's options in the chart. A KwokConfiguration read from a file gets no defaults (KWOK v0.8.0
#: then refuses to start: "node leases parallelism must be greater than 0"), so every option KWOK
#: defaults is set here, to its default. Play-stage parallelism stays at 4: with more workers, stale
#: stage jobs of a pod overtake newer ones (KWOK evaluates a stage's selector when it queues the job,
#: and patches without a precondition), and pods flap between ContainerCreating and Running for minutes.
KWOK_OPTIONS: dict[str, Any] = {
    "podPlayStageParallelism": 4, "nodePlayStageParallelism": 4, "nodeLeaseParallelism": 4,
    "podsOnNodeSyncParallelism": 1, "enablePodsOnNodeSyncListPager": True, "enablePodsOnNodeSyncStreamWatch": False,
    "enableDebuggingHandlers": True, "enableProfilingHandler": True, "enableContentionProfiling": False,
    "nodeLeaseDurationSeconds": int(KWOK_FLAGS["node-lease-duration-seconds"]),
}


def kwok_config(profile: str) -> str:
    """KWOK's own configuration file: its options and the stages with the profile's delays, one
    YAML stream, as `kwok --config` reads it."""
    docs = [{"apiVersion": "config.kwok.x-k8s.io/v1alpha1", "kind": "KwokConfiguration", "options": KWOK_OPTIONS},
            *stages_for_profile(profile)]
    return yaml.safe_dump_all(docs, sort_keys=False)
