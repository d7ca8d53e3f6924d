"""Plays Scenarios on the cluster: marks what a run hits, waits, and gives it back.

The marks (a label and annotations, see :mod:`k8sim.scenarios`) hand pods and nodes to KWOK's
fault stages; the real controllers do the rest (endpoints, taints, eviction, rescheduling).
Every step is idempotent, so an operator that restarts mid-run plays on from the Scenario's status.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import kopf

from k8sim import gpus, lifecycle, model, scenarios
from k8sim.kube import Kube, KubeError

log = logging.getLogger(__name__)

WORKLOAD_API = {"Deployment": "apps/v1", "StatefulSet": "apps/v1", "DaemonSet": "apps/v1"}


Tenants = Callable[[], Awaitable[Mapping[str, str]]]


async def set_status(kube: Kube, body: Mapping[str, Any], patch: Mapping[str, Any]) -> None:
    meta = body["metadata"]
    try:
        await kube.patch(scenarios.API_VERSION, scenarios.KIND, meta["name"], patch,
                         namespace=meta["namespace"], subresource="status")
    except KubeError as exc:
        if exc.status not in (404, 409, 422):
            raise
        log.debug("status of %s/%s not written: %s", meta["namespace"], meta["name"], exc.message)


async def _patch(kube: Kube, api_version: str, kind: str, obj: Mapping[str, Any], patch: Mapping[str, Any]) -> bool:
    meta = obj["metadata"]
    try:
        await kube.patch(api_version, kind, meta["name"], patch, namespace=meta.get("namespace"))
    except KubeError as exc:
        if exc.status == 404:  # gone meanwhile: nothing to mark or give back
            return False
        raise
    return True


# --------------------------------------------------------------------------- Karpenter's cloud

#: Who writes the interruption's Events: Karpenter's interruption controller, as on AWS.
KARPENTER_COMPONENT = "karpenter"


async def set_shortage(kube: Kube, name: str, record: Mapping[str, Any] | None) -> None:
    """Write (or with None remove) one entry of the shortages ConfigMap; entries whose end passed
    (a spot interruption's outlive their Scenario) go too."""
    namespace, cm_name = scenarios.SHORTAGES
    current = await kube.get("v1", "ConfigMap", cm_name, namespace)
    data: dict[str, Any] = {}
    now = lifecycle.now()
    for entry, raw in ((current or {}).get("data") or {}).items():
        try:
            until = lifecycle.parse_time(json.loads(raw).get("until"))
        except (ValueError, AttributeError):
            until = None
        if until is not None and until <= now:
            data[entry] = None
    data[name] = None if record is None else json.dumps(record, sort_keys=True)
    if current is None:
        if record is None:
            return
        await kube.create({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": cm_name, "namespace": namespace},
                           "data": {k: v for k, v in data.items() if v is not None}})
        return
    await kube.patch("v1", "ConfigMap", cm_name, {"data": data}, namespace=namespace)


async def _event(kube: Kube, obj: Mapping[str, Any], kind: str, api_version: str, reason: str, message: str) -> None:
    try:
        await kube.create(scenarios.event(obj, reason, message, lifecycle.now(), KARPENTER_COMPONENT,
                                          kind=kind, api_version=api_version))
    except KubeError as exc:
        log.warning("event %s on %s %s not written: %s", reason, kind, obj["metadata"]["name"], exc.message)


async def interrupt(kube: Kube, spec: scenarios.Spec, key: str) -> list[dict[str, Any]]:
    """EC2's spot interruption warning as Karpenter's AWS provider acts on it: SpotInterrupted events,
    the offering unavailable to Karpenter for a while, the NodeClaim deleted (Karpenter launches its
    replacement for the pods while the node drains), TerminatingOnInterruption events."""
    nodes, claims = await asyncio.gather(kube.list("v1", "Node"), kube.list(scenarios.NODECLAIM_API, "NodeClaim"))
    by_node = {str((c.get("status") or {}).get("nodeName")): c for c in claims
               if not c["metadata"].get("deletionTimestamp")}
    affected = []
    for node in scenarios.spot_nodes(spec, nodes):
        name = node["metadata"]["name"]
        claim = by_node.get(name)
        if claim is None:
            continue
        mark = {"metadata": {"annotations": {scenarios.SCENARIO_ANNOTATION: key}}}
        await _patch(kube, "v1", "Node", node, mark)
        await _patch(kube, scenarios.NODECLAIM_API, "NodeClaim", claim, mark)
        for obj, kind, api in ((claim, "NodeClaim", scenarios.NODECLAIM_API), (node, "Node", "v1")):
            await _event(kube, obj, kind, api, "SpotInterrupted", "Spot interruption warning was triggered")
        labels = node["metadata"].get("labels") or {}
        offering = {"instanceType": labels.get("node.kubernetes.io/instance-type"), "capacityType": "spot",
                    "zone": labels.get("topology.kubernetes.io/zone")}
        until = lifecycle.now() + dt.timedelta(seconds=scenarios.UNAVAILABLE_OFFERING_TTL)
        await set_shortage(kube, f"{scenarios.shortage_key(key)}.{name}",
                           scenarios.shortage_record(offering, until, known=True))
        if await kube.delete(scenarios.NODECLAIM_API, "NodeClaim", claim["metadata"]["name"]):
            for obj, kind, api in ((claim, "NodeClaim", scenarios.NODECLAIM_API), (node, "Node", "v1")):
                await _event(kube, obj, kind, api, "TerminatingOnInterruption",
                             f"Interruption triggered termination for the {kind}")
        affected.append(scenarios.affected_item(node, "Node"))
    return affected


async def reclaim(kube: Kube, affected: list[dict[str, Any]]) -> None:
    """The notice is over and the instance is gone: what still runs on it goes with it."""
    names = {a["name"] for a in affected if a.get("kind") == "Node"}
    if not names:
        return
    for pod in await kube.list("v1", "Pod"):
        if (pod.get("spec") or {}).get("nodeName") in names:
            meta = pod["metadata"]
            try:
                await kube.request("DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                                   body={"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0})
            except KubeError as exc:
                if exc.status != 404:
                    raise


