"""What an object's state means, and which lifecycle transitions a change amounts to.

Pure functions over plain dicts: the operator feeds them watch events, the API uses
:func:`summarise` for readiness. Nothing here talks to a server.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias

from k8sim import resources

TENANT_LABELS = ("ecp.ai/tenant-id", "tenant")
#: Namespaces the cluster itself lives in: never a tenant's, never deleted through the simulator.
#: (The apiserver itself refuses to delete default, kube-system and kube-public; kube-node-lease it
#: deletes, and without it KWOK plays no node: every pod created after stays Pending.)
SYSTEM_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})
#: The annotation the operator puts on the pods and nodes a Scenario hits (namespace/name).
SCENARIO_ANNOTATION = "k8sim.io/scenario"

#: A pod's recorded requests: (cores, bytes, nvidia.com/gpu) or, with other GPU devices, those and
#: their (resource, count) pairs.
Requests: TypeAlias = tuple[float, float, float] | tuple[float, float, float, tuple[tuple[str, float], ...]]

#: Transitions that happen at most once in an object's life.
ONCE = frozenset({"created", "scheduled", "deleted"})


@dataclasses.dataclass(frozen=True)
class State:
    """The facts of an object that its lifecycle history follows."""

    phase: str | None = None
    ready: bool | None = None
    node: str | None = None
    restarts: int = 0
    replicas: int | None = None
    ready_replicas: int | None = None
    generation: int | None = None
    reason: str | None = None
    scenario: str | None = None  # the Scenario (namespace/name) playing on the object, if any
    #: A pod's requests as the scheduler reserves them (cores, bytes, nvidia.com/gpu): what its node's cost
    #: is shared by, after the pod is gone too. A pod asking for other GPU devices (MIG devices,
    #: nvidia.com/gpu.shared) has a fourth item, their sorted (resource, count) pairs; without any the
    #: triple stays as it always was, so older rows and unchanged pods read the same.
    requests: Requests | None = None
    #: The steps an autoscaled node has reached (a Karpenter NodeClaim's launched, registered,
    #: initialized, disrupted; its Node's), in lifecycle order: a watch may deliver two at once.
    milestones: tuple[str, ...] | None = None
    #: What its steps name it by: instance type, capacity type, zone, pool, NodeClaim, node
    #: ((key, value) pairs: the state stays hashable and compares equal after a JSON round trip).
    facts: tuple[tuple[str, str], ...] | None = None

    def as_dict(self) -> dict[str, Any]:
        # Every field is a plain value: no deep copy (dataclasses.asdict's) needed, once per recorded row.
        return {f: getattr(self, f) for f in _STATE_FIELDS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> State:
        fields = {k: v for k, v in data.items() if k in _STATE_FIELDS}
        if fields.get("requests") is not None:  # a JSON array
            fields["requests"] = requests_of(fields["requests"])
        if fields.get("milestones") is not None:
            fields["milestones"] = tuple(fields["milestones"])
        if fields.get("facts") is not None:
            fields["facts"] = tuple((str(k), str(v)) for k, v in fields["facts"])
        return cls(**fields)


_STATE_FIELDS = tuple(f.name for f in dataclasses.fields(State))


def requests_of(raw: Sequence[Any]) -> Requests:
    """Recorded requests (a JSON array: cores, bytes, GPUs[, [[resource, count], ...]]) as State holds them."""
    cpu, memory, gpu = (float(raw[i]) if len(raw) > i else 0.0 for i in range(3))
    if len(raw) > 3 and raw[3]:
        return cpu, memory, gpu, tuple((str(k), float(v)) for k, v in raw[3])
    return cpu, memory, gpu


def now() -> dt.datetime:
    """The wall clock, timezone-aware (UTC): every 'now' of the library and the operator."""
    return dt.datetime.now(dt.UTC)


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def conditions(obj: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {c.get("type", ""): c for c in (obj.get("status") or {}).get("conditions") or []}


def tenant_of(obj: Mapping[str, Any]) -> str | None:
    """A resource's tenant from its own labels (namespace and request come later)."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for key in TENANT_LABELS:
        if labels.get(key):
            return str(labels[key])
    return None


