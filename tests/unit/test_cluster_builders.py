"""Pure builders of the local cluster: node objects, stages, the build key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from k8sim import gpus, topology
from k8sim.local import build, egress, layout
from k8sim.local.settings import ClusterSettings


def test_default_pools_make_cpu_and_all_four_gpu_types(settings: ClusterSettings) -> None:
    nodes = topology.node_manifests(topology.load_pools(settings.nodepools))
    accelerators = {n["metadata"]["labels"].get("accelerator") for n in nodes}
    assert accelerators == {None, "nvidia-t4", "nvidia-v100", "nvidia-l40s", "nvidia-a100"}
    for node in nodes:
        name = node["metadata"]["name"]
        assert node["spec"]["providerID"] == f"kwok://{name}"
        gpu = node["status"]["capacity"].get("nvidia.com/gpu")
        assert bool(gpu) == bool(node["spec"].get("taints"))


def test_pool_with_unknown_gpu_type_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pools.yaml"
    path.write_text("pools: [{name: x, gpu: {type: h200}}]")
    with pytest.raises(topology.TopologyError, match=r"gpu\.type must be one of .*'h100'"):
        topology.load_pools(path)
    path.write_text("pools: [{name: x, gpu: {type: t4, count: 0}}]")
    with pytest.raises(topology.TopologyError, match=r"pool x: gpu\.count"):
        topology.load_pools(path)


#: What GPU Feature Discovery writes per model (NVIDIA's product names and NVML's memory totals).
GFD = {
    "t4": ("Tesla-T4", "15360", "turing", "7", "5", "false"),
    "v100": ("Tesla-V100-SXM2-16GB", "16384", "volta", "7", "0", "false"),
    "l40s": ("NVIDIA-L40S", "46068", "ada-lovelace", "8", "9", "false"),
    "a10g": ("NVIDIA-A10G", "23028", "ampere", "8", "6", "false"),
    "a100": ("NVIDIA-A100-SXM4-40GB", "40960", "ampere", "8", "0", "true"),
    "a100-80gb": ("NVIDIA-A100-SXM4-80GB", "81920", "ampere", "8", "0", "true"),
    "h100": ("NVIDIA-H100-80GB-HBM3", "81559", "hopper", "9", "0", "true"),
}


@pytest.mark.parametrize("gpu_type", sorted(GFD))
def test_gpu_nodes_carry_gpu_feature_discoverys_labels(gpu_type: str) -> None:
    instance_type = gpus.INSTANCE_TYPES[gpu_type]
    (node,) = topology.node_manifests([{"name": "g", "instance_type": instance_type,
                                        "gpu": {"type": gpu_type, "count": 8}}], gfd_timestamp=1767225600)
    labels = node["metadata"]["labels"]
    product, memory, family, major, minor, mig = GFD[gpu_type]
    assert {k: v for k, v in labels.items() if k.startswith("nvidia.com/")} == {
        "nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": product, "nvidia.com/gpu.memory": memory,
        "nvidia.com/gpu.count": "8", "nvidia.com/gpu.family": family, "nvidia.com/gpu.compute.major": major,
        "nvidia.com/gpu.compute.minor": minor, "nvidia.com/gpu.replicas": "1",
        "nvidia.com/gpu.sharing-strategy": "none", "nvidia.com/gpu.mode": "compute",
        "nvidia.com/gpu.machine": instance_type, "nvidia.com/mig.capable": mig, "nvidia.com/mig.strategy": "single",
        "nvidia.com/mps.capable": "false", "nvidia.com/vgpu.present": "false",
        "nvidia.com/cuda.driver-version.full": "580.95.05", "nvidia.com/cuda.driver-version.major": "580",
        "nvidia.com/cuda.driver-version.minor": "95", "nvidia.com/cuda.driver-version.revision": "05",
        "nvidia.com/cuda.runtime-version.full": "13.0", "nvidia.com/cuda.runtime-version.major": "13",
        "nvidia.com/cuda.runtime-version.minor": "0", "nvidia.com/cuda.driver.major": "580",
        "nvidia.com/cuda.driver.minor": "95", "nvidia.com/cuda.driver.rev": "05", "nvidia.com/cuda.runtime.major": "13",
        "nvidia.com/cuda.runtime.minor": "0", "nvidia.com/gfd.timestamp": "1767225600",
    }
    assert labels["accelerator"] == f"nvidia-{gpu_type}"
    assert labels["feature.node.kubernetes.io/pci-10de.present"] == "true"
    assert node["status"]["capacity"]["nvidia.com/gpu"] == node["status"]["allocatable"]["nvidia.com/gpu"] == "8"
    assert node["spec"]["taints"] == [topology.GPU_TAINT]


def test_gfd_labels_follow_gfds_own_rules() -> None:
    assert gpus.sanitise("NVIDIA H100 80GB HBM3") == "NVIDIA-H100-80GB-HBM3"
    assert gpus.sanitise("  Tesla  T4 (rev a1)") == "Tesla-T4-rev-a1"
    assert [gpus.arch_family(*c) for c in [(7, 0), (7, 5), (8, 0), (8, 6), (8, 9), (9, 0), (10, 0), (4, 0)]] == [
        "volta", "turing", "ampere", "ampere", "ada-lovelace", "hopper", "blackwell", "undefined"]
    two_part = gpus.gfd_labels("t4", 1, "g4dn.xlarge", driver="550.54")
    assert two_part["nvidia.com/cuda.driver-version.revision"] == "" and "nvidia.com/gfd.timestamp" not in two_part
    assert gpus.gfd_labels("t4", 1, "Standard PC (Q35 + ICH9, 2009)")["nvidia.com/gpu.machine"] == \
        "Standard-PC-Q35-ICH9-2009"
    with pytest.raises(gpus.GPUError, match="unknown GPU type 'x'"):
        gpus.gfd_labels("x", 1, "m")
    with pytest.raises(gpus.GPUError, match="at least one GPU"):
        gpus.gfd_labels("t4", 0, "m")
    with pytest.raises(gpus.GPUError, match=r"not X\.Y"):
        gpus.gfd_labels("t4", 1, "m", driver="latest")


def test_a_nodes_devices_are_distinct_and_stable() -> None:
    first = gpus.devices("gpu-a100-0", "a100", 8)
    assert [d.index for d in first] == list(range(8)) and [d.device for d in first][:2] == ["nvidia0", "nvidia1"]
    assert len({d.uuid for d in first}) == len({d.pci_bus_id for d in first}) == 8
    assert all(re.fullmatch(r"GPU-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", d.uuid) for d in first)
    assert all(re.fullmatch(r"[0-9A-F]{8}:[0-9A-F]{2}:[0-9A-F]{2}\.0", d.pci_bus_id) for d in first)
    assert first == gpus.devices("gpu-a100-0", "a100", 8)  # a restarted engine names them alike
    assert not {d.uuid for d in first} & {d.uuid for d in gpus.devices("gpu-a100-1", "a100", 8)}
    assert len({d.pci_bus_id for d in gpus.devices("n", "h100", 64)}) == 64


def test_gpu_inventory_reads_accelerator_and_capacity() -> None:
    def node(name: str, labels: dict[str, str], capacity: dict[str, str]) -> dict[str, object]:
        return {"metadata": {"name": name, "labels": labels}, "status": {"capacity": capacity}}
    found = gpus.inventory([node("a", {"accelerator": "nvidia-t4"}, {"nvidia.com/gpu": "4"}),
                            node("b", {}, {"nvidia.com/gpu": "4"}),
                            node("c", {"accelerator": "nvidia-unknown"}, {"nvidia.com/gpu": "1"}),
                            node("d", {"accelerator": "nvidia-h100"}, {}),
                            node("e", {"accelerator": "amd-mi300"}, {"nvidia.com/gpu": "1"}),
                            node("f", {"accelerator": "nvidia-a100-80gb"}, {"nvidia.com/gpu": "8"})])
    assert found == {"a": gpus.GPUSetup("t4", 4), "f": gpus.GPUSetup("a100-80gb", 8)}


@pytest.mark.parametrize("profile", ["demo", "realistic"])
def test_profiles_set_every_pod_stage_delay(profile: str) -> None:
    stages = {s["metadata"]["name"]: s for s in topology.stages_for_profile(profile)}
    assert {"pod-create", "pod-ready", "pod-complete", "pod-delete", "node-initialize"} <= set(stages)
    for name, stage in stages.items():
        if name.startswith("pod-"):
            delay = stage["spec"]["delay"]
            assert delay["jitterDurationMilliseconds"] >= delay["durationMilliseconds"]
    graceful = "jitterDurationFrom" in stages["pod-delete"]["spec"]["delay"]
    assert graceful == (profile == "realistic")


def test_demo_starts_a_plain_pod_in_one_write_and_realistic_in_the_kubelets_steps() -> None:
    demo = {s["metadata"]["name"]: s["spec"] for s in topology.stages_for_profile("demo")}
    realistic = {s["metadata"]["name"]: s["spec"] for s in topology.stages_for_profile("realistic")}
    assert "pod-start" not in realistic and realistic["pod-create"]["weight"] == 1
    # KWOK gives a pod to a weight-0 stage only when no stage of positive weight matches it.
    assert demo["pod-create"]["weight"] == 0 and demo["pod-start"]["weight"] == 1
    upper = {name: demo[name]["delay"]["jitterDurationMilliseconds"]
             for name in ("pod-create", "pod-ready", "pod-start")}
    assert upper["pod-start"] == upper["pod-create"] + upper["pod-ready"]
    leaves = {e["key"]: e for e in demo["pod-start"]["selector"]["matchExpressions"]}
    assert leaves[".spec.initContainers"]["operator"] == "DoesNotExist"
    assert leaves['.metadata.labels["k8sim.io/fault"]'] == {
        "key": '.metadata.labels["k8sim.io/fault"]', "operator": "NotIn", "values": ["ImagePullBackOff"]}
    assert "\nphase: Running\n" in demo["pod-start"]["next"]["statusTemplate"]


def test_demo_is_faster_than_realistic() -> None:
    def total(profile: str) -> int:
        return sum(s["spec"]["delay"]["jitterDurationMilliseconds"]
                   for s in topology.stages_for_profile(profile) if s["metadata"]["name"].startswith("pod-"))
    assert total("demo") * 5 < total("realistic")


def test_unknown_profile_is_refused() -> None:
    with pytest.raises(topology.TopologyError, match="unknown profile"):
        topology.stages_for_profile("turbo")


def test_build_key_follows_every_input(tmp_path: Path) -> None:
    a, b = tmp_path / "go.mod", tmp_path / "main.go"
    a.write_text("module x")
    b.write_text("package main")
    first = build.build_key("go1.26.8", [a, b])
    assert first == build.build_key("go1.26.8", [b, a])
    assert first != build.build_key("go1.26.9", [a, b])
    b.write_text("package main // changed")
    assert first != build.build_key("go1.26.8", [a, b])
    assert first.startswith(f"k8s-{topology.KUBERNETES_VERSION}-kwok-{topology.KWOK_VERSION}")


def test_nodes_register_as_real_kubelets_do(settings: ClusterSettings) -> None:
    nodes = topology.node_manifests(topology.load_pools(settings.nodepools))
    ips = [next(a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP") for n in nodes]
    assert len(set(ips)) == len(nodes), "every node has its own InternalIP"
    assert all(ip.startswith("10.240.") for ip in ips)
    for node in nodes:
        name, labels, info = node["metadata"]["name"], node["metadata"]["labels"], node["status"]["nodeInfo"]
        assert {"type": "Hostname", "address": name} in node["status"]["addresses"]
        assert info["kubeletVersion"] == topology.KUBERNETES_VERSION
        assert info["osImage"] and info["kernelVersion"] and info["containerRuntimeVersion"]
        assert labels["topology.kubernetes.io/zone"].startswith(labels["topology.kubernetes.io/region"])
        assert labels["node.kubernetes.io/instance-type"] != "custom", f"{name} has a real instance type"
    gpu_types = {n["metadata"]["labels"].get("accelerator"): n["metadata"]["labels"]["node.kubernetes.io/instance-type"]
                 for n in nodes}
    assert gpu_types["nvidia-a100"] == "p4d.24xlarge" and gpu_types["nvidia-t4"] == "g4dn.12xlarge"
    zones = {n["metadata"]["labels"]["topology.kubernetes.io/zone"] for n in nodes if n["metadata"]["name"]
             .startswith("cpu-")}
    assert len(zones) == 3, "a pool spreads over its zones"


def test_node_ip_range_too_small_is_refused() -> None:
    with pytest.raises(topology.TopologyError, match="too small"):
        topology.node_manifests([{"name": "p", "count": 10}], ip_range="10.0.0.0/29")


def test_every_component_binds_the_configured_address(settings: ClusterSettings) -> None:
    docs = list(yaml.safe_load_all(layout.kwokctl_config(settings)))
    options = next(d for d in docs if d["kind"] == "KwokctlConfiguration")["options"]
    assert options["bindAddress"] == settings.bind_address == "127.0.0.1"


def test_the_audit_policy_logs_deletes_of_namespaces_and_nodes_only(settings: ClusterSettings) -> None:
    docs = list(yaml.safe_load_all(layout.kwokctl_config(settings)))
    options = next(d for d in docs if d["kind"] == "KwokctlConfiguration")["options"]
    policy = yaml.safe_load(Path(options["kubeAuditPolicy"]).read_text())
    assert policy["kind"] == "Policy" and policy["rules"][-1] == {"level": "None"}  # the rest: nothing
    logged = policy["rules"][0]
    assert logged["level"] == "Metadata" and set(logged["verbs"]) == {"delete", "deletecollection"}
    core = next(r for r in logged["resources"] if r["group"] == "")
    assert {"namespaces", "nodes"} <= set(core["resources"]) and "pods" not in core["resources"]


def test_profile_flags_reach_each_component_once(settings: ClusterSettings) -> None:
    conf = layout.kwokctl_configuration(settings.model_copy(update={"profile": "demo"}))
    patches = {p["name"]: {a["key"]: a["value"] for a in p["extraArgs"]} for p in conf["componentsPatches"]}
    assert len(patches) == len(conf["componentsPatches"])  # one patch per component
    assert patches["kube-apiserver"]["default-unreachable-toleration-seconds"] == "20"
    assert patches["kube-controller-manager"]["horizontal-pod-autoscaler-sync-period"] == "5s"
    assert patches["kwok-controller"]["node-lease-duration-seconds"] == "40"
    assert patches["etcd"] == {"unsafe-no-fsync": "true"}  # a simulator's objects can be made again
    realistic = layout.kwokctl_configuration(settings.model_copy(update={"profile": "realistic"}))
    flags = {p["name"]: {a["key"]: a["value"] for a in p["extraArgs"]} for p in realistic["componentsPatches"]}
    # Kubernetes' defaults, but for the admission plugin GPU clouds turn on.
    assert set(flags) == {"kwok-controller", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}
    for flag_set in (patches, flags):
        assert flag_set["kube-apiserver"]["enable-admission-plugins"] == "ExtendedResourceToleration"
    assert flags["kube-apiserver"] == {"enable-admission-plugins": "ExtendedResourceToleration",
                                       "egress-selector-config-file": str(layout.egress_config(settings))}
    cluster = layout.cluster_dir(settings)
    for component in ("kube-controller-manager", "kube-scheduler"):  # their /debug/pprof answers admins only
        assert flags[component] == {"client-ca-file": str(cluster / "pki" / "ca.crt"),
                                    "authorization-kubeconfig": str(cluster / "kubeconfig.yaml")}
        assert patches[component].items() >= flags[component].items()


def test_a_faster_cluster_shortens_every_timer_a_replay_depends_on(settings: ClusterSettings) -> None:
    fast = settings.model_copy(update={"profile": "demo", "cluster_speed": 5.0})
    conf = layout.kwokctl_configuration(fast)
    flags = {p["name"]: {a["key"]: a["value"] for a in p["extraArgs"]} for p in conf["componentsPatches"]}
    assert {k: v for k, v in flags["kube-controller-manager"].items() if k.startswith("horizontal")} == {
        "horizontal-pod-autoscaler-sync-period": "1000ms",
        "horizontal-pod-autoscaler-downscale-stabilization": "3000ms",
        "horizontal-pod-autoscaler-cpu-initialization-period": "3000ms",
        "horizontal-pod-autoscaler-initial-readiness-delay": "1000ms"}
    assert flags["kube-apiserver"]["default-not-ready-toleration-seconds"] == "4"
    assert flags["kwok-controller"]["node-lease-duration-seconds"] == "40"  # node heartbeats keep their pace
    assert flags["etcd"] == {"unsafe-no-fsync": "true"}
    # Kubernetes' defaults are shortened where a profile keeps them (realistic); whole seconds no shorter than 1.
    assert topology.component_flags("realistic", "kube-controller-manager", 60) == {
        "horizontal-pod-autoscaler-sync-period": "250ms",
        "horizontal-pod-autoscaler-downscale-stabilization": "5000ms",
        "horizontal-pod-autoscaler-cpu-initialization-period": "5000ms",
        "horizontal-pod-autoscaler-initial-readiness-delay": "500ms"}
    assert topology.component_flags("realistic", "kube-apiserver", 600)["default-unreachable-toleration-seconds"] == "1"
    assert topology.component_flags("demo", "kube-controller-manager") == {
        "horizontal-pod-autoscaler-sync-period": "5s", "horizontal-pod-autoscaler-downscale-stabilization": "15s",
        "horizontal-pod-autoscaler-cpu-initialization-period": "15s",
        "horizontal-pod-autoscaler-initial-readiness-delay": "5s"}
    slow, quick = ({s["metadata"]["name"]: s["spec"] for s in topology.stages_for_profile("demo", speed)}
                   for speed in (1, 5))
    assert quick["pod-start"]["delay"] == {**slow["pod-start"]["delay"], "durationMilliseconds": 60,
                                           "jitterDurationMilliseconds": 240}
    assert quick["fault-pod-recover"]["delay"]["durationMilliseconds"] == 200
    # What a pod's annotation says (a crash's run before it) is the pod's own; node heartbeats keep their pace.
    assert quick["fault-pod-crash"]["delay"]["durationFrom"] == slow["fault-pod-crash"]["delay"]["durationFrom"]
    assert quick["node-heartbeat-with-lease"] == slow["node-heartbeat-with-lease"]
    assert layout.cluster_info(fast)["data"] == {"profile": "demo", "speed": "5"}
    assert layout.cluster_info(settings.model_copy(update={"cluster_speed": 2.5}))["data"]["speed"] == "2.5"
    with pytest.raises(topology.TopologyError, match=r"sync-period: '5 s' is not a duration"):
        topology.timer_flags("kube-controller-manager", {"horizontal-pod-autoscaler-sync-period": "5 s"}, 2)


def test_kwoks_in_cluster_configuration_is_the_profiles_stages_with_its_options() -> None:
    docs = list(yaml.safe_load_all(topology.kwok_config("demo")))
    assert docs[0]["kind"] == "KwokConfiguration" and docs[0]["options"]["nodeLeaseDurationSeconds"] == 40
    assert docs[0]["options"]["podPlayStageParallelism"] == docs[0]["options"]["nodeLeaseParallelism"] == 4
    assert docs[1:] == topology.stages_for_profile("demo")
    assert {d["metadata"]["name"] for d in docs[1:]} >= {"pod-ready", "fault-pod-crash", "node-initialize"}


def test_nodes_of_several_kwok_shards_are_labelled_stably_and_the_local_kwok_leaves_them() -> None:
    pools = [{"name": "cpu", "count": 40}]
    single = topology.node_manifests(pools)
    assert all(topology.SHARD_LABEL not in n["metadata"]["labels"] for n in single)
    sharded = topology.node_manifests(pools, shards=3)
    shards = [n["metadata"]["labels"][topology.SHARD_LABEL] for n in sharded]
    assert set(shards) == {"0", "1", "2"}
    assert shards == [n["metadata"]["labels"][topology.SHARD_LABEL] for n in topology.node_manifests(pools, shards=3)]
    assert topology.shard_of("cpu-0", 3) == 2  # CRC-32, the same in every process (str hashes are salted)
    conf = layout.kwokctl_configuration(ClusterSettings())
    kwok = next(p for p in conf["componentsPatches"] if p["name"] == "kwok-controller")
    flags = {a["key"]: a["value"] for a in kwok["extraArgs"]}
    assert flags["manage-all-nodes"] == "false" and flags["manage-nodes-with-label-selector"] == "!k8sim.io/kwok-shard"


def test_the_egress_proxy_runs_with_the_control_plane_and_takes_the_clusters_traffic(settings: ClusterSettings) -> None:
    conf = layout.kwokctl_configuration(settings)
    component = {c["name"]: c for c in conf["components"]}["k8sim-egress"]
    assert component["args"][:3] == ["-m", "k8sim", "egress"]
    assert str(layout.egress_socket(settings)) in component["args"]
    assert component["links"] == ["kube-apiserver"]
    selections = {s["name"]: s["connection"] for s in
                  yaml.safe_load(egress.selector_configuration(layout.egress_socket(settings)))["egressSelections"]}
    assert selections["cluster"] == {"proxyProtocol": "HTTPConnect",
                                     "transport": {"uds": {"udsName": str(layout.egress_socket(settings))}}}
    assert selections["controlplane"] == selections["etcd"] == {"proxyProtocol": "Direct"}
    assert len(str(layout.egress_socket(settings))) < 108  # a Unix socket's path limit