async def known_instance_types(kube: Kube) -> set[str]:
    """Every instance type some NodePool may launch (its requirement's values)."""
    found: set[str] = set()
    for pool in await kube.list(scenarios.NODECLAIM_API, "NodePool"):
        for req in ((pool.get("spec") or {}).get("template") or {}).get("spec", {}).get("requirements") or []:
            if req.get("key") == "node.kubernetes.io/instance-type" and req.get("operator") == "In":
                found.update(req.get("values") or [])
    return found


# --------------------------------------------------------------------------- GPU faults

#: Who writes the GPU faults' Events: the device plugin, whose health check sees the XIDs.
DEVICE_PLUGIN_COMPONENT = "nvidia-device-plugin"
#: How often a playing GPU fault asserts its node's allocatable again: as the device plugin keeps
#: reporting the device unhealthy, so a node registered again (k8sim up) does not get it back.
GPU_RESYNC_SECONDS = 15.0


async def set_gpu_allocatable(kube: Kube, node: Mapping[str, Any]) -> bool:
    """Write the node's allocatable GPU resources from its recorded faults (the device plugin's
    healthy devices, as the kubelet reports them); capacity stays. False when already so or no GPU node."""
    setup = gpus.inventory([node]).get(node["metadata"]["name"])
    if setup is None:
        return False
    wanted = scenarios.gpu_allocatable(setup, gpus.node_faults(node))
    have = (node.get("status") or {}).get("allocatable") or {}
    if all(str(have.get(k)) == v for k, v in wanted.items()):
        return False
    await kube.patch("v1", "Node", node["metadata"]["name"], {"status": {"allocatable": wanted}},
                     subresource="status")
    return True


