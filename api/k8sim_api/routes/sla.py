"""GET /sla/status and /sla/report; alert rules and alert history."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query

from k8sim import cost, lifecycle, sla, store
from k8sim.kube import Kube, KubeError
from k8sim_api.deps import KubeDep, PoolDep, SettingsDep
from k8sim_api.routes.cost import compute
from k8sim_api.schemas import (
    BAD_BODY,
    PRINTABLE,
    TENANT_ID,
    AlertEvent,
    AlertHistory,
    AlertRule,
    ErrorResponse,
    RuleCreated,
    RuleDeleted,
    RuleList,
    SlaCost,
    SlaReport,
    SlaStatus,
    StoredRule,
)

router = APIRouter(prefix="/sla", tags=["sla"])


@router.get("/status", response_model=SlaStatus,
            summary="Availability over the SLA window vs the target (meeting, at_risk, breached)")
async def status(pool: PoolDep, settings: SettingsDep,
                 tenant_id: Annotated[str | None, Query(**TENANT_ID)] = None) -> SlaStatus:
    async with pool.acquire() as conn:
        current = await sla.current(conn, target=settings.sla_target, window_s=settings.sla_window_seconds,
                                    tenant=tenant_id)
    return SlaStatus.model_validate(current.as_json())


@router.get("/report", response_model=SlaReport,
            summary="Daily, weekly and monthly availability from the stored history")
async def report(pool: PoolDep, settings: SettingsDep, kube: KubeDep,
                 tenant_id: Annotated[str | None, Query(**TENANT_ID)] = None,
                 days: Annotated[float | None, Query(gt=0, le=366, description=(
                     "Also sum the last N (simulated) days, up to the newest sample"))] = None) -> SlaReport:
    """Computed from the recorded samples only: a period with gaps says so (``coverage``); nothing
    is extrapolated. ``cost`` is what the tenant's pods cost over the last ``days`` (30 without)."""
    async with pool.acquire() as conn:
        found = await sla.report(conn, target=settings.sla_target, tenant=tenant_id, days=days)
    body = found.as_json()
    body["cost"] = await tenant_cost(pool, kube, tenant_id, days or COST_DAYS)
    return SlaReport.model_validate(body)


#: Days of cost in a report that names none.
COST_DAYS = 30.0


async def tenant_cost(pool: PoolDep, kube: Kube, tenant: str | None, days: float) -> SlaCost | None:
    """The tenant's allocation (its exact id), or without one every allocation and the idle rest; None
    when the cost cannot be computed (no usable price table, cluster unreachable): the report stands."""
    end = lifecycle.now()
    try:
        document = await compute(pool, kube, end - dt.timedelta(days=days), end, "tenant")
    except (HTTPException, KubeError):
        return None
    allocations = document["data"][0]
    if tenant is not None:
        picked = [allocations[tenant]] if tenant in allocations else []
    else:
        picked = list(allocations.values())
    sums = {k: round(sum(a[k] for a in picked), 6) for k in ("cpuCost", "ramCost", "gpuCost", "totalCost")}
    idle = allocations.get(cost.IDLE, {}).get("totalCost", 0.0) if tenant is None else None
    return SlaCost(window=document["window"], idleCost=idle, **sums)


@router.post("/alerts/rules", status_code=201, response_model=RuleCreated, responses=BAD_BODY,
             summary="Add a threshold alert rule (persisted)")
async def add_rule(rule: AlertRule, pool: PoolDep) -> RuleCreated:
    async with pool.acquire() as conn:
        row = await store.create_alert_rule(conn, {**rule.model_dump(), "tenant": rule.tenant_id})
    return RuleCreated(status="success", rule=StoredRule.of(row))


@router.get("/alerts/rules", response_model=RuleList, summary="Alert rules")
async def rules(pool: PoolDep) -> RuleList:
    async with pool.acquire() as conn:
        return RuleList(rules=[StoredRule.of(r) for r in await store.list_alert_rules(conn)])


@router.delete("/alerts/rules/{rule_id}", response_model=RuleDeleted, responses={404: {"model": ErrorResponse}},
               summary="Remove an alert rule (its firing alerts resolve)")
async def delete_rule(rule_id: uuid.UUID, pool: PoolDep) -> RuleDeleted:
    async with pool.acquire() as conn:
        if not await store.delete_alert_rule(conn, rule_id):
            raise HTTPException(404, f"no alert rule {rule_id}")
    return RuleDeleted(status="success", id=str(rule_id))


@router.get("/alerts/history", response_model=AlertHistory,
            summary="Alerts fired and resolved, newest first (burn-rate alerts included)")
async def alert_history(pool: PoolDep, tenant_id: Annotated[str | None, Query(**TENANT_ID)] = None,
                        limit: Annotated[int, Query(gt=0, le=5000)] = 500,
                        name: Annotated[str | None, Query(max_length=200, pattern=PRINTABLE,
                                                          examples=["KubePodCrashLooping"])] = None,
                        state: Annotated[Literal["firing", "resolved"] | None, Query()] = None,
                        ) -> AlertHistory:
    async with pool.acquire() as conn:
        found = await store.alert_history(conn, tenant=tenant_id, limit=limit, name=name,
                                          firing=None if state is None else state == "firing")
    return AlertHistory(alerts=[AlertEvent.of(r) for r in found])
