"""Failure scenarios: what a Scenario asks for, what it hits, and when it plays.

Pure: the operator plays them (marks pods, nodes and workloads that KWOK's fault stages in
``k8sim/cluster/stages/fault-*.yaml`` act on), the engine reads the model effects of active ones,
the API validates bodies with :func:`validate`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from k8sim import explain, gpus, lifecycle, model, resources
from k8sim.settings import CLUSTER_DATA

GROUP, VERSION, PLURAL, KIND = "k8sim.io", "v1alpha1", "scenarios", "Scenario"
API_VERSION = f"{GROUP}/{VERSION}"

#: The label KWOK's fault stages select on, and its value while a hit object recovers.
FAULT_LABEL, RECOVERING = "k8sim.io/fault", "Recovering"
SCENARIO_ANNOTATION = lifecycle.SCENARIO_ANNOTATION
AFTER_ANNOTATION, EXIT_CODE_ANNOTATION = "k8sim.io/fault-after", "k8sim.io/fault-exit-code"

POD_TYPES = frozenset({"PodCrash", "OOMKill", "ProbeFailure"})
NODE_TYPES = frozenset({"NodeNotReady", "ZoneOutage"})
WORKLOAD_TYPES = frozenset({"ImagePullBackOff"})
MODEL_TYPES = frozenset({"LoadSpike", "LatencyIncident", "ErrorBurst"})
#: Played on Karpenter's side of the cloud: a spot node's notice, an offering out of capacity.
KARPENTER_TYPES = frozenset({"SpotInterruption", "CapacityShortage"})
#: GPU faults: an XID on a device (the device plugin marks it unhealthy unless it ignores the XID),
#: a thermal throttle, a GPU fallen off the bus (XID 79 on every GPU of a node).
GPU_TYPES = frozenset({"GPUXid", "GPUThermalThrottle", "GPUFallenOffBus"})
TYPES = POD_TYPES | NODE_TYPES | WORKLOAD_TYPES | MODEL_TYPES | KARPENTER_TYPES | GPU_TYPES
#: The label a hit node's pods and nodes carry: a zone outage is every node of it not ready.
NODE_FAULT = "NodeNotReady"

#: Per type: parameter → (default, lowest, highest).
PARAMETERS: dict[str, dict[str, tuple[float, float, float]]] = {
    "PodCrash": {"exitCode": (1, 1, 255), "after": (5, 0, 3600), "pods": (0, 0, 100000)},
    "OOMKill": {"after": (30, 1, 3600), "pods": (0, 0, 100000)},
    "ProbeFailure": {"pods": (0, 0, 100000)},
    "LoadSpike": {"factor": (3, 0.01, 100)},
    "LatencyIncident": {"latencyMs": (500, 0, 600000)},
    "ErrorBurst": {"rate": (0.2, 0, 1)},
    # EC2's two-minute warning: the node drains meanwhile, then the instance is gone.
    "SpotInterruption": {"notice": (120, 0, 3600)},
    # The XID has no default (a GPUXid names it); the range only keeps it a number: validate names unknown ones.
    "GPUXid": {"xid": (0, 0, 999999)},
    "GPUThermalThrottle": {"clockPercent": (60, 10, 95)},
}
#: Karpenter's labels and the capacity types of its offerings (k8sim.instancetypes.CAPACITY_TYPES).
NODEPOOL_LABEL, NODECLAIM_API = "karpenter.sh/nodepool", "karpenter.sh/v1"
CAPACITY_TYPE_LABEL, CAPACITY_TYPES = "karpenter.sh/capacity-type", ("on-demand", "spot")
#: The ConfigMap (namespace, name) of the offerings short of capacity, which Karpenter's wrapper
#: (karpenter/shortage.go) reads on each launch: one key per playing Scenario.
SHORTAGES = ("kube-system", "k8sim-capacity-shortages")
#: How long Karpenter's AWS provider keeps an offering it saw fail or interrupted as unavailable.
UNAVAILABLE_OFFERING_TTL = 180.0
_INSTANCE_TYPE = re.compile(r"^[a-z0-9][a-z0-9-]*\.[a-z0-9-]+$")


class ScenarioError(ValueError):
    """A Scenario that cannot be played, and why (its status message)."""


def parse_duration(text: Any) -> float:
    """Seconds of a Go-style duration: "90s", "5m", "1h30m", "250ms"."""
    if not isinstance(text, str) or not text.strip():
        raise ScenarioError(f"duration must be a string such as '90s' or '5m', not {text!r}")
    try:
        return resources.go_duration(text)
    except ValueError:
        raise ScenarioError(f"unreadable duration {text!r}: use units h, m, s or ms, for example '1h30m'") from None


def parse_start(text: Any, base: dt.datetime) -> dt.datetime:
    """An RFC 3339 time, or an offset ("+30s") from ``base``; ``None`` is ``base``."""
    if text is None or text == "":
        return base
    if not isinstance(text, str):
        raise ScenarioError(f"start must be an RFC 3339 time or an offset such as '+30s', not {text!r}")
    if text.startswith("+"):
        return base + dt.timedelta(seconds=parse_duration(text[1:]))
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ScenarioError(f"unreadable start {text!r}: an RFC 3339 time or an offset such as '+30s'") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


@dataclasses.dataclass(frozen=True)
class Spec:
    """A validated Scenario spec."""

    type: str
    target: Mapping[str, Any]
    start: Any
    duration: float | None  # seconds; None: until deleted
    parameters: Mapping[str, float]
    every: float | None = None  # repeat period, seconds
    jitter: float = 0.0
    times: int | None = None  # number of runs when repeating (None: unbounded)

    def parameter(self, name: str) -> float:
        return self.parameters[name]


def validate(spec: Any) -> Spec:
    """The Spec of a Scenario body's ``spec``, or ScenarioError saying what is wrong."""
    if not isinstance(spec, Mapping):
        raise ScenarioError("spec must be an object")
    kind = spec.get("type")
    if kind not in TYPES:
        raise ScenarioError(f"spec.type must be one of {', '.join(sorted(TYPES))}, not {kind!r}")
    target = spec.get("target") or {}
    if not isinstance(target, Mapping):
        raise ScenarioError("spec.target must be an object")
    unknown = set(target) - {"namespace", "selector", "tenant", "nodes", "pool", "zone", "instanceType",
                             "capacityType", "gpus"}
    if unknown:
        raise ScenarioError(f"spec.target has unknown fields: {', '.join(sorted(unknown))}")
    if "nodes" in target and not (isinstance(target["nodes"], list)
                                  and all(isinstance(n, str) for n in target["nodes"])):
        raise ScenarioError("spec.target.nodes must be a list of node names")
    if kind == "ZoneOutage" and not (target.get("zone") or target.get("pool")):
        raise ScenarioError("a ZoneOutage names target.zone or target.pool")
    _validate_karpenter_target(kind, target)
    _validate_gpu_target(kind, target)
    if kind not in NODE_TYPES | KARPENTER_TYPES and not any(target.get(k) for k in target):
        raise ScenarioError(f"a {kind} needs a target (namespace, selector, tenant, nodes, pool or zone)")
    selector = target.get("selector")
    if selector is not None:
        matches_selector({}, selector)  # refuses a malformed selector now rather than at play time
    raw = spec.get("parameters") or {}
    if not isinstance(raw, Mapping):
        raise ScenarioError("spec.parameters must be an object")
    known = PARAMETERS.get(kind, {})
    unknown = set(raw) - set(known)
    if unknown:
        raise ScenarioError(f"{kind} has no parameter {', '.join(sorted(unknown))}"
                            + (f" (it takes {', '.join(sorted(known))})" if known else ""))
    parameters = {}
    for name, (default, low, high) in known.items():
        value = raw.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise ScenarioError(f"parameters.{name} must be a number from {low:g} to {high:g}, not {value!r}")
        parameters[name] = float(value)
    duration = None if spec.get("duration") in (None, "") else parse_duration(spec["duration"])
    if duration is not None and duration <= 0:
        raise ScenarioError("duration must be longer than zero")
    parse_start(spec.get("start"), lifecycle.now())
    repeat = spec.get("repeat")
    every = jitter = None
    times = None
    if repeat is not None:
        if not isinstance(repeat, Mapping) or "every" not in repeat:
            raise ScenarioError("repeat needs 'every', for example {every: 1h, jitter: 10m}")
        if duration is None:
            raise ScenarioError("a repeating Scenario needs a duration (each run must end)")
        every = parse_duration(repeat["every"])
        jitter = parse_duration(repeat["jitter"]) if repeat.get("jitter") else 0.0
        if every < duration + jitter:
            raise ScenarioError("repeat.every must be at least duration + jitter (runs would overlap)")
        times = repeat.get("times")
        if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
            raise ScenarioError("repeat.times must be a whole number of runs, 1 or more")
    if kind == "SpotInterruption":
        if duration is not None:
            raise ScenarioError("a SpotInterruption takes no duration: parameters.notice is how long the node has")
        duration = parameters["notice"]  # the run is the notice; its end is the instance's
        if repeat is not None:
            raise ScenarioError("a SpotInterruption does not repeat (each notice ends its node)")
    if kind == "GPUXid":
        _validate_xid(raw.get("xid"))
    if kind == "CapacityShortage" and duration is None:
        raise ScenarioError("a CapacityShortage needs a duration (how long the offering is out of capacity)")
    return Spec(kind, dict(target), spec.get("start"), duration, parameters, every, jitter or 0.0, times)


