"""Deploying a manifest for real: dry-run validation, ordered server-side apply, readiness.

The API's deploy endpoint is a thin shell around :class:`Deployer`; the steps are:
validate every document with ``dryRun=All`` (nothing is applied if any fails), apply
Namespaces and CRDs first (waiting for CRDs to be established), then the rest in
dependency order, then wait until each object is ready in its kind's sense.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import yaml

from k8sim import explain, lifecycle, store
from k8sim.kube import Kube, KubeError, UnknownKind
from k8sim.manifests import Document, Problem

log = logging.getLogger(__name__)

#: Kinds ready as soon as they exist (no status that a controller would fill in here).
READY_WHEN_EXISTS = {"Ingress", "CronJob", "ConfigMap", "Secret", "ServiceAccount", "NetworkPolicy",
                     "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "LimitRange",
                     "ResourceQuota", "PodDisruptionBudget", "StorageClass", "PriorityClass", "Endpoints"}

#: Removed API versions people still find in manifests, with the version that replaced them.
REMOVED = {
    ("extensions/v1beta1", "Deployment"): "apps/v1 (removed in 1.16)",
    ("extensions/v1beta1", "DaemonSet"): "apps/v1 (removed in 1.16)",
    ("extensions/v1beta1", "ReplicaSet"): "apps/v1 (removed in 1.16)",
    ("extensions/v1beta1", "Ingress"): "networking.k8s.io/v1 (removed in 1.22)",
    ("extensions/v1beta1", "NetworkPolicy"): "networking.k8s.io/v1 (removed in 1.16)",
    ("extensions/v1beta1", "PodSecurityPolicy"): "nothing: PodSecurityPolicy was removed in 1.25",
    ("policy/v1beta1", "PodSecurityPolicy"): "nothing: PodSecurityPolicy was removed in 1.25",
    ("apps/v1beta1", "Deployment"): "apps/v1 (removed in 1.16)",
    ("apps/v1beta2", "Deployment"): "apps/v1 (removed in 1.16)",
    ("apps/v1beta1", "StatefulSet"): "apps/v1 (removed in 1.16)",
    ("apps/v1beta2", "StatefulSet"): "apps/v1 (removed in 1.16)",
    ("batch/v1beta1", "CronJob"): "batch/v1 (removed in 1.25)",
    ("policy/v1beta1", "PodDisruptionBudget"): "policy/v1 (removed in 1.25)",
    ("autoscaling/v2beta1", "HorizontalPodAutoscaler"): "autoscaling/v2 (removed in 1.25)",
    ("autoscaling/v2beta2", "HorizontalPodAutoscaler"): "autoscaling/v2 (removed in 1.26)",
    ("networking.k8s.io/v1beta1", "Ingress"): "networking.k8s.io/v1 (removed in 1.22)",
    ("rbac.authorization.k8s.io/v1beta1", "ClusterRole"): "rbac.authorization.k8s.io/v1 (removed in 1.22)",
    ("rbac.authorization.k8s.io/v1beta1", "ClusterRoleBinding"): "rbac.authorization.k8s.io/v1 (removed in 1.22)",
    ("rbac.authorization.k8s.io/v1beta1", "Role"): "rbac.authorization.k8s.io/v1 (removed in 1.22)",
    ("rbac.authorization.k8s.io/v1beta1", "RoleBinding"): "rbac.authorization.k8s.io/v1 (removed in 1.22)",
    ("apiextensions.k8s.io/v1beta1", "CustomResourceDefinition"): "apiextensions.k8s.io/v1 (removed in 1.22)",
}


class Announcer(Protocol):
    """Where deploy progress goes (the API relays it to its tenant's WebSockets)."""

    async def __call__(self, event: dict[str, Any]) -> None: ...


@dataclasses.dataclass
class Result:
    """What happened to one resource of a deploy."""

    api_version: str
    kind: str
    namespace: str
    name: str
    status: str = "Pending"
    ready: bool = False
    reason: str | None = None
    created_at: str | None = None
    deployment_time: float | None = None
    failed: bool = False

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.kind}/{self.name}"

    def as_dict(self) -> dict[str, Any]:
        data = {"id": self.id, "name": self.name, "namespace": self.namespace, "kind": self.kind,
                "api_version": self.api_version, "status": self.status, "ready": self.ready,
                "created_at": self.created_at, "deployment_time": self.deployment_time}
        if self.reason:
            data["reason"] = self.reason
        return data


