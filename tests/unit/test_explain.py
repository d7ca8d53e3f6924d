"""Why an object is not ready: selectors, the newest warning, pending pod counts."""

from __future__ import annotations

from typing import Any

from k8sim import explain


def pod(uid: str, phase: str = "Pending", unschedulable: bool = False) -> dict[str, Any]:
    conditions = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}] if unschedulable else []
    return {"metadata": {"uid": uid, "labels": {"app": "x"}}, "status": {"phase": phase, "conditions": conditions}}


def event(uid: str, reason: str, when: str, message: str = "m") -> dict[str, Any]:
    return {"involvedObject": {"uid": uid}, "reason": reason, "message": message, "lastTimestamp": when}


def test_selectors_match_labels_and_expressions() -> None:
    labels = {"app": "x", "tier": "web"}
    assert explain.selector_matches({"matchLabels": {"app": "x"}}, labels)
    assert not explain.selector_matches({"matchLabels": {"app": "y"}}, labels)
    assert explain.selector_matches({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]},
                                    labels)
    assert not explain.selector_matches({"matchExpressions": [{"key": "tier", "operator": "NotIn",
                                                               "values": ["web"]}]}, labels)
    assert not explain.selector_matches({"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}, labels)
    assert not explain.selector_matches({}, labels), "an empty selector selects nothing here"


def test_the_newest_warning_of_the_objects_wins() -> None:
    events = [event("a", "FailedCreate", "2026-11-28T10:00:00Z"), event("b", "FailedScheduling",
                                                                         "2026-11-28T10:00:05Z"),
              event("other", "BackOff", "2026-11-28T11:00:00Z")]
    assert explain.newest_warning(events, {"a", "b"})["reason"] == "FailedScheduling"
    assert explain.newest_warning(events, {"zzz"}) is None


def test_reason_reads_as_kubectl_would() -> None:
    pods = [pod("1", unschedulable=True), pod("2", unschedulable=True), pod("3", phase="Running")]
    pending, unschedulable = explain.pod_counts(pods)
    assert (pending, unschedulable) == (2, 2)
    text = explain.compose(event("1", "FailedScheduling", "t", "0/18 nodes are available: 10 Insufficient "
                                                             "nvidia.com/gpu. "), pending, unschedulable)
    assert text == ("FailedScheduling: 0/18 nodes are available: 10 Insufficient nvidia.com/gpu. "
                    "(2 pods pending, 2 unschedulable)")
    assert explain.compose(None, 1, 0) == "(1 pod pending)"
    assert explain.compose(None, 0, 0) is None