def _validate_karpenter_target(kind: Any, target: Mapping[str, Any]) -> None:
    karpenter_fields = {"instanceType", "capacityType"} & set(target)
    if kind not in KARPENTER_TYPES:
        if karpenter_fields:
            raise ScenarioError(f"target.{sorted(karpenter_fields)[0]} is for SpotInterruption and CapacityShortage")
        return
    for name in ("pool", "zone", "instanceType", "capacityType"):
        if name in target and not (isinstance(target[name], str) and target[name]):
            raise ScenarioError(f"target.{name} must be a non-empty string")
    if kind == "SpotInterruption":
        extra = set(target) - {"nodes", "pool", "zone", "instanceType"}
        if extra:
            raise ScenarioError(f"a SpotInterruption targets nodes, pool, zone or instanceType, not "
                                f"{', '.join(sorted(extra))}")
        if not any(target.get(k) for k in ("nodes", "pool", "zone", "instanceType")):
            raise ScenarioError("a SpotInterruption names target.nodes or the pool (NodePool), zone or "
                                "instanceType whose spot node gets the notice")
        return
    extra = set(target) - {"instanceType", "zone", "capacityType"}
    if extra:
        raise ScenarioError(f"a CapacityShortage targets instanceType, zone and capacityType, not "
                            f"{', '.join(sorted(extra))}")
    if not (target.get("instanceType") or target.get("zone")):
        raise ScenarioError("a CapacityShortage names target.instanceType and/or target.zone")
    if target.get("instanceType") and not _INSTANCE_TYPE.match(target["instanceType"]):
        raise ScenarioError(f"target.instanceType {target['instanceType']!r} is not an instance type name "
                            "such as g5.xlarge")
    if target.get("capacityType") and target["capacityType"] not in CAPACITY_TYPES:
        raise ScenarioError(f"target.capacityType must be one of {', '.join(CAPACITY_TYPES)}, "
                            f"not {target['capacityType']!r}")