async def gpu_fault(kube: Kube, spec: scenarios.Spec, key: str) -> list[dict[str, Any]]:
    """An XID, a fall off the bus or a thermal throttle on GPUs of the target nodes: recorded on the
    node (the engine's DCGM series and clocks follow), and for an XID the device plugin does not
    ignore, the device unhealthy (allocatable down by its share, capacity kept) and the pods on it
    failed as the kubelet fails them; their controllers replace them."""
    pods, nodes = await asyncio.gather(kube.list("v1", "Pod"), kube.list("v1", "Node"))
    by_name = {n["metadata"]["name"]: n for n in nodes}
    inventory = gpus.inventory(nodes)
    affected: list[dict[str, Any]] = []
    for name in spec.target.get("nodes") or []:
        if name not in by_name:
            raise scenarios.ScenarioError(f"node {name!r} does not exist")
        setup = inventory.get(name)
        if setup is None:
            raise scenarios.ScenarioError(f"node {name!r} has no GPUs (no accelerator=nvidia-<type> label "
                                          "or nvidia.com/gpu capacity)")
        before = gpus.node_faults(by_name[name])
        on_node = [p for p in pods if (p.get("spec") or {}).get("nodeName") == name]
        holders = scenarios.device_holders(setup, on_node, before.unhealthy)
        # A resumed run (the operator restarted) keeps the devices it hit, not the ones its pods moved to.
        indexes = scenarios.owned_devices(before, key) or scenarios.fault_devices(spec, name, setup, holders)
        xid = scenarios.gpu_xid(spec)
        node = await kube.patch("v1", "Node", name, {"metadata": {"annotations": scenarios.gpu_fault_annotations(
            spec, key, indexes)}})
        affected += [{"kind": "GPU", "name": f"{name}/gpu{i}"} for i in indexes]
        if xid is None:
            continue
        await _gpu_event(kube, node, "Node", "GPUXid" if spec.type == "GPUXid" else "GPUFallenOffBus",
                         f"XidCriticalError: Xid={xid} ({gpus.XID_TEXT.get(xid, 'Unknown Error')}) on GPU(s) "
                         f"{', '.join(map(str, indexes))}"
                         + ("; marking device(s) as unhealthy" if gpus.xid_critical(xid) else
                            "; ignored by the device plugin (an application error)"))
        if not gpus.xid_critical(xid):
            continue
        await set_gpu_allocatable(kube, node)
        failed = {p["metadata"]["uid"]: p for i in indexes for p in holders.get(i, [])}
        for pod in failed.values():
            mine = [i for i in indexes if pod in holders.get(i, [])]
            meta = pod["metadata"]
            try:  # marked first, so the history's row of the failure names the Scenario
                await kube.patch("v1", "Pod", meta["name"], {"metadata": {"annotations": {
                    scenarios.SCENARIO_ANNOTATION: key}}}, namespace=meta["namespace"])
                await kube.patch("v1", "Pod", meta["name"], scenarios.gpu_failed_status(
                    pod, name, xid, mine, lifecycle.now()), namespace=meta["namespace"], subresource="status")
            except KubeError as exc:
                if exc.status != 404:
                    raise
                continue
            affected.append(scenarios.affected_item(pod, "Pod"))
    return affected


