"""GET /k8s/resources, every object's recorded lifecycle, and the three delete forms of the contract."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Set as AbstractSet
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, HTTPException, Path, Query

from k8sim import explain, inventory, lifecycle, removal, rows, store
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
    HistoryStep,
    ResourceItem,
    ResourceList,
    TenantDeleted,
)

router = APIRouter(prefix="/k8s/resources", tags=["resources"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse},
    403: {"model": ErrorResponse, "description": "The cluster refuses (e.g. the default namespace)"},
    409: {"model": ErrorResponse, "description": "The cluster reports a conflict"}}


async def latest_deployment(pool: asyncpg.Pool | None, tenant: str) -> rows.Deployment | None:
    if pool is None:
        return None
    try:
        async with pool.acquire() as conn:
            return await store.latest_deployment(conn, tenant)
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError):
        return None  # the listing still answers from the cluster


def keys(objs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(o["kind"], o["metadata"].get("namespace") or "", o["metadata"]["name"]) for o in objs}


async def deployed_objects(pool: asyncpg.Pool | None, kube: Kube, tenant: str,
                           known: AbstractSet[tuple[str, str, str]] = frozenset()) -> list[dict[str, Any]]:
    """Objects the tenant's deploys created that still exist, whatever their kind or labels; those
    ``known`` (kind, namespace, name) already are not read again (a deploy labels what it applies, so
    the labels usually found them all)."""
    if pool is None:
        return []
    try:
        async with pool.acquire() as conn:
            refs = await store.deployment_objects(conn, tenant)
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError):
        return []  # the cluster's labels still find most of them

    async def one(row: rows.ObjectRef) -> dict[str, Any] | None:
        try:
            return await kube.get(row.api_version, row.kind, row.name, row.namespace or None)
        except KubeError:
            return None
    found = await asyncio.gather(*(one(r) for r in refs if (r.kind, r.namespace, r.name) not in known))
    return [o for o in found if o]


@router.get("", response_model=ResourceList,
            responses={404: {"model": ErrorResponse, "description": "Unknown kind"}},
            summary="Resources by namespace, kind and tenant, with the tenant's overall status")
async def list_resources(
    kube: KubeDep, pool: MaybePoolDep,
    namespace: Annotated[str | None, Query(**NAMESPACE)] = None,
    kind: Annotated[str | None, Query(**KIND)] = None,
    tenant_id: Annotated[str | None, Query(**TENANT_ID)] = None,
) -> ResourceList:
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
        found += [o for o in await deployed_objects(pool, kube, tenant_id, keys(found))
                  if o["metadata"]["uid"] not in known and (wanted is None or (o["apiVersion"], o["kind"]) in wanted)
                  and (not namespace or o["metadata"].get("namespace") == namespace
                       or (o["kind"] == "Namespace" and o["metadata"]["name"] == namespace))]
    items = [ResourceItem.model_validate(i) for i in await inventory.describe_all(found, explain.Explainer(kube))]
    record = await latest_deployment(pool, tenant_id) if tenant_id else None
    if record is not None:
        return ResourceList(resources=items, count=len(items), tenant_id=tenant_id, status=record.status,
                            deployment_id=str(record.id), message=record.message or None)
    status = "not_found" if not items else "completed" if all(i.ready for i in items) else "deploying"
    return ResourceList(resources=items, count=len(items), tenant_id=tenant_id, status=status)


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
) -> History:
    if kind:  # as users type it (pods, deploy); a kind the cluster no longer serves is matched as given
        try:
            kind = (await inventory.resolve_kind(kube, kind)).kind
        except UnknownKind:
            pass
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    async with pool.acquire() as conn:
        found = await store.history(conn, tenant=tenant_id, namespace=namespace, kind=kind, name=name, uid=uid,
                                    transition=transition, since=since, after_id=after_id, limit=limit)
    steps = [HistoryStep.of(r) for r in found]
    return History(steps=steps, count=len(steps), next_after_id=steps[-1].id if len(steps) == limit else None)


async def delete_one(kube: Kube, namespace: str | None, kind: str, name: str) -> Deleted:
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
    return Deleted(status="success", message=f"{info.kind} {name} deleted", id=f"{ns or ''}/{info.kind}/{name}")


@router.delete("/tenant/{tenant_id}", response_model=TenantDeleted, responses=NOT_FOUND,
               summary="Delete everything of a tenant; answers within seconds, namespaces may still be terminating")
async def delete_tenant(tenant_id: Annotated[str, Path(**TENANT_ID)], kube: KubeDep, pool: MaybePoolDep,
                        settings: SettingsDep) -> TenantDeleted:
    """Every object labelled for the tenant or created by its deploys is deleted (the cluster's own
    namespaces excepted), its namespaces last. The answer waits at most ``K8SIM_TENANT_DELETE_WAIT``
    seconds: what is still terminating then is in ``pending`` (and ``pending_count``); its deletion
    goes on, and ``GET /k8s/resources?tenant_id=`` shows it until it is gone."""
    found = {o["metadata"]["uid"]: o for o in await inventory.find(kube, tenant=tenant_id,
                                                                    kinds=list(inventory.DEFAULT_KINDS))}
    for obj in await deployed_objects(pool, kube, tenant_id, keys(list(found.values()))):
        found.setdefault(obj["metadata"]["uid"], obj)
    done = await removal.remove(kube, tenant_id, found.values(), wait=settings.tenant_delete_wait)
    if not done.resources:
        kept = done.kept_namespaces
        raise HTTPException(404, f'tenant "{tenant_id}" has no resources'
                                 + (f" but the cluster's namespaces {', '.join(kept)}" if kept else ""))
    return TenantDeleted.of(done)


@router.delete("/{namespace}/{kind}/{name}", response_model=Deleted, responses=NOT_FOUND,
               summary="Delete one object (ECP-AI's form)",
               description="The namespace segment is ignored for cluster-scoped kinds (ECP-AI sends `-` or the "
                           "item's empty namespace: `/k8s/resources//Namespace/ecp-ai-t1`).")
async def delete_by_path(namespace: Annotated[str, Path(max_length=253, pattern=r"^[^\x00-\x1f\x7f]+$")],
                         kind: Annotated[str, Path(**KIND)], name: Annotated[str, Path(**OBJECT_NAME)],
                         kube: KubeDep) -> Deleted:
    return await delete_one(kube, namespace, kind, name)


@router.delete("//{kind}/{name}", response_model=Deleted, responses=NOT_FOUND, include_in_schema=False)
async def delete_cluster_scoped(kind: Annotated[str, Path(**KIND)], name: Annotated[str, Path(**OBJECT_NAME)],
                                kube: KubeDep) -> Deleted:
    """ECP-AI's form with the empty namespace it lists cluster-scoped objects with."""
    return await delete_one(kube, "", kind, name)


@router.delete("/{resource_name}", response_model=Deleted, responses=NOT_FOUND,
               summary="Delete one object (the guide's form)")
async def delete_by_query(resource_name: Annotated[str, Path(**OBJECT_NAME)], kube: KubeDep,
                          namespace: Annotated[str, Query(**NAMESPACE)] = "default",
                          kind: Annotated[str, Query(**KIND)] = "Pod") -> Deleted:
    return await delete_one(kube, namespace, kind, resource_name)
