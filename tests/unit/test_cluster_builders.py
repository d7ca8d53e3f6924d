"""Pure builders of the local cluster: node objects, stages, the build key."""

from __future__ import annotations

from pathlib import Path

import pytest

from k8sim import cluster
from k8sim.settings import ClusterSettings


def test_default_pools_make_cpu_and_all_four_gpu_types(settings: ClusterSettings) -> None:
    nodes = cluster.node_manifests(cluster.load_pools(settings.nodepools))
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
    with pytest.raises(cluster.ClusterError, match=r"gpu\.type"):
        cluster.load_pools(path)


@pytest.mark.parametrize("profile", ["demo", "realistic"])
def test_profiles_set_every_pod_stage_delay(profile: str) -> None:
    stages = {s["metadata"]["name"]: s for s in cluster.stages_for_profile(profile)}
    assert {"pod-create", "pod-ready", "pod-complete", "pod-delete", "node-initialize"} <= set(stages)
    for name, stage in stages.items():
        if name.startswith("pod-"):
            delay = stage["spec"]["delay"]
            assert delay["jitterDurationMilliseconds"] >= delay["durationMilliseconds"]
    graceful = "jitterDurationFrom" in stages["pod-delete"]["spec"]["delay"]
    assert graceful == (profile == "realistic")


def test_demo_is_faster_than_realistic() -> None:
    def total(profile: str) -> int:
        return sum(s["spec"]["delay"]["jitterDurationMilliseconds"]
                   for s in cluster.stages_for_profile(profile) if s["metadata"]["name"].startswith("pod-"))
    assert total("demo") * 5 < total("realistic")


def test_unknown_profile_is_refused() -> None:
    with pytest.raises(cluster.ClusterError, match="unknown profile"):
        cluster.stages_for_profile("turbo")


def test_build_key_follows_every_input(tmp_path: Path) -> None:
    a, b = tmp_path / "go.mod", tmp_path / "main.go"
    a.write_text("module x")
    b.write_text("package main")
    first = cluster.build_key("go1.26.8", [a, b])
    assert first == cluster.build_key("go1.26.8", [b, a])
    assert first != cluster.build_key("go1.26.9", [a, b])
    b.write_text("package main // changed")
    assert first != cluster.build_key("go1.26.8", [a, b])
    assert first.startswith(f"k8s-{cluster.KUBERNETES_VERSION}-kwok-{cluster.KWOK_VERSION}")
