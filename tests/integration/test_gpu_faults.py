"""GPU faults as Scenarios against the real cluster: GPUXid 79 on one GPU of a node of our own (the
device plugin's allocatable down by one, capacity kept, the pod on it failed and replaced by its
ReplicaSet on a healthy GPU, DCGM_FI_DEV_XID_ERRORS 79 on that device, the alerts) and given back at
its end; XID 13, which the device plugin ignores, changes only the metric."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from k8sim import gpus, topology

from .conftest import Kubectl, eventually

pytestmark = pytest.mark.integration

#: A pool of its own (A10G: no shared pool has it), so the test's pods are the only ones on its GPUs.
POOL = {"name": "itest-xid", "count": 1, "instance_type": "g5.12xlarge", "cpu": "48", "memory": "192Gi",
        "gpu": {"type": "a10g", "count": 4}}
NODE = "itest-xid-0"


@pytest.fixture(scope="module")
def xid_node(kubectl: Kubectl) -> Iterator[dict[str, Any]]:
    (node,) = topology.node_manifests([POOL], "10.251.0.0/16")
    kubectl("delete", "node", NODE, "--ignore-not-found", "--wait=true")
    kubectl("create", "-f", "-", stdin=yaml.safe_dump(node))
    try:
        yield node
    finally:
        kubectl("delete", "node", NODE, "--ignore-not-found", "--wait=false")


def deployment(name: str) -> str:
    return yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {
                     "nodeSelector": {"k8sim.io/pool": POOL["name"]},
                     "containers": [{"name": "server", "image": "vllm/vllm-openai:v0.11.0",
                                     "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}},
    })


def gpu_resources(kubectl: Kubectl) -> tuple[str, str]:
    status = kubectl.json("get", "node", NODE)["status"]
    return status["capacity"]["nvidia.com/gpu"], status["allocatable"]["nvidia.com/gpu"]


def xid_series(engine_url: str) -> dict[str, tuple[float, str, str]]:
    """GPU index → (value, err_code, pod) of the node's DCGM_FI_DEV_XID_ERRORS, and the pods on its GPUs."""
    text = httpx.get(f"{engine_url}/metrics", timeout=30).text
    found = {}
    for family in text_string_to_metric_families(text):
        if family.name == "DCGM_FI_DEV_XID_ERRORS":
            for s in family.samples:
                if s.labels["Hostname"] == NODE:
                    found[s.labels["gpu"]] = (s.value, s.labels["err_code"], s.labels["pod"])
    return found


def running(kubectl: Kubectl, namespace: str, app: str) -> dict[str, Any]:
    pods = kubectl.json("get", "pods", "-n", namespace, "-l", f"app={app}")["items"]
    live = [p for p in pods if p["status"].get("phase") == "Running"]
    assert len(live) == 1, [(p["metadata"]["name"], p["status"].get("phase")) for p in pods]
    return dict(live[0])


def start(api_url: str, namespace: str, name: str, spec: dict[str, Any]) -> None:
    resp = httpx.post(f"{api_url}/scenarios", json={"metadata": {"name": name, "namespace": namespace},
                                                    "spec": spec}, timeout=30)
    assert resp.status_code == 201, resp.text


def active(api_url: str, namespace: str, name: str) -> dict[str, Any]:
    body = httpx.get(f"{api_url}/scenarios/{namespace}/{name}", timeout=30).json()
    assert body["status"].get("phase") == "Active", body["status"]
    return dict(body["status"])


def stop(api_url: str, namespace: str, name: str) -> None:
    resp = httpx.delete(f"{api_url}/scenarios/{namespace}/{name}", timeout=30)
    assert resp.status_code == 200, resp.text


def firing(api_url: str, name: str, subject: str) -> bool:
    found = httpx.get(f"{api_url}/sla/alerts/history", params={"name": name}, timeout=30).json()["alerts"]
    return any(a["name"] == name and a["service"] == subject and a["state"] == "firing" for a in found)


def test_an_unknown_xid_is_refused_by_the_api_naming_it(api_url: str, namespace: str) -> None:
    resp = httpx.post(f"{api_url}/scenarios", json={"metadata": {"name": "xid-7", "namespace": namespace}, "spec": {
        "type": "GPUXid", "target": {"nodes": [NODE]}, "parameters": {"xid": 7}}}, timeout=30)
    assert resp.status_code == 422, resp.text
    assert "unknown XID 7" in resp.text