def _validate_gpu_target(kind: Any, target: Mapping[str, Any]) -> None:
    if kind not in GPU_TYPES:
        if "gpus" in target:
            raise ScenarioError("target.gpus is for GPUXid and GPUThermalThrottle")
        return
    extra = set(target) - {"nodes", "gpus"}
    if extra:
        raise ScenarioError(f"a {kind} targets nodes (and gpus), not {', '.join(sorted(extra))}")
    if not target.get("nodes"):
        raise ScenarioError(f"a {kind} names the GPU node(s) in target.nodes")
    if "gpus" in target:
        if kind == "GPUFallenOffBus":
            raise ScenarioError("a GPUFallenOffBus takes every GPU of its nodes: leave target.gpus out")
        indexes = target["gpus"]
        if not isinstance(indexes, list) or not indexes or not all(
                isinstance(i, int) and not isinstance(i, bool) and 0 <= i <= 255 for i in indexes):
            raise ScenarioError(f"target.gpus must be a list of GPU indexes (0, 1, …), not {indexes!r}")
        if len(set(indexes)) != len(indexes):
            raise ScenarioError(f"target.gpus names a GPU twice: {indexes!r}")


def _validate_xid(xid: Any) -> None:
    if xid is None:
        raise ScenarioError(f"a GPUXid names parameters.xid, one of {', '.join(map(str, sorted(gpus.XID_TEXT)))}")
    if isinstance(xid, bool) or not isinstance(xid, int | float) or xid != int(xid) or int(xid) not in gpus.XID_TEXT:
        shown = int(xid) if isinstance(xid, float) and xid.is_integer() else xid  # the API hands numbers as floats
        raise ScenarioError(f"unknown XID {shown!r}: GPUXid plays {', '.join(map(str, sorted(gpus.XID_TEXT)))} "
                            f"(the device plugin ignores {', '.join(map(str, sorted(gpus.IGNORED_XIDS)))})")


