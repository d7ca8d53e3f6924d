"""Background failures at speed 1: the operator plays the profile's pod crashes in the cluster as
Scenarios (labelled k8sim.io/background=true), and the pods recover when each one ends."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from k8sim.local import supervisor
from k8sim.local.settings import ClusterSettings

from .conftest import Kubectl, eventually, process

pytestmark = pytest.mark.integration

#: Rates no cluster has, so the test sees a crash within seconds; only pods labelled chaos=on are hit.
RATES = {"pod_crashes_per_day": 20000, "pod_crash_seconds": 15, "node_failures_per_day": 0}


@pytest.fixture(scope="module")
def chaos_operator(live_services: ClusterSettings, live_cluster: ClusterSettings,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("chaos-operator")
    env = {"K8SIM_SPOOL": str(tmp / "spool.jsonl"), "K8SIM_PROFILE": "realistic",
           "K8SIM_BACKGROUND": json.dumps(RATES), "K8SIM_BACKGROUND_INTERVAL": "1",
           "K8SIM_BACKGROUND_SELECTOR": "chaos=on", "K8SIM_SEED": "3"}
    with process([sys.executable, "-m", "kopf", *supervisor.KOPF_ARGS], env, tmp / "operator.log"):
        yield tmp / "operator.log"


def test_background_crashes_are_scenarios_and_heal(chaos_operator: Path, kubectl: Kubectl, namespace: str) -> None:
    kubectl("create", "deployment", "steady", "-n", namespace, "--image=web:1", "--replicas=2")
    kubectl("label", "deployment", "steady", "-n", namespace, "chaos=on")
    kubectl("patch", "deployment", "steady", "-n", namespace, "-p",
            json.dumps({"spec": {"template": {"metadata": {"labels": {"chaos": "on"}}}}}))

    def played() -> list[dict[str, Any]]:
        found = kubectl.json("get", "scenarios", "-n", namespace, "-l", "k8sim.io/background=true")["items"]
        assert found
        return list(found)
    first = eventually(played, 60, what="a background Scenario")[0]
    assert first["spec"]["type"] == "PodCrash" and first["spec"]["duration"] == "15s"
    assert first["spec"]["parameters"]["pods"] == 1

    def crashed() -> bool:
        pods = kubectl.json("get", "pods", "-n", namespace, "-l", "app=steady")["items"]
        return any(c.get("restartCount", 0) >= 1 for p in pods for c in p["status"].get("containerStatuses") or [])
    eventually(crashed, 60, what="a pod restarted by a background crash")
    eventually(lambda: any((s.get("status") or {}).get("phase") == "Completed" for s in played()), 60,
               what="a background Scenario completed")
    others = kubectl.json("get", "scenarios", "-A", "-l", "k8sim.io/background=true")["items"]
    assert {s["metadata"]["namespace"] for s in others} == {namespace}, "the selector keeps other pods out"
    kubectl("delete", "scenarios", "-n", namespace, "--all", "--timeout=60s")
