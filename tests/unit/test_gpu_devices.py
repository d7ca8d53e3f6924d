"""GPU devices in the model and DCGM's default counters in the engine's exposition: which pod holds
which device, power and temperature against utilisation, the series' names, types and labels."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import re
from typing import Any

import pytest
from k8sim_engine.collector import DCGM_COUNTERS, SimulatorCollector, State, render
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from k8sim import gpus, model

MONDAY = dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC)


def spec(uid: str, node: str = "g1", gpu_count: int = 1, started_min: int = 0, service: str = "ns/tts-server",
         accelerator: str = "t4") -> model.PodSpec:
    return model.PodSpec(uid=uid, namespace="ns", name=f"pod-{uid}", service=service, container="server", image="i",
                         node=node, tenant="t1", cpu_request=1, cpu_limit=2, memory_request=model.GIB,
                         memory_limit=4 * model.GIB, gpus=gpu_count, accelerator=accelerator, ready=True,
                         started=MONDAY + dt.timedelta(minutes=started_min), container_started=MONDAY)


def holders(samples: list[model.DeviceSample]) -> dict[tuple[str, int], str]:
    return {(s.device.node, s.device.index): s.pod for s in samples}


def test_pods_get_distinct_devices_in_start_order_and_keep_them() -> None:
    m = model.Model(noise=False)
    inventory = {"g1": ("t4", 4), "g2": ("a100", 2)}
    pods = [spec("b", gpu_count=2, started_min=1), spec("a", started_min=0), spec("x", node="cpu-0")]
    m.tick(pods, MONDAY, 5)
    found = holders(m.step_devices(inventory, 5))
    assert found == {("g1", 0): "pod-a", ("g1", 1): "pod-b", ("g1", 2): "pod-b", ("g1", 3): "",
                     ("g2", 0): "", ("g2", 1): ""}  # every GPU has its figures, idle ones too
    # a goes, c (newer, two GPUs) comes: b keeps 1 and 2, c gets what is free
    m.tick([pods[0], spec("c", gpu_count=2, started_min=5)], MONDAY, 5)
    found = holders(m.step_devices(inventory, 5))
    assert [found[("g1", i)] for i in range(4)] == ["pod-c", "pod-b", "pod-b", "pod-c"]
    # More GPUs asked for than the node has left (the scheduler would not place it): never shared.
    m.tick([pods[0], spec("c", gpu_count=2, started_min=5), spec("d", gpu_count=1, started_min=9)], MONDAY, 5)
    found = holders(m.step_devices(inventory, 5))
    assert "pod-d" not in found.values() and m.gpus.held["b"] == ("g1", (1, 2)) and m.gpus.held["c"] == ("g1", (0, 3))
    # The node goes: its devices and their holders with it.
    assert holders(m.step_devices({"g2": ("a100", 2)}, 5)) == {("g2", 0): "", ("g2", 1): ""}
    assert m.gpus.held == {}


@pytest.mark.parametrize("key", sorted(gpus.MODELS))
def test_power_and_temperature_rise_with_utilisation(key: str) -> None:
    gpu = gpus.MODELS[key]
    powers = [model.gpu_power(gpu, u) for u in range(0, 101, 10)]
    temps = [model.gpu_temperature(gpu, u) for u in range(0, 101, 10)]
    assert powers[0] == gpu.idle_w and powers[-1] == gpu.tdp_w
    assert all(b > a for a, b in itertools.pairwise(powers)) and all(b > a for a, b in itertools.pairwise(temps))
    assert temps[0] == model.GPU_IDLE_TEMP and temps[-1] == model.GPU_LOAD_TEMP


def test_a_busy_device_draws_more_and_runs_hotter_than_an_idle_one() -> None:
    m = model.Model(noise=False)
    inventory = {"g1": ("a100", 2)}
    busy = spec("busy", accelerator="a100")
    samples: list[model.DeviceSample] = []
    energy = 0.0
    for i in range(60):  # ten simulated minutes: the temperature settles
        m.tick([busy], MONDAY + dt.timedelta(seconds=10 * i), 10, factors={"ns/tts-server": 3.0})
        samples = m.step_devices(inventory, 10)
        assert samples[0].energy_mj > energy  # a counter
        energy = samples[0].energy_mj
    held, idle = samples
    gpu = gpus.MODELS["a100"]
    assert held.pod == "pod-busy" and idle.pod == ""
    assert held.util > 50 and idle.util == 0
    assert held.power_w == pytest.approx(model.gpu_power(gpu, held.util)) and idle.power_w == gpu.idle_w
    assert held.temp_c > idle.temp_c + 15 and idle.temp_c == pytest.approx(model.GPU_IDLE_TEMP)
    assert held.memory_temp_c == pytest.approx(held.temp_c + model.HBM_OFFSET)  # HBM reports its own
    assert (held.sm_clock_mhz, idle.sm_clock_mhz) == (gpu.sm_clock, gpu.sm_clock_idle)
    assert held.fb_used_mib + held.fb_free_mib == idle.fb_free_mib == gpu.usable_mib
    assert held.fb_used_mib == pytest.approx(m.pods["busy"].last.gpu_fb_used_mib)  # type: ignore[union-attr]
    assert 0 < held.tensor_active < held.gr_engine_active <= 1 and idle.gr_engine_active == 0


class Ref:
    def __init__(self, state: State):
        self.state = state


def exposition(pods: list[model.PodSpec], inventory: dict[str, tuple[str, int]]) -> str:
    m = model.Model(noise=False)
    m.tick(pods, MONDAY, 5)
    m.step_devices(inventory, 5)
    state = State()
    state.model = m
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SimulatorCollector(Ref(state)))
    return render(registry).decode()


def series(text: str, name: str) -> list[dict[str, str]]:
    found = []
    for line in text.splitlines():
        if line.startswith(name + "{"):
            found.append(dict(re.findall(r'(\w+)="([^"]*)"', line.split("} ")[0])))
    return found


def test_every_default_dcgm_counter_per_device_with_dcgm_exporters_labels() -> None:
    text = exposition([spec("two", gpu_count=2), spec("one", node="h1", accelerator="h100")],
                      {"g1": ("t4", 4), "h1": ("h100", 8)})
    for name, (kind, help_text) in DCGM_COUNTERS.items():
        assert f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n" in text, name
    util = series(text, "DCGM_FI_DEV_GPU_UTIL")
    assert len(util) == 12  # every GPU of every GPU node, idle or not
    labels = {"gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION", "container",
              "namespace", "pod"}
    assert all(set(s) == labels for s in util)
    two = [s for s in util if s["pod"] == "pod-two"]
    assert [(s["gpu"], s["device"], s["Hostname"], s["namespace"], s["container"]) for s in two] == [
        ("0", "nvidia0", "g1", "ns", "server"), ("1", "nvidia1", "g1", "ns", "server")]  # two GPUs, two series
    assert {s["modelName"] for s in util} == {"Tesla T4", "NVIDIA H100 80GB HBM3"}
    assert {s["DCGM_FI_DRIVER_VERSION"] for s in util} == {gpus.DRIVER_VERSION}
    idle = [s for s in util if not s["pod"]]
    assert len(idle) == 9 and all(s["namespace"] == s["container"] == "" for s in idle)
    assert len({s["UUID"] for s in util}) == 12
    h100 = gpus.devices("h1", "h100", 8)[0]
    assert {"gpu": "0", "UUID": h100.uuid, "pci_bus_id": h100.pci_bus_id, "device": "nvidia0",
            "modelName": "NVIDIA H100 80GB HBM3", "Hostname": "h1", "DCGM_FI_DRIVER_VERSION": gpus.DRIVER_VERSION,
            "container": "server", "namespace": "ns", "pod": "pod-one"} in util
    xid = series(text, "DCGM_FI_DEV_XID_ERRORS")
    assert len(xid) == 12 and all(s["err_code"] == "0" and s["err_msg"] == "No Error" for s in xid)
    # Only the fields a model has: HBM temperature and remapped rows on the H100, not on the T4's GDDR.
    assert {s["Hostname"] for s in series(text, "DCGM_FI_DEV_MEMORY_TEMP")} == {"h1"}
    assert len(series(text, "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS")) == 8
    assert len(series(text, "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL")) == 8
    for name in ("DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
                 "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "DCGM_FI_DEV_SM_CLOCK"):
        assert len(series(text, name)) == 12, name
    assert "_total" not in "".join(line for line in text.splitlines() if line.startswith("DCGM_"))


def test_the_exposition_parses_as_prometheus_text() -> None:
    text = exposition([spec("two", gpu_count=2)], {"g1": ("t4", 4)})
    families = {f.name: f for f in text_string_to_metric_families(text)}
    energy = families["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"]
    assert energy.type == "counter" and len(energy.samples) == 4
    assert families["DCGM_FI_DEV_GPU_TEMP"].type == "gauge"


def test_render_writes_what_generate_latest_writes_for_every_other_family() -> None:
    # An image name with a quote, a backslash and a newline: escaped as generate_latest escapes them.
    pods = [dataclasses.replace(spec(f"p{i}", node="cpu-0", gpu_count=0), service=f"ns/web-{i % 3}",
                                image='reg/x:1"\\\n') for i in range(5)]
    m = model.Model(noise=False)
    m.tick(pods, MONDAY, 5)
    state = State()
    state.model = m
    state.pods = [pod_object(f"p{i}") for i in range(3)]
    state.services = m.tick(pods, MONDAY, 5)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SimulatorCollector(Ref(state)))

    def without_dcgm(text: bytes) -> str:
        return "".join(line + "\n" for line in text.decode().splitlines() if "DCGM_" not in line)
    ours = without_dcgm(render(registry))
    assert ours == without_dcgm(generate_latest(registry))
    assert "container_cpu_usage_seconds_total{" in ours and 'kube_pod_status_phase{' in ours
    assert r'image="reg/x:1\"\\\n"' in ours


def pod_object(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "uid": name},
            "spec": {"nodeName": "cpu-0"},
            "status": {"phase": "Running", "podIP": "10.0.0.1", "containerStatuses": [{"name": "c", "restartCount": 2}],
                       "conditions": [{"type": "Ready", "status": "True"}]}}
