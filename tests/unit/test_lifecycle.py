"""Pure lifecycle logic: what a state means and which transitions a change amounts to."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from k8sim import lifecycle
from k8sim.lifecycle import State


def pod(phase: str, ready: bool, node: str | None = None, restarts: int = 0) -> dict[str, Any]:
    return {"kind": "Pod", "metadata": {"name": "p", "generation": 1},
            "spec": {"nodeName": node} if node else {},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": str(ready)}],
                       "containerStatuses": [{"restartCount": restarts}]}}


def names(before: State | None, after: State | None) -> list[str]:
    return [t.name for t in lifecycle.transitions(before, after)]


def test_pod_walks_created_scheduled_running_ready_restarted_deleted() -> None:
    pending = lifecycle.summarise(pod("Pending", False))
    scheduled = lifecycle.summarise(pod("Pending", False, "n1"))
    running = lifecycle.summarise(pod("Running", True, "n1"))
    restarted = lifecycle.summarise(pod("Running", False, "n1", restarts=1))
    assert names(None, pending) == ["created", "pending"]
    assert names(pending, scheduled) == ["scheduled"]
    assert names(scheduled, running) == ["running", "ready"]
    assert names(running, restarted) == ["restarted", "not_ready"]
    assert names(restarted, None) == ["deleted"]
    assert names(running, running) == []


def test_deployment_readiness_needs_every_replica_available_and_current() -> None:
    def dep(replicas: int, ready: int, observed: int = 2) -> State:
        return lifecycle.summarise({"kind": "Deployment", "metadata": {"generation": 2}, "spec": {"replicas": replicas},
                                    "status": {"readyReplicas": ready, "availableReplicas": ready,
                                               "updatedReplicas": ready, "observedGeneration": observed}})
    assert dep(3, 3).ready and dep(3, 3).phase == "Available"
    assert not dep(3, 2).ready
    assert not dep(3, 3, observed=1).ready, "a spec the controller has not seen yet is not ready"
    assert [t.detail for t in lifecycle.transitions(dep(5, 5), dep(2, 2)) if t.name == "scaled"] == [
        {"from": 5, "to": 2}]


def test_job_pvc_service_and_unknown_kinds() -> None:
    job = {"kind": "Job", "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    assert lifecycle.summarise(job).phase == "Complete"
    assert lifecycle.summarise({"kind": "PersistentVolumeClaim", "status": {"phase": "Bound"}}).ready
    lb = {"kind": "Service", "spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.1"}, "status": {}}
    assert not lifecycle.summarise(lb).ready
    lb["status"] = {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}
    assert lifecycle.summarise(lb).ready
    other = lifecycle.summarise({"kind": "Widget", "status": {"phase": ["not", "a", "string"]}})
    assert other.phase == "Active" and other.ready is None


def test_tenant_comes_from_either_label() -> None:
    assert lifecycle.tenant_of({"metadata": {"labels": {"ecp.ai/tenant-id": "t1", "tenant": "t2"}}}) == "t1"
    assert lifecycle.tenant_of({"metadata": {"labels": {"tenant": "t2"}}}) == "t2"
    assert lifecycle.tenant_of({"metadata": {}}) is None


def cond(kind: str, status: str, reason: str = "") -> dict[str, str]:
    return {"type": kind, "status": status, "reason": reason}


@pytest.mark.parametrize(("obj", "phase", "ready", "reason"), [
    ({"kind": "Pod", "status": {"phase": "Pending", "conditions": [cond("PodScheduled", "False", "Unschedulable")]}},
     "Pending", False, "Unschedulable"),
    ({"kind": "Pod", "metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}, "status": {"phase": "Running"}},
     "Terminating", False, None),
    ({"kind": "Deployment", "spec": {"replicas": 2}, "status": {"conditions": [
        cond("Progressing", "False", "ProgressDeadlineExceeded")]}}, "Failed", False, "ProgressDeadlineExceeded"),
    ({"kind": "Deployment", "spec": {"replicas": 1}, "status": {"conditions": [
        cond("ReplicaFailure", "True", "FailedCreate")]}}, "Failed", False, "FailedCreate"),
    ({"kind": "StatefulSet", "spec": {"replicas": 0}, "status": {}}, "Available", True, None),
    ({"kind": "DaemonSet", "status": {"desiredNumberScheduled": 10, "numberReady": 9}}, "Progressing", False, None),
    ({"kind": "DaemonSet", "status": {"desiredNumberScheduled": 10, "numberReady": 10}}, "Available", True, None),
    ({"kind": "Job", "status": {"conditions": [cond("Failed", "True", "BackoffLimitExceeded")]}}, "Failed", False,
     "BackoffLimitExceeded"),
    ({"kind": "Job", "spec": {"suspend": True}, "status": {}}, "Suspended", False, None),
    ({"kind": "Job", "status": {"active": 1}}, "Running", False, None),
    ({"kind": "CronJob", "spec": {"suspend": True}}, "Suspended", True, None),
    ({"kind": "PersistentVolume", "status": {"phase": "Available"}}, "Available", True, None),
    ({"kind": "PersistentVolumeClaim", "status": {"phase": "Pending"}}, "Pending", False, None),
    ({"kind": "Namespace", "status": {"phase": "Terminating"}}, "Terminating", False, None),
    ({"kind": "Node", "status": {"conditions": [cond("Ready", "True")]}}, "Ready", True, None),
    ({"kind": "Service", "spec": {"type": "ExternalName"}}, "Active", True, None),
    ({"kind": "Ingress", "status": {}}, "Pending", False, None),
    ({"kind": "HorizontalPodAutoscaler", "status": {"conditions": [cond("AbleToScale", "False", "FailedGetScale")]}},
     "Pending", False, "FailedGetScale"),
    ({"kind": "HorizontalPodAutoscaler", "status": {"conditions": [
        cond("AbleToScale", "True"), cond("ScalingActive", "False", "FailedGetResourceMetric")]}},
     "Active", True, "FailedGetResourceMetric"),
    ({"kind": "CustomResourceDefinition", "status": {"conditions": [cond("Established", "True")]}}, "Established",
     True, None),
])
def test_each_kind_is_summarised_in_its_own_sense(obj: dict[str, Any], phase: str, ready: bool,
                                                 reason: str | None) -> None:
    state = lifecycle.summarise(obj)
    assert (state.phase, state.ready, state.reason) == (phase, ready, reason)


def test_every_kind_with_a_summary_is_in_the_table() -> None:
    assert {"Pod", "Deployment", "StatefulSet", "DaemonSet", "Job", "Node", "Service"} <= set(lifecycle.SUMMARIES)


def test_owner_is_the_controller_reference() -> None:
    obj = {"metadata": {"ownerReferences": [{"kind": "A", "name": "a", "uid": "1"},
                                            {"kind": "ReplicaSet", "name": "rs", "uid": "2", "controller": True}]}}
    assert lifecycle.owner_of(obj) == ("ReplicaSet", "rs", "2")
    assert lifecycle.owner_of({"metadata": {}}) == (None, None, None)


# --------------------------------------------------------------------------- Karpenter's NodeClaims and nodes

def _watched(kind: str) -> list[tuple[str, dict[str, Any]]]:
    """A real watch of Karpenter v1.15.0's objects on our cluster (tests/unit/data/karpenter_watch.json)."""
    data = json.loads((Path(__file__).parent / "data" / "karpenter_watch.json").read_text())
    return [(e["type"], e["object"]) for e in data[kind]]