#: How long after its creationTimestamp a Scenario seen for the first time is taken to be new.
FRESH = dt.timedelta(seconds=2)


def schedule_origin(created: dt.datetime | None, now: dt.datetime, seen_before: bool) -> dt.datetime:
    """When a Scenario's schedule counts from. Its creationTimestamp is in whole seconds, up to a second before the
    Scenario was made: a run of under a second (a replayed session's fault) would end before it began. So a
    Scenario the operator sees for the first time just after that timestamp counts from now; one seen before, or
    long after (the operator was down), from its creationTimestamp, so that a restarted operator resumes its runs."""
    if created is None:
        return now
    if not seen_before and created <= now < created + FRESH:
        return now
    return created


def windows(spec: Spec, created: dt.datetime, seed: str) -> Iterator[tuple[dt.datetime, dt.datetime | None]]:
    """Each run's (start, end) in order; the same Scenario gives the same runs (seeded by its uid),
    so an operator that restarts resumes the schedule it was playing."""
    first = parse_start(spec.start, created)
    rng = model.seeded(0, "scenario", seed)
    run = 0
    while True:
        offset = run * (spec.every or 0) + (rng.uniform(0, spec.jitter) if spec.jitter else 0.0)
        start = first + dt.timedelta(seconds=offset)
        yield start, None if spec.duration is None else start + dt.timedelta(seconds=spec.duration)
        run += 1
        if spec.every is None or (spec.times is not None and run >= spec.times):
            return


def background(profile: str, overrides: Mapping[str, float] | None = None,
               profiles: Path = CLUSTER_DATA / "profiles.yaml") -> model.Background:
    """The background failure rates of a cluster profile (none when it names none), with overrides."""
    data = yaml.safe_load(profiles.read_text()) or {}
    if profile not in data:
        raise ScenarioError(f"unknown profile {profile!r}; choose one of {sorted(data)}")
    found = {**(data[profile].get("background") or {}), **(overrides or {})}
    known = {f.name for f in dataclasses.fields(model.Background)}
    unknown = set(found) - known
    if unknown:
        raise ScenarioError(f"profile {profile}: unknown background settings {sorted(unknown)}")
    return model.Background(**{k: float(v) for k, v in found.items()})


# --------------------------------------------------------------------------- targets


