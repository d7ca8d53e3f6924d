"""Built-in alerts over cluster objects and service samples (tenants exact: t1 vs t10)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from k8sim import alerts, lifecycle, model

NOW = dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC)


def pod(name: str, namespace: str, *, waiting: str | None = None, oom_at: dt.datetime | None = None,
        ready: bool = True, **meta: Any) -> dict[str, Any]:
    status: dict[str, Any] = {"name": "c", "restartCount": 3, "ready": ready and not waiting,
                              "state": {"waiting": {"reason": waiting}} if waiting else {"running": {}}}
    if oom_at:
        status["lastState"] = {"terminated": {"reason": "OOMKilled", "exitCode": 137,
                                              "finishedAt": oom_at.strftime("%Y-%m-%dT%H:%M:%SZ")}}
    return {"metadata": {"name": name, "namespace": namespace, **meta}, "status": {"containerStatuses": [status]}}


def test_pods_and_nodes_in_trouble_fire_with_their_tenant() -> None:
    pods = [pod("a", "ns-t1", waiting="CrashLoopBackOff"), pod("b", "ns-t10", waiting="ImagePullBackOff"),
            pod("c", "ns-t1", oom_at=NOW - dt.timedelta(minutes=2)),
            pod("d", "ns-t1", oom_at=NOW - dt.timedelta(hours=1)),
            pod("e", "ns-t1"), pod("f", "ns-t1", waiting="CrashLoopBackOff", deletionTimestamp="2026-11-23T10:00:00Z"),
            pod("g", "ns-t10", oom_at=NOW - dt.timedelta(seconds=30), ready=False)]
    nodes = [{"metadata": {"name": "cpu-0"}, "status": {"conditions": [
                 {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                  "message": "Kubelet stopped posting node status."}]}},
             {"metadata": {"name": "cpu-1"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}]
    found = {(f.name, f.subject, f.tenant) for f in alerts.cluster_alerts(pods, nodes, {"ns-t1": "t1",
                                                                                        "ns-t10": "t10"}, NOW)}
    assert found == {("KubePodCrashLooping", "ns-t1/a", "t1"), ("KubePodImagePullBackOff", "ns-t10/b", "t10"),
                     ("KubeContainerOOMKilled", "ns-t1/c", "t1"), ("KubeNodeNotReady", "cpu-0", None),
                     # running again between two back-offs, not ready: still crash-looping
                     ("KubePodCrashLooping", "ns-t10/g", "t10"), ("KubeContainerOOMKilled", "ns-t10/g", "t10")}


def test_service_rules_fire_on_their_thresholds_only() -> None:
    def sample(key: str, **figures: Any) -> model.ServiceSample:
        base = dict(key=key, tenant="t1", profile="web", pods=2, ready_pods=2, rps=10, good=99, total=100,
                    cpu_percent=30, cpu_cores=0.5, memory_mb=100, memory_percent=20, latency_ms=40,
                    error_rate=0.001, incident=False, uptime_s=100)
        return model.ServiceSample(**{**base, **figures})

    fired = {(f.name, f.subject) for f in alerts.service_alerts([
        sample("ns/ok"), sample("ns/down", ready_pods=0), sample("ns/errors", error_rate=0.2),
        sample("ns/slow", latency_ms=1500), sample("ns/hot", cpu_percent=97)])}
    assert fired == {("ServiceUnavailable", "ns/down"), ("ServiceErrorRateHigh", "ns/errors"),
                     ("ServiceLatencyHigh", "ns/slow"), ("ServiceCPUSaturated", "ns/hot")}


def test_history_names_the_scenario_and_the_container_reason() -> None:
    def crashed(reason: str, restarts: int, scenario: str | None) -> dict[str, Any]:
        annotations = {lifecycle.SCENARIO_ANNOTATION: scenario} if scenario else {}
        return {"kind": "Pod", "metadata": {"name": "p", "annotations": annotations},
                "spec": {"nodeName": "n"},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
                           "containerStatuses": [{"restartCount": restarts,
                                                  "state": {"waiting": {"reason": reason}}}]}}

    healthy = lifecycle.summarise({"kind": "Pod", "metadata": {"name": "p"}, "spec": {"nodeName": "n"},
                                   "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})
    first = lifecycle.summarise(crashed("CrashLoopBackOff", 0, "ns/crash"))
    steps = lifecycle.transitions(healthy, first)
    assert [(s.name, s.detail) for s in steps] == [
        ("not_ready", {"reason": "CrashLoopBackOff", "scenario": "ns/crash"})]
    again = lifecycle.summarise(crashed("CrashLoopBackOff", 1, "ns/crash"))
    assert [s.name for s in lifecycle.transitions(first, again)] == ["restarted"]
    node = lifecycle.summarise({"kind": "Node", "metadata": {"name": "n", "annotations": {
        lifecycle.SCENARIO_ANNOTATION: "ns/down"}}, "status": {"conditions": [
            {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown"}]}})
    assert node.phase == "NotReady" and node.reason == "NodeStatusUnknown" and node.scenario == "ns/down"
