"""Capacity: what each node and node pool can hold, what is asked of it and used, what waits.

Pure functions over Node and Pod objects (and, when the metrics API answers, node usage); the
API's /cluster/capacity routes read the cluster and hand it here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from k8sim import gpus, lifecycle
from k8sim.resources import (
    GPU,
    Resources,
    device_requests,
    is_gpu_device,
    pod_requests,
    quantity,
)

POOL_LABEL = "k8sim.io/pool"


def allocatable(node: Mapping[str, Any]) -> Resources:
    status = node.get("status") or {}
    alloc = status.get("allocatable") or status.get("capacity") or {}
    return Resources(quantity(alloc.get("cpu")) or 0.0, quantity(alloc.get("memory")) or 0.0,
                     quantity(alloc.get(GPU)) or 0.0, quantity(alloc.get("pods")) or 0.0)


def gpu_type(node: Mapping[str, Any]) -> str | None:
    accelerator = ((node.get("metadata") or {}).get("labels") or {}).get("accelerator")
    return accelerator.removeprefix("nvidia-") if accelerator else None


def pool_of(node: Mapping[str, Any]) -> str:
    labels = (node.get("metadata") or {}).get("labels") or {}
    return str(labels.get(POOL_LABEL) or labels.get("node.kubernetes.io/instance-type") or "default")


def holds(pod: Mapping[str, Any]) -> bool:
    """A pod that takes room on its node: bound and not finished."""
    return bool((pod.get("spec") or {}).get("nodeName")) and \
        (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def pending_reason(pod: Mapping[str, Any]) -> str | None:
    """The scheduler's word on a pod it could not place (its PodScheduled condition)."""
    if (pod.get("spec") or {}).get("nodeName") or (pod.get("status") or {}).get("phase") != "Pending":
        return None
    cond = lifecycle.conditions(pod).get("PodScheduled") or {}
    if cond.get("status") == "False":
        return f"{cond.get('reason') or 'Unschedulable'}: {cond.get('message') or ''}".rstrip(": ")
    return "not yet scheduled"


