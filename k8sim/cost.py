"""What the cluster costs: each node's hourly price and its split, and an allocation of node cost over a
window to namespaces, tenants, pools or nodes in the shape of OpenCost's allocation API. Pure (no I/O).

Prices: a node costs its instance type's hourly price from the one price table
(``k8sim/cluster/karpenter/instance-types.yaml``, us-east-1 on-demand list prices) times the catalog's
``spot_discount`` when ``karpenter.sh/capacity-type`` is ``spot``; static nodes carry no capacity type
and are on-demand.

The split into CPU, RAM and GPU prices is OpenCost's for a cloud that gives a node's total only
(opencost ``pkg/costmodel/costmodel.go``, "GPU without cost found"): with its default custom prices
(``configs/default.json``: $0.031611 per vCPU-hour, $0.004237 per GiB-hour, $0.95 per GPU-hour) as
weights relative to one GiB of RAM,

    ram_multiple = gpus * (0.95 / 0.004237) + cores * (0.031611 / 0.004237) + ram_GiB
    ram $/GiB-h  = total / ram_multiple
    cpu $/core-h = ram $/GiB-h * (0.031611 / 0.004237)
    gpu $/GPU-h  = ram $/GiB-h * (0.95 / 0.004237)

so cores × cpu + GiB × ram + GPUs × gpu is the node's total again, to rounding. GPUs are the node's
physical GPUs (``gpus.inventory``: GFD's ``nvidia.com/gpu.count``, MIG and time-slicing undone), not the
devices the device plugin advertises: a MIG node offers ``nvidia.com/mig-*`` and no ``nvidia.com/gpu``, a
time-sliced one replicas × GPUs.

Allocation: a pod is charged its requests (cores, bytes, GPUs) × the hours it was bound to its node
inside the window × its node's unit prices, where its GPUs are the whole GPUs its devices hold
(``gpu_share``): one per ``nvidia.com/gpu`` on a plain node, 1/replicas per replica on a time-sliced
one, a MIG device's compute slices over the GPU's seven; ``__idle__`` is every node's cost in the window less what
its pods were charged, resource by resource, so the allocations always add up to the nodes' cost.
Efficiency is usage over requests (OpenCost's cpuEfficiency, ramEfficiency and the cost-weighted
totalEfficiency) where usage is known, else null.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from k8sim import gpus, lifecycle
from k8sim.instancetypes import GPU_RESOURCE, Catalog, InstanceType
from k8sim.resources import MIG_PREFIX, SHARED_GPU, is_gpu_device, other_devices, pod_requests, quantity

#: OpenCost's default custom prices (configs/default.json): only their ratios are used.
DEFAULT_CPU_HOURLY = 0.031611
DEFAULT_RAM_HOURLY = 0.004237
DEFAULT_GPU_HOURLY = 0.95
#: Its default storage price, $ per GiB-hour: what a volume costs here, where no disk has a cloud price.
DEFAULT_STORAGE_HOURLY = 0.00005479452
CPU_TO_RAM = DEFAULT_CPU_HOURLY / DEFAULT_RAM_HOURLY
GPU_TO_RAM = DEFAULT_GPU_HOURLY / DEFAULT_RAM_HOURLY
#: Hours in a month as OpenCost (and the clouds' monthly estimates) count them.
HOURS_PER_MONTH = 730.0
GIB = 2.0**30
IDLE = "__idle__"
UNALLOCATED = "__unallocated__"
CLUSTER = "k8sim"

CAPACITY_TYPE_LABEL = "karpenter.sh/capacity-type"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
POOL_LABEL = "k8sim.io/pool"
REGION_LABEL = "topology.kubernetes.io/region"
ACCELERATOR_LABEL = "accelerator"

Aggregate = Literal["namespace", "tenant", "pool", "node"]
AGGREGATES: tuple[Aggregate, ...] = ("namespace", "tenant", "pool", "node")


class WindowError(ValueError):
    """A window that does not parse (the message names it and the forms that do)."""


@dataclasses.dataclass(frozen=True)
class Capacity:
    cpu: float = 0.0  # cores
    memory: float = 0.0  # bytes
    gpu: float = 0.0  # a node's physical GPUs; a pod's nvidia.com/gpu devices
    #: A pod's other GPU devices (MIG devices, nvidia.com/gpu.shared) as sorted (resource, count) pairs.
    devices: tuple[tuple[str, float], ...] = ()

    def gpu_devices(self) -> dict[str, float]:
        """A pod's GPU devices by resource, nvidia.com/gpu included."""
        found = {GPU_RESOURCE: self.gpu} if self.gpu else {}
        found.update(self.devices)
        return found


