"""What exists in the cluster for a tenant, a namespace or a kind, as the API reports it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from k8sim import explain, lifecycle
from k8sim.kube import Kube, KubeError, ResourceInfo, UnknownKind
from k8sim.lifecycle import TENANT_LABELS

#: Kinds listed when no kind is asked for: what manifests create and users look at.
DEFAULT_KINDS = [
    ("v1", "Namespace"), ("v1", "Pod"), ("v1", "Service"), ("v1", "ConfigMap"), ("v1", "Secret"),
    ("v1", "PersistentVolumeClaim"), ("v1", "ServiceAccount"), ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"), ("apps/v1", "DaemonSet"), ("batch/v1", "Job"), ("batch/v1", "CronJob"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"), ("networking.k8s.io/v1", "Ingress"),
    ("networking.k8s.io/v1", "NetworkPolicy"), ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("autoscaling.k8s.io/v1", "VerticalPodAutoscaler"), ("policy/v1", "PodDisruptionBudget"),
    ("rbac.authorization.k8s.io/v1", "Role"), ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"), ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
]


async def resolve_kind(kube: Kube, name: str) -> ResourceInfo:
    """A kind from what users type: Pod, pod, pods, deploy … (core and apps win ties)."""
    wanted = name.lower()
    matches = [info for info in (await kube.discover()).values()
               if wanted in (info.kind.lower(), info.plural, info.plural.rstrip("s")) or wanted in info.short_names]
    if not matches:
        raise UnknownKind("", name)
    preference = ["v1", "apps/v1", "batch/v1", "autoscaling/v2", "networking.k8s.io/v1"]
    matches.sort(key=lambda i: preference.index(i.api_version) if i.api_version in preference else 99)
    return matches[0]


async def find(kube: Kube, *, tenant: str | None = None, namespace: str | None = None,
               kinds: Iterable[tuple[str, str]] = DEFAULT_KINDS) -> list[dict[str, Any]]:
    """Objects of these kinds, filtered by tenant label and namespace (any combination)."""
    served = await kube.discover()
    selectors = [f"{key}={tenant}" for key in TENANT_LABELS] if tenant else [None]

    async def one(api_version: str, kind: str, selector: str | None) -> list[dict[str, Any]]:
        info = served.get((api_version, kind))
        if info is None or "list" not in info.verbs:
            return []
        if namespace and not info.namespaced:
            if kind != "Namespace":
                return []
            obj = await kube.get(api_version, kind, namespace)
            return [obj] if obj and (not tenant or lifecycle.tenant_of(obj) == tenant) else []
        try:
            return await kube.list(api_version, kind, namespace if info.namespaced else None,
                                   label_selector=selector)
        except KubeError:
            return []

    batches = await asyncio.gather(*(one(av, k, sel) for av, k in dict.fromkeys(kinds) for sel in selectors))
    seen: dict[str, dict[str, Any]] = {}
    for batch in batches:
        for obj in batch:
            seen.setdefault(obj["metadata"]["uid"], obj)
    return sorted(seen.values(), key=lambda o: (o["metadata"].get("namespace") or "", o["kind"],
                                                o["metadata"]["name"]))


async def describe_all(objs: Iterable[Mapping[str, Any]], explainer: explain.Explainer) -> list[dict[str, Any]]:
    """Objects in the contract's shape; those not ready say why (events, pending pods)."""
    items = []
    for obj in objs:
        item = describe(obj)
        if not item["ready"]:
            item["reason"] = await explainer.reason(obj) or item.get("reason")
        items.append(item)
    return items


def describe(obj: Mapping[str, Any]) -> dict[str, Any]:
    """One object in the contract's resource shape."""
    meta = obj.get("metadata") or {}
    state = lifecycle.summarise(obj)
    item: dict[str, Any] = {
        "id": f"{meta.get('namespace') or ''}/{obj.get('kind')}/{meta.get('name')}",
        "name": meta.get("name"), "namespace": meta.get("namespace") or "", "kind": obj.get("kind"),
        "api_version": obj.get("apiVersion"), "status": state.phase or "Active",
        "ready": state.ready if state.ready is not None else True,
        "created_at": meta.get("creationTimestamp"), "tenant_id": lifecycle.tenant_of(obj),
    }
    if state.node:
        item["node"] = state.node
    if state.replicas is not None:
        item["replicas"] = {"desired": state.replicas, "ready": state.ready_replicas}
    if state.reason:
        item["reason"] = state.reason
    return item