def gpu_devices(node: Mapping[str, Any], requested: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """A node's GPU devices by resource name: allocatable, and requested by the pods bound to it. A
    resource its capacity names counts even with nothing allocatable (every device unhealthy)."""
    status = node.get("status") or {}
    alloc = status.get("allocatable") or status.get("capacity") or {}
    names = {str(k) for k in {*alloc, *(status.get("capacity") or {}), *requested} if is_gpu_device(str(k))}
    found = {}
    for name in sorted(names):
        entry = {"allocatable": quantity(alloc.get(name)) or 0.0, "requested": requested.get(name, 0.0)}
        if entry["allocatable"] or entry["requested"] or quantity((status.get("capacity") or {}).get(name)):
            found[name] = entry
    return found


def _add_devices(into: dict[str, dict[str, float]], devices: Mapping[str, Mapping[str, float]]) -> None:
    for name, entry in devices.items():
        total = into.setdefault(name, {"allocatable": 0.0, "requested": 0.0})
        total["allocatable"] += entry["allocatable"]
        total["requested"] += entry["requested"]


def _rounded(devices: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    return {name: {k: round(v, 3) for k, v in entry.items()} for name, entry in sorted(devices.items())}


def gpu_setup(node: Mapping[str, Any], setup: gpus.GPUSetup | None) -> tuple[int, str | None]:
    """(physical GPUs, how they are shared) of a node. The GPU Operator's setup where the node is one of
    a known model (see gpus.inventory): ``none``, ``time-slicing``, ``mig-single`` or ``mig-mixed``;
    otherwise the nvidia.com/gpu capacity and None (not known)."""
    if setup is not None:
        sharing = f"mig-{setup.mig_strategy}" if setup.mig_strategy else "time-slicing" if setup.shared else "none"
        return setup.count, sharing
    status = node.get("status") or {}
    return int(quantity((status.get("capacity") or status.get("allocatable") or {}).get(GPU)) or 0), None


def document(nodes: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]],
             used: Mapping[str, tuple[float, float]] | None) -> dict[str, Any]:
    """The /cluster/capacity answer: per node and per pool allocatable, requested and used (None
    where the metrics API does not answer), GPUs by type, and pending pods grouped by reason.

    ``gpus`` in allocatable/requested (and requested_percent), and the top-level ``gpus``, count
    nvidia.com/gpu as the scheduler does; beside them, per node, pool and GPU type (``gpu_types``),
    ``physical_gpus`` counts the GPUs installed and ``gpu_devices`` every device resource (MIG
    profiles, time-sliced replicas) with its allocatable and requested."""
    pods, nodes = list(pods), list(nodes)
    setups = gpus.inventory(nodes)
    requested: dict[str, Resources] = {}
    devices_requested: dict[str, dict[str, float]] = {}
    for pod in pods:
        if holds(pod):
            spec = pod.get("spec") or {}
            requested.setdefault(spec["nodeName"], Resources()).add(pod_requests(spec))
            held = devices_requested.setdefault(spec["nodeName"], {})
            for name, value in device_requests(spec).items():
                held[name] = held.get(name, 0.0) + value
    node_rows: list[dict[str, Any]] = []
    pools: dict[str, dict[str, Any]] = {}
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        name, pool, kind = node["metadata"]["name"], pool_of(node), gpu_type(node)
        labels = node["metadata"].get("labels") or {}
        alloc, req = allocatable(node), requested.get(name, Resources())
        usage = None if used is None else used.get(name)
        ready = lifecycle.conditions(node).get("Ready", {}).get("status") == "True"
        unschedulable = bool((node.get("spec") or {}).get("unschedulable"))
        physical, sharing = gpu_setup(node, setups.get(name))
        devices = gpu_devices(node, devices_requested.get(name, {}))
        node_rows.append({
            "name": name, "pool": pool, "zone": labels.get("topology.kubernetes.io/zone"),
            "instance_type": labels.get("node.kubernetes.io/instance-type"), "gpu_type": kind,
            "ready": ready, "schedulable": not unschedulable,
            "taints": [f"{t.get('key')}{'=' + t['value'] if t.get('value') else ''}:{t.get('effect')}"
                       for t in (node.get("spec") or {}).get("taints") or []],
            "allocatable": alloc.as_json(), "requested": req.as_json(),
            "used": None if usage is None else {"cpu_cores": round(usage[0], 3), "memory_bytes": round(usage[1])},
            "physical_gpus": physical, "gpu_sharing": sharing if physical or devices else None,
            "gpu_devices": _rounded(devices),
        })
        entry = pools.setdefault(pool, {"name": pool, "nodes": 0, "ready_nodes": 0, "gpu_type": kind,
                                        "allocatable": Resources(), "requested": Resources(),
                                        "used": None if used is None else [0.0, 0.0],
                                        "physical_gpus": 0, "gpu_devices": {}})
        entry["nodes"] += 1
        entry["ready_nodes"] += int(ready)
        entry["allocatable"].add(alloc)
        entry["requested"].add(req)
        entry["physical_gpus"] += physical
        _add_devices(entry["gpu_devices"], devices)
        if entry["used"] is not None and usage is not None:
            entry["used"][0] += usage[0]
            entry["used"][1] += usage[1]
    pool_rows = []
    for entry in sorted(pools.values(), key=lambda e: e["name"]):
        alloc, req = entry["allocatable"], entry["requested"]
        pool_rows.append({**entry, "allocatable": alloc.as_json(), "requested": req.as_json(),
                          "used": None if entry["used"] is None else {"cpu_cores": round(entry["used"][0], 3),
                                                                     "memory_bytes": round(entry["used"][1])},
                          "gpu_devices": _rounded(entry["gpu_devices"]),
                          "requested_percent": {
                              "cpu": round(100 * req.cpu / alloc.cpu, 1) if alloc.cpu else 0.0,
                              "memory": round(100 * req.memory / alloc.memory, 1) if alloc.memory else 0.0,
                              "gpus": round(100 * req.gpu / alloc.gpu, 1) if alloc.gpu else 0.0}})
    # ``gpus`` keeps its shape (type → numbers, nvidia.com/gpu); the installed GPUs and every device
    # resource per type go beside it in ``gpu_types``.
    by_type: dict[str, dict[str, float]] = {}
    types: dict[str, dict[str, Any]] = {}
    for row in node_rows:
        if row["gpu_type"]:
            g = by_type.setdefault(row["gpu_type"], {"allocatable": 0.0, "requested": 0.0})
            g["allocatable"] += row["allocatable"]["gpus"]
            g["requested"] += row["requested"]["gpus"]
            t = types.setdefault(row["gpu_type"], {"nodes": 0, "physical_gpus": 0, "gpu_devices": {}})
            t["nodes"] += 1
            t["physical_gpus"] += row["physical_gpus"]
            _add_devices(t["gpu_devices"], row["gpu_devices"])
    for t in types.values():
        t["gpu_devices"] = _rounded(t["gpu_devices"])
    phases: dict[str, int] = {}
    pending: dict[str, list[str]] = {}
    for pod in pods:
        phase = str((pod.get("status") or {}).get("phase") or "Pending")
        phases[phase] = phases.get(phase, 0) + 1
        reason = pending_reason(pod)
        if reason:
            pending.setdefault(reason, []).append(f"{pod['metadata'].get('namespace', '')}/{pod['metadata']['name']}")
    return {"pools": pool_rows, "nodes": node_rows, "gpus": by_type, "gpu_types": dict(sorted(types.items())),
            "pending": [{"reason": r, "count": len(p), "pods": sorted(p)[:50]}
                        for r, p in sorted(pending.items(), key=lambda kv: -len(kv[1]))],
            "pending_pods": sum(len(p) for p in pending.values()),
            "pods_by_phase": dict(sorted(phases.items())),
            "metrics_available": used is not None}


