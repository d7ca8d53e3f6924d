"""The instance types Karpenter may launch: built from the static pools (``nodepools.yaml``) and the
catalog of ``cluster/karpenter/instance-types.yaml`` (prices from one documented table, extra GPU
types), in the JSON that Karpenter's KWOK provider decodes. Pure and unit-tested.

The provider's loader (sigs.k8s.io/karpenter ``kwok/cloudprovider/helpers.go``) decodes a list of
``{name, offerings, architecture, operatingSystems, resources}``, and each offering as its Go struct's
fields: ``Price``, ``Available`` and ``Requirements`` (node-selector requirements: capacity type, zone).
Offering keys like ``capacityType`` or ``zone`` (its own example GPU file uses them) are silently
ignored: such an offering has no zone and no capacity type. The loader also decodes a malformed file
to nothing and Karpenter runs on with no instance types, so everything is checked here first.

A static pool with MIG or time-slicing gives its instance type the pool's device resources (what
``gpus.GPUSetup.resources`` gives its static nodes). The provider finds the instance type of a new
node by name (the first of that name in the file), so one name cannot hold two shapes: when a plain
pool or the catalog also has that EC2 name, every MIG or time-sliced pool on it gets a variant
``<ec2 name>-<shape>`` (``p4d.24xlarge-mig-mixed-all-balanced``, ``g4dn.12xlarge-time-sliced-4``),
priced as the EC2 type; otherwise it keeps the EC2 name, so its nodes carry the same
``node.kubernetes.io/instance-type`` as the pool's static nodes. Each entry also carries a ``k8sim``
object (the EC2 name and the pool's ``gpu`` setting) for the node bootstrap; the loader's
``json.Unmarshal`` ignores fields its struct lacks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from k8sim import gpus, topology
from k8sim.settings import CLUSTER_DATA

CATALOG = CLUSTER_DATA / "karpenter" / "instance-types.yaml"
CAPACITY_TYPE = "karpenter.sh/capacity-type"
ZONE = "topology.kubernetes.io/zone"
REGION = "topology.kubernetes.io/region"
GPU_RESOURCE = "nvidia.com/gpu"
CAPACITY_TYPES = ("on-demand", "spot")
DEFAULT_PODS = "110"
DEFAULT_EPHEMERAL_STORAGE = "500Gi"

_SUFFIXES: dict[str, Decimal | int] = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
             "m": Decimal("0.001"), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}


class InstanceTypeError(ValueError):
    """A catalog, price table or pool that cannot make instance types (the message says why)."""


def parse_quantity(value: Any) -> Decimal:
    """A Kubernetes quantity ("32", "500m", "128Gi") as a number; InstanceTypeError when it is none."""
    text = str(value).strip()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if text.endswith(suffix) and text[: -len(suffix)]:
            number, scale = text[: -len(suffix)], Decimal(_SUFFIXES[suffix])
            break
    else:
        number, scale = text, Decimal(1)
    try:
        parsed = Decimal(number) * scale
    except InvalidOperation:
        raise InstanceTypeError(f"{value!r} is not a Kubernetes quantity") from None
    if not parsed.is_finite() or parsed < 0:
        raise InstanceTypeError(f"{value!r} is not a Kubernetes quantity")
    return parsed


@dataclass(frozen=True)
class InstanceType:
    name: str
    resources: dict[str, str]
    gpu_type: str | None
    on_demand_price: float
    offerings: list[dict[str, Any]] = field(default_factory=list)
    #: The EC2 name: ``name`` itself unless this is a MIG or time-sliced variant of it.
    ec2_name: str = ""
    #: The ``gpu`` setting of the pool (or catalog entry) it comes from; None for a CPU type.
    gpu: dict[str, Any] | None = None
    #: The static pools it is the instance type of (none for the catalog's).
    pools: tuple[str, ...] = ()

    @property
    def family(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def machine(self) -> str:
        return self.ec2_name or self.name

    @property
    def gpu_setup(self) -> gpus.GPUSetup | None:
        return gpus.setup(self.gpu) if self.gpu else None

    @property
    def shaped(self) -> bool:
        """Whether its GPUs are partitioned (MIG) or shared (time-slicing)."""
        return bool(self.gpu) and gpu_shape(self.gpu) != ""


@dataclass(frozen=True)
class Catalog:
    region: str
    zones: list[str]
    spot_discount: float
    prices: dict[str, float]
    extra_types: dict[str, dict[str, Any]]


def load_catalog(path: Path = CATALOG) -> Catalog:
    """The catalog file, checked: a malformed price table fails here, naming what is wrong."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InstanceTypeError(f"{path}: not YAML: {exc}") from None
    if not isinstance(data, dict):
        raise InstanceTypeError(f"{path}: expected a mapping with on_demand_usd_per_hour, zones, region")
    prices = data.get("on_demand_usd_per_hour")
    if not isinstance(prices, dict) or not prices:
        raise InstanceTypeError(f"{path}: on_demand_usd_per_hour must map instance types to hourly prices")
    checked: dict[str, float] = {}
    for name, price in prices.items():
        if isinstance(price, bool) or not isinstance(price, int | float) or not math.isfinite(price) or price <= 0:
            raise InstanceTypeError(f"{path}: the price of {name} must be a positive number of dollars, not {price!r}")
        checked[str(name)] = float(price)
    zones = data.get("zones")
    if not isinstance(zones, list) or not zones or not all(isinstance(z, str) and z for z in zones):
        raise InstanceTypeError(f"{path}: zones must be a non-empty list of zone names")
    discount = data.get("spot_discount", 0.7)
    if isinstance(discount, bool) or not isinstance(discount, int | float) or not 0 < discount <= 1:
        raise InstanceTypeError(f"{path}: spot_discount must be a number in (0, 1], not {discount!r}")
    extra = data.get("extra_types") or {}
    if not isinstance(extra, dict):
        raise InstanceTypeError(f"{path}: extra_types must map instance types to their resources")
    region = data.get("region")
    if not isinstance(region, str) or not region:
        raise InstanceTypeError(f"{path}: region must name the price table's region")
    return Catalog(region=region, zones=list(zones), spot_discount=float(discount), prices=checked,
                   extra_types={str(k): dict(v or {}) for k, v in extra.items()})


