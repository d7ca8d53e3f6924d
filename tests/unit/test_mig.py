"""MIG and time-slicing per GPU pool: the device counts NVIDIA's mig-parted layouts give per model and
strategy, the labels GPU Feature Discovery writes for them, bad pool settings refused with the problem
named, and the model sharing a time-sliced GPU and slicing a MIG one."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8sim_engine.collector import SimulatorCollector, State, render
from k8sim_engine.sources import pod_spec
from prometheus_client.parser import text_string_to_metric_families

from k8sim import gpus, model, topology

MONDAY = dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC)


def node(gpu: dict[str, Any], instance_type: str = "p4d.24xlarge") -> dict[str, Any]:
    (found,) = topology.node_manifests([{"name": "pool", "count": 1, "instance_type": instance_type, "gpu": gpu}])
    return found


def gpu_capacity(found: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in found["status"]["capacity"].items() if k.startswith("nvidia.com/")}


@pytest.mark.parametrize(("key", "layout", "per_gpu"), [
    ("a100", "all-1g.5gb", {"1g.5gb": 7}),
    ("a100", "all-1g.10gb", {"1g.10gb": 4}),  # the 40 GB part's entry of the filtered layout
    ("a100", "all-2g.10gb", {"2g.10gb": 3}),
    ("a100", "all-3g.20gb", {"3g.20gb": 2}),
    ("a100", "all-7g.40gb", {"7g.40gb": 1}),
    ("a100", "all-balanced", {"1g.5gb": 2, "2g.10gb": 1, "3g.20gb": 1}),
    ("a100-80gb", "all-1g.10gb", {"1g.10gb": 7}),
    ("a100-80gb", "all-balanced", {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1}),
    ("h100", "all-1g.10gb", {"1g.10gb": 7}),
    ("h100", "all-1g.20gb", {"1g.20gb": 4}),
    ("h100", "all-7g.80gb", {"7g.80gb": 1}),
    ("h100", "all-balanced", {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1}),
    ("a100", "all-disabled", {}),
])
def test_layouts_per_gpu_as_mig_parted_gives_them(key: str, layout: str, per_gpu: dict[str, int]) -> None:
    assert gpus.mig_layout(key, layout) == per_gpu
    # Every layout fits its GPU: no more compute slices than 7, no more of a profile than fit.
    profiles = gpus.MIG_PROFILES.get(key, {})
    assert sum(profiles[p].slices_gi * n for p, n in per_gpu.items()) <= 7
    assert all(n <= profiles[p].instances for p, n in per_gpu.items())


def test_mixed_strategy_advertises_a_resource_and_labels_per_mig_device_type() -> None:
    found = node({"type": "a100", "count": 8, "mig": {"strategy": "mixed", "layout": "all-balanced"}})
    assert gpu_capacity(found) == {"nvidia.com/mig-1g.5gb": "16", "nvidia.com/mig-2g.10gb": "8",
                                   "nvidia.com/mig-3g.20gb": "8"}
    labels = found["metadata"]["labels"]
    assert labels["nvidia.com/mig.strategy"] == "mixed" and labels["nvidia.com/mig.config"] == "all-balanced"
    assert labels["nvidia.com/mig.config.state"] == "success"
    # The full GPUs keep their own labels (GFD gives MIG-enabled GPUs replicas 0).
    assert (labels["nvidia.com/gpu.product"], labels["nvidia.com/gpu.count"], labels["nvidia.com/gpu.memory"],
            labels["nvidia.com/gpu.replicas"]) == ("NVIDIA-A100-SXM4-40GB", "8", "40960", "0")
    small = {k.removeprefix("nvidia.com/mig-1g.5gb."): v for k, v in labels.items()
             if k.startswith("nvidia.com/mig-1g.5gb.")}
    assert small == {"product": "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", "count": "16", "replicas": "1",
                     "sharing-strategy": "none", "memory": "4864", "multiprocessors": "14", "slices.gi": "1",
                     "slices.ci": "1", "engines.copy": "1", "engines.decoder": "0", "engines.encoder": "0",
                     "engines.jpeg": "0", "engines.ofa": "0"}
    assert labels["nvidia.com/mig-3g.20gb.memory"] == "19968" and labels["nvidia.com/mig-2g.10gb.count"] == "8"
    assert "nvidia.com/gpu" not in found["status"]["capacity"]


def test_single_strategy_overloads_nvidia_com_gpu_with_the_mig_device() -> None:
    found = node({"type": "h100", "count": 8, "mig": "all-1g.10gb"}, "p5.48xlarge")  # a name: single, as the operator
    assert gpu_capacity(found) == {"nvidia.com/gpu": "56"}
    labels = found["metadata"]["labels"]
    assert {k: labels[k] for k in ("nvidia.com/mig.strategy", "nvidia.com/gpu.product", "nvidia.com/gpu.count",
                                   "nvidia.com/gpu.memory", "nvidia.com/gpu.multiprocessors",
                                   "nvidia.com/gpu.slices.gi", "nvidia.com/gpu.replicas",
                                   "nvidia.com/gpu.family")} == {
        "nvidia.com/mig.strategy": "single", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3-MIG-1g.10gb",
        "nvidia.com/gpu.count": "56", "nvidia.com/gpu.memory": "9984", "nvidia.com/gpu.multiprocessors": "16",
        "nvidia.com/gpu.slices.gi": "1", "nvidia.com/gpu.replicas": "1", "nvidia.com/gpu.family": "hopper"}
    assert gpus.inventory([found]) == {"pool-0": gpus.GPUSetup("h100", 8, "single", "all-1g.10gb")}


@pytest.mark.parametrize(("rename", "resource", "product"), [
    (False, "nvidia.com/gpu", "Tesla-T4-SHARED"), (True, "nvidia.com/gpu.shared", "Tesla-T4")])
def test_time_slicing_advertises_replicas_times_gpus(rename: bool, resource: str, product: str) -> None:
    found = node({"type": "t4", "count": 4, "sharing": {"timeSlicing": {"replicas": 4, "renameByDefault": rename}}},
                 "g4dn.12xlarge")
    assert gpu_capacity(found) == {resource: "16"}
    labels = found["metadata"]["labels"]
    assert (labels["nvidia.com/gpu.replicas"], labels["nvidia.com/gpu.sharing-strategy"],
            labels["nvidia.com/gpu.product"], labels["nvidia.com/gpu.count"]) == ("4", "time-slicing", product, "4")
    assert gpus.inventory([found]) == {"pool-0": gpus.GPUSetup("t4", 4, replicas=4, rename=rename)}


def test_pools_without_mig_or_sharing_keep_their_labels_and_capacity() -> None:
    plain = node({"type": "a100", "count": 8})
    assert gpu_capacity(plain) == {"nvidia.com/gpu": "8"}
    expected = gpus.gfd_labels("a100", 8, "p4d.24xlarge")
    assert {k: v for k, v in plain["metadata"]["labels"].items() if k in expected or "nvidia.com/" in k} == expected


@pytest.mark.parametrize(("gpu", "named"), [
    ({"type": "v100", "count": 4, "mig": "all-1g.5gb"}, "Tesla V100-SXM2-16GB (v100) does not support MIG"),
    ({"type": "t4", "mig": {"strategy": "mixed", "layout": "all-balanced"}}, "(t4) does not support MIG"),
    ({"type": "a100", "mig": {"strategy": "mixed", "layout": "all-9g.99gb"}}, "unknown MIG layout 'all-9g.99gb'"),
    ({"type": "a100", "mig": "all-7g.80gb"}, "MIG layout 'all-7g.80gb' does not fit a NVIDIA A100-SXM4-40GB"),
    ({"type": "h100", "mig": "all-1g.5gb"}, "MIG layout 'all-1g.5gb' does not fit a NVIDIA H100 80GB HBM3"),
    ({"type": "a100", "mig": {"strategy": "single", "layout": "all-balanced"}}, "use strategy mixed"),
    ({"type": "a100", "mig": {"strategy": "none", "layout": "all-1g.5gb"}}, "gpu.mig.strategy must be one of"),
    ({"type": "a100", "mig": {"layout": "all-1g.5gb", "stratgy": "mixed"}}, "unknown gpu.mig setting(s) ['stratgy']"),
    ({"type": "t4", "sharing": {"timeSlicing": {"replicas": 0}}},
     "replicas must be a whole number of at least 1, not 0"),
    ({"type": "t4", "sharing": {"timeSlicing": {"replicas": -2}}}, "not -2"),
    ({"type": "t4", "sharing": {"timeSlicing": {"resources": [{"name": "nvidia.com/gpu", "replicas": 0}]}}},
     "not 0"),
    ({"type": "t4", "sharing": {"timeSlicing": {"replicas": 2, "renameByDefault": "yes"}}}, "renameByDefault"),
    ({"type": "t4", "sharing": {"mps": {"replicas": 2}}}, "gpu.sharing must be {timeSlicing"),
    ({"type": "a100", "mig": "all-1g.5gb", "sharing": {"timeSlicing": {"replicas": 2}}}, "not both"),
])
def test_bad_gpu_settings_are_refused_at_start_with_the_problem_named(
        tmp_path: Path, gpu: dict[str, Any], named: str) -> None:
    path = tmp_path / "pools.yaml"
    path.write_text(yaml.safe_dump({"pools": [{"name": "bad-pool", "count": 1, "gpu": gpu}]}))
    with pytest.raises(topology.TopologyError) as err:
        topology.load_pools(path)
    assert "bad-pool" in str(err.value) and named in str(err.value), str(err.value)


def test_the_device_plugins_own_time_slicing_form_is_read() -> None:
    found = gpus.setup({"type": "l40s", "count": 2, "sharing": {"timeSlicing": {
        "resources": [{"name": "nvidia.com/gpu", "replicas": 3}]}}})
    assert found.resources() == {"nvidia.com/gpu": 6}


def spec(uid: str, resources: tuple[tuple[str, int], ...] = (), gpu_count: int = 1, started_min: int = 0,
         node_name: str = "g1", accelerator: str = "a100") -> model.PodSpec:
    return model.PodSpec(uid=uid, namespace="ns", name=f"pod-{uid}", service=f"ns/llm-{uid}", container="server",
                         image="i", node=node_name, tenant="t1", cpu_request=1, cpu_limit=2, memory_request=model.GIB,
                         memory_limit=4 * model.GIB, gpus=gpu_count, accelerator=accelerator, ready=True,
                         started=MONDAY + dt.timedelta(minutes=started_min), container_started=MONDAY,
                         gpu_resources=resources)


def test_mig_devices_go_to_the_pods_asking_for_their_type_with_gpu_instance_ids() -> None:
    m = model.Model(noise=False)
    inventory = {"g1": gpus.GPUSetup("a100", 2, "mixed", "all-balanced")}
    pods = [spec("a", (("nvidia.com/mig-1g.5gb", 1),)), spec("b", (("nvidia.com/mig-3g.20gb", 2),), 2, 1),
            spec("c", (("nvidia.com/mig-7g.40gb", 1),), started_min=2)]  # no such device on the node
    m.tick(pods, MONDAY, 5)
    samples = m.step_devices(inventory, 5)
    migs = [(s.device.index, s.mig.profile.name, s.mig.gi_id, s.pod) for s in samples if s.mig is not None]
    # Per GPU, largest first: 3g.20gb (GI 1), 2g.10gb (GI 3), 1g.5gb x2 (GI 7, 8).
    assert migs == [(0, "3g.20gb", 1, "pod-b"), (0, "2g.10gb", 3, ""), (0, "1g.5gb", 7, "pod-a"),
                    (0, "1g.5gb", 8, ""), (1, "3g.20gb", 1, "pod-b"), (1, "2g.10gb", 3, ""),
                    (1, "1g.5gb", 7, ""), (1, "1g.5gb", 8, "")]
    parents = [s for s in samples if s.mig is None]
    assert [(s.device.index, s.pod, s.mig_enabled) for s in parents] == [(0, "", True), (1, "", True)]
    assert "c" not in m.gpus.held
    # A pod on a 1g slice has a seventh of the GPU: the same work keeps it busier, and slower.
    m.tick(pods, MONDAY, 5)
    assert m.pods["a"].gpu_fraction == pytest.approx(1 / 7) and m.pods["a"].gpu_unit_mib == 4864
    assert m.pods["a"].last is not None and m.pods["b"].last is not None
    assert m.pods["a"].last.gpu_fb_free_mib + m.pods["a"].last.gpu_fb_used_mib == 4864


def test_a_time_sliced_gpu_adds_its_pods_work_up_to_the_device_and_slows_them_beyond() -> None:
    m = model.Model(noise=False)
    inventory = {"g1": gpus.GPUSetup("t4", 1, replicas=4)}
    pods = [spec(u, gpu_count=1, started_min=i, accelerator="t4") for i, u in enumerate("abc")]
    m.tick(pods, MONDAY, 5)
    samples = m.step_devices(inventory, 5)
    assert [(s.device.index, s.pod, s.vgpu) for s in samples] == [(0, "pod-a", "0"), (0, "pod-b", "1"),
                                                                     (0, "pod-c", "2")]
    each = [m.pods[u].gpu_demand for u in "abc"]
    assert samples[0].util == pytest.approx(min(100.0, sum(each)))
    assert len({s.util for s in samples}) == 1  # one device, one figure in every pod's copy
    # Ask each for more than a third of the GPU: together they exceed it, and their latency grows.
    before = m.pods["a"].last.latency_ms if m.pods["a"].last else 0.0
    m.tick(pods, MONDAY, 5, factors={f"ns/llm-{u}": 40.0 for u in "abc"})
    samples = m.step_devices(inventory, 5)
    demand = sum(m.pods[u].gpu_demand for u in "abc")
    assert demand > 100 and samples[0].util == 100.0
    assert m.pods["a"].gpu_contention == pytest.approx(demand / 100)
    m.tick(pods, MONDAY, 5, factors={f"ns/llm-{u}": 40.0 for u in "abc"})
    after = m.pods["a"].last.latency_ms if m.pods["a"].last else 0.0
    assert after > before + m.pods["a"].profile.gpu_ms_per_request * 0.5
    # A fifth pod: 4 replicas, all taken.
    more = [*pods, spec("d", started_min=5, accelerator="t4"), spec("e", started_min=6, accelerator="t4")]
    m.tick(more, MONDAY, 5)
    m.step_devices(inventory, 5)
    assert "d" in m.gpus.held and "e" not in m.gpus.held


def test_dcgm_series_per_mig_device_carry_gpu_i_profile_and_gpu_i_id() -> None:
    m = model.Model(noise=False)
    pods = [spec("a", (("nvidia.com/mig-1g.5gb", 1),))]
    m.tick(pods, MONDAY, 5)
    m.step_devices({"g1": gpus.GPUSetup("a100", 1, "mixed", "all-1g.5gb")}, 5)
    state = State()
    state.model = m

    class Ref:
        def __init__(self) -> None:
            self.state = state
    families = {f.name: f for f in text_string_to_metric_families(render(SimulatorCollector(Ref())).decode())}
    engine = [dict(s.labels) for s in families["DCGM_FI_PROF_GR_ENGINE_ACTIVE"].samples]
    assert sorted((s["GPU_I_PROFILE"], s["GPU_I_ID"], s["pod"]) for s in engine) == sorted(
        [("1g.5gb", str(i), "pod-a" if i == 7 else "") for i in range(7, 14)])
    assert {s["UUID"] for s in engine} == {gpus.devices("g1", "a100", 1)[0].uuid}
    used = {s.labels["GPU_I_ID"]: s.value for s in families["DCGM_FI_DEV_FB_USED"].samples if "GPU_I_ID" in s.labels}
    free = {s.labels["GPU_I_ID"]: s.value for s in families["DCGM_FI_DEV_FB_FREE"].samples if "GPU_I_ID" in s.labels}
    assert used["7"] > 0 and used["7"] + free["7"] == 4864 and used["8"] == 0
    # The GPU itself: power and temperature, no utilisation (DCGM has none in MIG mode).
    assert [s.labels.get("GPU_I_ID") for s in families["DCGM_FI_DEV_POWER_USAGE"].samples] == [None]
    assert not families["DCGM_FI_DEV_GPU_UTIL"].samples



def test_a_pods_gpu_resources_are_read_by_name() -> None:
    def pod(resources: dict[str, Any]) -> dict[str, Any]:
        return {"metadata": {"uid": "u", "name": "p", "namespace": "ns"},
                "spec": {"nodeName": "n", "containers": [{"name": "c", "image": "i", "resources": resources}]},
                "status": {"phase": "Running"}}
    mig = pod_spec(pod({"limits": {"nvidia.com/mig-1g.5gb": "2", "nvidia.com/mig-1g.5gb.me": "1", "cpu": "1"}}),
                   None, "a100")
    assert (mig.gpus, mig.gpu_resources) == (3, (("nvidia.com/mig-1g.5gb", 2), ("nvidia.com/mig-1g.5gb.me", 1)))
    shared = pod_spec(pod({"requests": {"nvidia.com/gpu.shared": "1"}, "limits": {"nvidia.com/gpu.shared": "1"}}),
                      None, "t4")
    assert (shared.gpus, shared.gpu_resources) == (1, (("nvidia.com/gpu.shared", 1),))
    whole = pod_spec(pod({"limits": {"nvidia.com/gpu": "2", "example.com/fpga": "1"}}), None, "l40s")
    assert (whole.gpus, whole.gpu_resources) == (2, ())  # plain GPUs: the count says it all