def tolerates(pod_spec: Mapping[str, Any], taints: Iterable[Mapping[str, Any]]) -> bool:
    """Whether a pod tolerates every NoSchedule/NoExecute taint (the scheduler's TaintToleration)."""
    tolerations = pod_spec.get("tolerations") or []
    for taint in taints:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not any((t.get("operator") == "Exists" and (not t.get("key") or t.get("key") == taint.get("key")))
                   or (t.get("key") == taint.get("key") and t.get("value", "") == taint.get("value", ""))
                   for t in tolerations if not t.get("effect") or t.get("effect") == taint.get("effect")):
            return False
    return True


def _device_room(node: Mapping[str, Any]) -> dict[str, float]:
    status = node.get("status") or {}
    alloc = status.get("allocatable") or status.get("capacity") or {}
    return {str(k): quantity(v) or 0.0 for k, v in alloc.items() if is_gpu_device(str(k))}


def _holds(room: tuple[Resources, dict[str, float]], want: Resources, devices: Mapping[str, float]) -> bool:
    return room[0].fits(want) and all(room[1].get(k, 0.0) >= v - 1e-9 for k, v in devices.items())


def extra_nodes(pod_specs: Iterable[Mapping[str, Any]], nodes: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """For pods the scheduler could not place: how many more nodes of which pool would hold them,
    packing them first-fit decreasing onto new nodes shaped like the pool's (its first node's
    allocatable, labels and taints), every GPU device counted by name as the scheduler counts it (a
    pod asking for nvidia.com/mig-1g.5gb needs a pool whose nodes offer it). Pods no pool can hold are
    counted under "none"."""
    shapes: dict[str, Mapping[str, Any]] = {}
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        shapes.setdefault(pool_of(node), node)
    opened: dict[str, list[tuple[Resources, dict[str, float]]]] = {}
    needed: dict[str, int] = {}
    for spec in sorted(pod_specs, key=lambda s: -pod_requests(s).cpu):
        want, devices = pod_requests(spec), device_requests(spec)
        for pool, shape in shapes.items():
            labels = shape["metadata"].get("labels") or {}
            selector = spec.get("nodeSelector") or {}
            if any(labels.get(k) != v for k, v in selector.items()):
                continue
            if not tolerates(spec, (shape.get("spec") or {}).get("taints") or []):
                continue
            if not _holds((allocatable(shape), _device_room(shape)), want, devices):
                continue
            room = next((r for r in opened.get(pool, []) if _holds(r, want, devices)), None)
            if room is None:
                room = (allocatable(shape), _device_room(shape))
                opened.setdefault(pool, []).append(room)
                needed[pool] = needed.get(pool, 0) + 1
            left = room[0]
            left.cpu, left.memory, left.gpu, left.pods = (left.cpu - want.cpu, left.memory - want.memory,
                                                          left.gpu - want.gpu, left.pods - 1)
            for key, value in devices.items():
                room[1][key] = room[1].get(key, 0.0) - value
            break
        else:
            needed["none"] = needed.get("none", 0) + 1
    return needed


# --------------------------------------------------------------------------- what-if

#: What a probe pod keeps of its template: what the scheduler looks at.
SCHEDULING_FIELDS = ("nodeSelector", "affinity", "tolerations", "topologySpreadConstraints", "nodeName",
                     "hostNetwork", "overhead")
PROBE_PRIORITY = "k8sim-what-if"
PROBE_LABEL = "k8sim.io/what-if"
#: The label Karpenter puts on every node it launches. Probe pods keep off such nodes and Karpenter
#: leaves pods that refuse them alone: a what-if answers for the nodes there are, and launches none.
NODEPOOL_LABEL = "karpenter.sh/nodepool"


def on_existing_nodes(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The pod's node affinity, with every required term also asking for a node no autoscaler made."""
    affinity = dict(spec.get("affinity") or {})
    node_affinity = dict(affinity.get("nodeAffinity") or {})
    required = dict(node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    refuse = {"key": NODEPOOL_LABEL, "operator": "DoesNotExist"}
    terms = [dict(t) for t in required.get("nodeSelectorTerms") or []] or [{}]
    for term in terms:
        term["matchExpressions"] = [*(term.get("matchExpressions") or []), refuse]
    required["nodeSelectorTerms"] = terms
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = required
    affinity["nodeAffinity"] = node_affinity
    return affinity


def workload_pods(obj: Mapping[str, Any]) -> tuple[int, Mapping[str, Any]] | None:
    """(how many pods, their pod spec) a manifest object asks the scheduler to place; None for objects
    that place no pods now (Services, CronJobs, DaemonSets: one per node, so they always fit)."""
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    if kind == "Pod":
        return 1, spec
    template = (spec.get("template") or {}).get("spec")
    if not isinstance(template, Mapping):
        return None
    if kind in ("Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"):
        replicas = spec.get("replicas")
        return (1 if replicas is None else int(replicas)), template
    if kind == "Job":
        return int(spec.get("parallelism") or 1), template
    return None


def probe_pod(name: str, namespace: str, spec: Mapping[str, Any], source: str) -> dict[str, Any]:
    """A pod that asks the scheduler where (and whether) one of the manifest's pods would go: the
    same requests and placement rules, no volumes or service account to wait for, a priority
    below every workload's and no preemption."""
    containers = [{"name": str(c.get("name") or f"c{i}"), "image": "registry.k8s.io/pause:3.10",
                   "resources": {k: v for k, v in (c.get("resources") or {}).items() if k in ("requests", "limits")}}
                  for i, c in enumerate(spec.get("containers") or [{}])]
    init = [{"name": str(c.get("name") or f"i{i}"), "image": "registry.k8s.io/pause:3.10",
             "resources": {k: v for k, v in (c.get("resources") or {}).items() if k in ("requests", "limits")}}
            for i, c in enumerate(spec.get("initContainers") or [])]
    pod_spec: dict[str, Any] = {k: spec[k] for k in SCHEDULING_FIELDS if k in spec}
    pod_spec.update({"containers": containers, "priorityClassName": PROBE_PRIORITY,
                     "affinity": on_existing_nodes(spec),
                     "automountServiceAccountToken": False, "terminationGracePeriodSeconds": 0})
    if init:
        pod_spec["initContainers"] = init
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": {PROBE_LABEL: "probe"},
                         "annotations": {"k8sim.io/what-if-of": source}},
            "spec": pod_spec}


def priority_class() -> dict[str, Any]:
    return {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": PROBE_PRIORITY},
            "value": -1000000, "preemptionPolicy": "Never", "globalDefault": False,
            "description": "k8s-simulator's what-if probe pods: below every workload, never preempting."}