@dataclasses.dataclass(frozen=True)
class NodePrice:
    """A node's hourly price and OpenCost's split of it into unit prices."""

    total: float
    cpu: float  # $ per core-hour
    ram: float  # $ per GiB-hour
    gpu: float  # $ per GPU-hour
    spot: bool = False


def split(total: float, capacity: Capacity, *, spot: bool = False) -> NodePrice:
    """OpenCost's split of a node's total hourly price (see the module's doc)."""
    multiple = capacity.gpu * GPU_TO_RAM + capacity.cpu * CPU_TO_RAM + capacity.memory / GIB
    if multiple <= 0:
        return NodePrice(total, 0.0, 0.0, 0.0, spot)
    ram = total / multiple
    return NodePrice(total, ram * CPU_TO_RAM, ram, ram * GPU_TO_RAM if capacity.gpu else 0.0, spot)


def capacity_of(resources: Mapping[str, Any], setup: gpus.GPUSetup | None = None) -> Capacity:
    """Cores, bytes and physical GPUs of a resource list (a node's capacity, an instance type's
    resources): the setup's GPUs where its GPU setup is known, else its nvidia.com/gpu."""
    gpu = setup.count if setup is not None else quantity(resources.get(GPU_RESOURCE)) or 0.0
    return Capacity(quantity(resources.get("cpu")) or 0.0, quantity(resources.get("memory")) or 0.0, float(gpu))


#: Compute slices of a MIG-capable GPU (its 7g profile's): a MIG device holds its slices' share.
MIG_SLICES = 7
_MIG_SLICES_OF = re.compile(r"^nvidia\.com/mig-(\d+)g\.")


def gpu_fraction(setup: gpus.GPUSetup | None, resource: str) -> float:
    """Whole GPUs one device of ``resource`` holds on a node whose GPUs are set up so (None: not known):
    1 for nvidia.com/gpu on a plain node; 1/replicas for a replica of a time-sliced GPU (nvidia.com/gpu or,
    renamed, nvidia.com/gpu.shared); for a MIG device (nvidia.com/mig-<profile>, or nvidia.com/gpu under
    the single strategy) its profile's compute slices over the GPU's (gpus.MIG_PROFILES: 1g.5gb is 1/7 of
    an A100, 3g.20gb 3/7). A device the setup does not name counts by its name alone."""
    if setup is not None:
        mig = setup.mig
        profiles = gpus.MIG_PROFILES.get(setup.key, {})
        if mig and resource == GPU_RESOURCE and setup.mig_strategy == "single":
            # One MIG device type per GPU; a node labelled single over a mixed layout (GFD calls it
            # mig-strategy-invalid) gets its devices' average rather than an error.
            slices = sum(profiles[p].slices_gi * n for p, n in mig.items()) / sum(mig.values())
            return slices / _slices(setup.key)
        if resource.startswith(MIG_PREFIX):
            found = next((p for p in profiles.values() if MIG_PREFIX + p.resource == resource), None)
            if found is not None:
                return found.slices_gi / _slices(setup.key)
        if setup.shared and resource in (GPU_RESOURCE, SHARED_GPU):
            return 1.0 / setup.replicas
    if match := _MIG_SLICES_OF.match(resource):
        return min(int(match[1]), MIG_SLICES) / MIG_SLICES
    return 1.0


