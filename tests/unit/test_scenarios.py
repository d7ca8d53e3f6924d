"""Scenarios: validation, schedules, targets (tenants matched exactly), model effects, marks."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from k8sim import lifecycle, model, scenarios

T0 = dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC)


def pod(name: str, namespace: str = "ns", node: str = "cpu-0", labels: dict[str, str] | None = None,
        owner: tuple[str, str] | None = ("ReplicaSet", "tts-server-5d8f"), **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}",
                            "labels": {"pod-template-hash": "5d8f", **(labels or {})}}
    if owner:
        meta["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "controller": True, "uid": "o"}]
    meta.update(extra)
    return {"kind": "Pod", "metadata": meta, "spec": {"nodeName": node}, "status": {"phase": "Running"}}


def node(name: str, pool: str = "cpu", zone: str = "us-east-1a") -> dict[str, Any]:
    return {"kind": "Node", "metadata": {"name": name, "labels": {"k8sim.io/pool": pool,
                                                                  "topology.kubernetes.io/zone": zone}}}


NODES = [node("cpu-0"), node("cpu-1", zone="us-east-1b"), node("gpu-t4-0", pool="gpu-t4", zone="us-east-1b")]


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25),
                                               ("1.5h", 5400)])
def test_durations_read_as_go_writes_them(text: str, seconds: float) -> None:
    assert scenarios.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "5 minutes", "m5", "-5s", 5, None])
def test_unreadable_durations_are_refused(text: Any) -> None:
    with pytest.raises(scenarios.ScenarioError):
        scenarios.parse_duration(text)


def test_a_new_scenarios_schedule_counts_from_when_it_is_first_seen() -> None:
    stamped = dt.datetime(2026, 12, 7, 10, 0, 0, tzinfo=dt.UTC)  # creationTimestamp: whole seconds
    seen = stamped + dt.timedelta(seconds=0.93)  # made at .9, seen at .93
    assert scenarios.schedule_origin(stamped, seen, seen_before=False) == seen
    # Played before (an operator that restarts resumes its runs), or first seen long after: the timestamp.
    assert scenarios.schedule_origin(stamped, seen, seen_before=True) == stamped
    assert scenarios.schedule_origin(stamped, stamped + dt.timedelta(seconds=30), seen_before=False) == stamped
    assert scenarios.schedule_origin(None, seen, seen_before=True) == seen


def test_start_is_an_offset_or_a_time() -> None:
    assert scenarios.parse_start("+30s", T0) == T0 + dt.timedelta(seconds=30)
    assert scenarios.parse_start("2026-11-23T11:00:00Z", T0) == T0 + dt.timedelta(hours=1)
    assert scenarios.parse_start(None, T0) == T0
    with pytest.raises(scenarios.ScenarioError):
        scenarios.parse_start("tomorrow", T0)


@pytest.mark.parametrize(("spec", "words"), [
    ({"type": "Meltdown"}, "spec.type must be one of"),
    ({"type": "PodCrash"}, "needs a target"),
    ({"type": "ZoneOutage", "target": {"namespace": "x"}}, "target.zone or target.pool"),
    ({"type": "PodCrash", "target": {"namespace": "x"}, "parameters": {"factor": 2}}, "no parameter factor"),
    ({"type": "ErrorBurst", "target": {"namespace": "x"}, "parameters": {"rate": 2}}, "from 0 to 1"),
    ({"type": "ErrorBurst", "target": {"namespace": "x"}, "parameters": {"rate": True}}, "from 0 to 1"),
    ({"type": "PodCrash", "target": {"namespace": "x"}, "duration": "soon"}, "unreadable duration"),
    ({"type": "PodCrash", "target": {"namespace": "x"}, "repeat": {"every": "1m"}}, "needs a duration"),
    ({"type": "PodCrash", "target": {"namespace": "x"}, "duration": "5m", "repeat": {"every": "1m"}}, "overlap"),
    ({"type": "PodCrash", "target": {"cluster": "x"}}, "unknown fields: cluster"),
    ({"type": "PodCrash", "target": {"selector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}}},
     "unknown selector operator"),
])
def test_unplayable_specs_say_why(spec: dict[str, Any], words: str) -> None:
    with pytest.raises(scenarios.ScenarioError, match=words):
        scenarios.validate(spec)


def test_defaults_of_a_valid_spec() -> None:
    spec = scenarios.validate({"type": "PodCrash", "target": {"namespace": "x"}})
    assert spec.parameters == {"exitCode": 1, "after": 5, "pods": 0} and spec.duration is None
    assert scenarios.validate({"type": "NodeNotReady"}).target == {}  # the first node of the cluster


def test_runs_repeat_with_a_seeded_jitter_and_stop_after_their_count() -> None:
    spec = scenarios.validate({"type": "PodCrash", "target": {"namespace": "x"}, "start": "+1m",
                               "duration": "5m", "repeat": {"every": "1h", "jitter": "10m", "times": 3}})
    runs = list(scenarios.windows(spec, T0, "uid-1"))
    assert len(runs) == 3 and runs == list(scenarios.windows(spec, T0, "uid-1"))  # reproducible
    for index, (start, end) in enumerate(runs):
        base = T0 + dt.timedelta(minutes=1, hours=index)
        assert base <= start <= base + dt.timedelta(minutes=10)
        assert end == start + dt.timedelta(minutes=5)
    assert runs != list(scenarios.windows(spec, T0, "uid-2"))  # another Scenario, another jitter
    once = scenarios.validate({"type": "PodCrash", "target": {"namespace": "x"}})
    assert list(scenarios.windows(once, T0, "u")) == [(T0, None)]


def test_tenants_match_exactly_never_by_prefix() -> None:
    pods = [pod("a", "ns-t1"), pod("b", "ns-t10"), pod("c", "other", labels={"ecp.ai/tenant-id": "t1"}),
            pod("d", "ns-t1", labels={"ecp.ai/tenant-id": "t10"})]  # its own label wins over the namespace's
    tenants = {"ns-t1": "t1", "ns-t10": "t10"}
    spec = scenarios.validate({"type": "PodCrash", "target": {"tenant": "t1"}})
    assert [p["metadata"]["name"] for p in scenarios.target_pods(spec, pods, NODES, tenants)] == ["a", "c"]
    spec10 = scenarios.validate({"type": "PodCrash", "target": {"tenant": "t10"}})
    assert [p["metadata"]["name"] for p in scenarios.target_pods(spec10, pods, NODES, tenants)] == ["d", "b"]


def test_every_target_field_must_match_and_pods_caps_the_count() -> None:
    pods = [pod("tts-1", labels={"app": "tts"}, node="cpu-0"), pod("tts-2", labels={"app": "tts"}, node="cpu-1"),
            pod("stt-1", labels={"app": "stt"}, node="cpu-1"), pod("tts-3", "other", labels={"app": "tts"}),
            pod("gone", labels={"app": "tts"}, deletionTimestamp="2026-11-23T10:00:00Z")]
    spec = scenarios.validate({"type": "PodCrash", "target": {"namespace": "ns",
                                                             "selector": {"matchLabels": {"app": "tts"}}}})
    assert [p["metadata"]["name"] for p in scenarios.target_pods(spec, pods, NODES, {})] == ["tts-1", "tts-2"]
    zoned = scenarios.validate({"type": "PodCrash", "target": {"namespace": "ns", "zone": "us-east-1b"}})
    assert [p["metadata"]["name"] for p in scenarios.target_pods(zoned, pods, NODES, {})] == ["stt-1", "tts-2"]
    capped = scenarios.validate({"type": "PodCrash", "target": {"namespace": "ns"}, "parameters": {"pods": 1}})
    assert len(scenarios.target_pods(capped, pods, NODES, {})) == 1
    expr = scenarios.validate({"type": "ProbeFailure", "target": {"selector": {"matchExpressions": [
        {"key": "app", "operator": "NotIn", "values": ["tts"]}]}}})
    assert [p["metadata"]["name"] for p in scenarios.target_pods(expr, pods, NODES, {})] == ["stt-1"]


def test_node_scenarios_take_a_zone_a_named_node_or_the_node_of_a_pod() -> None:
    pods = [pod("tts-1", labels={"app": "tts"}, node="cpu-1")]
    zone = scenarios.validate({"type": "ZoneOutage", "target": {"zone": "us-east-1b"}})
    assert [n["metadata"]["name"] for n in scenarios.target_nodes(zone, pods, NODES, {})] == ["cpu-1", "gpu-t4-0"]
    pool = scenarios.validate({"type": "ZoneOutage", "target": {"pool": "cpu"}})
    assert [n["metadata"]["name"] for n in scenarios.target_nodes(pool, pods, NODES, {})] == ["cpu-0", "cpu-1"]
    named = scenarios.validate({"type": "NodeNotReady", "target": {"nodes": ["cpu-0"]}})
    assert [n["metadata"]["name"] for n in scenarios.target_nodes(named, pods, NODES, {})] == ["cpu-0"]
    hosting = scenarios.validate({"type": "NodeNotReady", "target": {"selector": {"matchLabels": {"app": "tts"}}}})
    assert [n["metadata"]["name"] for n in scenarios.target_nodes(hosting, pods, NODES, {})] == ["cpu-1"]
    one_of_pool = scenarios.validate({"type": "NodeNotReady", "target": {"pool": "gpu-t4"}})
    assert [n["metadata"]["name"] for n in scenarios.target_nodes(one_of_pool, pods, NODES, {})] == ["gpu-t4-0"]


def test_workloads_and_services_of_pods() -> None:
    assert scenarios.workload_of(pod("tts-server-5d8f-abc")) == ("Deployment", "tts-server")
    assert scenarios.workload_of(pod("db-0", owner=("StatefulSet", "db"))) == ("StatefulSet", "db")
    assert scenarios.workload_of(pod("bare", owner=None)) is None
    assert lifecycle.service_of(pod("tts-server-5d8f-abc")) == "ns/tts-server"


def test_only_active_model_scenarios_have_effects_and_they_combine() -> None:
    def obj(kind: str, phase: str, services: list[str], **parameters: float) -> dict[str, Any]:
        return {"spec": {"type": kind, "target": {"namespace": "ns"}, "parameters": parameters},
                "status": {"phase": phase, "affected": [{"kind": "Service", "namespace": s.split("/")[0],
                                                         "name": s.split("/")[1]} for s in services]}}

    effects = scenarios.model_effects([
        obj("LoadSpike", "Active", ["ns/a", "ns/b"], factor=3),
        obj("ErrorBurst", "Active", ["ns/a"], rate=0.3),
        obj("LatencyIncident", "Completed", ["ns/a"], latencyMs=900),
        obj("PodCrash", "Active", ["ns/a"]),
    ])
    assert effects == {"ns/a": model.Effect(factor=3, error_rate=0.3), "ns/b": model.Effect(factor=3)}


def test_marks_hand_objects_to_the_fault_stages_and_back() -> None:
    spec = scenarios.validate({"type": "PodCrash", "target": {"namespace": "x"}, "parameters": {"exitCode": 3}})
    patch = scenarios.mark("PodCrash", "x/crash", spec)["metadata"]
    assert patch["labels"] == {scenarios.FAULT_LABEL: "PodCrash"}
    assert patch["annotations"] == {scenarios.SCENARIO_ANNOTATION: "x/crash", scenarios.AFTER_ANNOTATION: "5s",
                                    scenarios.EXIT_CODE_ANNOTATION: "3"}
    marked = {"metadata": {"annotations": {scenarios.SCENARIO_ANNOTATION: "x/crash"}}}
    assert scenarios.marked_by(marked, "x/crash") and not scenarios.marked_by(marked, "x/crash2")
    assert scenarios.recover()["metadata"]["labels"] == {scenarios.FAULT_LABEL: scenarios.RECOVERING}
    assert scenarios.unmark()["metadata"]["labels"] == {scenarios.FAULT_LABEL: None}


# --------------------------------------------------------------------------- Karpenter's cloud


def karpenter_node(name: str, capacity_type: str = "spot", pool: str = "gpu-a10g", zone: str = "us-east-1a",
                   instance_type: str = "g5.xlarge", **meta: Any) -> dict[str, Any]:
    labels = {"k8sim.io/pool": pool, "karpenter.sh/nodepool": pool, "karpenter.sh/capacity-type": capacity_type,
              "topology.kubernetes.io/zone": zone, "node.kubernetes.io/instance-type": instance_type}
    return {"kind": "Node", "metadata": {"name": name, "labels": labels, **meta}}


@pytest.mark.parametrize(("spec", "words"), [
    ({"type": "SpotInterruption"}, "names target.nodes or the pool"),
    ({"type": "SpotInterruption", "target": {"namespace": "x"}}, "not namespace"),
    ({"type": "SpotInterruption", "target": {"pool": "gpu-a10g"}, "duration": "5m"}, "takes no duration"),
    ({"type": "SpotInterruption", "target": {"pool": "gpu-a10g"}, "parameters": {"notice": -1}}, "notice"),
    ({"type": "SpotInterruption", "target": {"pool": ""}}, "target.pool must be a non-empty string"),
    ({"type": "CapacityShortage", "target": {"instanceType": "g5.xlarge"}}, "needs a duration"),
    ({"type": "CapacityShortage", "target": {"capacityType": "spot"}, "duration": "5m"},
     "target.instanceType and/or target.zone"),
    ({"type": "CapacityShortage", "target": {"instanceType": "G5 XL"}, "duration": "5m"},
     "'G5 XL' is not an instance type name"),
    ({"type": "CapacityShortage", "target": {"zone": "us-east-1a", "capacityType": "reserved"}, "duration": "5m"},
     "capacityType must be one of on-demand, spot, not 'reserved'"),
    ({"type": "CapacityShortage", "target": {"zone": "us-east-1a", "nodes": ["a"]}, "duration": "5m"},
     "not nodes"),
    ({"type": "PodCrash", "target": {"namespace": "x", "instanceType": "g5.xlarge"}},
     "target.instanceType is for SpotInterruption and CapacityShortage"),
])
def test_bad_karpenter_scenarios_are_refused_naming_the_problem(spec: dict[str, Any], words: str) -> None:
    with pytest.raises(scenarios.ScenarioError, match=words.replace("(", r"\(").replace(")", r"\)")):
        scenarios.validate(spec)


def test_a_spot_interruption_lasts_its_notice_and_a_shortage_its_duration() -> None:
    spot = scenarios.validate({"type": "SpotInterruption", "target": {"pool": "gpu-a10g"}})
    assert spot.duration == 120 and spot.parameter("notice") == 120
    assert scenarios.validate({"type": "SpotInterruption", "target": {"nodes": ["kwok-a"]},
                               "parameters": {"notice": 30}}).duration == 30
    short = scenarios.validate({"type": "CapacityShortage", "duration": "10m",
                                "target": {"instanceType": "g5.xlarge", "zone": "us-east-1a", "capacityType": "spot"}})
    assert short.duration == 600 and short.target["capacityType"] == "spot"


def test_the_spot_node_picked_is_a_karpenter_spot_node_of_the_target() -> None:
    nodes = [karpenter_node("kwok-b"), karpenter_node("kwok-a", capacity_type="on-demand"),
             karpenter_node("kwok-c", zone="us-east-1b"), karpenter_node("kwok-d", pool="cpu"),
             karpenter_node("kwok-0", deletionTimestamp="2026-11-23T10:00:00Z"),
             node("gpu-a10g-0", pool="gpu-a10g")]
    pick = scenarios.validate({"type": "SpotInterruption", "target": {"pool": "gpu-a10g"}})
    assert [n["metadata"]["name"] for n in scenarios.spot_nodes(pick, nodes)] == ["kwok-b"]
    zone = scenarios.validate({"type": "SpotInterruption", "target": {"pool": "gpu-a10g", "zone": "us-east-1b"}})
    assert [n["metadata"]["name"] for n in scenarios.spot_nodes(zone, nodes)] == ["kwok-c"]
    named = scenarios.validate({"type": "SpotInterruption", "target": {"nodes": ["kwok-a", "kwok-c", "kwok-d"]}})
    # An on-demand node gets no spot notice.
    assert [n["metadata"]["name"] for n in scenarios.spot_nodes(named, nodes)] == ["kwok-c", "kwok-d"]
    static = scenarios.validate({"type": "SpotInterruption", "target": {"nodes": ["gpu-a10g-0"]}})
    assert scenarios.spot_nodes(static, nodes) == []


def test_a_shortage_record_is_what_karpenters_wrapper_reads() -> None:
    record = scenarios.shortage_record({"instanceType": "g5.xlarge", "zone": "us-east-1a"}, T0)
    assert record == {"instanceTypes": ["g5.xlarge"], "zones": ["us-east-1a"], "capacityTypes": [],
                      "until": "2026-11-23T10:00:00Z", "known": False}
    assert scenarios.shortage_key("ns/short-1") == "ns.short-1"


def test_an_event_on_a_cluster_scoped_object_is_in_default() -> None:
    claim = {"apiVersion": "karpenter.sh/v1", "kind": "NodeClaim", "metadata": {"name": "gpu-a10g-x", "uid": "u1"}}
    ev = scenarios.event(claim, "SpotInterrupted", "Spot interruption warning was triggered", T0, "karpenter")
    assert ev["metadata"] == {"generateName": "gpu-a10g-x.", "namespace": "default"}
    assert ev["involvedObject"] == {"kind": "NodeClaim", "apiVersion": "karpenter.sh/v1", "name": "gpu-a10g-x",
                                    "uid": "u1"}
    assert (ev["reason"], ev["type"], ev["source"], ev["lastTimestamp"]) == (
        "SpotInterrupted", "Warning", {"component": "karpenter"}, "2026-11-23T10:00:00Z")
