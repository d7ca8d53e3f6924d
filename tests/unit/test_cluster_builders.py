"""Pure builders of the local cluster: node objects, stages, the build key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from k8sim import topology
from k8sim.local import build, layout
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
    path.write_text("pools: [{name: x, gpu: {type: h100}}]")
    with pytest.raises(topology.TopologyError, match=r"gpu\.type"):
        topology.load_pools(path)


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
    assert set(flags) == {"kwok-controller", "kube-controller-manager", "kube-scheduler"}  # Kubernetes' defaults
    cluster = layout.cluster_dir(settings)
    for component in ("kube-controller-manager", "kube-scheduler"):  # their /debug/pprof answers admins only
        assert flags[component] == {"client-ca-file": str(cluster / "pki" / "ca.crt"),
                                    "authorization-kubeconfig": str(cluster / "kubeconfig.yaml")}
        assert patches[component].items() >= flags[component].items()


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