def _slices(key: str) -> int:
    return max((p.slices_gi for p in gpus.MIG_PROFILES.get(key, {}).values()), default=MIG_SLICES)


def gpu_share(setup: gpus.GPUSetup | None, requests: Capacity) -> float:
    """Whole GPUs a pod's GPU devices hold on a node whose GPUs are set up so (see gpu_fraction)."""
    return sum(count * gpu_fraction(setup, name) for name, count in requests.gpu_devices().items())


def node_setup(node: Mapping[str, Any], table: PriceTable | None = None) -> gpus.GPUSetup | None:
    """A Node's GPUs as set up, from its labels and capacity (gpus.inventory); failing that, its
    instance type's in the table (a gone node's recorded labels may not say)."""
    name = str((node.get("metadata") or {}).get("name") or "")
    found = gpus.inventory([node]).get(name)
    if found is None and table is not None:
        labels = (node.get("metadata") or {}).get("labels") or {}
        found = table.setups.get(labels.get(INSTANCE_TYPE_LABEL) or "")
    return found


@dataclasses.dataclass(frozen=True)
class PriceTable:
    """Hourly prices and resources by instance type, from the one price table and the static pools."""

    on_demand: dict[str, float]
    spot_discount: float
    resources: dict[str, Capacity]
    region: str = "us-east-1"
    gpu_types: dict[str, str | None] = dataclasses.field(default_factory=dict)
    #: GPU setups (MIG, time-slicing) by instance type, and the GPU devices each type's nodes advertise.
    setups: dict[str, gpus.GPUSetup] = dataclasses.field(default_factory=dict)
    devices: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, catalog: Catalog, types: Iterable[InstanceType] = ()) -> PriceTable:
        types = list(types)
        # A MIG or time-sliced variant of an EC2 type (its own name in Karpenter's file) costs what the type does.
        prices = {**catalog.prices, **{t.name: t.on_demand_price for t in types}}
        setups = {t.name: s for t in types if (s := t.gpu_setup) is not None}
        return cls(prices, catalog.spot_discount, {t.name: capacity_of(t.resources, setups.get(t.name)) for t in types},
                   catalog.region, {t.name: t.gpu_type for t in types}, setups,
                   {t.name: {k: quantity(v) or 0.0 for k, v in t.resources.items() if is_gpu_device(k)}
                    for t in types})

    def devices_of(self, name: str) -> dict[str, float]:
        """The GPU devices a node of this type advertises (nvidia.com/gpu for a table built by hand)."""
        if name in self.devices:
            return self.devices[name]
        cap = self.resources.get(name)
        return {GPU_RESOURCE: cap.gpu} if cap is not None and cap.gpu else {}

    def allowed(self, name: str, selector: Mapping[str, str]) -> bool:
        """Whether a pod's nodeSelector lets it onto this instance type (its instance-type and
        ``accelerator`` labels; other labels are the NodePool's business)."""
        if INSTANCE_TYPE_LABEL in selector and selector[INSTANCE_TYPE_LABEL] != name:
            return False
        accelerator = selector.get(ACCELERATOR_LABEL)
        return accelerator is None or accelerator == f"nvidia-{self.gpu_types.get(name)}"

    def hourly(self, instance_type: str | None, capacity_type: str | None) -> float | None:
        """The instance type's price per hour for that capacity type; None when the table lacks it."""
        price = self.on_demand.get(instance_type or "")
        if price is None:
            return None
        return price * self.spot_discount if capacity_type == "spot" else price

    def holds(self, name: str, room: Capacity, devices: Mapping[str, float], need: Capacity) -> bool:
        """Whether a node of type ``name`` with ``room`` (cores, bytes) and GPU ``devices`` left holds
        ``need``: every GPU device it asks for by name (a MIG pod needs that MIG device, a renamed
        replica nvidia.com/gpu.shared), and GPU types only for pods that ask for GPU devices."""
        wanted = need.gpu_devices()
        return (room.cpu >= need.cpu - 1e-9 and room.memory >= need.memory - 1e-9
                and all(devices.get(k, 0.0) >= v - 1e-9 for k, v in wanted.items())
                and bool(wanted) == any(self.devices_of(name).values()))

    def cheapest_fit(self, need: Capacity, selector: Mapping[str, str] | None = None) -> tuple[str, float] | None:
        """(instance type, on-demand $/h) of the cheapest type the selector allows whose resources hold
        ``need``, GPU devices by name and only when asked for (as Karpenter picks among the offerings a
        NodePool allows); None when none does."""
        fits = [(price, name) for name, price in self.on_demand.items()
                if (cap := self.resources.get(name)) is not None and self.allowed(name, selector or {})
                and self.holds(name, cap, self.devices_of(name), need)]
        if not fits:
            return None
        price, name = min(fits)
        return name, price


