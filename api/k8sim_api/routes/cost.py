"""GET /cluster/cost: what the cluster cost over a window, in the shape of OpenCost's allocation API,
from the node and pod history the operator records (k8sim.cost does the arithmetic)."""

from __future__ import annotations

import asyncio
import datetime as dt
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, HTTPException, Query

from k8sim import cost, instancetypes, lifecycle, resources, store, topology
from k8sim.kube import Kube, KubeError
from k8sim.settings import NodeSettings
from k8sim_api.deps import KubeDep, PoolDep
from k8sim_api.schemas import CostDocument, ErrorResponse

router = APIRouter(prefix="/cluster/cost", tags=["capacity"])


@lru_cache(maxsize=1)
def _table(nodepools: str, catalog: str) -> cost.PriceTable:
    parsed = instancetypes.load_catalog(Path(catalog))
    return cost.PriceTable.of(parsed, instancetypes.instance_types(topology.load_pools(Path(nodepools)),
                                                                   parsed))


def price_table() -> cost.PriceTable:
    """The price table and every instance type's resources (static pools and Karpenter's catalog); a
    malformed table or pool file is a 422 naming what is wrong."""
    try:
        return _table(str(NodeSettings().nodepools), str(instancetypes.CATALOG))
    except (instancetypes.InstanceTypeError, topology.TopologyError, OSError) as exc:
        raise HTTPException(422, f"the price table cannot be used: {exc}") from None


async def _pod_usage(kube: Kube) -> dict[tuple[str, str], tuple[float, float]] | None:
    """(namespace, pod) → (cores, bytes) now, from metrics.k8s.io; None without it."""
    try:
        listing = await kube.request("GET", "/apis/metrics.k8s.io/v1beta1/pods")
    except KubeError:
        return None
    found = {}
    for item in listing.get("items") or []:
        meta = item.get("metadata") or {}
        # the official parser: usage comes in nanocores ("266240992n"), which the price table never holds
        cpu = sum(resources.quantity((c.get("usage") or {}).get("cpu")) or 0.0 for c in item.get("containers") or [])
        mem = sum(resources.quantity((c.get("usage") or {}).get("memory")) or 0.0
                  for c in item.get("containers") or [])
        found[(meta.get("namespace", ""), meta.get("name", ""))] = (cpu, mem)
    return found


async def compute(pool: asyncpg.Pool, kube: Kube, start: dt.datetime, end: dt.datetime,
                  aggregate: cost.Aggregate) -> dict[str, Any]:
    """The allocation document over [start, end) (see CostDocument)."""
    table = price_table()
    async with pool.acquire() as conn:
        node_rows = await store.node_spans(conn, start, end)
        pod_rows = await store.pod_spans(conn, start, end)
    live_nodes, live_pods, usage = await asyncio.gather(kube.list("v1", "Node"), kube.list("v1", "Pod"),
                                                        _pod_usage(kube))
    nodes = cost.node_spans([dict(r) for r in node_rows], live_nodes, table)
    pods, unknown = cost.pod_spans([dict(r) for r in pod_rows], live_pods, usage)
    allocations = cost.allocate(nodes, pods, start, end, aggregate)
    hourly = cost.hourly_now(nodes)
    window = {"start": cost.iso(start), "end": cost.iso(end)}
    return {"code": 200, "data": [allocations], "window": window, "aggregate": aggregate,
            "hourly_cost_now": round(hourly, 6), "monthly_projection": round(hourly * cost.HOURS_PER_MONTH, 2),
            "unpriced_nodes": sorted({n.name for n in nodes if n.price is None}), "pods_without_requests": unknown}


@router.get("", response_model=CostDocument, responses={422: {"model": ErrorResponse,
                                                               "description": "A window that does not parse"}},
            summary="What the cluster cost over a window, by namespace, tenant, pool or node (OpenCost's "
                    "allocation API)")
async def cluster_cost(pool: PoolDep, kube: KubeDep,
                       window: Annotated[str, Query(max_length=100, description=(
                           "OpenCost's forms: 30m, 1h, 24h, 7d, today, yesterday, week, month, lastweek, "
                           "lastmonth, or start,end (RFC 3339 or Unix seconds)"), examples=["24h"])] = "24h",
                       aggregate: Annotated[cost.Aggregate, Query(description=(
                           "Group by namespace, tenant (its exact id; __unallocated__ without one), node "
                           "pool or node"))] = "namespace") -> CostDocument:
    """Each pod is charged its requests × the hours it held its node in the window × the node's unit
    prices (OpenCost's split of its instance type's hourly price); ``__idle__`` is the rest of the
    nodes' cost, so the allocations add up to what the nodes cost."""
    try:
        start, end = cost.parse_window(window, lifecycle.now())
    except cost.WindowError as exc:
        raise HTTPException(422, str(exc)) from None
    return CostDocument.model_validate(await compute(pool, kube, start, end, aggregate))
