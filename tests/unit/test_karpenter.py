"""Karpenter's data and the node bootstrap's decisions: the instance-type file, NodePools, bad input."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from k8sim import cost, gpus, instancetypes, karpenter, topology
from k8sim.instancetypes import InstanceTypeError
from k8sim.local import build
from k8sim.local.settings import ClusterSettings


@pytest.fixture(scope="module")
def types(settings: ClusterSettings) -> list[instancetypes.InstanceType]:
    return instancetypes.instance_types(topology.load_pools(settings.nodepools), instancetypes.load_catalog())


def test_every_static_pool_type_and_the_g5_p5_sizes_are_priced_from_the_table(
        types: list[instancetypes.InstanceType]) -> None:
    names = {t.name for t in types}
    assert {"c6i.8xlarge", "g4dn.12xlarge", "p3.8xlarge", "g6e.12xlarge", "p4d.24xlarge"} <= names
    assert {n for n in names if n.startswith("g5.")} == {f"g5.{s}" for s in (
        "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge", "48xlarge")}
    assert {n for n in names if n.startswith("p5.")} == {"p5.4xlarge", "p5.48xlarge"}
    t4 = next(t for t in types if t.name == "g4dn.12xlarge")
    # The static pool's node and Karpenter's instance type of the same name hold the same resources.
    assert t4.resources == {"cpu": "48", "memory": "192Gi", "pods": "110", "ephemeral-storage": "500Gi",
                            "nvidia.com/gpu": "4"}
    assert t4.gpu_type == "t4" and t4.on_demand_price == 3.912
    assert next(t for t in types if t.name == "p5.48xlarge").resources["nvidia.com/gpu"] == "8"
    assert next(t for t in types if t.name == "c6i.8xlarge").gpu_type is None


def test_offerings_are_what_the_providers_loader_decodes(types: list[instancetypes.InstanceType]) -> None:
    document = json.loads(json.dumps(instancetypes.provider_file(types)))
    g5 = next(t for t in document if t["name"] == "g5.xlarge")
    # The loader's struct fields, and ours for the node bootstrap (json.Unmarshal skips what it lacks).
    assert set(g5) == {"name", "offerings", "architecture", "operatingSystems", "resources", "k8sim"}
    assert g5["k8sim"] == {"instanceType": "g5.xlarge", "gpu": {"type": "a10g", "count": 1}}
    assert next(t for t in document if t["name"] == "c6i.8xlarge")["k8sim"] == {"instanceType": "c6i.8xlarge"}
    assert len(g5["offerings"]) == 6  # three zones, on-demand and spot
    for offering in g5["offerings"]:
        # The Go struct's field names: keys like capacityType or zone would be ignored by the loader.
        assert set(offering) == {"Price", "Available", "Requirements"}
        keys = {r["key"]: r["values"] for r in offering["Requirements"]}
        assert set(keys) == {"karpenter.sh/capacity-type", "topology.kubernetes.io/zone",
                             "topology.kubernetes.io/region"}
        assert keys["topology.kubernetes.io/region"] == ["us-east-1"]
        expected = 1.006 if keys["karpenter.sh/capacity-type"] == ["on-demand"] else round(1.006 * 0.7, 6)
        assert offering["Price"] == expected
    zones = {r["values"][0] for o in g5["offerings"] for r in o["Requirements"] if r["key"].endswith("/zone")}
    assert zones == {"us-east-1a", "us-east-1b", "us-east-1c"}
    assert instancetypes.resources_by_type(document)["g5.xlarge"]["nvidia.com/gpu"] == "1"


def test_a_pool_whose_instance_type_the_table_lacks_is_refused(tmp_path: Path) -> None:
    pools = [{"name": "gpu-x", "instance_type": "x9.huge", "gpu": {"type": "t4", "count": 1}}]
    with pytest.raises(InstanceTypeError, match=r"x9\.huge: no price in the price table"):
        instancetypes.instance_types(pools, instancetypes.load_catalog())


def test_a_nodepool_asking_for_a_type_missing_from_the_file_is_refused(
        settings: ClusterSettings, types: list[instancetypes.InstanceType]) -> None:
    pools = [*topology.load_pools(settings.nodepools), {"name": "odd", "instance_type": "m7i.large"}]
    with pytest.raises(InstanceTypeError, match=r"NodePool odd: instance type 'm7i.large' is not in"):
        karpenter.nodepool_manifests("demo", pools, types)


@pytest.mark.parametrize(("text", "message"), [
    ("just a string", "expected a mapping"),
    ("zones: [a]\nregion: r\non_demand_usd_per_hour: {}", "must map instance types to hourly prices"),
    ("zones: [a]\nregion: r\non_demand_usd_per_hour: {c6i.8xlarge: cheap}", "c6i.8xlarge must be a positive"),
    ("zones: [a]\nregion: r\non_demand_usd_per_hour: {c6i.8xlarge: -1.0}", "c6i.8xlarge must be a positive"),
    ("zones: [a]\nregion: r\non_demand_usd_per_hour: {c6i.8xlarge: .nan}", "c6i.8xlarge must be a positive"),
    ("zones: []\nregion: r\non_demand_usd_per_hour: {c6i.8xlarge: 1.0}", "zones must be a non-empty list"),
    ("zones: [a]\non_demand_usd_per_hour: {c6i.8xlarge: 1.0}", "region must name"),
    ("zones: [a]\nregion: r\nspot_discount: 2\non_demand_usd_per_hour: {c6i.8xlarge: 1.0}", "spot_discount"),
    ("zones: [a\n", "not YAML"),
])
def test_a_malformed_price_table_fails_naming_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(text)
    with pytest.raises(InstanceTypeError, match=re.escape(message)):
        instancetypes.load_catalog(path)


def test_malformed_resources_of_an_extra_type_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text("zones: [a]\nregion: r\non_demand_usd_per_hour: {z1.big: 1.0}\n"
                    "extra_types: {z1.big: {cpu: lots, memory: 1Gi}}")
    with pytest.raises(InstanceTypeError, match="'lots' is not a Kubernetes quantity"):
        instancetypes.instance_types([], instancetypes.load_catalog(path))


def test_quantities_parse_as_the_apiserver_writes_them() -> None:
    parse = instancetypes.parse_quantity
    assert parse("48Gi") == parse("49152Mi") == 48 * 2**30
    assert parse("500m") * 2 == parse("1") and parse("1k") == 1000
    with pytest.raises(InstanceTypeError):
        parse("-1")


def nodepools(profile: str, settings: ClusterSettings,
              types: list[instancetypes.InstanceType]) -> dict[tuple[str, str], dict[str, Any]]:
    docs = karpenter.nodepool_manifests(profile, topology.load_pools(settings.nodepools), types)
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_one_nodepool_per_static_pool_and_per_catalog_gpu_type(
        settings: ClusterSettings, types: list[instancetypes.InstanceType]) -> None:
    docs = nodepools("demo", settings, types)
    pools = {name for kind, name in docs if kind == "NodePool"}
    assert pools == {"cpu", "gpu-t4", "gpu-v100", "gpu-l40s", "gpu-a100", "gpu-a10g", "gpu-h100"}
    assert {name for kind, name in docs if kind == "KWOKNodeClass"} == pools
    for name in pools:
        pool = docs[("NodePool", name)]
        template = pool["spec"]["template"]
        labels = template["metadata"]["labels"]
        assert labels["k8sim.io/pool"] == name and labels["type"] == "kwok"
        assert template["spec"]["nodeClassRef"] == {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass",
                                                    "name": name}
        assert pool["spec"]["limits"] == {"nodes": "8"}
        assert pool["spec"]["disruption"]["consolidateAfter"] == "20s"
        requirements = {r["key"]: r["values"] for r in template["spec"]["requirements"]}
        assert requirements["karpenter.sh/capacity-type"] == ["on-demand"]
        if name == "cpu":
            assert "taints" not in template["spec"] and "accelerator" not in labels
            assert requirements["node.kubernetes.io/instance-type"] == ["c6i.8xlarge"]
        else:
            gpu = name.removeprefix("gpu-")
            assert template["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "present",
                                                   "effect": "NoSchedule"}]
            assert labels["accelerator"] == f"nvidia-{gpu}"
            assert labels["nvidia.com/gpu.product"] == gpus.MODELS[gpu].product
            # GFD's per-node labels differ between a NodePool's instance types: the node bootstrap's.
            assert "nvidia.com/gpu.count" not in labels
    products = {name: docs[("NodePool", name)]["spec"]["template"]["metadata"]["labels"]["nvidia.com/gpu.product"]
                for name in ("gpu-t4", "gpu-h100", "gpu-a10g")}
    assert products == {"gpu-t4": "Tesla-T4", "gpu-h100": "NVIDIA-H100-80GB-HBM3", "gpu-a10g": "NVIDIA-A10G"}
    assert docs[("KWOKNodeClass", "cpu")]["spec"]["nodeRegistrationDelay"] == "5s"
    assert docs[("KWOKNodeClass", "gpu-t4")]["spec"]["nodeRegistrationDelay"] == "10s"
    a10g = docs[("NodePool", "gpu-a10g")]["spec"]["template"]["spec"]["requirements"][0]["values"]
    assert len(a10g) == 8 and all(v.startswith("g5.") for v in a10g)


def test_realistic_nodepools_take_spot_and_wait_per_instance_family(
        settings: ClusterSettings, types: list[instancetypes.InstanceType]) -> None:
    docs = nodepools("realistic", settings, types)
    capacity = docs[("NodePool", "gpu-a100")]["spec"]["template"]["spec"]["requirements"][1]
    assert capacity["values"] == ["on-demand", "spot"]
    delays = {name: d["spec"]["nodeRegistrationDelay"] for (kind, name), d in docs.items() if kind == "KWOKNodeClass"}
    assert delays == {"cpu": "45s", "gpu-t4": "2m", "gpu-v100": "3m", "gpu-l40s": "3m", "gpu-a100": "4m",
                      "gpu-a10g": "2m", "gpu-h100": "5m"}


@pytest.mark.parametrize(("conf", "message"), [
    ({"capacity_types": ["reserved"], "max_nodes": 1, "consolidate_after": "1m"}, "capacity_types"),
    ({"capacity_types": ["spot"], "max_nodes": 0, "consolidate_after": "1m"}, "max_nodes"),
    ({"capacity_types": ["spot"], "max_nodes": 1, "consolidate_after": "soon"}, "consolidate_after"),
    ({"capacity_types": ["spot"], "max_nodes": 1, "consolidate_after": "1m",
      "provisioning_delay": {"g5": "2 minutes"}}, "provisioning_delay.g5"),
])
def test_bad_profile_settings_are_refused(tmp_path: Path, conf: dict[str, Any], message: str) -> None:
    path = tmp_path / "profiles.yaml"
    path.write_text(yaml.safe_dump({"demo": conf}))
    with pytest.raises(InstanceTypeError, match=re.escape(message)):
        karpenter.profile_settings("demo", path)
    with pytest.raises(InstanceTypeError, match="no Karpenter settings for profile 'fast'"):
        karpenter.profile_settings("fast", path)


def test_durations() -> None:
    assert karpenter.duration_seconds("1h30m5s") == 5405
    assert karpenter.duration_seconds("20s") == 20
    assert karpenter.duration_seconds("20") is None and karpenter.duration_seconds("") is None


def provider_node(name: str = "kwok-gpu-a10g-abcde-happy-7") -> dict[str, Any]:
    """A node as Karpenter's KWOK provider creates it, after KWOK's node-initialize played on it."""
    return {"metadata": {"name": name, "labels": {"karpenter.sh/nodepool": "gpu-a10g",
                                                  "node.kubernetes.io/instance-type": "g5.xlarge"},
                         "annotations": {"kwok.x-k8s.io/node": "fake"}},
            "spec": {"providerID": f"kwok://{name}"},
            "status": {"capacity": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1", "pods": "1"},
                       "addresses": [{"type": "InternalIP", "address": "10.0.0.1"},
                                     {"type": "Hostname", "address": name}],
                       "nodeInfo": {"kubeletVersion": "kwok-v0.8.0", "osImage": ""}}}


def apply_merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            apply_merge_patch(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def test_the_bootstrap_gives_the_instance_types_capacity_addresses_and_node_info(
        types: list[instancetypes.InstanceType]) -> None:
    resources = {t.name: t.resources for t in types}
    node = provider_node()
    patch = karpenter.status_patch(node, resources["g5.xlarge"], "10.241.0.10")
    assert patch is not None
    assert patch["status"]["capacity"] == {"cpu": "4", "memory": "16Gi", "pods": "110",
                                           "ephemeral-storage": "500Gi", "nvidia.com/gpu": "1"}
    assert patch["status"]["addresses"] == [{"type": "InternalIP", "address": "10.241.0.10"},
                                            {"type": "Hostname", "address": node["metadata"]["name"]}]
    assert patch["status"]["nodeInfo"]["kubeletVersion"] == topology.KUBERNETES_VERSION
    assert patch["status"]["nodeInfo"]["osImage"] == topology.OS_IMAGE
    apply_merge_patch(node, patch)
    assert karpenter.status_patch(node, resources["g5.xlarge"], "10.241.0.10") is None
    # The apiserver may write a quantity in another form: the same amount needs no write.
    node["status"]["capacity"]["memory"] = "16384Mi"
    assert karpenter.status_patch(node, resources["g5.xlarge"], "10.241.0.10") is None
    # A late write of KWOK's, rendered from the bare node, is undone on the next event.
    node["status"]["capacity"] = {"cpu": "1", "memory": "1Gi", "extra": "1"}
    again = karpenter.status_patch(node, resources["g5.xlarge"], "10.241.0.10")
    assert again is not None and set(again["status"]) == {"capacity"}
    assert again["status"]["capacity"]["extra"] is None


def test_once_registered_the_node_gets_its_hostname_and_gfds_labels_for_its_own_gpu_count(
        types: list[instancetypes.InstanceType]) -> None:
    resources = {t.name: t.resources for t in types}
    node = provider_node("kwok-gpu-a10g-abcde-happy-7")
    node["metadata"]["labels"].update({"accelerator": "nvidia-a10g", "kubernetes.io/hostname": "gpu-a10g-abcde",
                                       "node.kubernetes.io/instance-type": "g5.12xlarge"})
    # Before Karpenter's registration copies the NodeClaim's labels over the node's, nothing is written.
    assert karpenter.label_patch(node, resources["g5.12xlarge"]) is None
    node["metadata"]["labels"]["karpenter.sh/registered"] = "true"
    patch = karpenter.label_patch(node, resources["g5.12xlarge"])
    assert patch == {"metadata": {"labels": {"kubernetes.io/hostname": "kwok-gpu-a10g-abcde-happy-7",
                                             **gpus.gfd_labels("a10g", 4, "g5.12xlarge")}}}
    assert patch["metadata"]["labels"]["nvidia.com/gpu.count"] == "4"
    apply_merge_patch(node, patch)
    assert karpenter.label_patch(node, resources["g5.12xlarge"]) is None
    # The same NodePool's one-GPU size says 1.
    small = provider_node("kwok-gpu-a10g-small")
    small["metadata"]["labels"].update({"accelerator": "nvidia-a10g", "karpenter.sh/registered": "true"})
    small_patch = karpenter.label_patch(small, resources["g5.xlarge"])
    assert small_patch is not None and small_patch["metadata"]["labels"]["nvidia.com/gpu.count"] == "1"
    assert small_patch["metadata"]["labels"]["nvidia.com/gpu.machine"] == "g5.xlarge"
    # A CPU node only gets its hostname.
    cpu = provider_node("kwok-cpu-x")
    cpu["metadata"]["labels"] = {"karpenter.sh/registered": "true", "kubernetes.io/hostname": "cpu-x",
                                 "node.kubernetes.io/instance-type": "c6i.8xlarge"}
    assert karpenter.label_patch(cpu, resources["c6i.8xlarge"]) == {
        "metadata": {"labels": {"kubernetes.io/hostname": "kwok-cpu-x"}}}


def test_the_gpu_types_of_the_catalog_come_from_the_one_gpu_table(types: list[instancetypes.InstanceType]) -> None:
    assert {t.gpu_type for t in types if t.gpu_type} <= set(gpus.MODELS)
    assert not hasattr(instancetypes, "EXTRA_GPU_TYPES")


def test_addresses_come_from_their_own_range_and_stay_with_their_node() -> None:
    addresses = karpenter.Addresses("10.241.0.0/16")
    first, second = provider_node("kwok-a"), provider_node("kwok-b")
    assert addresses.address_of(first) == "10.241.0.10"
    assert addresses.address_of(second) == "10.241.0.11"
    assert addresses.address_of(first) == "10.241.0.10"
    addresses.forget("kwok-a")
    assert addresses.address_of(provider_node("kwok-c")) == "10.241.0.10"
    # After a restart the nodes keep what they hold.
    held = provider_node("kwok-d")
    held["status"]["addresses"][0]["address"] = "10.241.0.42"
    restarted = karpenter.Addresses("10.241.0.0/16")
    restarted.reset([held, provider_node("kwok-e")])
    assert restarted.address_of(held) == "10.241.0.42"
    assert restarted.address_of(provider_node("kwok-e")) == "10.241.0.10"


def test_static_nodes_are_left_alone(settings: ClusterSettings) -> None:
    static = topology.node_manifests(topology.load_pools(settings.nodepools))
    assert not any(karpenter.is_karpenter_node(n) for n in static)
    assert karpenter.is_karpenter_node(provider_node())


def test_the_wrapper_module_requires_the_version_the_build_names() -> None:
    go_mod = (build.KARPENTER_MODULE / "go.mod").read_text()
    assert re.search(rf"^\s*sigs\.k8s\.io/karpenter {re.escape(build.KARPENTER_VERSION)}$", go_mod, re.M)
    main = (build.KARPENTER_MODULE / "operator.go").read_text()
    assert "net.JoinHostPort(host" in main and '":%d"' not in main


def test_karpenters_build_key_changes_with_its_inputs(tmp_path: Path) -> None:
    source = tmp_path / "main.go"
    source.write_text("package main")
    before = build.karpenter_build_key([source])
    source.write_text("package main // changed")
    assert build.karpenter_build_key([source]) != before
    assert before.startswith(f"karpenter-{build.KARPENTER_VERSION}-")


# --------------------------------------------------------------------------- MIG and time-slicing pools

A100_MIXED = {"type": "a100", "count": 8, "mig": {"strategy": "mixed", "layout": "all-balanced"}}
T4_SLICED = {"type": "t4", "count": 4, "sharing": {"timeSlicing": {"replicas": 4}}}


def shaped_pools(settings: ClusterSettings, *extra: dict[str, Any], **gpu_of: dict[str, Any]) -> list[dict[str, Any]]:
    """The static pools with some pools' ``gpu`` replaced (by pool name, dashes as underscores) and more pools."""
    pools = copy.deepcopy(topology.load_pools(settings.nodepools))
    for pool in pools:
        if pool["name"].replace("-", "_") in gpu_of:
            pool["gpu"] = gpu_of[pool["name"].replace("-", "_")]
    return [*pools, *extra]


