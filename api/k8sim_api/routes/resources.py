"""GET /k8s/resources, every object's recorded lifecycle, and the three delete forms of the contract."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, HTTPException, Path, Query

from k8sim import explain, inventory, lifecycle, store
from k8sim.kube import Kube, KubeError, UnknownKind
from k8sim_api.deps import KubeDep, MaybePoolDep, PoolDep, SettingsDep
from k8sim_api.schemas import (
    KIND,
    NAMESPACE,
    OBJECT_NAME,
    TENANT_ID,
    DateTime,
    Deleted,
    ErrorResponse,
    History,
    ResourceList,
    TenantDeleted,
)

router = APIRouter(prefix="/k8s/resources", tags=["resources"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse},
    403: {"model": ErrorResponse, "description": "The cluster refuses (e.g. the default namespace)"},
    409: {"model": ErrorResponse, "description": "The cluster reports a conflict"}}


async def latest_deployment(pool: asyncpg.Pool | None, tenant: str) -> Any:
    if pool is None:
        return None
    try:
        async with pool.acquire() as conn:
            return await store.latest_deployment(conn, tenant)
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError):
        return None  # the listing still answers from the cluster


async def deployed_objects(pool: asyncpg.Pool | None, kube: Kube, tenant: str) -> list[dict[str, Any]]:
    """Objects the tenant's deploys created that still exist, whatever their kind or labels."""
    if pool is None:
        return []
    try:
        async with pool.acquire() as conn:
            rows = await store.deployment_objects(conn, tenant)
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError):
        return []  # the cluster's labels still find most of them

    async def one(row: Any) -> dict[str, Any] | None:
        try:
            return await kube.get(row["api_version"], row["kind"], row["name"], row["namespace"] or None)
        except KubeError:
            return None
    found = await asyncio.gather(*(one(r) for r in rows))
    return [o for o in found if o]


@router.get("", response_model=ResourceList,
            responses={404: {"model": ErrorResponse, "description": "Unknown kind"}},
            summary="Resources by namespace, kind and tenant, with the tenant's overall status")
async def list_resources(
    kube: KubeDep, pool: MaybePoolDep,
    namespace: Annotated[str | None, Query(**NAMESPACE)] = None,
    kind: Annotated[str | None, Query(**KIND)] = None,
    tenant_id: Annotated[str | None, Query(**TENANT_ID)] = None,
) -> dict[str, Any]:
    kinds = inventory.DEFAULT_KINDS
    if kind:
        try:
            info = await inventory.resolve_kind(kube, kind)
        except UnknownKind:
            raise HTTPException(404, f'unknown kind "{kind}"') from None
        kinds = [(info.api_version, info.kind)]
    found = await inventory.find(kube, tenant=tenant_id, namespace=namespace, kinds=kinds)
    if tenant_id:  # and whatever else its deploys created, of any kind (a ClusterRole, a CRD …)
        known = {o["metadata"]["uid"] for o in found}
        wanted = None if kind else set(kinds)
        found += [o for o in await deployed_objects(pool, kube, tenant_id)
                  if o["metadata"]["uid"] not in known and (wanted is None or (o["apiVersion"], o["kind"]) in wanted)
                  and (not namespace or o["metadata"].get("namespace") == namespace
                       or (o["kind"] == "Namespace" and o["metadata"]["name"] == namespace))]
    items = await inventory.describe_all(found, explain.Explainer(kube))
    body: dict[str, Any] = {"resources": items, "count": len(items), "tenant_id": tenant_id}
    record = await latest_deployment(pool, tenant_id) if tenant_id else None
    if record is not None:
        body["deployment_id"] = str(record["id"])
        body["status"] = record["status"]
        if record["message"]:
            body["message"] = record["message"]
    elif not items:
        body["status"] = "not_found"
    else:
        body["status"] = "completed" if all(i["ready"] for i in items) else "deploying"
    return body


@router.get("/history", response_model=History,
            responses={503: {"model": ErrorResponse, "description": "PostgreSQL unavailable"}},
            summary="The lifecycle the operator recorded: every object's steps, oldest first")