def _resources(name: str, spec: dict[str, Any], gpu_types: tuple[str, ...]) -> tuple[dict[str, str], str | None]:
    resources = {"cpu": str(spec.get("cpu", "16")), "memory": str(spec.get("memory", "64Gi")),
                 "pods": str(spec.get("pods", DEFAULT_PODS)),
                 "ephemeral-storage": str(spec.get("ephemeral_storage", DEFAULT_EPHEMERAL_STORAGE))}
    for resource, value in resources.items():
        if parse_quantity(value) <= 0:
            raise InstanceTypeError(f"instance type {name}: {resource} must be positive, not {value!r}")
    gpu = spec.get("gpu")
    gpu_type = None
    if gpu:
        gpu_type = str(gpu.get("type"))
        if gpu_type not in gpu_types:
            raise InstanceTypeError(f"instance type {name}: gpu.type must be one of {gpu_types}, not {gpu_type!r}")
        count = int(gpu.get("count", 1))
        if count < 1:
            raise InstanceTypeError(f"instance type {name}: gpu.count must be at least 1")
        resources.update({k: str(v) for k, v in _gpu_setup(name, gpu).resources().items()})
    return resources, gpu_type


def _gpu_setup(name: str, gpu: dict[str, Any]) -> gpus.GPUSetup:
    try:
        return gpus.setup(gpu)
    except gpus.GPUError as exc:
        raise InstanceTypeError(f"instance type {name}: {exc}") from None


def gpu_shape(gpu: dict[str, Any] | None) -> str:
    """What sets a GPU setting's devices apart from whole GPUs, as an instance-type name suffix
    ("mig-mixed-all-balanced", "time-sliced-4", "time-sliced-4-renamed"); "" for whole GPUs."""
    if not gpu:
        return ""
    found = gpus.setup(gpu)
    if found.mig_strategy and found.mig_layout is not None:
        return f"mig-{found.mig_strategy}-{found.mig_layout}"
    if found.shared:
        return f"time-sliced-{found.replicas}" + ("-renamed" if found.rename else "")
    return ""


def offerings(price: float, catalog: Catalog) -> list[dict[str, Any]]:
    """One offering per zone and capacity type, as the loader decodes them (see the module's doc)."""
    rows = []
    for zone in catalog.zones:
        for capacity_type in CAPACITY_TYPES:
            cost = price if capacity_type == "on-demand" else price * catalog.spot_discount
            rows.append({"Price": round(cost, 6), "Available": True, "Requirements": [
                {"key": CAPACITY_TYPE, "operator": "In", "values": [capacity_type]},
                {"key": ZONE, "operator": "In", "values": [zone]},
                {"key": REGION, "operator": "In", "values": [catalog.region]},
            ]})
    return rows