def node_facts(node: Mapping[str, Any], table: PriceTable) -> tuple[str | None, str, str, Capacity, NodePrice | None]:
    """(instance type, capacity type, pool, capacity with its physical GPUs, price) of a live Node object."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    status = node.get("status") or {}
    itype = labels.get(INSTANCE_TYPE_LABEL)
    ctype = labels.get(CAPACITY_TYPE_LABEL) or "on-demand"
    cap = capacity_of(status.get("capacity") or status.get("allocatable") or {}, node_setup(node, table))
    if not cap.cpu and not cap.memory and itype in table.resources:  # no status yet: its type's, its own GPUs
        cap = dataclasses.replace(table.resources[itype], gpu=cap.gpu or table.resources[itype].gpu)
    hourly = table.hourly(itype, ctype)
    pool = str(labels.get(POOL_LABEL) or itype or "default")
    return itype, ctype, pool, cap, None if hourly is None else split(hourly, cap, spot=ctype == "spot")


# --------------------------------------------------------------------------- windows

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([mhdw])")
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _instant(text: str) -> dt.datetime:
    text = text.strip()
    if re.fullmatch(r"\d{9,11}", text):
        return dt.datetime.fromtimestamp(int(text), dt.UTC)
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        raise ValueError("an RFC 3339 time needs its offset (Z or ±hh:mm)")
    return when.astimezone(dt.UTC)


def parse_window(window: str, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of an OpenCost window: a duration back from now (``30m``, ``1h``, ``24h``, ``7d``,
    ``2w``), ``today``, ``yesterday``, ``week`` (since Sunday), ``month``, ``lastweek``, ``lastmonth``
    (UTC), or a pair ``start,end`` of RFC 3339 times or Unix seconds. WindowError otherwise."""
    text = window.strip().lower()
    midnight = now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    forms = ("30m, 1h, 24h, 7d, 2w, today, yesterday, week, month, lastweek, lastmonth, "
             "or start,end as RFC 3339 times or Unix seconds")
    start: dt.datetime
    end = now
    if match := _DURATION.fullmatch(text):
        seconds = float(match[1]) * _UNITS[match[2]]
        if seconds <= 0:
            raise WindowError(f"window {window!r} is empty: give a positive duration")
        try:
            start = now - dt.timedelta(seconds=seconds)
        except OverflowError:
            raise WindowError(f"window {window!r} reaches back before the year 1") from None
    elif text == "today":
        start = midnight
    elif text == "yesterday":
        start, end = midnight - dt.timedelta(days=1), midnight
    elif text in ("week", "lastweek"):
        sunday = midnight - dt.timedelta(days=(midnight.weekday() + 1) % 7)
        start, end = (sunday, now) if text == "week" else (sunday - dt.timedelta(days=7), sunday)
    elif text in ("month", "lastmonth"):
        first = midnight.replace(day=1)
        if text == "month":
            start = first
        else:
            start, end = (first - dt.timedelta(days=1)).replace(day=1), first
    elif "," in text:
        parts = window.split(",")
        if len(parts) != 2:
            raise WindowError(f"window {window!r} does not parse: a pair is start,end; expected {forms}")
        try:
            start, end = _instant(parts[0]), _instant(parts[1])
        except (ValueError, OverflowError, OSError) as exc:
            raise WindowError(f"window {window!r} does not parse ({exc}); expected {forms}") from None
    else:
        raise WindowError(f"window {window!r} does not parse; expected {forms}")
    if end <= start:
        raise WindowError(f"window {window!r} is empty: its end must come after its start")
    return start, end