async def history(
    pool: PoolDep, kube: KubeDep,
    tenant_id: Annotated[str | None, Query(**TENANT_ID)] = None,
    namespace: Annotated[str | None, Query(**NAMESPACE)] = None,
    kind: Annotated[str | None, Query(**KIND)] = None,
    name: Annotated[str | None, Query(**OBJECT_NAME)] = None,
    uid: Annotated[str | None, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")] = None,
    transition: Annotated[str | None, Query(min_length=1, max_length=40, pattern=r"^[a-z_]+$",
                                            examples=["running"])] = None,
    since: Annotated[DateTime | None, Query(description="Steps that happened at or after (ISO 8601)")] = None,
    after_id: Annotated[int, Query(ge=0, le=2**63 - 1, description="Steps recorded after this id")] = 0,
    limit: Annotated[int, Query(gt=0, le=5000)] = 500,
) -> dict[str, Any]:
    if kind:  # as users type it (pods, deploy); a kind the cluster no longer serves is matched as given
        try:
            kind = (await inventory.resolve_kind(kube, kind)).kind
        except UnknownKind:
            pass
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    async with pool.acquire() as conn:
        rows = await store.history(conn, tenant=tenant_id, namespace=namespace, kind=kind, name=name, uid=uid,
                                   transition=transition, since=since, after_id=after_id, limit=limit)
    steps = [{"id": r["id"], "uid": r["uid"], "api_version": r["api_version"], "kind": r["kind"],
              "namespace": r["namespace"], "name": r["name"], "tenant_id": r["tenant"],
              "transition": r["transition"], "detail": r["detail"], "resource_version": r["resource_version"],
              "occurred_at": r["occurred_at"].isoformat(), "observed_at": r["observed_at"].isoformat(),
              "reconciled": r["reconciled"]} for r in rows]
    return {"steps": steps, "count": len(steps), "next_after_id": steps[-1]["id"] if len(steps) == limit else None}


async def delete_one(kube: Kube, namespace: str | None, kind: str, name: str) -> dict[str, Any]:
    try:
        info = await inventory.resolve_kind(kube, kind)
    except UnknownKind:
        raise HTTPException(404, f'unknown kind "{kind}"') from None
    ns = (namespace or "default") if info.namespaced else None
    if ns is not None and not re.fullmatch(NAMESPACE["pattern"], ns):
        raise HTTPException(404, f'{info.kind} "{name}" not found: "{ns}" is not a namespace name')
    if (info.api_version, info.kind) == ("v1", "Namespace") and name in lifecycle.SYSTEM_NAMESPACES:
        raise HTTPException(403, f'namespace "{name}" belongs to the cluster and cannot be deleted')
    if not await kube.delete(info.api_version, info.kind, name, ns):
        raise HTTPException(404, f'{info.kind} "{name}" not found' + (f' in namespace "{ns}"' if ns else ""))
    return {"status": "success", "message": f"{info.kind} {name} deleted",
            "id": f"{ns or ''}/{info.kind}/{name}"}


@router.delete("/tenant/{tenant_id}", response_model=TenantDeleted, responses=NOT_FOUND,
               summary="Delete everything of a tenant, its namespaces last")
async def delete_tenant(tenant_id: Annotated[str, Path(**TENANT_ID)], kube: KubeDep, pool: MaybePoolDep,
                        settings: SettingsDep) -> dict[str, Any]:
    kinds = list(inventory.DEFAULT_KINDS)
    targets = {o["metadata"]["uid"]: o for o in await inventory.find(kube, tenant=tenant_id, kinds=kinds)}
    for obj in await deployed_objects(pool, kube, tenant_id):
        targets.setdefault(obj["metadata"]["uid"], obj)
    # A system namespace labelled for a tenant (or declared by its deploy before that was refused)
    # stays: deleting it would stop the cluster, not the tenant. What the tenant put in it still goes.
    system = [uid for uid, o in targets.items()
              if o["kind"] == "Namespace" and o["metadata"]["name"] in lifecycle.SYSTEM_NAMESPACES]
    kept_names = sorted(targets.pop(uid)["metadata"]["name"] for uid in system)
    if not targets:
        raise HTTPException(404, f'tenant "{tenant_id}" has no resources'
                                 + (f" but the cluster's namespaces {', '.join(kept_names)}" if kept_names else ""))
    namespaces = [o for o in targets.values() if o["kind"] == "Namespace"]
    others = [o for o in targets.values() if o["kind"] != "Namespace"]

    async def remove(obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        await kube.delete(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))

    await asyncio.gather(*(remove(o) for o in others))
    await asyncio.gather(*(remove(o) for o in namespaces))
    # Wait (bounded) until they are really gone, so a redeploy right after starts clean.
    deadline = time.monotonic() + settings.deploy_timeout
    remaining = list(targets.values())
    while remaining and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
        still = await asyncio.gather(*(kube.get(o["apiVersion"], o["kind"], o["metadata"]["name"],
                                                o["metadata"].get("namespace")) for o in remaining))
        remaining = [o for o, s in zip(remaining, still, strict=True) if s is not None]
    body: dict[str, Any] = {
        "status": "success", "tenant_id": tenant_id, "deleted_count": len(targets) - len(remaining),
        "pending_count": len(remaining), "resources": sorted(inventory.describe(o)["id"] for o in targets.values())}
    notes = []
    if remaining:
        pending = [await still_pending(kube, o) for o in remaining]
        body["pending"] = pending
        notes += [f"{p['id']}: {p['reason']}" for p in pending if p.get("reason")]
    if kept_names:
        notes.append(f"kept the cluster's namespaces {', '.join(kept_names)} (labelled for this tenant)")
    if notes:
        body["message"] = "; ".join(notes)
    return body


async def still_pending(kube: Kube, obj: dict[str, Any]) -> dict[str, Any]:
    """An object a delete left behind, with why: a Terminating namespace's conditions (for example
    NamespaceDeletionDiscoveryFailure while an aggregated API is unavailable), else its finalizers."""
    meta = obj["metadata"]
    current = await kube.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace")) or obj
    item: dict[str, Any] = {"id": inventory.describe(current)["id"]}
    troubles = [f"{c.get('type')}: {c.get('message', '')}".strip()
                for c in (current.get("status") or {}).get("conditions") or [] if c.get("status") == "True"]
    finalizers = (current.get("metadata") or {}).get("finalizers") or (current.get("spec") or {}).get("finalizers")
    if troubles:
        item["reason"] = "; ".join(troubles)
    elif finalizers:
        item["reason"] = f"waiting for finalizers: {', '.join(finalizers)}"
    return item


@router.delete("/{namespace}/{kind}/{name}", response_model=Deleted, responses=NOT_FOUND,
               summary="Delete one object (ECP-AI's form)",
               description="The namespace segment is ignored for cluster-scoped kinds (ECP-AI sends `-` or the "
                           "item's empty namespace: `/k8s/resources//Namespace/ecp-ai-t1`).")
async def delete_by_path(namespace: Annotated[str, Path(max_length=253, pattern=r"^[^\x00-\x1f\x7f]+$")],
                         kind: Annotated[str, Path(**KIND)], name: Annotated[str, Path(**OBJECT_NAME)],
                         kube: KubeDep) -> dict[str, Any]:
    return await delete_one(kube, namespace, kind, name)


@router.delete("//{kind}/{name}", response_model=Deleted, responses=NOT_FOUND, include_in_schema=False)
async def delete_cluster_scoped(kind: Annotated[str, Path(**KIND)], name: Annotated[str, Path(**OBJECT_NAME)],
                                kube: KubeDep) -> dict[str, Any]:
    """ECP-AI's form with the empty namespace it lists cluster-scoped objects with."""
    return await delete_one(kube, "", kind, name)


@router.delete("/{resource_name}", response_model=Deleted, responses=NOT_FOUND,
               summary="Delete one object (the guide's form)")
async def delete_by_query(resource_name: Annotated[str, Path(**OBJECT_NAME)], kube: KubeDep,
                          namespace: Annotated[str, Query(**NAMESPACE)] = "default",
                          kind: Annotated[str, Query(**KIND)] = "Pod") -> dict[str, Any]:
    return await delete_one(kube, namespace, kind, resource_name)
