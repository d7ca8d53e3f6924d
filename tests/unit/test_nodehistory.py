"""Nodes over time from recorded rows: a real Karpenter node's watch (tests/unit/data/karpenter_watch.json)
run through the recorder's pure steps, then assembled into intervals."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from k8sim import cost, lifecycle, nodehistory

T0 = dt.datetime(2026, 12, 7, 13, 0, tzinfo=dt.UTC)
TABLE = cost.PriceTable({"g5.xlarge": 1.006, "c6i.8xlarge": 1.36}, 0.35, {})


def recorded(kind: str, uid: str, offset: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The resources row and the steps the recorder writes for one watched object (a step a second)."""
    data = json.loads((Path(__file__).parent / "data" / "karpenter_watch.json").read_text())
    steps: list[dict[str, Any]] = []
    before: lifecycle.State | None = None
    last: dict[str, Any] = {}
    for i, event in enumerate(data[kind]):
        obj = event["object"]
        after = None if event["type"] == "DELETED" else lifecycle.summarise(obj)
        when = T0 + dt.timedelta(seconds=offset + i)
        steps += [{"uid": uid, "transition": s.name, "detail": s.detail, "occurred_at": when}
                  for s in lifecycle.transitions(before, after)]
        before, last = after or before, obj
    meta = last["metadata"]
    owner = lifecycle.owner_of(last)
    row = {"uid": uid, "kind": last["kind"], "name": meta["name"], "labels": meta.get("labels") or {},
           "state": json.loads(json.dumps(before.as_dict())) if before else {}, "owner_kind": owner[0],
           "owner_name": owner[1], "created_at": T0 + dt.timedelta(seconds=offset),
           "deleted_at": steps[-1]["occurred_at"]}
    return row, steps


def test_a_consolidated_karpenter_node_has_its_claims_steps_its_price_and_the_reason_it_went() -> None:
    claim, claim_steps = recorded("nodeclaims", "c1", 0)
    node, node_steps = recorded("nodes", "n1", 3)
    static = {"uid": "s1", "kind": "Node", "name": "cpu-0", "labels": {
        "node.kubernetes.io/instance-type": "c6i.8xlarge", "k8sim.io/pool": "cpu"}, "state": {},
        "owner_kind": None, "owner_name": None, "created_at": T0 - dt.timedelta(hours=1), "deleted_at": None}
    found = nodehistory.assemble([node, claim, static], claim_steps + node_steps, TABLE)
    assert [i.name for i in found] == ["cpu-0", node["name"]]
    first, karp = found
    assert (first.autoscaled, first.pool, first.hourly_price, first.came, first.went, first.nodeclaim) == (
        False, "cpu", 1.36, "static pool", None, None)
    at = {s["transition"]: s["occurred_at"] for s in claim_steps}
    assert (karp.node, karp.nodeclaim, karp.autoscaled, karp.pool, karp.instance_type, karp.capacity_type,
            karp.zone, karp.hourly_price) == (node["name"], "gpu-a10g-brth5", True, "gpu-a10g", "g5.xlarge",
                                              "on-demand", "us-east-1c", 1.006)
    assert (karp.claimed_at, karp.launched_at, karp.registered_at, karp.initialized_at, karp.disrupted_at) == (
        at["created"], at["launched"], at["registered"], at["initialized"], at["disrupted"])
    assert karp.ready_at == next(s["occurred_at"] for s in node_steps if s["transition"] == "ready")
    assert (karp.came, karp.went) == ("Karpenter: pending pods", "Empty")
    # Over time: the static node throughout, the Karpenter node while it lived.
    series = nodehistory.counts(found, T0, T0 + dt.timedelta(seconds=40), points=41)
    alive = [n for _, n, _ in series]
    assert alive[0] == 1 and max(alive) == 2 and alive[-1] == 1
    assert series[10][2] == 1.36 + 1.006


def test_a_refused_nodeclaim_is_an_interval_with_the_clouds_words() -> None:
    words = ("InsufficientInstanceCapacity: We currently do not have sufficient g5.xlarge capacity in the "
             "Availability Zone you requested (us-east-1a).")
    claim = {"uid": "c2", "kind": "NodeClaim", "name": "gpu-a10g-x1", "labels": {
        "karpenter.sh/nodepool": "gpu-a10g", "node.kubernetes.io/instance-type": "g5.xlarge",
        "karpenter.sh/capacity-type": "spot"}, "state": {"facts": [["pool", "gpu-a10g"]]},
        "owner_kind": None, "owner_name": None, "created_at": T0, "deleted_at": T0 + dt.timedelta(seconds=2)}
    steps = [{"uid": "c2", "transition": "created", "detail": {}, "occurred_at": T0},
             {"uid": "c2", "transition": "event", "detail": {"reason": "InsufficientCapacityError", "type": "Warning",
                                                             "message": words}, "occurred_at": T0},
             {"uid": "c2", "transition": "deleted", "detail": {}, "occurred_at": T0 + dt.timedelta(seconds=2)}]
    [interval] = nodehistory.assemble([claim], steps, TABLE)
    assert (interval.node, interval.went, interval.message, interval.hourly_price) == (
        None, "InsufficientCapacityError", words, 1.006 * 0.35)
    assert nodehistory.counts([interval], T0, T0 + dt.timedelta(seconds=1), points=2) == [
        (T0, 0, 0.0), (T0 + dt.timedelta(seconds=1), 0, 0.0)]


def test_a_replacement_and_a_spot_interruption_say_so() -> None:
    node = {"uid": "n3", "kind": "Node", "name": "kwok-x", "labels": {"karpenter.sh/nodepool": "spot",
            "karpenter.sh/capacity-type": "spot", "node.kubernetes.io/instance-type": "g5.xlarge"},
            "state": {"facts": [["nodeclaim", "spot-a"]]}, "owner_kind": "NodeClaim", "owner_name": "spot-a",
            "created_at": T0, "deleted_at": T0 + dt.timedelta(minutes=5)}
    claim = {"uid": "c3", "kind": "NodeClaim", "name": "spot-a", "labels": node["labels"],
             "state": {"facts": [["node", "kwok-x"]]}, "owner_kind": None, "owner_name": None,
             "created_at": T0, "deleted_at": T0 + dt.timedelta(minutes=5)}
    steps = [{"uid": "c3", "transition": "event", "detail": {"reason": "DisruptionLaunching",
                                                             "message": "Launching NodeClaim: Underutilized"},
              "occurred_at": T0},
             {"uid": "n3", "transition": "event", "detail": {"reason": "SpotInterrupted"}, "occurred_at": T0}]
    [interval] = nodehistory.assemble([node, claim], steps, TABLE)
    assert (interval.came, interval.went, interval.nodeclaim) == (
        "Karpenter: replacement (Underutilized)", "SpotInterrupted", "spot-a")