def matches_selector(labels: Mapping[str, str], selector: Any) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions) against labels; an empty one
    matches everything. ScenarioError when it is malformed."""
    if not isinstance(selector, Mapping):
        raise ScenarioError("target.selector must be an object with matchLabels and/or matchExpressions")
    if not isinstance(selector.get("matchLabels") or {}, Mapping):
        raise ScenarioError("target.selector.matchLabels must map label keys to values")
    for expr in selector.get("matchExpressions") or []:
        if not isinstance(expr, Mapping) or "key" not in expr:
            raise ScenarioError("every target.selector.matchExpressions item needs a key and an operator")
        if expr.get("operator") not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ScenarioError(f"unknown selector operator {expr.get('operator')!r}")
    if not (selector.get("matchLabels") or selector.get("matchExpressions")):
        return True
    return explain.selector_matches(selector, labels)


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def node_matches(node: Mapping[str, Any], target: Mapping[str, Any]) -> bool:
    labels = _labels(node)
    if target.get("nodes") and node["metadata"]["name"] not in target["nodes"]:
        return False
    if target.get("pool") and labels.get("k8sim.io/pool") != target["pool"]:
        return False
    return not target.get("zone") or labels.get("topology.kubernetes.io/zone") == target["zone"]


def target_pods(spec: Spec, pods: Iterable[Mapping[str, Any]], nodes: Iterable[Mapping[str, Any]],
                tenants: Mapping[str, str]) -> list[Mapping[str, Any]]:
    """Live pods the target names (every given field must match; tenants matched exactly: the pod's
    label, else its namespace's tenant), in name order, at most ``parameters.pods`` when set."""
    target = spec.target
    hosts = {n["metadata"]["name"] for n in nodes if node_matches(n, target)}
    by_node = bool(target.get("nodes") or target.get("pool") or target.get("zone"))
    found = []
    for pod in pods:
        meta = pod["metadata"]
        if meta.get("deletionTimestamp") or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        if target.get("namespace") and meta.get("namespace") != target["namespace"]:
            continue
        if target.get("selector") and not matches_selector(_labels(pod), target["selector"]):
            continue
        if target.get("tenant") and (lifecycle.tenant_of(pod) or tenants.get(meta.get("namespace", ""))) \
                != target["tenant"]:
            continue
        if by_node and (pod.get("spec") or {}).get("nodeName") not in hosts:
            continue
        found.append(pod)
    found.sort(key=lambda p: (p["metadata"].get("namespace", ""), p["metadata"]["name"]))
    limit = int(spec.parameters.get("pods", 0))
    return found[:limit] if limit else found


def target_nodes(spec: Spec, pods: Iterable[Mapping[str, Any]], nodes: Iterable[Mapping[str, Any]],
                 tenants: Mapping[str, str]) -> list[Mapping[str, Any]]:
    """Nodes a node Scenario takes down: a ZoneOutage every node of its zone or pool; a NodeNotReady
    the named nodes, else the node of the first pod its target names, else the first node of its
    pool or zone."""
    nodes = sorted(nodes, key=lambda n: n["metadata"]["name"])
    target = spec.target
    if spec.type == "ZoneOutage" or target.get("nodes"):
        return [n for n in nodes if node_matches(n, target)]
    if target.get("namespace") or target.get("selector") or target.get("tenant"):
        placed = [p for p in target_pods(spec, pods, nodes, tenants) if (p.get("spec") or {}).get("nodeName")]
        if not placed:
            return []
        host = placed[0]["spec"]["nodeName"]
        return [n for n in nodes if n["metadata"]["name"] == host]
    return [n for n in nodes if node_matches(n, target)][:1]


def spot_nodes(spec: Spec, nodes: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The Karpenter spot nodes a SpotInterruption gives notice to: the named ones, else the first (by
    name) of its pool (``k8sim.io/pool`` or the NodePool), zone and instance type."""
    target = spec.target
    found = []
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        labels = _labels(node)
        if (NODEPOOL_LABEL not in labels or labels.get(CAPACITY_TYPE_LABEL) != "spot"
                or (node.get("metadata") or {}).get("deletionTimestamp")):
            continue
        if target.get("nodes") and node["metadata"]["name"] not in target["nodes"]:
            continue
        if target.get("pool") and target["pool"] not in (labels.get("k8sim.io/pool"), labels.get(NODEPOOL_LABEL)):
            continue
        if target.get("zone") and labels.get("topology.kubernetes.io/zone") != target["zone"]:
            continue
        if target.get("instanceType") and labels.get("node.kubernetes.io/instance-type") != target["instanceType"]:
            continue
        found.append(node)
    return found if target.get("nodes") else found[:1]


def shortage_record(target: Mapping[str, Any], until: dt.datetime | None, *, known: bool = False) -> dict[str, Any]:
    """One entry of the SHORTAGES ConfigMap (karpenter/shortage.go reads it): offerings of these
    instance types, zones and capacity types (empty: all) have no capacity until ``until``."""
    def values(key: str) -> list[str]:
        value = target.get(key)
        return [] if not value else [value] if isinstance(value, str) else list(value)
    return {"instanceTypes": values("instanceType"), "zones": values("zone"), "capacityTypes": values("capacityType"),
            "until": stamp(until), "known": known}


def shortage_key(key: str) -> str:
    """A Scenario's namespace/name as a ConfigMap key (which allows no '/')."""
    return key.replace("/", ".")


def event(obj: Mapping[str, Any], reason: str, message: str, when: dt.datetime, component: str,
          kind: str | None = None, api_version: str = "v1", type_: str = "Warning") -> dict[str, Any]:
    """A core/v1 Event on ``obj`` as a controller's recorder writes it (in the object's namespace,
    ``default`` for a cluster-scoped one)."""
    meta = obj["metadata"]
    namespace = meta.get("namespace") or "default"
    involved = {"kind": kind or obj.get("kind"), "apiVersion": obj.get("apiVersion", api_version),
                "name": meta["name"], "uid": meta.get("uid")}
    if meta.get("namespace"):
        involved["namespace"] = meta["namespace"]
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": namespace},
            "involvedObject": {k: v for k, v in involved.items() if v is not None},
            "reason": reason, "message": message, "type": type_, "source": {"component": component},
            "firstTimestamp": stamp(when), "lastTimestamp": stamp(when), "count": 1,
            "reportingComponent": component, "reportingInstance": component}


def workload_of(pod: Mapping[str, Any]) -> tuple[str, str] | None:
    """The (kind, name) of the workload whose template made this pod, if any."""
    kind, name, _ = lifecycle.owner_of(pod)
    if kind == "ReplicaSet" and name:
        template_hash = _labels(pod).get("pod-template-hash")
        if template_hash and name.endswith(f"-{template_hash}"):
            return "Deployment", name[: -len(template_hash) - 1]
        return None
    if kind in ("StatefulSet", "DaemonSet") and name:
        return kind, name
    return None


def affected_item(obj: Mapping[str, Any], kind: str | None = None) -> dict[str, Any]:
    meta = obj["metadata"]
    item = {"kind": kind or obj.get("kind", "Pod"), "name": meta["name"]}
    if meta.get("namespace"):
        item["namespace"] = meta["namespace"]
    return item


# --------------------------------------------------------------------------- model effects


def effect_of(spec: Spec) -> model.Effect:
    if spec.type == "LoadSpike":
        return model.Effect(factor=spec.parameter("factor"))
    if spec.type == "LatencyIncident":
        return model.Effect(latency_ms=spec.parameter("latencyMs"))
    if spec.type == "ErrorBurst":
        return model.Effect(error_rate=spec.parameter("rate"))
    return model.Effect()


def model_effects(scenarios: Iterable[Mapping[str, Any]]) -> dict[str, model.Effect]:
    """namespace/service → the combined effect of every Active model Scenario on it (their
    ``status.affected`` services, which the operator resolved when the run began)."""
    found: dict[str, model.Effect] = {}
    for obj in scenarios:
        status = obj.get("status") or {}
        if status.get("phase") != "Active" or (obj.get("spec") or {}).get("type") not in MODEL_TYPES:
            continue
        try:
            effect = effect_of(validate(obj.get("spec")))
        except ScenarioError:
            continue
        for item in status.get("affected") or []:
            key = f"{item.get('namespace', '')}/{item.get('name', '')}"
            found[key] = found[key].combine(effect) if key in found else effect
    return found


def marked_by(obj: Mapping[str, Any], key: str) -> bool:
    """Whether this object carries this Scenario's (namespace/name) mark."""
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(SCENARIO_ANNOTATION) == key


def mark(kind: str, key: str, spec: Spec) -> dict[str, Any]:
    """The metadata patch that hands a pod or node to the fault stages."""
    annotations = {SCENARIO_ANNOTATION: key}
    if kind in ("PodCrash", "OOMKill"):
        annotations[AFTER_ANNOTATION] = f"{spec.parameter('after'):g}s"
    if kind == "PodCrash":
        annotations[EXIT_CODE_ANNOTATION] = str(int(spec.parameter("exitCode")))
    return {"metadata": {"labels": {FAULT_LABEL: kind}, "annotations": annotations}}


def recover() -> dict[str, Any]:
    """The metadata patch that hands a hit pod to the fault-pod-recover stage."""
    return {"metadata": {"labels": {FAULT_LABEL: RECOVERING}}}


def unmark() -> dict[str, Any]:
    """The metadata patch that gives a node back (node-initialize makes it Ready)."""
    return {"metadata": {"labels": {FAULT_LABEL: None},
                         "annotations": {SCENARIO_ANNOTATION: None, AFTER_ANNOTATION: None,
                                         EXIT_CODE_ANNOTATION: None}}}


def template_mark(kind: str | None) -> dict[str, Any]:
    """The workload patch whose new pods carry (kind) or no longer carry (None) a fault label."""
    return {"spec": {"template": {"metadata": {"labels": {FAULT_LABEL: kind}}}}}


def status(phase: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"status": {"phase": phase, "message": message, **extra}}


def stamp(when: dt.datetime | None) -> str | None:
    return None if when is None else when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- GPU faults

#: The device plugin's GPU resources (as the engine reads pods' requests).
_GPU_RESOURCE = re.compile(r"nvidia\.com/(gpu|gpu\.shared|mig-[0-9a-z.-]+)")
#: What the kubelet writes on a pod it fails because its devices are gone (its device manager's
#: admission error), and the Event reason the device plugin's Xid handling is known by.
GPU_FAILED_REASON = "UnexpectedAdmissionError"


def pod_gpu_requests(pod: Mapping[str, Any]) -> dict[str, int]:
    """The GPU resources a pod's containers ask for (an extended resource's request equals its limit)."""
    found: dict[str, int] = {}
    for c in (pod.get("spec") or {}).get("containers") or []:
        asked = c.get("resources") or {}
        merged = {**(asked.get("limits") or {}), **(asked.get("requests") or {})}
        for name, value in merged.items():
            if _GPU_RESOURCE.fullmatch(name):
                try:
                    found[name] = found.get(name, 0) + int(str(value))
                except ValueError:
                    continue
    return {k: v for k, v in found.items() if v > 0}


def device_holders(setup: gpus.GPUSetup, pods: Iterable[Mapping[str, Any]],
                   dead: frozenset[int] = frozenset()) -> dict[int, list[Mapping[str, Any]]]:
    """GPU index → the running pods holding it (a unit of it: the GPU, one of its MIG devices or
    replicas), handed out as the engine's model does (model.GPUFleet): in the order the pods started,
    each the lowest free units of what it asks for, none on a dead device."""
    units = model.GPUNode("", setup).units
    live = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"
            and not (p.get("metadata") or {}).get("deletionTimestamp") and pod_gpu_requests(p)]
    never = dt.datetime.max.replace(tzinfo=dt.UTC)
    live.sort(key=lambda p: (lifecycle.parse_time((p.get("status") or {}).get("startTime")) or never,
                             p["metadata"].get("uid", "")))
    holders: list[list[Mapping[str, Any]]] = [[] for _ in units]
    for pod in live:
        taken: list[int] = []
        for resource, count in sorted(pod_gpu_requests(pod).items()):
            free = sorted((i for i, u in enumerate(units) if u.resource == resource and len(holders[i]) < u.slots
                           and i not in taken and u.device not in dead),
                          key=lambda i: (len(holders[i]) - units[i].slots, i))
            for i in free[:count]:
                holders[i].append(pod)
                taken.append(i)
    found: dict[int, list[Mapping[str, Any]]] = {}
    for i, unit in enumerate(units):
        for pod in holders[i]:
            mine = found.setdefault(unit.device, [])
            if pod not in mine:
                mine.append(pod)
    return found


