"""GPU faults (GPUXid, GPUThermalThrottle, GPUFallenOffBus): validation, what they record on a node,
the device plugin's allocatable, the pods on a dead device, and the model's DCGM series and alerts."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from k8sim_engine.collector import SimulatorCollector, State, render
from prometheus_client import CollectorRegistry

from k8sim import alerts, gpus, model, scenarios
from tests.unit.test_gpu_devices import MONDAY, Ref, series, spec

T0 = dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC)


def gpu_node(name: str = "g1", key: str = "t4", count: int = 4, annotations: dict[str, str] | None = None,
             allocatable: int | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"accelerator": f"nvidia-{key}"}, "annotations": annotations or {}},
            "status": {"capacity": {"nvidia.com/gpu": str(count)},
                       "allocatable": {"nvidia.com/gpu": str(count if allocatable is None else allocatable)}}}


def gpu_pod(name: str, started_s: int, gpus_: int = 1, node: str = "g1", phase: str = "Running") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"},
            "spec": {"nodeName": node, "containers": [{"name": "server",
                                                       "resources": {"limits": {"nvidia.com/gpu": str(gpus_)}}}]},
            "status": {"phase": phase, "startTime": (T0 + dt.timedelta(seconds=started_s)).isoformat(),
                       "conditions": [{"type": "Ready", "status": "True"}],
                       "containerStatuses": [{"name": "server", "ready": True, "restartCount": 0,
                                              "state": {"running": {"startedAt": T0.isoformat()}}}]}}


# --------------------------------------------------------------------------- validation


def xid(value: Any, **target: Any) -> dict[str, Any]:
    return {"type": "GPUXid", "target": {"nodes": ["g1"], **target}, "parameters": {"xid": value}}


@pytest.mark.parametrize("value", [48, 63, 64, 74, 79, 92, 94, 95, 13, 31, 43])
def test_the_issues_xids_are_accepted(value: int) -> None:
    found = scenarios.validate(xid(value))
    assert found.parameter("xid") == value and found.type == "GPUXid"


@pytest.mark.parametrize("value", [7, 80, 0, 999, 79.5])
def test_an_unknown_xid_is_refused_naming_it(value: Any) -> None:
    with pytest.raises(scenarios.ScenarioError, match=rf"unknown XID {value!r}"):
        scenarios.validate(xid(value))


@pytest.mark.parametrize(("body", "problem"), [
    ({"type": "GPUXid", "target": {"nodes": ["g1"]}}, "names parameters.xid"),
    (xid("79"), "parameters.xid must be a number"),
    (xid(True), "parameters.xid must be a number"),
    ({"type": "GPUXid", "target": {"pool": "gpu"}, "parameters": {"xid": 79}}, "targets nodes"),
    ({"type": "GPUXid", "target": {}, "parameters": {"xid": 79}}, "names the GPU node"),
    (xid(79, gpus=[-1]), "list of GPU indexes"),
    (xid(79, gpus=[0, 0]), "names a GPU twice"),
    (xid(79, gpus="0"), "list of GPU indexes"),
    ({"type": "GPUFallenOffBus", "target": {"nodes": ["g1"], "gpus": [0]}}, "every GPU"),
    ({"type": "GPUFallenOffBus", "target": {"nodes": ["g1"]}, "parameters": {"xid": 79}}, "no parameter xid"),
    ({"type": "GPUThermalThrottle", "target": {"nodes": ["g1"]}, "parameters": {"clockPercent": 100}},
     "clockPercent must be a number from 10 to 95"),
    ({"type": "PodCrash", "target": {"namespace": "ns", "gpus": [0]}}, "target.gpus is for GPUXid"),
])
def test_bad_gpu_fault_bodies_are_refused_with_the_problem_named(body: dict[str, Any], problem: str) -> None:
    with pytest.raises(scenarios.ScenarioError, match=problem):
        scenarios.validate(body)


def test_the_device_plugins_ignored_xids_are_its_application_errors() -> None:
    # NVIDIA/k8s-device-plugin internal/rm/health.go: 13, 31, 43, 45, 68, 109; every other XID is critical.
    assert gpus.IGNORED_XIDS == {13, 31, 43, 45, 68, 109}
    assert all(gpus.xid_critical(x) for x in (48, 63, 64, 74, 79, 92, 94, 95))
    assert set(gpus.XID_TEXT) >= gpus.IGNORED_XIDS | {48, 63, 64, 74, 79, 92, 94, 95}


# --------------------------------------------------------------------------- what a fault records


def test_the_default_device_is_one_a_pod_holds_and_its_pods_are_the_ones_on_it() -> None:
    setup = gpus.GPUSetup("t4", 4)
    pods = [gpu_pod("late", 60, 2), gpu_pod("early", 0), gpu_pod("done", 0, phase="Failed"),
            gpu_pod("elsewhere", 0, node="g2")]
    holders = scenarios.device_holders(setup, [p for p in pods if p["spec"]["nodeName"] == "g1"])
    assert {i: [p["metadata"]["name"] for p in ps] for i, ps in holders.items()} == {
        0: ["early"], 1: ["late"], 2: ["late"]}
    spec_ = scenarios.validate(xid(79))
    assert scenarios.fault_devices(spec_, "g1", setup, holders) == [0]
    assert scenarios.fault_devices(spec_, "g1", setup, {}) == [0]
    assert scenarios.fault_devices(scenarios.validate(xid(79, gpus=[3, 1])), "g1", setup, holders) == [1, 3]
    with pytest.raises(scenarios.ScenarioError, match=r"target.gpus \[4\] not on node g1: it has 4 GPU"):
        scenarios.fault_devices(scenarios.validate(xid(79, gpus=[4])), "g1", setup, holders)
    fallen = scenarios.validate({"type": "GPUFallenOffBus", "target": {"nodes": ["g1"]}})
    assert scenarios.fault_devices(fallen, "g1", setup, holders) == [0, 1, 2, 3]
    # A dead device is handed to nobody: the next pod gets the next healthy one.
    again = scenarios.device_holders(setup, [gpu_pod("early", 0), gpu_pod("new", 90)], frozenset({0}))
    assert {i: [p["metadata"]["name"] for p in ps] for i, ps in again.items()} == {1: ["early"], 2: ["new"]}


def test_a_critical_xid_takes_one_gpu_out_of_allocatable_and_capacity_keeps_it() -> None:
    spec_ = scenarios.validate(xid(79, gpus=[2]))
    annotations = scenarios.gpu_fault_annotations(spec_, "ns/xid", [2])
    assert annotations == {"k8sim.io/gpu-xid-2": json.dumps({"scenario": "ns/xid", "xid": 79})}
    node = gpu_node(annotations=annotations)
    faults = gpus.node_faults(node)
    assert faults.xids == {2: 79} and faults.unhealthy == {2} and faults.owners == {"k8sim.io/gpu-xid-2": "ns/xid"}
    assert scenarios.gpu_allocatable(gpus.inventory([node])["g1"], faults) == {"nvidia.com/gpu": "3"}
    # A resumed run finds the devices it hit; another Scenario's are not its own.
    assert scenarios.owned_devices(faults, "ns/xid") == [2] and scenarios.owned_devices(faults, "ns/xid1") == []
    # XID 13: the device plugin ignores it, so the device stays allocatable.
    ignored = gpus.node_faults(gpu_node(annotations=scenarios.gpu_fault_annotations(
        scenarios.validate(xid(13)), "ns/x13", [0])))
    assert ignored.xids == {0: 13} and ignored.unhealthy == frozenset()
    assert scenarios.gpu_allocatable(gpus.GPUSetup("t4", 4), ignored) == {"nvidia.com/gpu": "4"}


def test_a_dead_gpu_takes_its_share_of_time_sliced_and_mig_resources() -> None:
    assert gpus.allocatable(gpus.GPUSetup("t4", 2, replicas=4), 1) == {"nvidia.com/gpu": 4}
    assert gpus.allocatable(gpus.GPUSetup("h100", 1, "single", "all-1g.10gb"), 1) == {"nvidia.com/gpu": 0}
    assert gpus.allocatable(gpus.GPUSetup("a100", 2, "mixed", "all-balanced"), 1) == {
        "nvidia.com/mig-1g.5gb": 2, "nvidia.com/mig-2g.10gb": 1, "nvidia.com/mig-3g.20gb": 1}
    assert gpus.allocatable(gpus.GPUSetup("t4", 4), 9) == {"nvidia.com/gpu": 0}  # never below zero


def test_unreadable_fault_annotations_are_no_fault() -> None:
    node = gpu_node(annotations={"k8sim.io/gpu-xid-0": "79", "k8sim.io/gpu-xid-x": json.dumps({"xid": 79}),
                                 "k8sim.io/gpu-throttle-1": json.dumps({"clockPercent": "fast"})})
    assert gpus.node_faults(node) == gpus.Faults()


def test_the_pod_on_a_dead_gpu_fails_as_the_kubelet_fails_it() -> None:
    patch = scenarios.gpu_failed_status(gpu_pod("early", 0), "g1", 79, [0], T0)["status"]
    assert patch["phase"] == "Failed" and patch["reason"] == "UnexpectedAdmissionError"
    assert patch["message"].startswith("Allocate failed due to requested number of devices unavailable for "
                                       "nvidia.com/gpu. Requested: 1, Available: 0, which is unexpected")
    assert "GPU 0 of g1 unhealthy: XID 79, GPU has fallen off the bus" in patch["message"]
    (status,) = patch["containerStatuses"]
    assert status["ready"] is False and status["state"]["terminated"]["exitCode"] == 1
    assert {c["type"]: c["status"] for c in patch["conditions"]} == {"Ready": "False"}


# --------------------------------------------------------------------------- the model and the alerts


def exposition_of(m: model.Model) -> str:
    state = State()
    state.model = m
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SimulatorCollector(Ref(state)))
    return str(render(registry).decode())


def test_an_xid_shows_on_its_device_only_and_a_dead_device_serves_no_pod() -> None:
    m = model.Model(noise=False)
    inventory = {"g1": ("t4", 2)}
    faults = {"g1": gpus.Faults(xids={0: 79})}
    m.tick([spec("a", started_min=0)], MONDAY, 5)
    samples = m.step_devices(inventory, 5, faults)
    assert [(s.device.index, s.xid, s.pod) for s in samples] == [(0, 79, ""), (1, 0, "pod-a")]
    text = exposition_of(m)
    assert {(s["gpu"], s["err_code"], s["err_msg"]) for s in series(text, "DCGM_FI_DEV_XID_ERRORS")} == {
        ("0", "79", "GPU has fallen off the bus"), ("1", "0", "No Error")}
    assert "DCGM_FI_DEV_XID_ERRORS{" in text and any(
        line.startswith("DCGM_FI_DEV_XID_ERRORS{") and 'gpu="0"' in line and line.endswith(" 79.0")
        for line in text.splitlines())
    # XID 13: the metric only; the pod keeps its device.
    m2 = model.Model(noise=False)
    m2.tick([spec("a", started_min=0)], MONDAY, 5)
    samples = m2.step_devices(inventory, 5, {"g1": gpus.Faults(xids={0: 13})})
    assert [(s.device.index, s.xid, s.pod) for s in samples] == [(0, 13, "pod-a"), (1, 0, "")]


def test_a_thermal_throttle_lowers_the_clock_and_stretches_the_work() -> None:
    inventory = {"g1": ("l40s", 1)}
    results = {}
    for name, faults in (("free", None), ("throttled", {"g1": gpus.Faults(throttled={0: 0.5})})):
        m = model.Model(noise=False)
        for i in range(40):
            when = MONDAY + dt.timedelta(seconds=10 * i)
            services = m.tick([spec("a", accelerator="l40s")], when, 10)
            samples = m.step_devices(inventory, 10, faults)
        results[name] = (samples[0], services[0], m.pods["a"].last)
    (free, free_service, free_pod), (hot, hot_service, hot_pod) = results["free"], results["throttled"]
    gpu = gpus.MODELS["l40s"]
    assert free.sm_clock_mhz == gpu.sm_clock and hot.sm_clock_mhz == gpu.sm_clock * 0.5
    assert hot.throttled and not free.throttled
    assert hot_service.rps == pytest.approx(free_service.rps)  # the same traffic …
    assert hot.util == pytest.approx(min(100.0, (free.util - 2) * 2 + 2))  # … twice the GPU time per request
    assert hot_pod is not None and free_pod is not None
    assert hot_pod.latency_ms == pytest.approx(free_pod.latency_ms + model.PROFILES["gpu-inference"].gpu_ms_per_request)
    assert hot.temp_c > free.temp_c and hot.temp_c > 80  # held at its slowdown temperature


def test_gpu_alerts_name_the_device_and_the_fault() -> None:
    m = model.Model(noise=False)
    m.tick([], MONDAY, 5)
    samples = m.step_devices({"g1": ("t4", 3)}, 5, {"g1": gpus.Faults(xids={0: 79, 1: 13}, throttled={2: 0.6})})
    found = {(f.name, f.subject, f.severity, f.value) for f in alerts.gpu_alerts(samples)}
    assert found == {("GPUXidError", "g1/gpu0", "critical", 79.0), ("GPUFallenOffBus", "g1/gpu0", "critical", 79.0),
                     ("GPUXidError", "g1/gpu1", "warning", 13.0),
                     ("GPUThermalThrottling", "g1/gpu2", "warning", gpus.MODELS["t4"].sm_clock_idle)}
    assert alerts.gpu_alerts(m.step_devices({"g1": ("t4", 3)}, 5)) == []