# --------------------------------------------------------------------------- allocation


@dataclasses.dataclass(frozen=True)
class NodeSpan:
    """A node as it existed: from ``start`` (None: before any window) to ``end`` (None: still there)."""

    name: str
    start: dt.datetime | None
    end: dt.datetime | None
    instance_type: str | None
    capacity_type: str
    pool: str
    capacity: Capacity
    price: NodePrice | None  # None: its instance type is not in the price table (it costs nothing here)
    gpu_setup: gpus.GPUSetup | None = None  # its GPUs' MIG or time-slicing, which sets its pods' GPU shares


@dataclasses.dataclass(frozen=True)
class PodSpan:
    """A pod bound to ``node`` from ``start`` to ``end`` (None: still running), with its requests and,
    when known, its average usage (cores, bytes) over its time."""

    namespace: str
    name: str
    tenant: str | None
    node: str
    start: dt.datetime | None
    end: dt.datetime | None
    requests: Capacity
    cpu_usage: float | None = None
    memory_usage: float | None = None


def _overlap(a0: dt.datetime | None, a1: dt.datetime | None, w0: dt.datetime, w1: dt.datetime
             ) -> tuple[dt.datetime, dt.datetime] | None:
    lo = w0 if a0 is None else max(a0, w0)
    hi = w1 if a1 is None else min(a1, w1)
    return (lo, hi) if hi > lo else None


@dataclasses.dataclass
class _Sum:
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    cpu_hours: float = 0.0
    ram_byte_hours: float = 0.0
    gpu_hours: float = 0.0
    cpu_cost: float = 0.0
    ram_cost: float = 0.0
    gpu_cost: float = 0.0
    cpu_usage_hours: float = 0.0  # of the pods whose usage is known
    cpu_usage_req_hours: float = 0.0  # their requested core-hours
    ram_usage_hours: float = 0.0
    ram_usage_req_hours: float = 0.0
    properties: dict[str, Any] = dataclasses.field(default_factory=dict)

    def span(self, lo: dt.datetime, hi: dt.datetime) -> None:
        self.start = lo if self.start is None else min(self.start, lo)
        self.end = hi if self.end is None else max(self.end, hi)


def _key(aggregate: Aggregate, pod: PodSpan | None, node: NodeSpan) -> str:
    if aggregate == "node":
        return node.name
    if aggregate == "pool":
        return node.pool
    if pod is None:
        return IDLE
    if aggregate == "namespace":
        return pod.namespace
    return pod.tenant or UNALLOCATED