def fault_devices(spec: Spec, node: str, setup: gpus.GPUSetup,
                  holders: Mapping[int, list[Mapping[str, Any]]]) -> list[int]:
    """The GPU indexes a GPU Scenario hits on a node: every one for GPUFallenOffBus, else target.gpus,
    else the first GPU a pod holds (else GPU 0)."""
    if spec.type == "GPUFallenOffBus":
        return list(range(setup.count))
    wanted = spec.target.get("gpus")
    if wanted:
        beyond = [i for i in wanted if i >= setup.count]
        if beyond:
            raise ScenarioError(f"target.gpus {beyond} not on node {node}: it has {setup.count} GPU(s), "
                                f"indexes 0 to {setup.count - 1}")
        return sorted(wanted)
    held = sorted(i for i, pods in holders.items() if pods)
    return held[:1] or [0]


def owned_devices(faults: gpus.Faults, key: str) -> list[int]:
    """The GPU indexes whose recorded fault this Scenario (namespace/name) made."""
    found = set()
    for annotation, owner in faults.owners.items():
        for prefix in (gpus.XID_ANNOTATION, gpus.THROTTLE_ANNOTATION):
            if owner == key and annotation.startswith(prefix):
                found.add(int(annotation[len(prefix):]))
    return sorted(found)


