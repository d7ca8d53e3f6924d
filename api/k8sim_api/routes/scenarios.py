"""/scenarios: failure scenarios over HTTP, the same objects as the Scenario resource kubectl sees."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Response

from k8sim import scenarios
from k8sim.kube import KubeError
from k8sim_api.deps import KubeDep
from k8sim_api.schemas import (
    BAD_BODY,
    DNS_NAME,
    NAMESPACE,
    TENANT_ID,
    ErrorResponse,
    ScenarioDeleted,
    ScenarioList,
    ScenarioOut,
    ScenarioRequest,
)

router = APIRouter(prefix="/scenarios", tags=["scenarios"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such Scenario (or namespace)"}}
#: How long DELETE waits for the operator to give back what the Scenario hit.
DELETE_WAIT = 15.0


def _body(obj: dict[str, Any]) -> ScenarioOut:
    return ScenarioOut.model_validate({"status": {}, **obj})


@router.post("", status_code=201, response_model=ScenarioOut,
             responses={**BAD_BODY, **NOT_FOUND, 409: {"model": ErrorResponse, "description": "Name taken"},
                        422: {"model": ErrorResponse, "description": "Not a playable Scenario"}},
             summary="Start a failure scenario (as `kubectl apply` of a Scenario would)")
async def create(body: ScenarioRequest, kube: KubeDep) -> ScenarioOut:
    obj = body.model_dump(exclude_none=True)
    try:
        scenarios.validate(obj["spec"])
    except scenarios.ScenarioError as exc:
        raise HTTPException(422, str(exc)) from None
    try:
        return _body(await kube.create(obj))
    except KubeError as exc:
        if exc.status == 409:
            raise HTTPException(409, f'Scenario "{obj["metadata"]["name"]}" already exists in '
                                     f'"{obj["metadata"]["namespace"]}"') from None
        if exc.status == 404:
            raise HTTPException(404, f'namespace "{obj["metadata"]["namespace"]}" not found') from None
        raise


@router.get("", response_model=ScenarioList, summary="Scenarios, newest first")
async def list_scenarios(kube: KubeDep, namespace: Annotated[str | None, Query(**NAMESPACE)] = None,
                         tenant_id: Annotated[str | None, Query(**{k: v for k, v in TENANT_ID.items()
                                                                    if k != "examples"})] = None,
                         phase: Annotated[str | None, Query(pattern="^(Pending|Active|Completed|Failed)$")] = None,
                         ) -> ScenarioList:
    try:
        items = await kube.list(scenarios.API_VERSION, scenarios.KIND, namespace)
    except KubeError as exc:
        if exc.status != 404:  # no CRD yet: no Scenarios
            raise
        items = []
    if tenant_id is not None:  # exact: the tenant the Scenario targets
        items = [o for o in items if ((o.get("spec") or {}).get("target") or {}).get("tenant") == tenant_id]
    if phase is not None:
        items = [o for o in items if (o.get("status") or {}).get("phase") == phase]
    items.sort(key=lambda o: o["metadata"].get("creationTimestamp", ""), reverse=True)
    return ScenarioList(scenarios=[_body(o) for o in items], count=len(items))


@router.get("/{namespace}/{name}", response_model=ScenarioOut, responses=NOT_FOUND, summary="One Scenario")
async def get(namespace: Annotated[str, Path(**NAMESPACE)], name: Annotated[str, Path(**DNS_NAME)],
              kube: KubeDep) -> ScenarioOut:
    try:
        found = await kube.get(scenarios.API_VERSION, scenarios.KIND, name, namespace)
    except KubeError as exc:
        if exc.status != 404:
            raise
        found = None
    if found is None:
        raise HTTPException(404, f'no Scenario "{name}" in "{namespace}"')
    return _body(found)


@router.delete("/{namespace}/{name}", response_model=ScenarioDeleted,
               responses={**NOT_FOUND, 202: {"model": ScenarioDeleted, "description": "Still restoring"}},
               summary="End a Scenario: what it hit is given back, then it goes")
async def delete(namespace: Annotated[str, Path(**NAMESPACE)], name: Annotated[str, Path(**DNS_NAME)],
                 kube: KubeDep, response: Response) -> ScenarioDeleted:
    try:
        gone = not await kube.delete(scenarios.API_VERSION, scenarios.KIND, name, namespace)
    except KubeError as exc:
        if exc.status != 404:
            raise
        gone = True
    if gone:
        raise HTTPException(404, f'no Scenario "{name}" in "{namespace}"')
    deadline = time.monotonic() + DELETE_WAIT
    while time.monotonic() < deadline:  # the operator restores before its finalizer lets it go
        if await kube.get(scenarios.API_VERSION, scenarios.KIND, name, namespace) is None:
            return ScenarioDeleted(status="deleted", namespace=namespace, name=name)
        await asyncio.sleep(0.5)
    response.status_code = 202
    return ScenarioDeleted(status="deleting", namespace=namespace, name=name)
