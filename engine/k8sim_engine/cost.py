"""OpenCost's cost metrics, under its names and labels (opencost pkg/costmodel/metrics.go), so cost
dashboards built on OpenCost read the simulated cluster as they read a real one.

Per node: ``node_total_hourly_cost``, ``node_cpu_hourly_cost`` ($ per core-hour), ``node_ram_hourly_cost``
($ per GiB-hour), ``node_gpu_hourly_cost`` ($ per GPU-hour), ``node_gpu_count`` (physical GPUs, as
OpenCost counts a time-sliced node's from GFD's ``nvidia.com/gpu.count``; MIG devices undone too) and
``kubecost_node_is_spot``, labelled instance, node, instance_type, region, provider_id; per running
container: ``container_cpu_allocation`` (cores), ``container_memory_allocation_bytes`` and
``container_gpu_allocation``, labelled namespace, pod, container, instance, node. Prices and their split
are k8sim.cost's. A container's allocation is its request (OpenCost takes the larger of request and
usage; the model's usage is per pod, not per container); its GPU allocation is the whole GPUs its GPU
devices hold on its node (k8sim.cost.gpu_share: a time-sliced replica 1/replicas, a MIG device its
compute slices over seven), which is what the cost allocation charges. Per PersistentVolume: ``pv_hourly_cost`` ($ per
GiB-hour), labelled volumename, persistentvolume, provider_id, at OpenCost's default storage price: the
simulated volumes have no cloud disk type to price.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from k8sim import capacity, cost, gpus, instancetypes, resources, topology
from k8sim.settings import NodeSettings

from .collector import State

log = logging.getLogger(__name__)

NODE_LABELS = ["instance", "node", "instance_type", "region", "provider_id"]
CONTAINER_LABELS = ["namespace", "pod", "container", "instance", "node"]


class Nodes(Protocol):
    def items(self, kind: str) -> list[dict[str, Any]]: ...

    @property
    def synced(self) -> bool: ...


class HasCluster(Protocol):
    """The engine: its last tick's state, and its watch cache (None with watching off)."""

    @property
    def state(self) -> State: ...

    @property
    def cache(self) -> Nodes | None: ...


def load_table() -> cost.PriceTable | None:
    """The price table, or None (logged) when it cannot be read: the other metrics go on."""
    try:
        catalog = instancetypes.load_catalog()
        return cost.PriceTable.of(catalog, instancetypes.instance_types(
            topology.load_pools(NodeSettings().nodepools), catalog))
    except (instancetypes.InstanceTypeError, topology.TopologyError, OSError) as exc:
        log.warning("no cost metrics: %s", exc)
        return None


class CostCollector(Collector):
    def __init__(self, ref: HasCluster, table: cost.PriceTable | None = None):
        self.ref = ref
        self.table = table if table is not None else load_table()

    def collect(self) -> Iterator[Metric]:
        cache = self.ref.cache
        nodes = cache.items("Node") if cache is not None and cache.synced else []
        yield from node_families(nodes, self.table)
        yield from container_families(self.ref.state.pods, gpus.inventory(nodes))
        yield volume_family(cache.items("PersistentVolume") if cache is not None and cache.synced else [])


def node_families(nodes: list[dict[str, Any]], table: cost.PriceTable | None) -> Iterator[Metric]:
    fams = {name: GaugeMetricFamily(name, text, labels=NODE_LABELS) for name, text in (
        ("node_total_hourly_cost", "node_total_hourly_cost Total node cost per hour"),
        ("node_cpu_hourly_cost", "node_cpu_hourly_cost hourly cost for each cpu on this node"),
        ("node_ram_hourly_cost", "node_ram_hourly_cost hourly cost for each gb of ram on this node"),
        ("node_gpu_hourly_cost", "node_gpu_hourly_cost hourly cost for each gpu on this node"),
        ("node_gpu_count", "node_gpu_count count of gpu on this node"),
        ("kubecost_node_is_spot", "kubecost_node_is_spot Cloud provider info about node preemptibility"))}
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        if table is None:
            break
        name = node["metadata"]["name"]
        labels = node["metadata"].get("labels") or {}
        itype, _, _, cap, price = cost.node_facts(node, table)
        if price is None:
            continue  # an instance type the table lacks has no price to export
        values = [name, name, itype or "", labels.get(cost.REGION_LABEL) or table.region,
                  str((node.get("spec") or {}).get("providerID") or name)]
        for metric, value in (("node_total_hourly_cost", price.total), ("node_cpu_hourly_cost", price.cpu),
                              ("node_ram_hourly_cost", price.ram), ("node_gpu_hourly_cost", price.gpu),
                              ("node_gpu_count", cap.gpu), ("kubecost_node_is_spot", float(price.spot))):
            fams[metric].add_metric(values, value)
    yield from fams.values()


def volume_family(volumes: list[dict[str, Any]]) -> Metric:
    family = GaugeMetricFamily("pv_hourly_cost", "pv_hourly_cost Cost per GB per hour on a persistent disk",
                               labels=["volumename", "persistentvolume", "provider_id"])
    for volume in sorted(volumes, key=lambda v: v["metadata"]["name"]):
        name = volume["metadata"]["name"]
        handle = ((volume.get("spec") or {}).get("csi") or {}).get("volumeHandle")
        family.add_metric([name, name, str(handle or name)], cost.DEFAULT_STORAGE_HOURLY)
    return family


def container_families(pods: list[dict[str, Any]], setups: Mapping[str, gpus.GPUSetup] | None = None
                       ) -> Iterator[Metric]:
    cpu = GaugeMetricFamily("container_cpu_allocation", "container_cpu_allocation Percent of a single CPU used "
                            "in a minute", labels=CONTAINER_LABELS)
    mem = GaugeMetricFamily("container_memory_allocation_bytes", "container_memory_allocation_bytes Bytes of "
                            "RAM used", labels=CONTAINER_LABELS)
    gpu = GaugeMetricFamily("container_gpu_allocation", "container_gpu_allocation GPU used", labels=CONTAINER_LABELS)
    for pod in pods:
        if not capacity.holds(pod):
            continue
        meta, spec = pod["metadata"], pod.get("spec") or {}
        node = spec["nodeName"]
        for container in spec.get("containers") or []:
            one = {"containers": [container]}
            want = resources.pod_requests(one)
            values = [meta.get("namespace", ""), meta["name"], str(container.get("name", "")), node, node]
            cpu.add_metric(values, want.cpu)
            mem.add_metric(values, want.memory)
            share = cost.gpu_share((setups or {}).get(node), cost.Capacity(
                gpu=want.gpu, devices=resources.other_devices(one)))
            if share:
                gpu.add_metric(values, share)
    yield from (cpu, mem, gpu)