def allocate(nodes: Iterable[NodeSpan], pods: Iterable[PodSpan], start: dt.datetime, end: dt.datetime,
             aggregate: Aggregate) -> dict[str, dict[str, Any]]:
    """Allocations by ``aggregate`` over [start, end), ``__idle__`` included (see the module's doc)."""
    by_node = {n.name: n for n in nodes}
    sums: dict[str, _Sum] = {}
    idle = _Sum()
    node_cost: dict[str, list[float]] = {}
    for node in by_node.values():
        window = _overlap(node.start, node.end, start, end)
        if window is None or node.price is None:
            continue
        hours = (window[1] - window[0]).total_seconds() / 3600
        cap, price = node.capacity, node.price
        node_cost[node.name] = [cap.cpu * hours * price.cpu, cap.memory / GIB * hours * price.ram,
                                cap.gpu * hours * price.gpu, cap.cpu * hours, cap.memory * hours, cap.gpu * hours]
        idle.span(*window)
    for pod in pods:
        host = by_node.get(pod.node)
        if host is None or host.price is None or pod.node not in node_cost:
            continue
        window = _overlap(pod.start, pod.end, start, end)
        window = window and _overlap(host.start, host.end, *window)
        if window is None:
            continue
        hours = (window[1] - window[0]).total_seconds() / 3600
        key = _key(aggregate, pod, host)
        entry = sums.setdefault(key, _Sum(properties=_properties(aggregate, key, pod, host)))
        entry.span(*window)
        req, price = pod.requests, host.price
        share = gpu_share(host.gpu_setup, req)
        cost = (req.cpu * hours * price.cpu, req.memory / GIB * hours * price.ram, share * hours * price.gpu)
        entry.cpu_hours += req.cpu * hours
        entry.ram_byte_hours += req.memory * hours
        entry.gpu_hours += share * hours
        entry.cpu_cost += cost[0]
        entry.ram_cost += cost[1]
        entry.gpu_cost += cost[2]
        left = node_cost[pod.node]
        for i, value in enumerate((*cost, req.cpu * hours, req.memory * hours, share * hours)):
            left[i] -= value
        if pod.cpu_usage is not None:
            entry.cpu_usage_hours += pod.cpu_usage * hours
            entry.cpu_usage_req_hours += req.cpu * hours
        if pod.memory_usage is not None:
            entry.ram_usage_hours += pod.memory_usage * hours
            entry.ram_usage_req_hours += req.memory * hours
    for left in node_cost.values():
        idle.cpu_cost += left[0]
        idle.ram_cost += left[1]
        idle.gpu_cost += left[2]
        idle.cpu_hours += left[3]
        idle.ram_byte_hours += left[4]
        idle.gpu_hours += left[5]
    result = {key: _document(key, entry, start, end) for key, entry in sorted(sums.items())}
    if node_cost:
        idle.properties = {"cluster": CLUSTER}
        result[IDLE] = _document(IDLE, idle, start, end)
    return result


def _properties(aggregate: Aggregate, key: str, pod: PodSpan, node: NodeSpan) -> dict[str, Any]:
    props: dict[str, Any] = {"cluster": CLUSTER}
    if aggregate == "namespace":
        props["namespace"] = key
    elif aggregate == "tenant":
        props["labels"] = {"tenant": key} if key != UNALLOCATED else {}
    elif aggregate == "node":
        props.update(node=node.name, providerID=node.name)
    else:
        props["labels"] = {POOL_LABEL: key}
    return props


