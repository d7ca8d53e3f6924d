"""GET /cluster/nodes/history: nodes over time and why each came or went, from the recorded
history of Nodes and Karpenter's NodeClaims (k8sim.nodehistory assembles; prices from k8sim.cost)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query

from k8sim import lifecycle, nodehistory
from k8sim_api.deps import PoolDep
from k8sim_api.routes.cost import price_table
from k8sim_api.schemas import ErrorResponse, NodeHistory

router = APIRouter(prefix="/cluster/nodes", tags=["capacity"])


@router.get("/history", response_model=NodeHistory,
            responses={422: {"model": ErrorResponse, "description": "hours out of range, or an unusable price table"},
                       503: {"model": ErrorResponse, "description": "PostgreSQL unavailable"}},
            summary="Each node's interval over the last hours: pool, instance type, price, launch, "
                    "registration, readiness, disruption and why it went")
async def node_history(pool: PoolDep,
                       hours: Annotated[float, Query(gt=0, le=24 * 90, description="The window: the last hours")] = 24,
                       points: Annotated[int, Query(ge=2, le=1000, description="Samples of the count over time")] = 60,
                       ) -> NodeHistory:
    table = price_table()
    end = lifecycle.now()
    start = end - dt.timedelta(hours=hours)
    async with pool.acquire() as conn:
        objects, steps = await nodehistory.load(conn, start, end)
    found = nodehistory.assemble([dict(o) for o in objects], [dict(s) for s in steps], table)
    return NodeHistory.model_validate({
        "start": start.isoformat(), "end": end.isoformat(), "nodes": [n.as_dict() for n in found],
        "count": len(found),
        "over_time": [{"at": at.isoformat(), "nodes": n, "hourly_cost": c}
                      for at, n, c in nodehistory.counts(found, start, end, points)]})