def instance_types(pools: list[dict[str, Any]], catalog: Catalog) -> list[InstanceType]:
    """Every static pool's instance type (its resources as the pool gives them, MIG and time-slicing
    included) and the catalog's extra types, each priced from the one table; an instance type the
    table lacks is an error. A MIG or time-sliced pool's type is a variant when its EC2 name has
    another shape too (see the module's doc)."""
    shapes: dict[str, set[str]] = {}
    for pool in pools:
        name = pool.get("instance_type")
        if not name:
            raise InstanceTypeError(f"pool {pool.get('name')}: Karpenter needs its instance_type")
        try:
            shapes.setdefault(str(name), set()).add(gpu_shape(pool.get("gpu")))
        except gpus.GPUError as exc:
            raise InstanceTypeError(f"pool {pool.get('name')}: {exc}") from None
    for name in catalog.extra_types:
        shapes.setdefault(name, set()).add("")
    specs: dict[str, dict[str, Any]] = {}
    ec2: dict[str, str] = {}
    owners: dict[str, list[str]] = {}
    for pool in pools:
        base = str(pool["instance_type"])
        shape = gpu_shape(pool.get("gpu"))
        name = f"{base}-{shape}" if shape and len(shapes[base]) > 1 else base
        if len(name) > 63:
            raise InstanceTypeError(f"pool {pool['name']}: instance type {name} is longer than a label value "
                                    "may be (63); shorten the EC2 name or the MIG layout's")
        if name in specs and specs[name] != pool_spec(pool):
            raise InstanceTypeError(f"instance type {name}: two pools give it different resources")
        specs[name] = pool_spec(pool)
        ec2[name] = base
        owners.setdefault(name, []).append(str(pool["name"]))
    for name, spec in catalog.extra_types.items():
        if name in specs:
            raise InstanceTypeError(f"instance type {name}: in extra_types and in a static pool; keep one")
        specs[name] = spec
        ec2[name] = name
    result = []
    for name, spec in specs.items():
        if ec2[name] not in catalog.prices:
            raise InstanceTypeError(f"instance type {ec2[name]}: no price in the price table (on_demand_usd_per_hour)")
        resources, gpu_type = _resources(name, spec, topology.GPU_TYPES)
        price = catalog.prices[ec2[name]]
        gpu = {str(k): v for k, v in spec["gpu"].items()} if spec.get("gpu") else None
        result.append(InstanceType(name, resources, gpu_type, price, offerings(price, catalog), ec2_name=ec2[name],
                                   gpu=gpu, pools=tuple(owners.get(name, ()))))
    return result


def pool_spec(pool: dict[str, Any]) -> dict[str, Any]:
    return {k: pool[k] for k in ("cpu", "memory", "pods", "ephemeral_storage", "gpu") if k in pool}


def provider_file(types: list[InstanceType]) -> list[dict[str, Any]]:
    """The instance-type file of Karpenter's KWOK provider (write it as JSON)."""
    return [{"name": t.name, "offerings": t.offerings, "architecture": "amd64", "operatingSystems": ["linux"],
             "resources": dict(t.resources), "k8sim": {"instanceType": t.machine, **({"gpu": t.gpu} if t.gpu else {})}}
            for t in types]


def resources_by_type(document: Any) -> dict[str, dict[str, str]]:
    """Each instance type's resources from a provider file, checked as its loader would need them."""
    if not isinstance(document, list):
        raise InstanceTypeError("an instance-type file is a JSON list of instance types")
    found: dict[str, dict[str, str]] = {}
    for entry in document:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise InstanceTypeError("every instance type needs a name")
        resources = entry.get("resources")
        if not isinstance(resources, dict) or "cpu" not in resources or "memory" not in resources:
            raise InstanceTypeError(f"instance type {entry['name']}: resources need cpu and memory")
        for value in resources.values():
            parse_quantity(value)
        found[entry["name"]] = {str(k): str(v) for k, v in resources.items()}
    return found


def gpus_by_type(document: Any) -> dict[str, tuple[gpus.GPUSetup, str]]:
    """Each GPU instance type's GPUs as set up (MIG, time-slicing) and its EC2 name, from the ``k8sim``
    objects of a provider file; a file without them (an older one) gives none."""
    resources_by_type(document)
    found: dict[str, tuple[gpus.GPUSetup, str]] = {}
    for entry in document:
        ours = entry.get("k8sim")
        if ours is None:
            continue
        if not isinstance(ours, dict) or not isinstance(ours.get("gpu", {}), dict):
            raise InstanceTypeError(f"instance type {entry['name']}: k8sim must be {{instanceType, gpu}}")
        if ours.get("gpu"):
            found[entry["name"]] = (_gpu_setup(entry["name"], ours["gpu"]), str(ours.get("instanceType") or
                                                                               entry["name"]))
    return found