def _document(name: str, s: _Sum, w0: dt.datetime, w1: dt.datetime) -> dict[str, Any]:
    """One allocation, with OpenCost's field names (the network, load balancer, PV and shared costs the
    simulator has none of are 0)."""
    lo, hi = s.start or w0, s.end or w1
    hours = max((hi - lo).total_seconds() / 3600, 0.0)
    cpu_req = s.cpu_hours / hours if hours else 0.0
    ram_req = s.ram_byte_hours / hours if hours else 0.0
    cpu_eff = s.cpu_usage_hours / s.cpu_usage_req_hours if s.cpu_usage_req_hours > 0 else None
    ram_eff = s.ram_usage_hours / s.ram_usage_req_hours if s.ram_usage_req_hours > 0 else None
    cpu_use = s.cpu_usage_hours / hours if hours and cpu_eff is not None else None
    ram_use = s.ram_usage_hours / hours if hours and ram_eff is not None else None
    weighted = [(e, c) for e, c in ((cpu_eff, s.cpu_cost), (ram_eff, s.ram_cost)) if e is not None]
    weight = sum(c for _, c in weighted)
    total_eff = sum(e * c for e, c in weighted) / weight if weighted and weight > 0 else None
    total = s.cpu_cost + s.ram_cost + s.gpu_cost
    return {
        "name": name, "properties": s.properties,
        "window": {"start": iso(w0), "end": iso(w1)}, "start": iso(lo), "end": iso(hi),
        "minutes": round(hours * 60, 6),
        "cpuCores": round(cpu_req, 6), "cpuCoreRequestAverage": round(cpu_req, 6),
        "cpuCoreUsageAverage": None if cpu_use is None else round(cpu_use, 6),
        "cpuCoreHours": round(s.cpu_hours, 6), "cpuCost": round(s.cpu_cost, 6), "cpuCostAdjustment": 0.0,
        "cpuEfficiency": None if cpu_eff is None else round(cpu_eff, 6),
        "gpuCount": round(s.gpu_hours / hours, 6) if hours else 0.0, "gpuHours": round(s.gpu_hours, 6),
        "gpuCost": round(s.gpu_cost, 6), "gpuCostAdjustment": 0.0,
        "networkTransferBytes": 0.0, "networkReceiveBytes": 0.0, "networkCost": 0.0, "loadBalancerCost": 0.0,
        "pvBytes": 0.0, "pvByteHours": 0.0, "pvCost": 0.0, "pvCostAdjustment": 0.0,
        "ramBytes": round(ram_req, 3), "ramByteRequestAverage": round(ram_req, 3),
        "ramByteUsageAverage": None if ram_use is None else round(ram_use, 3),
        "ramByteHours": round(s.ram_byte_hours, 3), "ramCost": round(s.ram_cost, 6), "ramCostAdjustment": 0.0,
        "ramEfficiency": None if ram_eff is None else round(ram_eff, 6),
        "sharedCost": 0.0, "externalCost": 0.0, "totalCost": round(total, 6),
        "totalEfficiency": None if total_eff is None else round(total_eff, 6),
    }


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def hourly_now(nodes: Iterable[NodeSpan]) -> float:
    """$ per hour of the nodes there are now (those with no end)."""
    return sum(n.price.total for n in nodes if n.end is None and n.price is not None)


# --------------------------------------------------------------------------- what Karpenter would add


def karpenter_nodes(unplaced: Iterable[Capacity | tuple[Capacity, Mapping[str, str]]], table: PriceTable
                    ) -> tuple[dict[str, int], float, int]:
    """For pods that fit nowhere (their requests, GPU devices included, and their nodeSelector if
    given): the nodes Karpenter would launch (instance type → count), packing the pods first-fit
    decreasing onto the cheapest instance type that holds each new node's first pod, as its
    bin-packing does; the added on-demand $/month (730 h); and how many pods no type holds. GPU
    devices pack by name against what each type advertises: a pod asking for a MIG device needs a
    type with that MIG device left, one asking for nvidia.com/gpu.shared a renamed time-sliced type,
    and a type without such devices (the default catalog has none) leaves it unfit, not GPU-free."""
    wanted = [(u, {}) if isinstance(u, Capacity) else u for u in unplaced]
    opened: list[tuple[str, list[float], dict[str, float]]] = []
    counts: dict[str, int] = {}
    monthly = 0.0
    none = 0
    for need, selector in sorted(wanted, key=lambda w: (-sum(w[0].gpu_devices().values()), -w[0].cpu,
                                                       -w[0].memory)):
        found = next(((r, d) for t, r, d in opened
                      if table.holds(t, Capacity(r[0], r[1]), d, need) and table.allowed(t, selector)), None)
        if found is None:
            pick = table.cheapest_fit(need, selector)
            if pick is None:
                none += 1
                continue
            name, price = pick
            cap = table.resources[name]
            found = ([cap.cpu, cap.memory], dict(table.devices_of(name)))
            opened.append((name, *found))
            counts[name] = counts.get(name, 0) + 1
            monthly += price * HOURS_PER_MONTH
        room, devices = found
        room[0] -= need.cpu
        room[1] -= need.memory
        for key, value in need.gpu_devices().items():
            devices[key] = devices.get(key, 0.0) - value
    return dict(sorted(counts.items())), round(monthly, 2), none


