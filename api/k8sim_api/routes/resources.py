"""GET /k8s/resources and the three delete forms of the contract."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, HTTPException, Query, Request

from k8sim import inventory, store
from k8sim.kube import Kube, KubeError, UnknownKind
from k8sim_api.deps import KubeDep
from k8sim_api.schemas import ErrorResponse

router = APIRouter(prefix="/k8s/resources", tags=["resources"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse}}


async def latest_deployment(request: Request, tenant: str) -> Any:
    pool = request.app.state.pool
    if pool is None:
        return None
    try:
        async with pool.acquire() as conn:
            return await store.latest_deployment(conn, tenant)
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError):
        return None  # the listing still answers from the cluster


@router.get("", summary="Resources by namespace, kind and tenant, with the tenant's overall status")
async def list_resources(
    request: Request, kube: KubeDep,
    namespace: Annotated[str | None, Query(max_length=253)] = None,
    kind: Annotated[str | None, Query(max_length=100)] = None,
    tenant_id: Annotated[str | None, Query(max_length=253)] = None,
) -> dict[str, Any]:
    kinds = inventory.DEFAULT_KINDS
    if kind:
        try:
            info = await inventory.resolve_kind(kube, kind)
        except UnknownKind:
            raise HTTPException(404, f'unknown kind "{kind}"') from None
        kinds = [(info.api_version, info.kind)]
    items = [inventory.describe(o) for o in await inventory.find(kube, tenant=tenant_id, namespace=namespace,
                                                                  kinds=kinds)]
    body: dict[str, Any] = {"resources": items, "count": len(items), "tenant_id": tenant_id}
    record = await latest_deployment(request, tenant_id) if tenant_id else None
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


async def delete_one(kube: Kube, namespace: str | None, kind: str, name: str) -> dict[str, Any]:
    try:
        info = await inventory.resolve_kind(kube, kind)
    except UnknownKind:
        raise HTTPException(404, f'unknown kind "{kind}"') from None
    ns = (namespace or "default") if info.namespaced else None
    if not await kube.delete(info.api_version, info.kind, name, ns):
        raise HTTPException(404, f'{info.kind} "{name}" not found' + (f' in namespace "{ns}"' if ns else ""))
    return {"status": "success", "message": f"{info.kind} {name} deleted",
            "id": f"{ns or ''}/{info.kind}/{name}"}


@router.delete("/tenant/{tenant_id}", responses=NOT_FOUND,
               summary="Delete everything of a tenant, its namespaces last")
async def delete_tenant(tenant_id: str, request: Request, kube: KubeDep) -> dict[str, Any]:
    kinds = list(inventory.DEFAULT_KINDS)
    targets = {o["metadata"]["uid"]: o for o in await inventory.find(kube, tenant=tenant_id, kinds=kinds)}
    pool = request.app.state.pool
    if pool is not None:
        async with pool.acquire() as conn:
            for row in await store.deployment_objects(conn, tenant_id):
                try:
                    obj = await kube.get(row["api_version"], row["kind"], row["name"], row["namespace"] or None)
                except KubeError:
                    continue
                if obj:
                    targets.setdefault(obj["metadata"]["uid"], obj)
    if not targets:
        raise HTTPException(404, f'tenant "{tenant_id}" has no resources')
    namespaces = [o for o in targets.values() if o["kind"] == "Namespace"]
    others = [o for o in targets.values() if o["kind"] != "Namespace"]

    async def remove(obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        await kube.delete(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))

    await asyncio.gather(*(remove(o) for o in others))
    await asyncio.gather(*(remove(o) for o in namespaces))
    # Wait (bounded) until they are really gone, so a redeploy right after starts clean.
    deadline = time.monotonic() + request.app.state.settings.deploy_timeout
    remaining = list(targets.values())
    while remaining and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
        still = await asyncio.gather(*(kube.get(o["apiVersion"], o["kind"], o["metadata"]["name"],
                                                o["metadata"].get("namespace")) for o in remaining))
        remaining = [o for o, s in zip(remaining, still, strict=True) if s is not None]
    return {"status": "success", "tenant_id": tenant_id, "deleted_count": len(targets) - len(remaining),
            "pending_count": len(remaining),
            "resources": sorted(inventory.describe(o)["id"] for o in targets.values())}


@router.delete("/{namespace}/{kind}/{name}", responses=NOT_FOUND, summary="Delete one object (ECP-AI's form)")
async def delete_by_path(namespace: str, kind: str, name: str, kube: KubeDep) -> dict[str, Any]:
    return await delete_one(kube, namespace, kind, name)


@router.delete("/{resource_name}", responses=NOT_FOUND, summary="Delete one object (the guide's form)")
async def delete_by_query(resource_name: str, kube: KubeDep,
                          namespace: Annotated[str, Query(max_length=253)] = "default",
                          kind: Annotated[str, Query(max_length=100)] = "Pod") -> dict[str, Any]:
    return await delete_one(kube, namespace, kind, resource_name)