def test_a_mig_pool_alone_on_its_ec2_name_keeps_it_and_advertises_its_mig_devices(settings: ClusterSettings) -> None:
    types = {t.name: t for t in instancetypes.instance_types(shaped_pools(settings, gpu_a100=A100_MIXED),
                                                             instancetypes.load_catalog())}
    p4d = types["p4d.24xlarge"]
    # all-balanced on an A100 40GB: per GPU two 1g.5gb, one 2g.10gb, one 3g.20gb, times 8 GPUs; no whole GPUs.
    assert p4d.resources == {"cpu": "96", "memory": "1152Gi", "pods": "110", "ephemeral-storage": "500Gi",
                             "nvidia.com/mig-1g.5gb": "16", "nvidia.com/mig-2g.10gb": "8",
                             "nvidia.com/mig-3g.20gb": "8"}
    assert p4d.shaped and p4d.machine == "p4d.24xlarge" and p4d.pools == ("gpu-a100",)
    assert not any(n.startswith("p4d.24xlarge-") for n in types)


def test_a_shaped_pool_sharing_its_ec2_name_with_another_shape_gets_a_variant(settings: ClusterSettings) -> None:
    pools = shaped_pools(
        settings,
        {"name": "gpu-a100-mig", "count": 1, "instance_type": "p4d.24xlarge", "cpu": "96", "memory": "1152Gi",
         "gpu": A100_MIXED},
        {"name": "gpu-a100-single", "count": 1, "instance_type": "p4d.24xlarge", "cpu": "96", "memory": "1152Gi",
         "gpu": {"type": "a100", "count": 8, "mig": {"strategy": "single", "layout": "all-1g.5gb"}}},
        {"name": "gpu-t4-ts", "count": 1, "instance_type": "g4dn.12xlarge", "cpu": "48", "memory": "192Gi",
         "gpu": T4_SLICED},
        {"name": "gpu-t4-shared", "count": 1, "instance_type": "g4dn.12xlarge", "cpu": "48", "memory": "192Gi",
         "gpu": {"type": "t4", "count": 4, "sharing": {"timeSlicing": {"replicas": 2, "renameByDefault": True}}}},
        # on a catalog type: the catalog's p5.48xlarge stays whole GPUs
        {"name": "gpu-h100-mig", "count": 1, "instance_type": "p5.48xlarge", "cpu": "192", "memory": "2048Gi",
         "gpu": {"type": "h100", "count": 8, "mig": {"strategy": "mixed", "layout": "all-balanced"}}},
    )
    types = {t.name: t for t in instancetypes.instance_types(pools, instancetypes.load_catalog())}
    gpu_resources = {name: {k: v for k, v in t.resources.items() if k.startswith("nvidia.com/")}
                     for name, t in types.items() if t.gpu_type in ("a100", "t4", "h100")}
    assert gpu_resources == {
        "p4d.24xlarge": {"nvidia.com/gpu": "8"},
        "p4d.24xlarge-mig-mixed-all-balanced": {"nvidia.com/mig-1g.5gb": "16", "nvidia.com/mig-2g.10gb": "8",
                                                "nvidia.com/mig-3g.20gb": "8"},
        "p4d.24xlarge-mig-single-all-1g.5gb": {"nvidia.com/gpu": "56"},  # 7 devices per GPU, as nvidia.com/gpu
        "g4dn.12xlarge": {"nvidia.com/gpu": "4"},
        "g4dn.12xlarge-time-sliced-4": {"nvidia.com/gpu": "16"},
        "g4dn.12xlarge-time-sliced-2-renamed": {"nvidia.com/gpu.shared": "8"},
        "p5.4xlarge": {"nvidia.com/gpu": "1"},
        "p5.48xlarge": {"nvidia.com/gpu": "8"},
        "p5.48xlarge-mig-mixed-all-balanced": {"nvidia.com/mig-1g.10gb": "16", "nvidia.com/mig-2g.20gb": "8",
                                               "nvidia.com/mig-3g.40gb": "8"},
    }
    variant = types["p4d.24xlarge-mig-mixed-all-balanced"]
    # Priced and labelled (gpu.machine) as the EC2 type it is a variant of; its family is the EC2 family's.
    assert variant.on_demand_price == types["p4d.24xlarge"].on_demand_price == 21.957642
    assert variant.machine == "p4d.24xlarge" and variant.family == "p4d" and variant.pools == ("gpu-a100-mig",)
    assert types["p5.48xlarge-mig-mixed-all-balanced"].on_demand_price == 55.04
    assert types["p5.48xlarge"].pools == ()
    table = cost.PriceTable.of(instancetypes.load_catalog(), types.values())  # a variant node's bill
    assert table.hourly("p4d.24xlarge-mig-mixed-all-balanced", "spot") == table.hourly("p4d.24xlarge", "spot")

    docs = {(d["kind"], d["metadata"]["name"]): d
            for d in karpenter.nodepool_manifests("demo", pools, list(types.values()))}

    def instance_types_of(nodepool: str) -> list[str]:
        requirements = docs[("NodePool", nodepool)]["spec"]["template"]["spec"]["requirements"]
        return next(r["values"] for r in requirements if r["key"] == "node.kubernetes.io/instance-type")

    assert instance_types_of("gpu-a100") == ["p4d.24xlarge"]
    assert instance_types_of("gpu-a100-mig") == ["p4d.24xlarge-mig-mixed-all-balanced"]
    assert instance_types_of("gpu-t4-shared") == ["g4dn.12xlarge-time-sliced-2-renamed"]
    # The catalog's whole-GPU H100s are not the MIG pool's: they keep a NodePool of their own.
    assert instance_types_of("gpu-h100-mig") == ["p5.48xlarge-mig-mixed-all-balanced"]
    assert instance_types_of("gpu-h100") == ["p5.4xlarge", "p5.48xlarge"]
    labels = docs[("NodePool", "gpu-a100-mig")]["spec"]["template"]["metadata"]["labels"]
    # One instance type per shaped NodePool: all of GFD's labels are known before the node exists.
    assert labels["nvidia.com/mig.config"] == "all-balanced" and labels["nvidia.com/mig.strategy"] == "mixed"
    assert labels["nvidia.com/mig-1g.5gb.count"] == "16"
    assert labels["accelerator"] == "nvidia-a100"
    single = docs[("NodePool", "gpu-a100-single")]["spec"]["template"]["metadata"]["labels"]
    assert single["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb"
    sliced = docs[("NodePool", "gpu-t4-ts")]["spec"]["template"]["metadata"]["labels"]
    assert sliced["nvidia.com/gpu.product"] == "Tesla-T4-SHARED" and sliced["nvidia.com/gpu.replicas"] == "4"
    plain = docs[("NodePool", "gpu-a100")]["spec"]["template"]["metadata"]["labels"]
    assert "nvidia.com/mig.config" not in plain and "nvidia.com/gpu.count" not in plain


def test_two_pools_of_one_shape_and_name_but_other_resources_are_refused(settings: ClusterSettings) -> None:
    pools = shaped_pools(settings,
                         {"name": "mig-a", "instance_type": "p4d.24xlarge", "cpu": "96", "gpu": A100_MIXED},
                         {"name": "mig-b", "instance_type": "p4d.24xlarge", "cpu": "48", "gpu": A100_MIXED})
    with pytest.raises(InstanceTypeError, match=r"p4d\.24xlarge-mig-mixed-all-balanced: two pools give it different"):
        instancetypes.instance_types(pools, instancetypes.load_catalog())


@pytest.mark.parametrize("gpu", [A100_MIXED, {"type": "a100", "count": 8, "mig": "all-1g.5gb"}, T4_SLICED,
                                 {"type": "t4", "count": 4, "sharing": {"timeSlicing": {"replicas": 3,
                                                                                        "renameByDefault": True}}}],
                         ids=["mig-mixed", "mig-single", "time-sliced", "time-sliced-renamed"])
@pytest.mark.parametrize("variant", [False, True], ids=["ec2-name", "variant"])
def test_the_bootstrap_gives_a_shaped_pools_node_what_topology_gives_its_static_nodes(
        settings: ClusterSettings, gpu: dict[str, Any], variant: bool) -> None:
    base = "p4d.24xlarge" if gpu["type"] == "a100" else "g4dn.12xlarge"
    pool = {"name": "shaped", "count": 1, "instance_type": base, "cpu": "32", "memory": "256Gi", "gpu": gpu}
    # The variant case: another pool gives the same EC2 name whole GPUs.
    others = [{**pool, "name": "whole", "gpu": {"type": gpu["type"], "count": gpu["count"]}}] if variant else []
    types = instancetypes.instance_types([pool, *others], instancetypes.load_catalog())
    own = next(t for t in types if t.pools == ("shaped",))
    assert (own.name != base) is variant
    # What the node bootstrap reads: the provider file, through JSON.
    document = json.loads(json.dumps(instancetypes.provider_file(types)))
    resources = instancetypes.resources_by_type(document)[own.name]
    setup = instancetypes.gpus_by_type(document)[own.name]
    static = topology.node_manifests([pool])[0]

    node = provider_node("kwok-shaped-abcde-1")
    node["metadata"]["labels"].update({"karpenter.sh/nodepool": "shaped", "accelerator": f"nvidia-{gpu['type']}",
                                       "node.kubernetes.io/instance-type": own.name,
                                       "karpenter.sh/registered": "true"})
    patch = karpenter.status_patch(node, resources, "10.241.0.10")
    assert patch is not None
    assert patch["status"]["capacity"] == {**{k: None for k in node["status"]["capacity"]
                                              if k not in static["status"]["capacity"]},
                                           **static["status"]["capacity"]}
    # Karpenter's allocatable is the instance type's resources less its kube-reserved (cpu, memory):
    # the device resources are the static node's allocatable.
    devices = {k: v for k, v in static["status"]["allocatable"].items() if k.startswith("nvidia.com/")}
    assert devices and devices == {k: v for k, v in resources.items() if k.startswith("nvidia.com/")}
    labels = karpenter.label_patch(node, resources, setup)
    assert labels is not None
    gfd = {k: v for k, v in static["metadata"]["labels"].items()
           if k.startswith(("nvidia.com/", "feature.node.kubernetes.io/"))}
    assert labels["metadata"]["labels"] == {"kubernetes.io/hostname": "kwok-shaped-abcde-1", **gfd}
    # The GPU Operator's view of the node (what the GPU faults and metrics read) is the static node's.
    apply_merge_patch(node, patch)
    apply_merge_patch(node, labels)
    assert gpus.inventory([node])[node["metadata"]["name"]] == gpus.inventory([static])[static["metadata"]["name"]]
    assert karpenter.label_patch(node, resources, setup) is None


def test_a_file_without_our_gpu_settings_gives_whole_gpus_labels(types: list[instancetypes.InstanceType]) -> None:
    document = [{k: v for k, v in entry.items() if k != "k8sim"} for entry in instancetypes.provider_file(types)]
    assert instancetypes.gpus_by_type(document) == {}
    with pytest.raises(InstanceTypeError, match="k8sim must be"):
        instancetypes.gpus_by_type([{**document[0], "k8sim": "odd"}])
    with pytest.raises(InstanceTypeError, match=r"gpu\.count must be"):
        instancetypes.gpus_by_type([{**document[0], "k8sim": {"gpu": {"type": "t4", "count": 0}}}])