def test_xid_79_takes_the_gpu_out_and_fails_its_pod_and_its_end_gives_it_back(
        kubectl: Kubectl, namespace: str, api_url: str, engine_url: str, xid_node: dict[str, Any]) -> None:
    assert gpu_resources(kubectl) == ("4", "4")
    kubectl("apply", "-n", namespace, "-f", "-", stdin=deployment("xid"))
    first = eventually(functools.partial(running, kubectl, namespace, "xid"), 120, "the GPU pod to run")
    name = first["metadata"]["name"]

    def its_gpu() -> str:
        (index,) = [g for g, (_, _, pod) in xid_series(engine_url).items() if pod == name]
        return index
    gpu = eventually(its_gpu, 60, "the engine to give the pod a GPU")
    start(api_url, namespace, "xid-79", {"type": "GPUXid", "target": {"nodes": [NODE], "gpus": [int(gpu)]},
                                         "parameters": {"xid": 79}})
    status = eventually(functools.partial(active, api_url, namespace, "xid-79"), 60, "the GPUXid to play")
    assert {"kind": "Pod", "namespace": namespace, "name": name} in status["affected"]
    assert {"kind": "GPU", "name": f"{NODE}/gpu{gpu}"} in status["affected"]
    # The device plugin's view: one GPU fewer to allocate, the node still has four.
    assert gpu_resources(kubectl) == ("4", "3")
    failed = kubectl.json("get", "pod", name, "-n", namespace)["status"]
    assert (failed["phase"], failed["reason"]) == ("Failed", "UnexpectedAdmissionError")
    assert "Available: 0" in failed["message"] and f"GPU {gpu} of {NODE} unhealthy: XID 79" in failed["message"]
    assert failed["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1

    # Its ReplicaSet replaces it; the scheduler puts the new pod on a GPU the node still offers.
    def replaced() -> dict[str, Any]:
        pod = running(kubectl, namespace, "xid")
        assert pod["metadata"]["name"] != name
        return pod
    second = eventually(replaced, 120, "the ReplicaSet to replace the failed pod")
    assert second["spec"]["nodeName"] == NODE

    def metric_shows_79() -> dict[str, tuple[float, str, str]]:
        found = xid_series(engine_url)
        assert found[gpu][:2] == (79.0, "79"), found
        assert found[gpu][2] == ""  # a dead GPU serves no pod
        assert [g for g, (_, _, pod) in found.items() if pod == second["metadata"]["name"]] != [gpu]
        return found
    found = eventually(metric_shows_79, 60, "DCGM_FI_DEV_XID_ERRORS to show 79 on the GPU")
    assert {g: v[:2] for g, v in found.items() if g != gpu} == {g: (0.0, "0") for g in found if g != gpu}
    eventually(lambda: firing(api_url, "GPUFallenOffBus", f"{NODE}/gpu{gpu}"), 60, "GPUFallenOffBus to fire")
    assert firing(api_url, "GPUXidError", f"{NODE}/gpu{gpu}")

    # The Scenario's end: the device is back.
    stop(api_url, namespace, "xid-79")

    def given_back() -> bool:
        assert gpu_resources(kubectl) == ("4", "4")
        assert xid_series(engine_url)[gpu][:2] == (0.0, "0")
        return True
    eventually(given_back, 60, "the GPU to be given back")
    node = kubectl.json("get", "node", NODE)
    assert not [k for k in node["metadata"].get("annotations") or {} if k.startswith(gpus.XID_ANNOTATION)]

    # XID 13: an application error the device plugin ignores; only the metric changes.
    held = eventually(functools.partial(running, kubectl, namespace, "xid"), 30, "the replacement to run")

    def held_gpu() -> str:
        (index,) = [g for g, (_, _, pod) in xid_series(engine_url).items() if pod == held["metadata"]["name"]]
        return index
    second_gpu = eventually(held_gpu, 60, "the replacement's GPU")
    start(api_url, namespace, "xid-13", {"type": "GPUXid", "target": {"nodes": [NODE], "gpus": [int(second_gpu)]},
                                         "parameters": {"xid": 13}})
    status = eventually(functools.partial(active, api_url, namespace, "xid-13"), 60, "the GPUXid 13 to play")
    assert status["affected"] == [{"kind": "GPU", "name": f"{NODE}/gpu{second_gpu}"}]

    def shows_13() -> bool:
        assert xid_series(engine_url)[second_gpu] == (13.0, "13", held["metadata"]["name"])
        return True
    eventually(shows_13, 60, "DCGM_FI_DEV_XID_ERRORS to show 13")
    assert gpu_resources(kubectl) == ("4", "4")
    assert running(kubectl, namespace, "xid")["metadata"]["name"] == held["metadata"]["name"]
    stop(api_url, namespace, "xid-13")

    def cleared() -> bool:
        assert xid_series(engine_url)[second_gpu][:2] == (0.0, "0")
        return True
    eventually(cleared, 60, "XID 13 to clear")


def sm_clock(engine_url: str) -> dict[str, float]:
    text = httpx.get(f"{engine_url}/metrics", timeout=30).text
    return {s.labels["gpu"]: s.value for family in text_string_to_metric_families(text)
            if family.name == "DCGM_FI_DEV_SM_CLOCK" for s in family.samples if s.labels["Hostname"] == NODE}


def test_a_thermal_throttle_holds_the_clock_down_and_a_gpu_fallen_off_the_bus_takes_the_node_out(
        kubectl: Kubectl, namespace: str, api_url: str, engine_url: str, xid_node: dict[str, Any]) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", stdin=deployment("bus"))
    first = eventually(functools.partial(running, kubectl, namespace, "bus"), 120, "the GPU pod to run")
    name = first["metadata"]["name"]
    model = gpus.MODELS["a10g"]

    # GPUThermalThrottle on every GPU at half clock: the SM clock is half the maximum, the alert fires.
    start(api_url, namespace, "hot", {"type": "GPUThermalThrottle", "target": {"nodes": [NODE], "gpus": [0, 1, 2, 3]},
                                      "parameters": {"clockPercent": 50}})
    eventually(functools.partial(active, api_url, namespace, "hot"), 60, "the throttle to play")

    def throttled() -> dict[str, float]:
        clocks = sm_clock(engine_url)
        held = [g for g, (_, _, pod) in xid_series(engine_url).items() if pod == name]
        assert held and all(clocks[g] == model.sm_clock * 0.5 for g in held), (held, clocks)
        assert all(v <= model.sm_clock * 0.5 for v in clocks.values()), clocks
        return clocks
    eventually(throttled, 60, "the SM clocks to drop")
    eventually(lambda: firing(api_url, "GPUThermalThrottling", f"{NODE}/gpu0"), 60, "GPUThermalThrottling to fire")
    assert gpu_resources(kubectl) == ("4", "4")  # a throttled GPU is still offered
    stop(api_url, namespace, "hot")

    def full_speed() -> bool:
        held = [g for g, (_, _, pod) in xid_series(engine_url).items() if pod == name]
        assert held and all(sm_clock(engine_url)[g] == model.sm_clock for g in held)
        return True
    eventually(full_speed, 60, "the clocks to come back")

    # GPUFallenOffBus: XID 79 on all four GPUs, nothing left to allocate, the pod fails and its
    # replacement has nowhere to go.
    start(api_url, namespace, "bus", {"type": "GPUFallenOffBus", "target": {"nodes": [NODE]}})
    status = eventually(functools.partial(active, api_url, namespace, "bus"), 60, "GPUFallenOffBus to play")
    assert {"kind": "Pod", "namespace": namespace, "name": name} in status["affected"]
    assert gpu_resources(kubectl) == ("4", "0")
    assert kubectl.json("get", "pod", name, "-n", namespace)["status"]["phase"] == "Failed"

    def pending() -> dict[str, Any]:
        pods = kubectl.json("get", "pods", "-n", namespace, "-l", "app=bus")["items"]
        (waiting,) = [p for p in pods if p["metadata"]["name"] != name]
        cond = {c["type"]: c for c in waiting["status"].get("conditions") or []}["PodScheduled"]
        assert cond["reason"] == "Unschedulable" and "Insufficient nvidia.com/gpu" in cond["message"], cond
        return dict(waiting)
    replacement = eventually(pending, 60, "the replacement to find no GPU")

    def all_79() -> bool:
        assert {g: v[:2] for g, v in xid_series(engine_url).items()} == {str(i): (79.0, "79") for i in range(4)}
        return True
    eventually(all_79, 60, "XID 79 on every GPU")
    stop(api_url, namespace, "bus")

    # Given back: the replacement runs on the node again.
    def back() -> bool:
        assert gpu_resources(kubectl) == ("4", "4")
        assert running(kubectl, namespace, "bus")["metadata"]["name"] == replacement["metadata"]["name"]
        return True
    eventually(back, 120, "the node's GPUs to come back and the replacement to run")
