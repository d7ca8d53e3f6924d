"""Capacity per pool and node against the real cluster, and what-if answered by the real scheduler."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest
import yaml

from .conftest import Kubectl, eventually
from .workloads import deployment

pytestmark = pytest.mark.integration

T4: dict[str, Any] = {"nodeSelector": {"accelerator": "nvidia-t4"},
      "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}


def pool(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in doc["pools"] if p["name"] == name)


def test_capacity_counts_what_is_requested_and_used(api_url: str, loop_engine: str, kubectl: Kubectl,
                                                    namespace: str) -> None:
    before = httpx.get(f"{api_url}/cluster/capacity", timeout=30).json()
    assert pool(before, "cpu")["nodes"] == 10 and pool(before, "cpu")["allocatable"]["cpu_cores"] == 320
    assert before["gpus"]["t4"]["allocatable"] == 8
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(deployment("sized", 3, "1500m")))
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(deployment("greedy", 1, "1", gpus=64, **T4)))
    kubectl("wait", "-n", namespace, "deployment/sized", "--for=condition=Available", "--timeout=60s")

    def counted() -> dict[str, Any]:
        doc = httpx.get(f"{api_url}/cluster/capacity", timeout=30).json()
        added = pool(doc, "cpu")["requested"]["cpu_cores"] - pool(before, "cpu")["requested"]["cpu_cores"]
        assert added == pytest.approx(4.5, abs=0.01)  # three pods of 1.5 cores, wherever they went
        assert doc["metrics_available"] and pool(doc, "cpu")["used"]["cpu_cores"] > 0
        waiting = [g for g in doc["pending"] if f"{namespace}/" in " ".join(g["pods"])]
        assert waiting and "Insufficient nvidia.com/gpu" in waiting[0]["reason"]
        return dict(doc)
    eventually(counted, 60, what="the new requests and the pending pod counted")


def test_what_if_asks_the_scheduler_and_sizes_the_missing_nodes(api_url: str, kubectl: Kubectl) -> None:
    small = yaml.safe_dump(deployment("fits", 2, "2"))
    answer = httpx.post(f"{api_url}/cluster/capacity/what-if", json={"manifest": small}, timeout=60).json()
    assert answer["fits"] and answer["placed"] == 2 and answer["additional_nodes"] == {}
    assert answer["workloads"][0]["nodes"] == {"cpu": 2}

    free = httpx.get(f"{api_url}/cluster/capacity", timeout=30).json()["gpus"]["t4"]
    room = int(free["allocatable"] - free["requested"])
    big = yaml.safe_dump(deployment("gpus", room + 5, "1", gpus=1, **T4))
    answer = httpx.post(f"{api_url}/cluster/capacity/what-if", json={"manifest": big}, timeout=60).json()
    assert not answer["fits"] and answer["placed"] == room and answer["unplaced"] == 5
    reasons = answer["workloads"][0]["reasons"]
    assert any("Insufficient nvidia.com/gpu" in r for r in reasons), reasons
    assert answer["additional_nodes"] == {"gpu-t4": math.ceil(5 / 4)}  # g4dn.12xlarge: 4 GPUs a node
    # Nothing of it stays: the scratch namespace goes and nothing was applied.
    eventually(lambda: not [n for n in kubectl.json("get", "namespaces")["items"]
                            if n["metadata"]["name"].startswith("k8sim-what-if-")], 60, what="the scratch gone")
    assert kubectl("get", "deployments", "-A", "-l", "app=gpus", "--no-headers", check=False).strip() == ""
    too_many = yaml.safe_dump(deployment("many", 6000, "1m"))
    assert httpx.post(f"{api_url}/cluster/capacity/what-if", json={"manifest": too_many}).status_code == 422