async def _gpu_event(kube: Kube, obj: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
    try:
        await kube.create(scenarios.event(obj, reason, message, lifecycle.now(), DEVICE_PLUGIN_COMPONENT, kind=kind))
    except KubeError as exc:
        log.warning("event %s on %s %s not written: %s", reason, kind, obj["metadata"]["name"], exc.message)


async def gpu_restore(kube: Kube, key: str) -> None:
    """Take this Scenario's faults off every node and give its devices back (allocatable up again)."""
    for node in await kube.list("v1", "Node"):
        mine = {a: None for a, owner in gpus.node_faults(node).owners.items() if owner == key}
        if not mine:
            continue
        try:
            node = await kube.patch("v1", "Node", node["metadata"]["name"], {"metadata": {"annotations": mine}})
            await set_gpu_allocatable(kube, node)
        except KubeError as exc:
            if exc.status != 404:
                raise


async def hold_gpu_faults(kube: Kube, key: str, end: dt.datetime | None, stopped: kopf.DaemonStopped) -> None:
    """Wait for the run's end, asserting the faulted nodes' allocatable meanwhile."""
    while True:
        left = None if end is None else (end - lifecycle.now()).total_seconds()
        if left is not None and left <= 0:
            return
        if await stopped.wait(GPU_RESYNC_SECONDS if left is None else min(left, GPU_RESYNC_SECONDS)):
            return
        try:
            for node in await kube.list("v1", "Node"):
                if key in gpus.node_faults(node).owners.values():
                    await set_gpu_allocatable(kube, node)
        except KubeError as exc:
            log.warning("GPU faults of %s not asserted: %s", key, exc.message)


async def begin(kube: Kube, spec: scenarios.Spec, key: str, tenants: Mapping[str, str]) -> list[dict[str, Any]]:
    """Hit what the Scenario targets now; returns the affected objects (its status.affected)."""
    if spec.type in scenarios.GPU_TYPES:
        return await gpu_fault(kube, spec, key)
    if spec.type == "SpotInterruption":
        return await interrupt(kube, spec, key)
    if spec.type == "CapacityShortage":
        itype = spec.target.get("instanceType")
        if itype and itype not in (known := await known_instance_types(kube)):
            raise scenarios.ScenarioError(f"target.instanceType {itype!r} is not an instance type of any NodePool; "
                                          f"choose one of {', '.join(sorted(known)) or '(no NodePools)'}")
        end = None if spec.duration is None else lifecycle.now() + dt.timedelta(seconds=spec.duration)
        await set_shortage(kube, scenarios.shortage_key(key), scenarios.shortage_record(spec.target, end))
        offering = "/".join(str(spec.target.get(k) or "*") for k in ("instanceType", "zone", "capacityType"))
        return [{"kind": "Offering", "name": offering}]
    pods, nodes = await asyncio.gather(kube.list("v1", "Pod"), kube.list("v1", "Node"))
    if spec.type in scenarios.NODE_TYPES:
        down = scenarios.target_nodes(spec, pods, nodes, tenants)
        names = {n["metadata"]["name"] for n in down}
        for node in down:
            await _patch(kube, "v1", "Node", node, scenarios.mark(scenarios.NODE_FAULT, key, spec))
        # Their pods are marked too: nobody on a dead node confirms a deletion (pod-delete skips them).
        for pod in pods:
            if (pod.get("spec") or {}).get("nodeName") in names:
                await _patch(kube, "v1", "Pod", pod, scenarios.mark(scenarios.NODE_FAULT, key, spec))
        return [scenarios.affected_item(n, "Node") for n in down]
    hit = scenarios.target_pods(spec, pods, nodes, tenants)
    if spec.type in scenarios.POD_TYPES:
        done = [p for p in hit if await _patch(kube, "v1", "Pod", p, scenarios.mark(spec.type, key, spec))]
        return [scenarios.affected_item(p, "Pod") for p in done]
    if spec.type in scenarios.WORKLOAD_TYPES:
        workloads = sorted({(p["metadata"]["namespace"], *w) for p in hit if (w := scenarios.workload_of(p))})
        affected = []
        for namespace, kind, name in workloads:
            obj = {"metadata": {"namespace": namespace, "name": name}}
            if await _patch(kube, WORKLOAD_API[kind], kind, obj, scenarios.template_mark(spec.type)):
                affected.append({"kind": kind, "namespace": namespace, "name": name})
        return affected
    services = sorted({lifecycle.service_of(p) for p in hit})
    return [{"kind": "Service", "namespace": s.split("/", 1)[0], "name": s.split("/", 1)[1]} for s in services]


async def finish(kube: Kube, spec: scenarios.Spec, key: str, affected: list[dict[str, Any]]) -> None:
    """Give back everything this Scenario marked; KWOK's stages and the controllers recover it."""
    if spec.type in scenarios.GPU_TYPES:
        await gpu_restore(kube, key)
        return
    if spec.type == "SpotInterruption":
        await reclaim(kube, affected)
        for item in affected:  # Karpenter keeps what it was told for its own three minutes
            await set_shortage(kube, f"{scenarios.shortage_key(key)}.{item['name']}", None)
        return
    if spec.type == "CapacityShortage":
        await set_shortage(kube, scenarios.shortage_key(key), None)
        return
    if spec.type in scenarios.WORKLOAD_TYPES:
        for item in affected:
            if item.get("kind") in WORKLOAD_API:
                obj = {"metadata": {"namespace": item.get("namespace"), "name": item["name"]}}
                await _patch(kube, WORKLOAD_API[item["kind"]], item["kind"], obj, scenarios.template_mark(None))
        return
    if spec.type in scenarios.MODEL_TYPES:
        return  # the engine stops applying it when the status leaves Active
    pods, nodes = await asyncio.gather(kube.list("v1", "Pod"), kube.list("v1", "Node"))
    for node in nodes:
        if scenarios.marked_by(node, key):
            await _patch(kube, "v1", "Node", node, scenarios.unmark())
    for pod in pods:
        if scenarios.marked_by(pod, key):
            await _patch(kube, "v1", "Pod", pod, scenarios.recover())


async def play(kube: Kube, body: Mapping[str, Any], stopped: kopf.DaemonStopped, tenants: Tenants) -> None:
    """One Scenario from creation to its end (or its deletion): every run of its schedule."""
    meta = body["metadata"]
    key = f"{meta['namespace']}/{meta['name']}"
    try:
        spec = scenarios.validate(body.get("spec"))
    except scenarios.ScenarioError as exc:
        await set_status(kube, body, scenarios.status("Failed", str(exc), affected=[], affectedCount=0))
        return
    status = body.get("status") or {}
    created = scenarios.schedule_origin(lifecycle.parse_time(meta.get("creationTimestamp")), lifecycle.now(),
                                        seen_before=bool(status.get("phase")))
    if status.get("phase") in ("Completed", "Failed"):
        return
    run = 0
    for start, end in scenarios.windows(spec, created, meta.get("uid", key)):
        run += 1
        now = lifecycle.now()
        if end is not None and end <= now:
            continue  # a run that passed while no operator played it
        if start > now:
            await set_status(kube, body, scenarios.status(
                "Pending", f"run {run} starts at {scenarios.stamp(start)}", nextStart=scenarios.stamp(start)))
            if await stopped.wait((start - now).total_seconds()):
                return
        affected: list[dict[str, Any]] = []
        try:
            try:
                affected = await begin(kube, spec, key, await tenants())  # idempotent: a resumed run marks again
            except scenarios.ScenarioError as exc:  # what only the cluster can say is wrong
                await set_status(kube, body, scenarios.status("Failed", str(exc), affected=[], affectedCount=0))
                return
            what = ", ".join(f"{a['kind']} {a.get('namespace', '') + '/' if a.get('namespace') else ''}{a['name']}"
                             for a in affected[:5]) + (" …" if len(affected) > 5 else "")
            await set_status(kube, body, scenarios.status(
                "Active", f"{spec.type} on {len(affected)} object(s): {what}" if affected
                else f"{spec.type}: nothing matched the target",
                affected=list(affected), affectedCount=len(affected), runs=run,
                startedAt=scenarios.stamp(start), endsAt=scenarios.stamp(end),
                nextStart=None))
            log.info("scenario %s run %d: %s on %d object(s)", key, run, spec.type, len(affected))
            if spec.type in scenarios.GPU_TYPES:
                await hold_gpu_faults(kube, key, end, stopped)
            else:
                await stopped.wait(None if end is None else max(0.0, (end - lifecycle.now()).total_seconds()))
        finally:
            await finish(kube, spec, key, affected)
        if stopped:
            return
    await set_status(kube, body, scenarios.status("Completed", f"{run} run(s) played; everything given back",
                                                  nextStart=None, endedAt=scenarios.stamp(lifecycle.now())))


# --------------------------------------------------------------------------- background failures

BACKGROUND_LABEL = "k8sim.io/background"
#: Finished background Scenarios are deleted after this long (their history stays recorded).
BACKGROUND_KEEP = 3600.0


def _ready(obj: Mapping[str, Any]) -> bool:
    return lifecycle.conditions(obj).get("Ready", {}).get("status") == "True"


def background_scenario(kind: str, namespace: str, target: dict[str, Any], seconds: float,
                        parameters: dict[str, float] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": kind, "target": target, "duration": f"{seconds:g}s"}
    if parameters:
        spec["parameters"] = parameters
    return {"apiVersion": scenarios.API_VERSION, "kind": scenarios.KIND,
            "metadata": {"generateName": f"background-{kind.lower()}-", "namespace": namespace,
                         "labels": {BACKGROUND_LABEL: "true"}}, "spec": spec}


async def background(kube: Kube, bg: model.Background, seed: int, interval: float, selector: str) -> None:
    """The profile's background failures, played in the cluster as Scenarios (the clock at speed 1):
    each running pod crashes and each node fails as a Poisson process at the profile's daily rate."""
    rng = model.seeded(seed, "operator-background")
    while True:
        await asyncio.sleep(interval)
        try:
            pods = await kube.list("v1", "Pod", label_selector=selector or None)
            nodes = await kube.list("v1", "Node")
            for pod in sorted(pods, key=lambda p: (p["metadata"].get("namespace", ""), p["metadata"]["name"])):
                meta = pod["metadata"]
                busy = scenarios.FAULT_LABEL in (meta.get("labels") or {})
                if meta.get("deletionTimestamp") or not _ready(pod) or busy:
                    continue
                if rng.random() < bg.pod_crashes_per_day * interval / 86400:
                    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != scenarios.FAULT_LABEL}
                    target = {"namespace": meta["namespace"], "selector": {"matchLabels": labels},
                              "nodes": [pod["spec"].get("nodeName", "")]}
                    await kube.create(background_scenario("PodCrash", meta["namespace"], target, bg.pod_crash_seconds,
                                                          {"pods": 1, "after": 1}))
            for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
                labels = node["metadata"].get("labels") or {}
                if not _ready(node) or scenarios.FAULT_LABEL in labels:
                    continue
                if rng.random() < bg.node_failures_per_day * interval / 86400:
                    await kube.create(background_scenario("NodeNotReady", "default",
                                                          {"nodes": [node["metadata"]["name"]]},
                                                          bg.node_failure_seconds))
            played = await kube.list(scenarios.API_VERSION, scenarios.KIND, label_selector=f"{BACKGROUND_LABEL}=true")
            for obj in played:
                ended = lifecycle.parse_time((obj.get("status") or {}).get("endedAt"))
                if ended and (lifecycle.now() - ended).total_seconds() > BACKGROUND_KEEP:
                    await kube.delete(scenarios.API_VERSION, scenarios.KIND, obj["metadata"]["name"],
                                      obj["metadata"]["namespace"])
        except KubeError as exc:
            log.warning("background failures skipped a round: %s", exc.message)