def gpu_fault_annotations(spec: Spec, key: str, indexes: Iterable[int]) -> dict[str, str]:
    """The node annotations recording a GPU Scenario's fault on these devices (gpus.node_faults reads them)."""
    if spec.type == "GPUThermalThrottle":
        value = json.dumps({"clockPercent": spec.parameter("clockPercent"), "scenario": key}, sort_keys=True)
        return {f"{gpus.THROTTLE_ANNOTATION}{i}": value for i in indexes}
    xid = gpus.FALLEN_OFF_BUS if spec.type == "GPUFallenOffBus" else int(spec.parameter("xid"))
    value = json.dumps({"xid": xid, "scenario": key}, sort_keys=True)
    return {f"{gpus.XID_ANNOTATION}{i}": value for i in indexes}


def gpu_xid(spec: Spec) -> int | None:
    """The XID a GPU Scenario reports (None: a throttle reports none)."""
    if spec.type == "GPUFallenOffBus":
        return gpus.FALLEN_OFF_BUS
    return int(spec.parameter("xid")) if spec.type == "GPUXid" else None


def gpu_allocatable(setup: gpus.GPUSetup, faults: gpus.Faults) -> dict[str, str]:
    """The node's allocatable GPU resources (status patch values) with its unhealthy devices out."""
    return {name: str(n) for name, n in gpus.allocatable(setup, len(faults.unhealthy)).items()}


