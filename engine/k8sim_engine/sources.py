"""From cluster objects to the model's inputs: which pods run, for which service, with what."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from k8sim import inference, lifecycle, model, resources, scenarios

T = TypeVar("T")


def namespace_tenants(namespaces: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """namespace → tenant, for namespaces that carry a tenant label."""
    found = {}
    for ns in namespaces:
        tenant = lifecycle.tenant_of(ns)
        if tenant:
            found[ns["metadata"]["name"]] = tenant
    return found


class Memo:
    """Per-object results kept while what they are made from is unchanged (the object's
    resourceVersion plus whatever else the caller names), so a tick costs what changed."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[tuple[Any, ...], Any]] = {}

    def get(self, uid: str, key: tuple[Any, ...], make: Callable[[], T]) -> T:
        found = self.entries.get(uid)
        if found is not None and found[0] == key:
            value: T = found[1]
            return value
        made = make()
        self.entries[uid] = (key, made)
        return made

    def keep(self, uids: set[str]) -> None:
        """Forget objects that are gone."""
        for uid in [u for u in self.entries if u not in uids]:
            del self.entries[uid]


def pod_specs(pods: Iterable[Mapping[str, Any]], nodes: Iterable[Mapping[str, Any]],
              tenants_by_namespace: Mapping[str, str] | None = None, memo: Memo | None = None) -> list[model.PodSpec]:
    """Model inputs for every Running pod. A pod's tenant is its own label, else its namespace's
    tenant (by label, or the tenant whose deploy created it); never a guess from names."""
    tenants_by_namespace = tenants_by_namespace or {}
    accelerators = {n["metadata"]["name"]: (n["metadata"].get("labels") or {}).get("accelerator", "")
                    for n in nodes}
    specs = []
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("phase") != "Running" or pod["metadata"].get("deletionTimestamp"):
            continue
        meta = pod["metadata"]
        ns_tenant = tenants_by_namespace.get(meta.get("namespace", ""))
        accel = accelerators.get((pod.get("spec") or {}).get("nodeName") or "", "").removeprefix("nvidia-") or None
        if memo is None:
            specs.append(pod_spec(pod, ns_tenant, accel))
        else:
            key = (meta.get("resourceVersion"), ns_tenant, accel)
            specs.append(memo.get(meta["uid"], key, functools.partial(pod_spec, pod, ns_tenant, accel)))
    return specs


#: The device plugin's GPU resources: whole GPUs, time-sliced ones renamed, MIG devices (mixed strategy).
GPU_RESOURCE = re.compile(r"nvidia\.com/(gpu|gpu\.shared|mig-[0-9a-z.-]+)")


def _gpu_resources(containers: list[dict[str, Any]]) -> tuple[tuple[str, int], ...]:
    """The GPU resources a pod's containers ask for, by name (an extended resource's request equals
    its limit; either may be given)."""
    found: dict[str, int] = {}
    for c in containers:
        asked = c.get("resources") or {}
        for name in {**(asked.get("limits") or {}), **(asked.get("requests") or {})}:
            if GPU_RESOURCE.fullmatch(name):
                value = (asked.get("requests") or {}).get(name, (asked.get("limits") or {}).get(name))
                found[name] = found.get(name, 0) + int(resources.quantity(value) or 0)
    return tuple(sorted((k, v) for k, v in found.items() if v > 0))


def pod_spec(pod: Mapping[str, Any], namespace_tenant: str | None, accel: str | None) -> model.PodSpec:
    """One Running pod as the model sees it."""
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    containers = spec.get("containers") or [{}]
    requests: dict[str, float] = {}
    limits: dict[str, float | None] = {}
    for key in ("cpu", "memory"):
        req = [resources.quantity((c.get("resources") or {}).get("requests", {}).get(key)) for c in containers]
        lim = [resources.quantity((c.get("resources") or {}).get("limits", {}).get(key)) for c in containers]
        requests[key] = sum(v or 0 for v in req) or sum(v or 0 for v in lim)
        limits[key] = sum(v for v in lim if v) if all(lim) and lim else None
    node = spec.get("nodeName") or ""
    gpu_resources = _gpu_resources(containers)
    return model.PodSpec(
        uid=meta["uid"], namespace=meta.get("namespace", ""), name=meta["name"], service=lifecycle.service_of(pod),
        container=containers[0].get("name", ""), image=containers[0].get("image", ""), node=node,
        tenant=lifecycle.tenant_of(pod) or namespace_tenant,
        cpu_request=requests["cpu"] or 0.1,
        cpu_limit=limits["cpu"], memory_request=requests["memory"] or 128 * model.MIB,
        memory_limit=limits["memory"], gpus=sum(n for _, n in gpu_resources),
        gpu_resources=gpu_resources if any(name != "nvidia.com/gpu" for name, _ in gpu_resources) else (),
        accelerator=accel, ready=lifecycle.conditions(pod).get("Ready", {}).get("status") == "True",
        started=lifecycle.parse_time(status.get("startTime")),
        oom_after=oom_after(meta),
        server=inference.recognise(pod),
        container_started=lifecycle.parse_time(
            next((c["state"]["running"].get("startedAt") for c in status.get("containerStatuses") or []
                  if (c.get("state") or {}).get("running")), None)),
    )


def oom_after(meta: Mapping[str, Any]) -> float | None:
    """Seconds an OOMKill Scenario gives this pod's memory to reach its limit (None: no such Scenario)."""
    if (meta.get("labels") or {}).get(scenarios.FAULT_LABEL) != "OOMKill":
        return None
    try:
        return max(1.0, scenarios.parse_duration((meta.get("annotations") or {}).get(scenarios.AFTER_ANNOTATION)))
    except scenarios.ScenarioError:
        return scenarios.PARAMETERS["OOMKill"]["after"][0]


def workload_replicas(workloads: Iterable[Mapping[str, Any]]) -> dict[str, tuple[int, int]]:
    """namespace/name → (desired, available) of Deployments and StatefulSets."""
    found = {}
    for obj in workloads:
        meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
        desired = spec.get("replicas")
        found[f"{meta.get('namespace', '')}/{meta['name']}"] = (
            1 if desired is None else int(desired), int(status.get("availableReplicas") or 0))
    return found


def service_labels(pods: Iterable[Mapping[str, Any]], memo: Memo | None = None
                   ) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    """Labels and annotations per service key, for profile selection."""
    found: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
    for pod in pods:
        meta = pod["metadata"]
        key = lifecycle.service_of(pod) if memo is None else memo.get(meta["uid"], (meta.get("resourceVersion"),),
                                                            functools.partial(lifecycle.service_of, pod))
        if key not in found:
            found[key] = (dict(meta.get("labels") or {}), dict(meta.get("annotations") or {}))
    return found
