"""Plays Scenarios on the cluster: marks what a run hits, waits, and gives it back.

The marks (a label and annotations, see :mod:`k8sim.scenarios`) hand pods and nodes to KWOK's
fault stages; the real controllers do the rest (endpoints, taints, eviction, rescheduling).
Every step is idempotent, so an operator that restarts mid-run plays on from the Scenario's status.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import kopf

from k8sim import lifecycle, model, scenarios
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


async def begin(kube: Kube, spec: scenarios.Spec, key: str, tenants: Mapping[str, str]) -> list[dict[str, Any]]:
    """Hit what the Scenario targets now; returns the affected objects (its status.affected)."""
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
    created = lifecycle.parse_time(meta.get("creationTimestamp")) or lifecycle.now()
    status = body.get("status") or {}
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
            affected = await begin(kube, spec, key, await tenants())  # idempotent: a resumed run marks again
            what = ", ".join(f"{a['kind']} {a.get('namespace', '') + '/' if a.get('namespace') else ''}{a['name']}"
                             for a in affected[:5]) + (" …" if len(affected) > 5 else "")
            await set_status(kube, body, scenarios.status(
                "Active", f"{spec.type} on {len(affected)} object(s): {what}" if affected
                else f"{spec.type}: nothing matched the target",
                affected=list(affected), affectedCount=len(affected), runs=run,
                startedAt=scenarios.stamp(start), endsAt=scenarios.stamp(end),
                nextStart=None))
            log.info("scenario %s run %d: %s on %d object(s)", key, run, spec.type, len(affected))
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
