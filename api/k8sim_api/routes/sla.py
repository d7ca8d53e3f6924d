"""GET /sla/status and /sla/report; alert rules and alert history."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import JSONResponse

from k8sim import sla, store
from k8sim_api.deps import PoolDep, SettingsDep
from k8sim_api.schemas import (
    BAD_BODY,
    PRINTABLE,
    TENANT_ID,
    AlertHistory,
    AlertRule,
    ErrorResponse,
    RuleCreated,
    RuleDeleted,
    RuleList,
    SlaReport,
    SlaStatus,
)

router = APIRouter(prefix="/sla", tags=["sla"])


@router.get("/status", response_model=SlaStatus,
            summary="Availability over the SLA window vs the target (meeting, at_risk, breached)")
async def status(pool: PoolDep, settings: SettingsDep,
                 tenant_id: Annotated[str | None, Query(**TENANT_ID)] = None) -> dict[str, Any]:
    async with pool.acquire() as conn:
        return await sla.current(conn, target=settings.sla_target, window_s=settings.sla_window_seconds,
                                 tenant=tenant_id)


@router.get("/report", response_model=SlaReport,
            summary="Daily, weekly and monthly availability from the stored history")
async def report(pool: PoolDep, settings: SettingsDep,
                 tenant_id: Annotated[str | None, Query(**TENANT_ID)] = None,
                 days: Annotated[float | None, Query(gt=0, le=366, description=(
                     "Also sum the last N (simulated) days, up to the newest sample"))] = None) -> dict[str, Any]:
    """Computed from the recorded samples only: a period with gaps says so (``coverage``); nothing
    is extrapolated."""
    target = settings.sla_target
    body: dict[str, Any] = {"target": target, "tenant_id": tenant_id}
    async with pool.acquire() as conn:
        end = await store.latest_sample_time(conn, tenant_id) or dt.datetime.now(dt.UTC)
        if days is not None:
            since = end - dt.timedelta(days=days)
            row = await store.period_sums(conn, since, end, tenant=tenant_id)
            availability = sla.availability(row["good"], row["total"])
            body["period"] = {
                "days": days, "from": since.isoformat(), "to": end.isoformat(),
                "first_sample": row["first"].isoformat() if row["first"] else None,
                "availability": round(availability, 4), "requests": round(row["total"]),
                "failed_requests": round(row["total"] - row["good"]), "samples": row["samples"],
                "minutes_with_samples": row["minutes"],
                # The share of the period from its first sample on; earlier (or engine-down) time is not counted.
                "coverage": round(((end - row["first"]).total_seconds() / (days * 86400)) if row["first"] else 0.0,
                                  4),
                "error_budget_remaining": round(sla.budget_remaining(row["good"], row["total"], target), 4),
                "status": "meeting" if availability >= target else "breached"}
        for name, unit, span in (("daily", "day", 7), ("weekly", "week", 35), ("monthly", "month", 92)):
            rows = await store.sla_report(conn, unit, end - dt.timedelta(days=span), tenant=tenant_id)
            body[name] = [{
                "period": r["period"].isoformat(), "availability": round(sla.availability(r["good"], r["total"]), 4),
                "requests": round(r["total"]), "failed_requests": round(r["total"] - r["good"]),
                "minutes": r["minutes"],
                "status": "meeting" if sla.availability(r["good"], r["total"]) >= target else "breached",
            } for r in rows]
    return body


def rule_json(row: Any) -> dict[str, Any]:
    return {"id": str(row["id"]), "name": row["name"], "metric": row["metric"], "operator": row["operator"],
            "threshold": row["threshold"], "tenant_id": row["tenant"], "service": row["service"],
            "severity": row["severity"], "created_at": row["created_at"].isoformat()}


@router.post("/alerts/rules", status_code=201, response_model=RuleCreated, responses=BAD_BODY,
             summary="Add a threshold alert rule (persisted)")
async def add_rule(rule: AlertRule, pool: PoolDep) -> JSONResponse:
    async with pool.acquire() as conn:
        row = await store.create_alert_rule(conn, {**rule.model_dump(), "tenant": rule.tenant_id})
    return JSONResponse({"status": "success", "rule": rule_json(row)}, status_code=201)


@router.get("/alerts/rules", response_model=RuleList, summary="Alert rules")
async def rules(pool: PoolDep) -> dict[str, Any]:
    async with pool.acquire() as conn:
        return {"rules": [rule_json(r) for r in await store.alert_rules(conn)]}


@router.delete("/alerts/rules/{rule_id}", response_model=RuleDeleted, responses={404: {"model": ErrorResponse}},
               summary="Remove an alert rule (its firing alerts resolve)")
async def delete_rule(rule_id: uuid.UUID, pool: PoolDep) -> dict[str, Any]:
    async with pool.acquire() as conn:
        if not await store.delete_alert_rule(conn, rule_id):
            raise HTTPException(404, f"no alert rule {rule_id}")
    return {"status": "success", "id": str(rule_id)}


@router.get("/alerts/history", response_model=AlertHistory,
            summary="Alerts fired and resolved, newest first (burn-rate alerts included)")
async def alert_history(pool: PoolDep, tenant_id: Annotated[str | None, Query(**TENANT_ID)] = None,
                        limit: Annotated[int, Query(gt=0, le=5000)] = 500,
                        name: Annotated[str | None, Query(max_length=200, pattern=PRINTABLE,
                                                          examples=["KubePodCrashLooping"])] = None,
                        state: Annotated[Literal["firing", "resolved"] | None, Query()] = None,
                        ) -> dict[str, Any]:
    async with pool.acquire() as conn:
        rows = await store.alert_history(conn, tenant=tenant_id, limit=limit, name=name,
                                         firing=None if state is None else state == "firing")
    return {"alerts": [{
        "id": r["id"], "rule_id": r["rule_id"], "name": r["name"], "severity": r["severity"],
        "service": r["service"], "tenant_id": r["tenant"], "value": r["value"], "message": r["message"],
        "fired_at": r["fired_at"].isoformat(),
        "resolved_at": r["resolved_at"].isoformat() if r["resolved_at"] else None,
        "state": "resolved" if r["resolved_at"] else "firing",
        # What ECP-AI's alert sync reads (the simulator it used before answered these).
        "type": r["name"], "timestamp": r["fired_at"].isoformat(), "resolved": r["resolved_at"] is not None,
    } for r in rows]}