def load_crds(folder: Path) -> list[dict[str, Any]]:
    return [d for f in sorted(folder.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]


async def ensure_crds(kube: Kube, folder: Path, timeout: float = 30.0) -> None:
    """Install the CRDs we ship (ServiceMonitor, VPA, …) and wait until they are served."""
    crds = load_crds(folder)
    for crd in crds:
        await kube.apply(crd)
    await wait_established(kube, [c["metadata"]["name"] for c in crds], timeout)


async def wait_established(kube: Kube, names: Iterable[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            crd = await kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
            if crd and lifecycle.summarise(crd).ready:
                break
            if time.monotonic() > deadline:
                raise KubeError(504, "Timeout", f"CRD {name} not established after {timeout:.0f} s")
            await asyncio.sleep(0.2)
    await kube.discover(refresh=True)


def kubeerror_problems(doc: Document, exc: KubeError) -> list[Problem]:
    """One problem per field the apiserver names, else one with its whole message."""
    causes = [c for c in exc.causes if c.get("message")]
    if not causes:
        # Server-side apply's schema errors name the field only inside the message.
        typed = re.search(r"\): \.([\w.\[\]-]+): ", exc.message)
        return [doc.problem(exc.message, typed[1] if typed else None)]
    return [doc.problem(f"{c.get('reason', 'Invalid')}: {c['message']}", c.get("field")) for c in causes]


async def _namespace_state(kube: Kube, name: str) -> str | None:
    """'Active', 'Terminating' or None (absent)."""
    ns = await kube.get("v1", "Namespace", name)
    if ns is None:
        return None
    return str((ns.get("status") or {}).get("phase", "Active"))


async def validate(kube: Kube, documents: list[Document]) -> tuple[list[Problem], list[str]]:
    """Server-side dry run of every document; returns (problems, notes)."""
    declared_ns = {d.name for d in documents if d.kind == "Namespace"}
    declared_crds = {
        (f"{d.obj.get('spec', {}).get('group')}", (d.obj.get("spec", {}).get("names") or {}).get("kind"))
        for d in documents if d.kind == "CustomResourceDefinition" and isinstance(d.obj.get("spec"), dict)
    }
    problems: list[Problem] = []
    notes: list[str] = []
    ns_cache: dict[str, str | None] = {}
    sem = asyncio.Semaphore(16)

    async def one(doc: Document) -> None:
        if doc.kind == "Namespace" and doc.name in lifecycle.SYSTEM_NAMESPACES and lifecycle.tenant_of(doc.obj):
            # The tenant would own it: its delete would take the namespace the cluster runs in.
            problems.append(doc.problem(f'namespace "{doc.name}" belongs to the cluster; a tenant\'s manifest may '
                                        "put objects in it but not declare it", "metadata.name"))
            return
        try:
            info = await kube.resource(doc.api_version, doc.kind)
        except UnknownKind:
            group = doc.api_version.rpartition("/")[0]
            if (group, doc.kind) in declared_crds:
                notes.append(f"{doc.kind}/{doc.name}: validated after its CRD is established")
                return
            problems.append(doc.problem(await unknown_kind_reason(kube, doc.api_version, doc.kind), "kind"))
            return
        obj = doc.obj
        ns = doc.namespace if info.namespaced else None
        if ns:
            if ns not in ns_cache:
                ns_cache[ns] = await _namespace_state(kube, ns)
            if ns_cache[ns] is None or ns_cache[ns] == "Terminating":
                if ns in declared_ns:
                    # Same checks, in a namespace that exists: only namespace-scoped admission differs.
                    obj = {**obj, "metadata": {**obj["metadata"], "namespace": "default"}}
                else:
                    problems.append(doc.problem(
                        f'namespace "{ns}" not found and not part of the manifest (add a Namespace to it, '
                        'or deploy with "create_namespace": true)', "metadata.namespace"))
                    return
        try:
            async with sem:
                await kube.apply(obj, dry_run=True)
        except UnknownKind as exc:
            problems.append(doc.problem(exc.message, "kind"))
        except KubeError as exc:
            if exc.status in (503, 500) and exc.reason in ("Unavailable", "InternalError"):
                raise
            problems.extend(kubeerror_problems(doc, exc))

    await asyncio.gather(*(one(d) for d in documents))
    problems.sort(key=lambda p: p.index or 0)
    return problems, notes


async def unknown_kind_reason(kube: Kube, api_version: str, kind: str) -> str:
    if (api_version, kind) in REMOVED:
        return f"{kind} in {api_version} is no longer served by Kubernetes 1.36; use {REMOVED[(api_version, kind)]}"
    served = sorted(av for (av, k) in await kube.discover() if k == kind)
    if served:
        return f"{kind} is not served as {api_version}; this cluster serves it as {', '.join(served)}"
    return f'unknown kind "{kind}" ({api_version}): no such API in the cluster and no CRD for it in the manifest'


# --------------------------------------------------------------------------- apply


async def apply_all(kube: Kube, documents: list[Document], results: list[Result],
                    timeout: float) -> None:
    """Apply in the given (dependency) order; CRDs are waited for before anything after them."""
    pending_crds: list[str] = []
    for doc, result in zip(documents, results, strict=True):
        if pending_crds and doc.kind != "CustomResourceDefinition":
            await wait_established(kube, pending_crds, timeout)
            pending_crds = []
        if doc.kind == "Namespace":
            await _wait_namespace_gone_if_terminating(kube, doc.name, timeout)
        try:
            applied = await kube.apply(doc.obj)
        except KubeError as exc:
            if exc.status in (503,) and exc.reason == "Unavailable":
                raise
            result.failed, result.status, result.reason = True, "Failed", exc.message
            continue
        result.created_at = (applied.get("metadata") or {}).get("creationTimestamp")
        result.status = "Created"
        if doc.kind == "CustomResourceDefinition":
            pending_crds.append(doc.name)
    if pending_crds:
        await wait_established(kube, pending_crds, timeout)


async def _wait_namespace_gone_if_terminating(kube: Kube, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while await _namespace_state(kube, name) == "Terminating":
        if time.monotonic() > deadline:
            raise KubeError(409, "Conflict", f'namespace "{name}" is still terminating')
        await asyncio.sleep(0.3)


async def readiness(kube: Kube, result: Result, explainer: explain.Explainer | None = None
                    ) -> tuple[bool, str, str | None]:
    """(ready, status, reason) of one deployed object right now; with an explainer, the reason
    of any object that is not ready is what the cluster says (its events, its pods' state)."""
    obj = await kube.get(result.api_version, result.kind, result.name, result.namespace or None)
    if obj is None:
        return False, "Missing", "the object no longer exists"
    ready, status, reason = await _readiness(kube, result, obj)
    if not ready and explainer is not None:
        reason = await explainer.reason(obj) or reason
    return ready, status, reason


async def _readiness(kube: Kube, result: Result, obj: Mapping[str, Any]) -> tuple[bool, str, str | None]:
    if result.kind in READY_WHEN_EXISTS:
        return True, "Created", None
    state = lifecycle.summarise(obj)
    if result.kind == "PersistentVolumeClaim" and not state.ready:
        if await _waits_for_consumer(kube, obj):
            return True, "WaitForFirstConsumer", None
    if result.kind == "Pod":
        return bool(state.ready), state.phase or "Pending", state.reason
    if state.ready is None:
        return True, state.phase or "Created", None
    return bool(state.ready), state.phase or "Pending", state.reason


async def _waits_for_consumer(kube: Kube, pvc: Mapping[str, Any]) -> bool:
    """A claim in a WaitForFirstConsumer class that no pod uses binds only when one does."""
    cls_name = (pvc.get("spec") or {}).get("storageClassName")
    if not cls_name:
        return False
    storage_class = await kube.get("storage.k8s.io/v1", "StorageClass", cls_name)
    if not storage_class or storage_class.get("volumeBindingMode") != "WaitForFirstConsumer":
        return False
    ns, name = pvc["metadata"]["namespace"], pvc["metadata"]["name"]
    for pod in await kube.list("v1", "Pod", ns):
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            if (volume.get("persistentVolumeClaim") or {}).get("claimName") == name:
                return False
    return True


async def wait_ready(kube: Kube, results: list[Result], *, started: float, timeout: float,
                     on_progress: Callable[[], Awaitable[None]] | None = None, interval: float = 0.25,
                     explain_every: float = 2.0) -> None:
    """Poll every applied resource until ready or the deadline; marks failures with a reason.

    Reasons from events and pods cost a few list calls, so they are read every
    ``explain_every`` seconds and on the last poll, not on every one."""
    deadline = started + timeout
    waiting = [r for r in results if not r.failed]
    explained = started
    while waiting:
        last = time.monotonic() >= deadline
        explainer = None
        if last or time.monotonic() - explained >= explain_every:
            explainer, explained = explain.Explainer(kube), time.monotonic()
        states = await asyncio.gather(*(readiness(kube, r, explainer) for r in waiting), return_exceptions=True)
        changed = False
        still = []
        for result, state in zip(waiting, states, strict=True):
            if isinstance(state, BaseException):
                if isinstance(state, KubeError) and state.reason == "Unavailable":
                    raise state
                still.append(result)
                continue
            ready, status, reason = state
            if explainer is None and not ready and result.reason:
                reason = result.reason  # keep the last explanation until the next read
            if status != result.status or reason != result.reason:
                changed = True
            result.status, result.reason = status, reason
            if ready:
                result.ready = True
                result.deployment_time = round(time.monotonic() - started, 3)
            elif status == "Failed":
                result.failed = True
            else:
                still.append(result)
        waiting = still
        if changed and on_progress:
            await on_progress()
        if not waiting:
            return
        if last:
            for result in waiting:
                result.failed = True
                result.reason = (f"not ready after {timeout:.0f} s (status {result.status}"
                                 + (f": {result.reason})" if result.reason else ")"))
            return
        await asyncio.sleep(interval)


# --------------------------------------------------------------------------- orchestration


@dataclasses.dataclass
class Outcome:
    """A deploy's record as the API reports it."""

    deployment_id: str
    status: str  # pending | deploying | completed | failed
    results: list[Result]
    elapsed: float | None = None
    message: str | None = None

    @property
    def failed_count(self) -> int:
        return sum(1 for r in self.results if r.failed)

    @property
    def deployed_count(self) -> int:
        return sum(1 for r in self.results if r.ready)

    def as_response(self, tenant: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": self.status, "deployed_count": self.deployed_count, "failed_count": self.failed_count,
            "tenant_id": tenant, "deployment_id": self.deployment_id, "deployment_time": self.elapsed,
            "resources": [r.as_dict() for r in self.results]}
        if self.message:
            body["message"] = self.message
        return body


class Deployer:
    """Runs one deploy: record it, apply, wait, record the outcome (store is asyncpg)."""

    def __init__(self, kube: Kube, pool: asyncpg.Pool, *, timeout: float, tenant: str | None = None,
                 announce: Announcer | None = None):
        self.kube, self.pool, self.timeout, self.tenant = kube, pool, timeout, tenant
        self.announce = announce  # called with every progress event (the API relays them to WebSockets)

    async def begin(self, documents: list[Document], *, tenant: str | None, namespace: str | None,
                    mode: str | None, manifest_text: str) -> Outcome:
        results = [Result(d.api_version, d.kind, d.namespace or "", d.name) for d in documents]
        async with self.pool.acquire() as conn:
            deployment_id = await store.create_deployment(
                conn, tenant=tenant, namespace=namespace, mode=mode, manifest=manifest_text,
                objects=[(r.api_version, r.kind, r.namespace, r.name) for r in results])
        return Outcome(str(deployment_id), "pending", results)

    async def _save(self, outcome: Outcome, status: str) -> None:
        outcome.status = status
        async with self.pool.acquire() as conn:
            await store.update_deployment(
                conn, uuid.UUID(outcome.deployment_id), status=status,
                resources=[r.as_dict() for r in outcome.results], deployed_count=outcome.deployed_count,
                failed_count=outcome.failed_count, message=outcome.message)
        if self.announce is not None:
            stamp = lifecycle.now().strftime("%Y-%m-%dT%H:%M:%SZ")
            await self.announce({"type": "deployment_progress", "timestamp": stamp,
                                 **outcome.as_response(self.tenant)})

    async def run(self, outcome: Outcome, documents: list[Document]) -> Outcome:
        started = time.monotonic()
        await self._save(outcome, "deploying")
        try:
            await apply_all(self.kube, documents, outcome.results, self.timeout)
            await wait_ready(self.kube, outcome.results, started=started, timeout=self.timeout,
                             on_progress=lambda: self._save(outcome, "deploying"))
        except KubeError as exc:
            outcome.message = exc.message
            for result in outcome.results:
                if not result.ready:
                    result.failed, result.reason = True, result.reason or exc.message
        except asyncio.CancelledError:
            outcome.message = "deploy interrupted (the API stopped)"
            for result in outcome.results:
                if not result.ready:
                    result.failed, result.reason = True, outcome.message
            await asyncio.shield(self._save(outcome, "failed"))
            raise
        outcome.elapsed = round(time.monotonic() - started, 3)
        if outcome.failed_count:
            outcome.message = outcome.message or f"{outcome.failed_count} of {len(outcome.results)} resources failed"
        await self._save(outcome, "failed" if outcome.failed_count else "completed")
        return outcome

