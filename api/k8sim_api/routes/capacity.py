"""GET /cluster/capacity and POST /cluster/capacity/what-if: what the cluster holds and would hold."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from fastapi import APIRouter, HTTPException

from k8sim import capacity, cost, importer, lifecycle, manifests, resources
from k8sim.kube import Kube, KubeError
from k8sim_api.deps import KubeDep, SettingsDep
from k8sim_api.routes.cost import price_table
from k8sim_api.schemas import BAD_BODY, CapacityDocument, ErrorResponse, WhatIfRequest, WhatIfResult

router = APIRouter(prefix="/cluster/capacity", tags=["capacity"])

#: How long the scheduler gets to answer for every probe pod.
WHAT_IF_WAIT = 20.0


async def node_usage(kube: Kube) -> dict[str, tuple[float, float]] | None:
    """Per node (cores, bytes) from metrics.k8s.io, as `kubectl top nodes` reads it; None without."""
    try:
        listing = await kube.request("GET", "/apis/metrics.k8s.io/v1beta1/nodes")
    except KubeError:
        return None
    return {item["metadata"]["name"]: (resources.quantity(item["usage"].get("cpu")) or 0.0,
                                       resources.quantity(item["usage"].get("memory")) or 0.0)
            for item in listing.get("items") or []}


@router.get("", response_model=CapacityDocument, summary="Allocatable, requested and used per node pool and node; "
                                                         "pending pods by the scheduler's reason")
async def cluster_capacity(kube: KubeDep) -> CapacityDocument:
    nodes, pods, used, source = await asyncio.gather(kube.list("v1", "Node"), kube.list("v1", "Pod"), node_usage(kube),
                                                     importer.load_source(kube))
    document = capacity.document(nodes, pods, used)
    if source is not None:  # after POST /cluster/import: the source cluster's totals beside the imported nodes'
        document["source"] = importer.compare(source, nodes, pods)
    return CapacityDocument.model_validate(document)


@router.post("/what-if", response_model=WhatIfResult,
             responses={**BAD_BODY, 422: {"model": ErrorResponse, "description": "Not a usable manifest"}},
             summary="Would a manifest's pods fit now? The scheduler's answer, and the nodes it would need")
async def what_if(body: WhatIfRequest, kube: KubeDep, settings: SettingsDep) -> WhatIfResult:
    """Every pod the manifest's workloads would create goes to the real scheduler as a probe pod (same
    requests and placement rules, lowest priority, no preemption) in a scratch namespace that is
    deleted afterwards. Pods it cannot place are packed onto new nodes shaped like each pool's, and onto the
    nodes Karpenter would launch for them: the cheapest instance type of the price table that holds them,
    with the added on-demand $/month (730 h). Both packings count every GPU device a pod asks for by name
    (nvidia.com/gpu, MIG devices, nvidia.com/gpu.shared): a MIG pod needs a node that offers its MIG device."""
    documents = manifests.parse(body.manifest, settings.limits)
    wanted: list[tuple[str, int, Any]] = []
    for doc in documents:
        found = capacity.workload_pods(doc.obj)
        if found is not None and found[0] > 0:
            wanted.append((f"{doc.kind}/{doc.name}", *found))
    total = sum(n for _, n, _ in wanted)
    if total > body.max_pods:
        raise manifests.ManifestError(f"the manifest asks for {total} pods; what-if places at most {body.max_pods}",
                                      status=422)
    namespace = f"k8sim-what-if-{uuid.uuid4().hex[:8]}"
    await kube.apply(capacity.priority_class())
    await kube.create({"apiVersion": "v1", "kind": "Namespace",
                       "metadata": {"name": namespace, "labels": {capacity.PROBE_LABEL: "scratch"}}})
    try:
        index = 0
        for source, count, spec in wanted:
            for _ in range(count):
                await kube.create(capacity.probe_pod(f"probe-{index}", namespace, spec, source))
                index += 1
        deadline = time.monotonic() + WHAT_IF_WAIT
        while True:
            probes = await kube.list("v1", "Pod", namespace)
            undecided = [p for p in probes if not (p.get("spec") or {}).get("nodeName")
                         and (lifecycle.conditions(p).get("PodScheduled") or {}).get("status") != "False"]
            if not undecided or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        nodes = await kube.list("v1", "Node")
    finally:
        await kube.delete("v1", "Namespace", namespace)
    by_node = {n["metadata"]["name"]: n for n in nodes}
    results: dict[str, dict[str, Any]] = {s: {"workload": s, "pods": n, "placed": 0, "unplaced": 0, "nodes": {},
                                              "reasons": {}} for s, n, _ in wanted}
    unplaced_specs = []
    for probe in probes:
        source = probe["metadata"]["annotations"]["k8sim.io/what-if-of"]
        entry = results[source]
        node = (probe.get("spec") or {}).get("nodeName")
        if node:
            entry["placed"] += 1
            pool = capacity.pool_of(by_node[node]) if node in by_node else "unknown"
            entry["nodes"][pool] = entry["nodes"].get(pool, 0) + 1
        else:
            entry["unplaced"] += 1
            reason = capacity.pending_reason(probe) or "not decided in time"
            entry["reasons"][reason] = entry["reasons"].get(reason, 0) + 1
            unplaced_specs.append(next(spec for s, _, spec in wanted if s == source))
    fits = all(r["unplaced"] == 0 for r in results.values())
    launched: tuple[dict[str, int], float, int] = ({}, 0.0, 0)
    if unplaced_specs:
        try:
            table = price_table()
        except HTTPException:
            pass  # no usable price table: the static pools' answer stands alone
        else:
            needs = [(resources.pod_requests(spec), resources.other_devices(spec), spec.get("nodeSelector") or {})
                     for spec in unplaced_specs]
            launched = cost.karpenter_nodes([(cost.Capacity(r.cpu, r.memory, r.gpu, devices), selector)
                                             for r, devices, selector in needs], table)
    return WhatIfResult(fits=fits, pods=total, placed=total - len(unplaced_specs), unplaced=len(unplaced_specs),
                        workloads=list(results.values()),
                        additional_nodes={} if fits else capacity.extra_nodes(unplaced_specs, nodes),
                        karpenter_nodes=launched[0], added_usd_per_month=launched[1],
                        karpenter_unfit_pods=launched[2])