def owner_of(obj: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    owners = (obj.get("metadata") or {}).get("ownerReferences") or []
    owner = next((o for o in owners if o.get("controller")), owners[0] if owners else None)
    if not owner:
        return None, None, None
    return owner.get("kind"), owner.get("name"), owner.get("uid")


def service_of(pod: Mapping[str, Any]) -> str:
    """namespace/service: the owning workload (Deployment name from its ReplicaSet), else the pod."""
    meta = pod["metadata"]
    kind, name, _ = owner_of(pod)
    if kind == "ReplicaSet" and name:
        template_hash = (meta.get("labels") or {}).get("pod-template-hash")
        if template_hash and name.endswith(f"-{template_hash}"):
            name = name[: -len(template_hash) - 1]
    service = name or (meta.get("labels") or {}).get("app") or meta["name"]
    return f"{meta.get('namespace', '')}/{service}"


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


@dataclasses.dataclass(frozen=True)
class _View:
    """The parts of an object every summary reads."""

    kind: str
    meta: Mapping[str, Any]
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    conds: dict[str, Mapping[str, Any]]
    generation: int | None
    terminating: bool

    def cond(self, name: str) -> bool | None:
        """True/False for a condition's status, None when the condition is absent."""
        return None if name not in self.conds else self.conds[name].get("status") == "True"

    @property
    def scenario(self) -> str | None:
        return (self.meta.get("annotations") or {}).get(SCENARIO_ANNOTATION)

    def reason_of(self, name: str) -> str | None:
        reason = self.conds.get(name, {}).get("reason")
        return str(reason) if reason else None


def _pod(v: _View) -> State:
    statuses = (v.status.get("containerStatuses") or []) + (v.status.get("initContainerStatuses") or [])
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    phase = "Terminating" if v.terminating else v.status.get("phase", "Pending")
    reason = v.status.get("reason")
    if not reason and phase == "Pending" and v.cond("PodScheduled") is False:
        reason = v.reason_of("PodScheduled")
    if not reason:  # what kubectl shows in STATUS: CrashLoopBackOff, ImagePullBackOff, OOMKilled …
        reason = next((state.get("reason") for c in statuses for key in ("waiting", "terminated")
                       if (state := (c.get("state") or {}).get(key) or {}).get("reason")), None)
    asked = resources.pod_requests(v.spec)
    devices = resources.other_devices(v.spec)
    requests: Requests = (asked.cpu, asked.memory, asked.gpu, devices) if devices else (
        asked.cpu, asked.memory, asked.gpu)
    return State(phase=phase, ready=bool(v.cond("Ready")), node=v.spec.get("nodeName"), restarts=restarts,
                 generation=v.generation, reason=reason, scenario=v.scenario, requests=requests)


def _replicated(v: _View) -> State:
    """Deployments, ReplicaSets, StatefulSets, ReplicationControllers."""
    desired = _int(v.spec.get("replicas"))
    desired = 1 if desired is None else desired
    ready_n = _int(v.status.get("readyReplicas")) or 0
    available = _int(v.status.get("availableReplicas")) or 0
    updated = _int(v.status.get("updatedReplicas"))
    current = (_int(v.status.get("observedGeneration")) or 0) >= (v.generation or 0)
    is_ready = current and available >= desired and ready_n >= desired
    if v.kind in ("Deployment", "StatefulSet") and updated is not None:
        is_ready = is_ready and updated >= desired
    if v.kind == "Deployment" and v.cond("ReplicaFailure"):
        phase, reason = "Failed", v.reason_of("ReplicaFailure")
    elif is_ready:
        phase, reason = "Available", None
    else:
        reason = v.reason_of("Progressing")
        phase = "Failed" if reason == "ProgressDeadlineExceeded" else "Progressing"
    return State(phase="Terminating" if v.terminating else phase, ready=is_ready, replicas=desired,
                 ready_replicas=ready_n, generation=v.generation, reason=reason)


def _daemonset(v: _View) -> State:
    desired = _int(v.status.get("desiredNumberScheduled")) or 0
    ready_n = _int(v.status.get("numberReady")) or 0
    is_ready = ready_n >= desired and (_int(v.status.get("observedGeneration")) or 0) >= (v.generation or 0)
    return State(phase="Available" if is_ready else "Progressing", ready=is_ready, replicas=desired,
                 ready_replicas=ready_n, generation=v.generation)


def _job(v: _View) -> State:
    if v.cond("Complete"):
        phase = "Complete"
    elif v.cond("Failed"):
        phase = "Failed"
    elif v.spec.get("suspend"):
        phase = "Suspended"
    else:
        phase = "Running" if (_int(v.status.get("active")) or 0) > 0 else "Pending"
    return State(phase=phase, ready=phase == "Complete", generation=v.generation,
                 reason=v.reason_of("Failed") if phase == "Failed" else None,
                 replicas=_int(v.spec.get("completions")), ready_replicas=_int(v.status.get("succeeded")) or 0)


def _cronjob(v: _View) -> State:
    return State(phase="Suspended" if v.spec.get("suspend") else "Active", ready=True, generation=v.generation)


def _volume(v: _View) -> State:
    """A claim is ready when Bound; a volume when Available to be claimed, or Bound."""
    phase = v.status.get("phase", "Pending")
    ready = phase == "Bound" or (v.kind == "PersistentVolume" and phase == "Available")
    return State(phase=phase, ready=ready, generation=v.generation)


def _namespace(v: _View) -> State:
    phase = v.status.get("phase", "Active")
    return State(phase=phase, ready=phase == "Active")


#: Karpenter's labels and taint (sigs.k8s.io/karpenter pkg/apis/v1), and the well-known labels its
#: NodeClaims and Nodes carry.
NODEPOOL_LABEL = "karpenter.sh/nodepool"
REGISTERED_LABEL = "karpenter.sh/registered"
INITIALIZED_LABEL = "karpenter.sh/initialized"
DISRUPTED_TAINT = "karpenter.sh/disrupted"
_FACT_LABELS = (("instance_type", "node.kubernetes.io/instance-type"), ("capacity_type", "karpenter.sh/capacity-type"),
                ("zone", "topology.kubernetes.io/zone"), ("pool", NODEPOOL_LABEL))
#: The reason of a condition nobody has reconciled yet (operatorpkg's status.Condition default).
_UNRECONCILED = frozenset({"", "AwaitingReconciliation"})


def _facts(v: _View, **more: str | None) -> tuple[tuple[str, str], ...]:
    labels = v.meta.get("labels") or {}
    found = [(key, str(labels[label])) for key, label in _FACT_LABELS if labels.get(label)]
    return tuple(found + [(k, str(value)) for k, value in more.items() if value])


def _nodeclaim(v: _View) -> State:
    """A Karpenter NodeClaim (karpenter.sh/v1): Launched, Registered, Initialized as its lifecycle
    controller sets them True, the root Ready, and the DisruptionReason condition its disruption queue
    sets True (reason Underutilized, Empty, Drifted …) before it taints the node and deletes the claim.
    A launch the cloud refused leaves Launched Unknown (or False) with the cloud's reason and message."""
    steps = [name.lower() for name in ("Launched", "Registered", "Initialized") if v.cond(name)]
    launch = v.conds.get("Launched", {})
    message = None
    reason = None
    if not v.cond("Launched") and str(launch.get("reason") or "") not in _UNRECONCILED:
        steps.insert(0, "launch_failed")
        reason, message = str(launch["reason"]), launch.get("message")
    if v.cond("DisruptionReason"):
        steps.append("disrupted")
        reason = v.reason_of("DisruptionReason")
    phase = "Terminating" if v.terminating else steps[-1].title().replace("_", "") if steps else "Pending"
    return State(phase=phase, ready=bool(v.cond("Ready")), reason=reason, generation=v.generation,
                 scenario=v.scenario, milestones=tuple(steps),
                 facts=_facts(v, node=v.status.get("nodeName"), message=message))


def _node(v: _View) -> State:
    ready = bool(v.cond("Ready"))
    milestones = facts = None
    labels = v.meta.get("labels") or {}
    if labels.get(NODEPOOL_LABEL):  # made by Karpenter: its steps as Karpenter's registration marks them
        milestones = tuple(step for step, done in (
            ("registered", labels.get(REGISTERED_LABEL) == "true"),
            ("initialized", labels.get(INITIALIZED_LABEL) == "true"),
            ("disrupted", any(t.get("key") == DISRUPTED_TAINT for t in v.spec.get("taints") or []))) if done)
        claim = next((o.get("name") for o in v.meta.get("ownerReferences") or [] if o.get("kind") == "NodeClaim"),
                     None)
        facts = _facts(v, nodeclaim=claim)
    return State(phase="Ready" if ready else "NotReady", ready=ready,
                 reason=None if ready else v.reason_of("Ready"), scenario=v.scenario,
                 milestones=milestones, facts=facts)


def _service(v: _View) -> State:
    is_lb = v.spec.get("type") == "LoadBalancer"
    has_ip = bool(v.spec.get("clusterIP")) or v.spec.get("type") == "ExternalName"
    lb_ready = bool((v.status.get("loadBalancer") or {}).get("ingress"))
    is_ready = has_ip and (lb_ready or not is_lb)
    return State(phase="Active" if is_ready else "Pending", ready=is_ready, generation=v.generation)


def _ingress(v: _View) -> State:
    has_address = bool((v.status.get("loadBalancer") or {}).get("ingress"))
    return State(phase="Active" if has_address else "Pending", ready=has_address, generation=v.generation)


def _hpa(v: _View) -> State:
    able = v.cond("AbleToScale")
    reason = v.reason_of("ScalingActive") if v.cond("ScalingActive") is False else None
    if able is False:
        reason = v.reason_of("AbleToScale")
    return State(phase="Active" if able else "Pending", ready=bool(able),
                 replicas=_int(v.status.get("desiredReplicas")), ready_replicas=_int(v.status.get("currentReplicas")),
                 generation=v.generation, reason=reason)


def _crd(v: _View) -> State:
    established = bool(v.cond("Established"))
    return State(phase="Established" if established else "Pending", ready=established, generation=v.generation)


def _other(v: _View) -> State:
    """Any other kind: its status.phase if it has one; readiness unknown (None)."""
    phase = v.status.get("phase") if isinstance(v.status.get("phase"), str) else None
    return State(phase=phase or ("Terminating" if v.terminating else "Active"), ready=None, generation=v.generation)


#: How each kind's phase and readiness are read, in that kind's own sense.
SUMMARIES: dict[str, Callable[[_View], State]] = {
    "Pod": _pod, "Deployment": _replicated, "ReplicaSet": _replicated, "StatefulSet": _replicated,
    "ReplicationController": _replicated, "DaemonSet": _daemonset, "Job": _job, "CronJob": _cronjob,
    "PersistentVolumeClaim": _volume, "PersistentVolume": _volume, "Namespace": _namespace, "Node": _node,
    "Service": _service, "Ingress": _ingress, "HorizontalPodAutoscaler": _hpa,
    "CustomResourceDefinition": _crd, "NodeClaim": _nodeclaim,
}


def summarise(obj: Mapping[str, Any]) -> State:
    """The phase and readiness of any object, in its own kind's sense."""
    meta = obj.get("metadata") or {}
    view = _View(kind=obj.get("kind", ""), meta=meta, spec=obj.get("spec") or {}, status=obj.get("status") or {},
                 conds=conditions(obj), generation=_int(meta.get("generation")),
                 terminating=bool(meta.get("deletionTimestamp")))
    return SUMMARIES.get(view.kind, _other)(view)


@dataclasses.dataclass(frozen=True)
class Transition:
    name: str
    detail: dict[str, Any]


def transitions(before: State | None, after: State | None) -> list[Transition]:
    """The lifecycle steps between two observed states (``None``: absent / deleted)."""
    if after is None:
        if before is None:
            return []
        gone = {"phase": before.phase, **dict(before.facts or ()),
                **({"scenario": before.scenario} if before.scenario else {})}
        if "disrupted" in (before.milestones or ()) and before.reason:
            gone["reason"] = before.reason  # why it went, on the step that says it went
        return [Transition("deleted", gone)]
    steps: list[Transition] = []
    prior = before or State()
    if before is None:
        steps.append(Transition("created", {"phase": after.phase}))
    if after.node and after.node != prior.node:
        steps.append(Transition("scheduled", {"node": after.node}))
    if before is not None and after.replicas != before.replicas and after.replicas is not None:
        steps.append(Transition("scaled", {"from": before.replicas, "to": after.replicas}))
    if before is not None and after.generation and before.generation and after.generation > before.generation:
        steps.append(Transition("updated", {"generation": after.generation}))
    reached = [m for m in after.milestones or () if m not in (prior.milestones or ())]
    for milestone in reached:
        noted: dict[str, Any] = dict(after.facts or ())
        if milestone != "launch_failed":
            noted.pop("message", None)
        if milestone in ("disrupted", "launch_failed") and after.reason:
            noted["reason"] = after.reason
        steps.append(Transition(milestone, noted))
    if (after.phase != prior.phase and after.phase and not (before is None and after.phase == "Active")
            and after.phase.lower() not in {m.replace("_", "") for m in reached}):
        detail: dict[str, Any] = {"from": prior.phase, "to": after.phase}
        if after.reason:
            detail["reason"] = after.reason
        steps.append(Transition(after.phase.lower(), detail))
    if after.restarts > prior.restarts:
        steps.append(Transition("restarted", {"restarts": after.restarts}))
    if after.ready is True and prior.ready is not True:
        steps.append(Transition("ready", {}))
    elif after.ready is False and prior.ready is True:
        steps.append(Transition("not_ready", {"reason": after.reason} if after.reason else {}))
    if (after.reason and after.reason != prior.reason and after.phase == prior.phase and before is not None
            and not any(st.detail.get("reason") == after.reason for st in steps)):
        steps.append(Transition("reason", {"reason": after.reason}))  # e.g. Error → CrashLoopBackOff
    scenario = after.scenario or prior.scenario
    if scenario:  # the history says which Scenario did it, and when it let go
        steps = [Transition(s.name, {**s.detail, "scenario": scenario}) for s in steps]
    return steps