def _walk(kind: str) -> list[lifecycle.Transition]:
    """Every step of the recorded watch, as the recorder derives them one version after the other."""
    steps: list[lifecycle.Transition] = []
    before: State | None = None
    for change, obj in _watched(kind):
        after = None if change == "DELETED" else lifecycle.summarise(obj)
        steps += lifecycle.transitions(before, after)
        before = after
    return steps


G5 = {"instance_type": "g5.xlarge", "capacity_type": "on-demand", "zone": "us-east-1c", "pool": "gpu-a10g"}


def test_a_nodeclaim_is_launched_registered_initialized_ready_disrupted_with_the_reason_and_deleted() -> None:
    node = "kwok-gpu-a10g-brth5-drifterspot-6-o4fqbqbr4p-2725346447"
    assert [(s.name, s.detail) for s in _walk("nodeclaims")] == [
        ("created", {"phase": "Pending"}),
        ("pending", {"from": None, "to": "Pending"}),
        ("launched", G5),
        ("registered", {**G5, "node": node}),
        ("initialized", {**G5, "node": node}),
        ("ready", {}),
        ("disrupted", {**G5, "node": node, "reason": "Empty"}),
        ("updated", {"generation": 2}),
        ("terminating", {"from": "Disrupted", "to": "Terminating", "reason": "Empty"}),
        ("deleted", {"phase": "Terminating", **G5, "node": node, "reason": "Empty"}),
    ]


def test_a_karpenter_node_is_registered_ready_initialized_disrupted_and_deleted_with_its_nodeclaim() -> None:
    named = {**G5, "nodeclaim": "gpu-a10g-brth5"}
    assert [(s.name, s.detail) for s in _walk("nodes")] == [
        ("created", {"phase": "NotReady"}),
        ("notready", {"from": None, "to": "NotReady"}),
        ("registered", named),  # karpenter.sh/registered and the NodeClaim as its owner
        ("ready", {"from": "NotReady", "to": "Ready"}),
        ("ready", {}),
        ("initialized", named),
        ("disrupted", named),  # Karpenter's karpenter.sh/disrupted:NoSchedule taint
        ("deleted", {"phase": "Ready", **named}),
    ]


def test_a_static_node_has_no_milestones_and_its_state_is_unchanged() -> None:
    node = {"kind": "Node", "metadata": {"name": "cpu-0", "labels": {"k8sim.io/pool": "cpu"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert lifecycle.summarise(node) == State(phase="Ready", ready=True)


def test_a_refused_launch_is_a_launch_failed_step_with_the_clouds_words() -> None:
    _, claim = _watched("nodeclaims")[1]
    unreconciled = lifecycle.summarise(claim)
    assert unreconciled.milestones == () and unreconciled.phase == "Pending"
    failing = json.loads(json.dumps(claim))
    launched = next(c for c in failing["status"]["conditions"] if c["type"] == "Launched")
    launched.update(reason="LaunchFailed", message="creating instance, no offering of g5.xlarge in us-east-1a")
    state = lifecycle.summarise(failing)
    assert (state.phase, state.reason) == ("LaunchFailed", "LaunchFailed")
    assert [(s.name, s.detail) for s in lifecycle.transitions(unreconciled, state)] == [
        ("launch_failed", {"pool": "gpu-a10g", "message": "creating instance, no offering of g5.xlarge in us-east-1a",
                           "reason": "LaunchFailed"})]
    # The same failure again (Karpenter retries) is no new step.
    assert lifecycle.transitions(state, lifecycle.summarise(failing)) == []


def test_milestones_and_facts_survive_the_json_round_trip_of_the_store() -> None:
    _, claim = _watched("nodeclaims")[-2]
    state = lifecycle.summarise(claim)
    again = State.from_dict(json.loads(json.dumps(state.as_dict())))
    assert again == state and hash(again) == hash(state)
    assert lifecycle.transitions(state, again) == []
