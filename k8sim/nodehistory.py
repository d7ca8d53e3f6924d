"""Nodes over time and why each came or went, from the lifecycle history the operator records.

Each recorded Node is one interval: its pool, instance type, capacity type, zone and price per hour
(:mod:`k8sim.cost`'s table), when its NodeClaim was launched, when it was registered, ready and
initialized, when Karpenter disrupted it and why (the NodeClaim's DisruptionReason: Underutilized,
Empty, Drifted …; a spot interruption; a Scenario), and when it went. A NodeClaim that never got a
node (the cloud refused the launch) is an interval of its own, with the cloud's words.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import asyncpg

from k8sim import cost, lifecycle

#: The steps the intervals are built from (the rest of a node's history is not needed here).
STEPS = ("created", "launched", "launch_failed", "registered", "ready", "initialized", "disrupted", "deleted",
         "event")
#: Karpenter's Events that say why a node went when no DisruptionReason did (an interruption).
_WENT_EVENTS = {"SpotInterrupted": "SpotInterrupted", "TerminatingOnInterruption": "Interrupted",
                "InstanceTerminating": "InstanceTerminating", "Unhealthy": "Unhealthy"}
#: Karpenter's Event on a replacement NodeClaim ("Launching NodeClaim: Underutilized").
_LAUNCHING = "DisruptionLaunching"
#: The Event Karpenter puts on a NodeClaim the cloud had no capacity for (it deletes the claim).
_NO_CAPACITY = "InsufficientCapacityError"


@dataclasses.dataclass(frozen=True)
class NodeInterval:
    """One node's life (or a NodeClaim's that never got a node: ``node`` None)."""

    name: str
    node: str | None
    nodeclaim: str | None
    autoscaled: bool
    pool: str
    instance_type: str | None
    capacity_type: str
    zone: str | None
    hourly_price: float | None
    created_at: dt.datetime | None
    deleted_at: dt.datetime | None
    claimed_at: dt.datetime | None = None  # when Karpenter made its NodeClaim
    launched_at: dt.datetime | None = None
    registered_at: dt.datetime | None = None
    ready_at: dt.datetime | None = None
    initialized_at: dt.datetime | None = None
    disrupted_at: dt.datetime | None = None
    came: str = "static pool"
    went: str | None = None
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {f.name: (v.isoformat() if isinstance(v := getattr(self, f.name), dt.datetime) else v)
                for f in dataclasses.fields(self)}


@dataclasses.dataclass
class _Steps:
    """The first time of each step of one object, its last disruption reason and its notes."""

    first: dict[str, dt.datetime] = dataclasses.field(default_factory=dict)
    reason: str | None = None
    scenario: str | None = None
    message: str | None = None
    events: list[Mapping[str, Any]] = dataclasses.field(default_factory=list)

    def add(self, transition: str, detail: Mapping[str, Any], when: dt.datetime) -> None:
        if transition == "event":
            self.events.append(detail)
            return
        self.first.setdefault(transition, when)
        if transition == "disrupted":
            self.first["disrupted"] = when  # a disruption given up and taken again: the last counts
            self.reason = detail.get("reason") or self.reason
        if transition in ("launch_failed", "deleted") and detail.get("message"):
            self.message = str(detail["message"])
        if detail.get("scenario"):
            self.scenario = str(detail["scenario"])

    def event(self, *reasons: str) -> Mapping[str, Any] | None:
        return next((e for e in reversed(self.events) if e.get("reason") in reasons), None)


def assemble(objects: Iterable[Mapping[str, Any]], steps: Iterable[Mapping[str, Any]],
             table: cost.PriceTable) -> list[NodeInterval]:
    """Intervals from recorded rows: ``objects`` (uid, kind, name, labels, state, owner_kind, owner_name,
    created_at, deleted_at) of Nodes and NodeClaims, ``steps`` (uid, transition, detail, occurred_at)
    in recording order. Sorted by when each came."""
    by_uid: dict[str, _Steps] = {}
    for step in steps:
        by_uid.setdefault(step["uid"], _Steps()).add(step["transition"], step.get("detail") or {},
                                                     step["occurred_at"])
    nodes = [o for o in objects if o["kind"] == "Node"]
    claims = [o for o in objects if o["kind"] == "NodeClaim"]

    def facts(row: Mapping[str, Any]) -> dict[str, str]:
        return dict((row.get("state") or {}).get("facts") or ())

    claim_by_name = {c["name"]: c for c in claims}
    claim_by_node = {f["node"]: c for c in claims if (f := facts(c)).get("node")}
    used: set[str] = set()
    out = []
    for row in nodes:
        labels = row.get("labels") or {}
        own = by_uid.get(row["uid"], _Steps())
        claim_name = facts(row).get("nodeclaim") or (row["owner_name"] if row.get("owner_kind") == "NodeClaim"
                                                     else None)
        claim = claim_by_name.get(claim_name or "") or claim_by_node.get(row["name"])
        autoscaled = bool(labels.get(lifecycle.NODEPOOL_LABEL)) or claim is not None
        theirs = by_uid.get(claim["uid"], _Steps()) if claim else _Steps()
        if claim:
            used.add(claim["uid"])
        out.append(_interval(row["name"], row["name"], claim["name"] if claim else claim_name, autoscaled,
                             {**(claim.get("labels") or {} if claim else {}), **labels}, row.get("created_at"),
                             row.get("deleted_at"), own, theirs, table))
    for claim in claims:
        if claim["uid"] in used or facts(claim).get("node"):
            continue  # its node's interval says it; a node not recorded (yet) has none
        theirs = by_uid.get(claim["uid"], _Steps())
        out.append(_interval(claim["name"], None, claim["name"], True, claim.get("labels") or {},
                             claim.get("created_at"), claim.get("deleted_at"), _Steps(), theirs, table))
    far = dt.datetime.min.replace(tzinfo=dt.UTC)
    return sorted(out, key=lambda i: (i.created_at or far, i.name))


def _interval(name: str, node: str | None, claim: str | None, autoscaled: bool, labels: Mapping[str, str],
              created: dt.datetime | None, deleted: dt.datetime | None, own: _Steps, theirs: _Steps,
              table: cost.PriceTable) -> NodeInterval:
    itype = labels.get(cost.INSTANCE_TYPE_LABEL)
    ctype = labels.get(cost.CAPACITY_TYPE_LABEL) or "on-demand"
    pool = str(labels.get(lifecycle.NODEPOOL_LABEL) or labels.get(cost.POOL_LABEL) or itype or "default")
    came = "static pool"
    if autoscaled:
        launching = theirs.event(_LAUNCHING)
        came = (f"Karpenter: replacement ({str(launching.get('message') or '').split(': ', 1)[-1]})" if launching
                else "Karpenter: pending pods")
    message = theirs.message
    went: str | None = theirs.reason or own.reason
    if went is None and (interrupted := own.event(*_WENT_EVENTS) or theirs.event(*_WENT_EVENTS)):
        went = _WENT_EVENTS[str(interrupted["reason"])]
    if went is None and node is None and (refused := theirs.event(_NO_CAPACITY)):
        went, message = _NO_CAPACITY, str(refused.get("message") or "") or message
    if went is None and node is None and "launch_failed" in theirs.first:
        went = "LaunchFailed"
    scenario = own.scenario or theirs.scenario
    if went is None and deleted is not None:
        went = f"Scenario {scenario}" if scenario else "deleted"
    disrupted = theirs.first.get("disrupted") or own.first.get("disrupted")
    return NodeInterval(
        name=name, node=node, nodeclaim=claim, autoscaled=autoscaled, pool=pool, instance_type=itype,
        capacity_type=ctype, zone=labels.get("topology.kubernetes.io/zone"),
        hourly_price=table.hourly(itype, ctype), created_at=created,
        deleted_at=deleted, claimed_at=theirs.first.get("created"), launched_at=theirs.first.get("launched"),
        registered_at=theirs.first.get("registered") or own.first.get("registered"),
        ready_at=own.first.get("ready"),
        initialized_at=theirs.first.get("initialized") or own.first.get("initialized"),
        disrupted_at=disrupted, came=came, went=went, message=message)


async def load(conn: asyncpg.Connection, start: dt.datetime, end: dt.datetime
               ) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
    """The recorded Nodes and Karpenter NodeClaims that existed at some time in [start, end), and their steps."""
    objects: list[asyncpg.Record] = await conn.fetch(
        "SELECT uid, kind, name, labels, state, owner_kind, owner_name, created_at, deleted_at FROM resources"
        " WHERE ((kind = 'Node' AND api_version = 'v1') OR (kind = 'NodeClaim' AND api_version LIKE 'karpenter.sh/%'))"
        " AND (created_at IS NULL OR created_at < $2) AND (deleted_at IS NULL OR deleted_at > $1)", start, end)
    steps: list[asyncpg.Record] = await conn.fetch(
        "SELECT uid, transition, detail, occurred_at FROM resource_events WHERE uid = ANY($1::text[])"
        " AND transition = ANY($2::text[]) ORDER BY id", [o["uid"] for o in objects], list(STEPS))
    return objects, steps


def counts(intervals: Sequence[NodeInterval], start: dt.datetime, end: dt.datetime, points: int = 60
           ) -> list[tuple[dt.datetime, int, float]]:
    """(time, nodes, $/hour) at ``points`` evenly spaced times of the window: the number of nodes over time."""
    out = []
    step = (end - start) / max(points - 1, 1)
    for i in range(points):
        at = start + step * i
        alive = [n for n in intervals if n.node and (n.created_at is None or n.created_at <= at)
                 and (n.deleted_at is None or n.deleted_at > at)]
        out.append((at, len(alive), round(sum(n.hourly_price or 0.0 for n in alive), 6)))
    return out