def gpu_failed_status(pod: Mapping[str, Any], node: str, xid: int, indexes: Iterable[int],
                      when: dt.datetime) -> dict[str, Any]:
    """The status patch of a pod whose GPU died under it, as the kubelet leaves one it fails for devices
    its device plugin no longer offers: phase Failed with the device manager's admission error, its
    containers terminated."""
    asked = pod_gpu_requests(pod)
    resource, count = next(iter(sorted(asked.items()))) if asked else ("nvidia.com/gpu", 1)
    devices = ", ".join(f"GPU {i}" for i in indexes)
    message = (f"Allocate failed due to requested number of devices unavailable for {resource}. "
               f"Requested: {count}, Available: 0, which is unexpected ({devices} of {node} unhealthy: "
               f"XID {xid}, {gpus.XID_TEXT.get(xid, 'Unknown Error')})")
    stamp_ = stamp(when)
    statuses = []
    for c in (pod.get("status") or {}).get("containerStatuses") or []:
        running = (c.get("state") or {}).get("running") or {}
        statuses.append({**c, "ready": False, "started": False, "state": {"terminated": {
            "exitCode": 1, "reason": "Error", "message": f"CUDA error: XID {xid} on the device",
            "startedAt": running.get("startedAt") or stamp_, "finishedAt": stamp_}}})
    conditions = []
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Ready", "ContainersReady"):
            cond = {**cond, "status": "False", "reason": "PodFailed", "lastTransitionTime": stamp_}
        conditions.append(cond)
    return {"status": {"phase": "Failed", "reason": GPU_FAILED_REASON, "message": message,
                       "conditions": conditions, "containerStatuses": statuses}}