# --------------------------------------------------------------------------- from the recorded history


def node_spans(recorded: Iterable[Mapping[str, Any]], live: Iterable[Mapping[str, Any]], table: PriceTable
               ) -> list[NodeSpan]:
    """Recorded nodes (name, labels, created_at, deleted_at) as spans: capacity from the live Node while
    it exists, else from its instance type's resources; its GPU setup from the live Node, else from its
    recorded labels (GFD's), else from its instance type; the price from the table."""
    live_by_name = {n["metadata"]["name"]: n for n in live}
    spans = []
    for row in recorded:
        labels = row.get("labels") or {}
        current = live_by_name.get(row["name"]) if row.get("deleted_at") is None else None
        itype = labels.get(INSTANCE_TYPE_LABEL)
        ctype = labels.get(CAPACITY_TYPE_LABEL) or "on-demand"
        setup = node_setup(current if current is not None else {"metadata": {"name": row["name"], "labels": labels}},
                           table)
        if current is not None:
            cap = node_facts(current, table)[3]
        else:
            cap = table.resources.get(itype or "", Capacity())
        if setup is not None:
            cap = dataclasses.replace(cap, gpu=float(setup.count))
        hourly = table.hourly(itype, ctype)
        spans.append(NodeSpan(row["name"], row.get("created_at"), row.get("deleted_at"), itype, ctype,
                              str(labels.get(POOL_LABEL) or itype or "default"), cap,
                              None if hourly is None else split(hourly, cap, spot=ctype == "spot"), setup))
    return spans


def pod_spans(recorded: Iterable[Mapping[str, Any]], live: Iterable[Mapping[str, Any]],
              usage: Mapping[tuple[str, str], tuple[float, float]] | None = None) -> tuple[list[PodSpan], int]:
    """Recorded pods (namespace, name, tenant, owner_uid, node, requests, bound_at, ended_at, deleted_at)
    as spans, and how many had no known requests. The history holds each pod's requests (cores, bytes,
    nvidia.com/gpu and, when it asks for other GPU devices, their (resource, count) pairs); for one
    recorded before it did, a pod still there has its own, a gone one its live sibling's of the same
    owner (one ReplicaSet, one template); else none are known and its share of the node stays idle.
    Usage (cores, bytes by namespace/name) is what the metrics API reports now, for the pods still running."""
    by_uid: dict[str, Capacity] = {}
    by_owner: dict[str, Capacity] = {}
    for pod in live:
        spec = pod.get("spec") or {}
        r = pod_requests(spec)
        found = Capacity(r.cpu, r.memory, r.gpu, other_devices(spec))
        meta = pod.get("metadata") or {}
        by_uid[meta.get("uid", "")] = found
        for ref in meta.get("ownerReferences") or []:
            by_owner.setdefault(ref.get("uid", ""), found)
    spans, unknown = [], 0
    for row in recorded:
        recorded_requests = row.get("requests")
        requests = (recorded_capacity(recorded_requests) if recorded_requests
                    else by_uid.get(row["uid"]) or by_owner.get(row.get("owner_uid") or ""))
        if requests is None:
            unknown += 1
            continue
        ended = row.get("ended_at") or row.get("deleted_at")
        used = (usage or {}).get((row["namespace"], row["name"])) if ended is None else None
        spans.append(PodSpan(row["namespace"], row["name"], row.get("tenant"), row["node"], row.get("bound_at"),
                             ended, requests, None if used is None else used[0], None if used is None else used[1]))
    return spans, unknown


def recorded_capacity(recorded: Any) -> Capacity:
    """A pod's recorded requests (see lifecycle.State.requests: a triple, or with a fourth item of GPU
    device pairs) as a Capacity."""
    parsed = lifecycle.requests_of(recorded)
    return Capacity(parsed[0], parsed[1], parsed[2], tuple(sorted(parsed[3])) if len(parsed) > 3 else ())
