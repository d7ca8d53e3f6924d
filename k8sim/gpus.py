"""NVIDIA GPUs as the GPU Operator shows them: one table of per-model facts, the node labels GPU
Feature Discovery (GFD) writes from them, and each node's devices (index, UUID, PCI bus id), which
the model's DCGM series hang off (MIG instances and XID faults will too).

Sources of the table, per column:
- ``name``: what NVML (``nvidia-smi``, DCGM's ``modelName``) reports; GFD's ``nvidia.com/gpu.product``
  is that name sanitised as GFD's ``internal/lm/resource.go`` does (spaces become ``-``).
- ``memory_mib``: NVML's total framebuffer, GFD's ``nvidia.com/gpu.memory`` (ECC on GDDR parts
  takes its share: an L40S reports 46068, an H100 SXM5 81559); ``reserved_mib`` is what the driver
  keeps for itself (DCGM's FB_RESERVED; used + free + reserved = total).
- ``compute``: CUDA compute capability, from which GFD derives ``nvidia.com/gpu.family``.
- ``tdp_w``/``idle_w``: the board power limit and idle draw of the data sheets; ``sm_clock``/
  ``mem_clock``: maximum SM (boost) and memory clocks in MHz, ``*_idle`` the P8 state's.
- ``hbm``: HBM memory reports its own temperature (DCGM_FI_DEV_MEMORY_TEMP; GDDR parts report none);
  ``row_remap``: HBM parts from Ampere on remap rows (the REMAPPED_ROWS counters); ``nvlink``: SXM
  boards with NVLink; ``mig_capable``: A100 and H100.

Pure: no cluster, no clock (the caller passes GFD's timestamp).
"""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class GPUModel:
    key: str  # the node pools' gpu.type
    name: str  # NVML's name: DCGM's modelName
    memory_mib: int
    reserved_mib: int
    compute: tuple[int, int]
    tdp_w: float
    idle_w: float
    sm_clock: int
    sm_clock_idle: int
    mem_clock: int
    mem_clock_idle: int
    hbm: bool
    row_remap: bool
    nvlink: bool
    mig_capable: bool

    @property
    def product(self) -> str:
        """GFD's nvidia.com/gpu.product."""
        return sanitise(self.name)

    @property
    def family(self) -> str:
        return arch_family(*self.compute)

    @property
    def usable_mib(self) -> int:
        """Framebuffer a workload can use (total less the driver's reservation)."""
        return self.memory_mib - self.reserved_mib


MODELS: dict[str, GPUModel] = {m.key: m for m in [
    GPUModel("t4", "Tesla T4", 15360, 225, (7, 5), 70, 10, 1590, 300, 5001, 405,
             hbm=False, row_remap=False, nvlink=False, mig_capable=False),
    GPUModel("v100", "Tesla V100-SXM2-16GB", 16384, 307, (7, 0), 300, 40, 1530, 135, 877, 877,
             hbm=True, row_remap=False, nvlink=True, mig_capable=False),
    GPUModel("l40s", "NVIDIA L40S", 46068, 465, (8, 9), 350, 35, 2520, 210, 9001, 405,
             hbm=False, row_remap=False, nvlink=False, mig_capable=False),
    GPUModel("a10g", "NVIDIA A10G", 23028, 252, (8, 6), 300, 25, 1710, 210, 6251, 405,
             hbm=False, row_remap=False, nvlink=False, mig_capable=False),
    GPUModel("a100", "NVIDIA A100-SXM4-40GB", 40960, 571, (8, 0), 400, 50, 1410, 210, 1215, 1215,
             hbm=True, row_remap=True, nvlink=True, mig_capable=True),
    GPUModel("a100-80gb", "NVIDIA A100-SXM4-80GB", 81920, 593, (8, 0), 400, 55, 1410, 210, 1593, 1593,
             hbm=True, row_remap=True, nvlink=True, mig_capable=True),
    GPUModel("h100", "NVIDIA H100 80GB HBM3", 81559, 567, (9, 0), 700, 70, 1980, 345, 2619, 2619,
             hbm=True, row_remap=True, nvlink=True, mig_capable=True),
]}

#: The instance type each model comes in on AWS (a pool's default machine for it).
INSTANCE_TYPES = {"t4": "g4dn.12xlarge", "v100": "p3.8xlarge", "l40s": "g6e.12xlarge", "a10g": "g5.12xlarge",
                  "a100": "p4d.24xlarge", "a100-80gb": "p4de.24xlarge", "h100": "p5.48xlarge"}

#: The data-centre driver every GPU node runs (the GPU Operator's driver container) and the CUDA
#: version that driver supports (GFD's cuda.runtime-version is cuDriverGetVersion's).
DRIVER_VERSION = "580.95.05"
CUDA_VERSION = "13.0"

#: Data-centre GPUs are 3D controllers (PCI class 0x0302): GFD says compute.
GPU_MODE = "compute"


class GPUError(ValueError):
    """An unknown GPU model or an impossible count (the message says which)."""


def model(key: str) -> GPUModel:
    found = MODELS.get(key)
    if found is None:
        raise GPUError(f"unknown GPU type {key!r}; choose one of {tuple(MODELS)}")
    return found


def sanitise(text: str) -> str:
    """As GFD's sanitise: drop characters a label value cannot hold, runs of blanks become one ``-``."""
    return "-".join(re.sub(r"[^A-Za-z0-9\-_. ]", "", text).split())


def arch_family(major: int, minor: int) -> str:
    """GFD's getArchFamily (internal/lm/resource.go)."""
    families = {1: "tesla", 2: "fermi", 3: "kepler", 5: "maxwell", 6: "pascal", 9: "hopper", 10: "blackwell",
                12: "blackwell", 13: "rubin"}
    if major == 7:
        return "volta" if minor < 5 else "turing"
    if major == 8:
        return "ampere" if minor < 9 else "ada-lovelace"
    return families.get(major, "undefined")


def gfd_labels(key: str, count: int, instance_type: str, *, driver: str = DRIVER_VERSION, cuda: str = CUDA_VERSION,
               timestamp: int | None = None) -> dict[str, str]:
    """The labels GPU Feature Discovery, NFD and the GPU Operator put on a node with ``count`` GPUs
    of one model (no MIG, no sharing: replicas 1, strategy none). ``timestamp`` (epoch seconds) is
    GFD's nvidia.com/gfd.timestamp, left out when None (GFD's --no-timestamp)."""
    gpu = model(key)
    if count < 1:
        raise GPUError(f"a GPU node has at least one GPU, not {count}")
    parts = driver.split(".")
    if not 2 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise GPUError(f"driver version {driver!r} is not X.Y[.Z]")
    driver_major, driver_minor, driver_rev = parts[0], parts[1], parts[2] if len(parts) > 2 else ""
    cuda_major, _, cuda_minor = cuda.partition(".")
    labels = {
        "feature.node.kubernetes.io/pci-10de.present": "true",
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": gpu.product,
        "nvidia.com/gpu.memory": str(gpu.memory_mib),
        "nvidia.com/gpu.count": str(count),
        "nvidia.com/gpu.family": gpu.family,
        "nvidia.com/gpu.compute.major": str(gpu.compute[0]),
        "nvidia.com/gpu.compute.minor": str(gpu.compute[1]),
        "nvidia.com/gpu.replicas": "1",
        "nvidia.com/gpu.sharing-strategy": "none",
        "nvidia.com/gpu.mode": GPU_MODE,
        "nvidia.com/gpu.machine": sanitise(instance_type),
        "nvidia.com/mig.capable": str(gpu.mig_capable).lower(),
        "nvidia.com/mig.strategy": "single",  # the GPU Operator's default, MIG-capable or not
        "nvidia.com/mps.capable": "false",
        "nvidia.com/vgpu.present": "false",
        "nvidia.com/cuda.driver-version.full": driver,
        "nvidia.com/cuda.driver-version.major": driver_major,
        "nvidia.com/cuda.driver-version.minor": driver_minor,
        "nvidia.com/cuda.driver-version.revision": driver_rev,
        "nvidia.com/cuda.runtime-version.full": f"{cuda_major}.{cuda_minor}",
        "nvidia.com/cuda.runtime-version.major": cuda_major,
        "nvidia.com/cuda.runtime-version.minor": cuda_minor,
        # GFD still writes the names these replaced; selectors written against them keep working.
        "nvidia.com/cuda.driver.major": driver_major,
        "nvidia.com/cuda.driver.minor": driver_minor,
        "nvidia.com/cuda.driver.rev": driver_rev,
        "nvidia.com/cuda.runtime.major": cuda_major,
        "nvidia.com/cuda.runtime.minor": cuda_minor,
    }
    if timestamp is not None:
        labels["nvidia.com/gfd.timestamp"] = str(int(timestamp))
    return labels


# --------------------------------------------------------------------------- devices

_UUIDS = uuid.UUID("6b8f7d1e-3c0a-4e55-9a51-6b3d0c2f9e10")  # a fixed namespace: the same node, the same UUIDs


@dataclasses.dataclass(frozen=True)
class Device:
    """One physical GPU of a node, named as NVML and DCGM name it."""

    node: str
    index: int  # DCGM's gpu label, nvidia<index> its device
    uuid: str
    pci_bus_id: str
    model: GPUModel

    @property
    def device(self) -> str:
        return f"nvidia{self.index}"


def pci_bus_id(index: int) -> str:
    """A PCI address per index in NVML's form (domain:bus:device.function), unique on a node."""
    return f"00000000:{(0x10 + 0x10 * index) % 0x100:02X}:{index // 15:02X}.0"


def devices(node: str, key: str, count: int) -> list[Device]:
    """The GPUs of a node, stable across runs: the UUID is derived from the node's name and index."""
    gpu = model(key)
    return [Device(node, i, f"GPU-{uuid.uuid5(_UUIDS, f'{node}/{i}')}", pci_bus_id(i), gpu) for i in range(count)]


def inventory(nodes: Iterable[Mapping[str, Any]]) -> dict[str, GPUSetup]:
    """node name → its GPUs, for nodes labelled ``accelerator=nvidia-<type>`` of a known type: MIG
    from the GPU Operator's ``nvidia.com/mig.config`` and ``mig.strategy`` labels (a layout this
    model cannot take counts as MIG off), time-slicing from GFD's ``gpu.replicas``, the number of
    GPUs from ``nvidia.com/gpu.count`` (MIG single: over the devices per GPU), else from the
    ``nvidia.com/gpu`` capacity over the replicas (the devices exist while the device plugin may
    not offer them)."""
    found = {}
    for node in nodes:
        meta = node.get("metadata") or {}
        labels = meta.get("labels") or {}
        accelerator = str(labels.get("accelerator") or "")
        key = accelerator.removeprefix("nvidia-")
        if not accelerator.startswith("nvidia-") or key not in MODELS:
            continue
        capacity = (node.get("status") or {}).get("capacity") or {}
        replicas = _whole(labels.get("nvidia.com/gpu.replicas")) or 1
        shared = labels.get("nvidia.com/gpu.sharing-strategy") == "time-slicing" and replicas > 1
        strategy = labels.get("nvidia.com/mig.strategy")
        layout = labels.get("nvidia.com/mig.config")
        per_gpu: dict[str, int] = {}
        if layout and strategy in MIG_STRATEGIES:
            try:
                per_gpu = mig_layout(key, layout)
            except GPUError:
                per_gpu = {}
        count = _whole(labels.get("nvidia.com/gpu.count"))
        if per_gpu and count:
            if strategy == "single":
                count //= sum(per_gpu.values())
            found[str(meta.get("name"))] = GPUSetup(key, count, strategy, layout)
            continue
        if shared:
            resource = "nvidia.com/gpu.shared" if "nvidia.com/gpu.shared" in capacity else "nvidia.com/gpu"
            count = count or (_whole(capacity.get(resource)) or 0) // replicas
            setup_ = GPUSetup(key, count, replicas=replicas, rename=resource.endswith(".shared"))
        else:
            count = _whole(capacity.get("nvidia.com/gpu")) or 0
            setup_ = GPUSetup(key, count)
        if count > 0:
            found[str(meta.get("name"))] = setup_
    return found


def _whole(raw: Any) -> int | None:
    try:
        return int(str(raw))
    except ValueError:
        return None


# --------------------------------------------------------------------------- MIG and time-slicing

#: PCI device ids (NVML's pciDeviceId) of the MIG-capable models: what mig-parted's ``device-filter``
#: matches. From the GPU Operator's default-mig-parted-config (below) and go-nvml's mock GPUs.
PCI_DEVICE_IDS = {"a100": 0x20B010DE, "a100-80gb": 0x20B210DE, "h100": 0x233010DE}


@dataclasses.dataclass(frozen=True)
class MigProfile:
    """One MIG device type of a GPU as NVML describes it; GFD's MIG labels are these attributes."""

    name: str  # mig-parted's and DCGM's name (``1g.5gb+me``)
    memory_mb: int  # NVML's memorySizeMB of the instance (GFD's <resource>.memory)
    multiprocessors: int
    slices_gi: int  # compute slices of the GPU instance, out of 7
    copy: int
    decoder: int
    jpeg: int
    ofa: int
    instances: int  # how many fit on one GPU
    gi_ids: tuple[int, ...]  # GPU instance ids the driver gives them on an empty GPU

    @property
    def resource(self) -> str:
        """The device plugin's name for it: ``+`` becomes ``.`` (nvidia.com/mig-1g.5gb.me)."""
        return self.name.replace("+", ".")


def _profiles(*rows: tuple[str, int, int, int, int, int, int, int, int, tuple[int, ...]]) -> dict[str, MigProfile]:
    return {row[0]: MigProfile(*row) for row in rows}


_GI_7, _GI_4, _GI_3, _GI_2 = (0,), (1,), (1, 2), (3, 4, 5)
_GI_1X7, _GI_1X4 = tuple(range(7, 14)), (3, 4, 5, 6)

#: MIG device types per model (name, memory MB, SMs, GI slices, copy engines, NVDEC, JPEG, OFA,
#: instances per GPU, GI ids). A100 40/80 GB: go-nvml's pkg/nvml/mock/gpus/a100.go (its 40 GB
#: figures are `nvidia-smi mig -lgip`'s), with the MIG user guide's media engines (A100's 1g
#: profiles have no NVDEC unless +me); H100 80 GB: `nvidia-smi mig -lgip` on an H100 SXM5
#: (GiB x 1024). NVENC: none on either. GI ids: the driver numbers instances by placement
#: (7g 0; 4g 1; 3g 1-2; 2g 3-5; 1g 7-13), which `nvidia-smi mig -lgi` shows on a fresh layout.
MIG_PROFILES: dict[str, dict[str, MigProfile]] = {
    "a100": _profiles(
        ("1g.5gb", 4864, 14, 1, 1, 0, 0, 0, 7, _GI_1X7),
        ("1g.5gb+me", 4864, 14, 1, 1, 1, 1, 1, 1, _GI_1X7),
        ("1g.10gb", 9856, 14, 1, 1, 1, 0, 0, 4, _GI_1X4),
        ("2g.10gb", 9856, 28, 2, 2, 1, 0, 0, 3, _GI_2),
        ("3g.20gb", 19968, 42, 3, 3, 2, 0, 0, 2, _GI_3),
        ("4g.20gb", 19968, 56, 4, 4, 2, 0, 0, 1, _GI_4),
        ("7g.40gb", 40192, 98, 7, 7, 5, 1, 1, 1, _GI_7)),
    "a100-80gb": _profiles(
        ("1g.10gb", 9856, 14, 1, 1, 0, 0, 0, 7, _GI_1X7),
        ("1g.10gb+me", 9856, 14, 1, 1, 1, 1, 1, 1, _GI_1X7),
        ("1g.20gb", 19968, 14, 1, 1, 1, 0, 0, 4, _GI_1X4),
        ("2g.20gb", 19968, 28, 2, 2, 1, 0, 0, 3, _GI_2),
        ("3g.40gb", 40192, 42, 3, 3, 2, 0, 0, 2, _GI_3),
        ("4g.40gb", 40192, 56, 4, 4, 2, 0, 0, 1, _GI_4),
        ("7g.80gb", 80384, 98, 7, 7, 5, 1, 1, 1, _GI_7)),
    "h100": _profiles(
        ("1g.10gb", 9984, 16, 1, 1, 1, 1, 0, 7, _GI_1X7),
        ("1g.10gb+me", 9984, 16, 1, 1, 1, 1, 1, 1, _GI_1X7),
        ("1g.20gb", 20096, 26, 1, 1, 1, 1, 0, 4, _GI_1X4),
        ("2g.20gb", 20096, 32, 2, 2, 2, 2, 0, 3, _GI_2),
        ("3g.40gb", 40448, 60, 3, 3, 3, 3, 0, 2, _GI_3),
        ("4g.40gb", 40448, 64, 4, 4, 4, 4, 0, 1, _GI_4),
        ("7g.80gb", 81152, 132, 7, 8, 7, 7, 1, 1, _GI_7)),
}

_A100_80 = ("0x233010DE", "0x233110DE", "0x232210DE", "0x20B210DE", "0x20B510DE", "0x20F310DE", "0x20F510DE",
            "0x232410DE")  # H100-80GB, H800-80GB, A100-80GB, A800-80GB
_A100_40 = ("0x20B010DE", "0x20B110DE", "0x20F110DE", "0x20F610DE")  # A100-40GB, A800-40GB
_Entry = tuple[tuple[str, ...] | None, dict[str, int]]  # (device-filter or None for every device, mig-devices)


def _all(devices: dict[str, int]) -> list[_Entry]:
    return [(None, devices)]


#: NVIDIA's mig-parted configurations, as the GPU Operator ships them (assets/state-mig-manager/
#: 0400_configmap.yaml of NVIDIA/gpu-operator, its default-mig-parted-config; mig-parted's
#: examples/config.yaml has the A100-40GB ones): the layouts that apply to the models above, each
#: a list of (device-filter, mig-devices per GPU) as in the file. mig-parted applies the first
#: entry whose filter names the GPU; a GPU without one of the profiles cannot take the layout.
MIG_CONFIGS: dict[str, list[_Entry]] = {
    "all-disabled": _all({}),
    "all-1g.5gb": _all({"1g.5gb": 7}),
    "all-1g.5gb.me": _all({"1g.5gb+me": 1}),
    "all-2g.10gb": _all({"2g.10gb": 3}),
    "all-3g.20gb": _all({"3g.20gb": 2}),
    "all-4g.20gb": _all({"4g.20gb": 1}),
    "all-7g.40gb": _all({"7g.40gb": 1}),
    "all-1g.10gb": [(_A100_80, {"1g.10gb": 7}), (_A100_40, {"1g.10gb": 4})],
    "all-1g.10gb.me": _all({"1g.10gb+me": 1}),
    "all-1g.20gb": _all({"1g.20gb": 4}),
    "all-2g.20gb": _all({"2g.20gb": 3}),
    "all-3g.40gb": _all({"3g.40gb": 2}),
    "all-4g.40gb": _all({"4g.40gb": 1}),
    "all-7g.80gb": _all({"7g.80gb": 1}),
    "all-balanced": [(_A100_80, {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1}),
                     (_A100_40, {"1g.5gb": 2, "2g.10gb": 1, "3g.20gb": 1})],
}
MIG_STRATEGIES = ("single", "mixed")


def mig_layout(key: str, layout: str) -> dict[str, int]:
    """MIG devices per GPU of a model under a mig-parted configuration (empty: MIG off); GPUError
    naming the problem when the model has no MIG, the layout is unknown or the GPU lacks a profile."""
    gpu = model(key)
    entries = MIG_CONFIGS.get(layout)
    if entries is None:
        raise GPUError(f"unknown MIG layout {layout!r}; choose one of {tuple(MIG_CONFIGS)}")
    if layout == "all-disabled":
        return {}
    if not gpu.mig_capable or key not in MIG_PROFILES:
        raise GPUError(f"{gpu.name} ({key}) does not support MIG; MIG layouts need one of {tuple(MIG_PROFILES)}")
    device_id = f"0x{PCI_DEVICE_IDS[key]:08X}"
    devices = next((d for f, d in entries if f is None or device_id in f), None)
    known = MIG_PROFILES[key]
    if devices is None or any(p not in known for p in devices):
        raise GPUError(f"MIG layout {layout!r} does not fit a {gpu.name} ({key}); its profiles are "
                       f"{tuple(known)}")
    return dict(devices)


@dataclasses.dataclass(frozen=True)
class GPUSetup:
    """A node's GPUs as the GPU Operator set them up: the model, how many, MIG (strategy and
    mig-parted layout) or time-slicing (replicas, renameByDefault), as the device plugin's config has it."""

    key: str
    count: int
    mig_strategy: str | None = None  # single | mixed; None: MIG off
    mig_layout: str | None = None
    replicas: int = 1  # time-slicing: pods per GPU
    rename: bool = False  # renameByDefault: the resource is nvidia.com/gpu.shared

    @property
    def mig(self) -> dict[str, int]:
        """MIG devices per GPU, by profile (empty: MIG off)."""
        return mig_layout(self.key, self.mig_layout) if self.mig_strategy and self.mig_layout else {}

    @property
    def shared(self) -> bool:
        return self.replicas > 1

    @property
    def gpu_resource(self) -> str:
        return "nvidia.com/gpu.shared" if self.shared and self.rename else "nvidia.com/gpu"

    def resources(self) -> dict[str, int]:
        """The extended resources the device plugin advertises for these GPUs."""
        mig = self.mig
        if not mig:
            return {self.gpu_resource: self.count * self.replicas}
        if self.mig_strategy == "single":
            return {"nvidia.com/gpu": self.count * sum(mig.values())}
        return {f"nvidia.com/mig-{MIG_PROFILES[self.key][p].resource}": self.count * n for p, n in mig.items()}


def setup(gpu: Mapping[str, Any]) -> GPUSetup:
    """A node pool's ``gpu`` setting checked: ``{type, count, mig: {strategy, layout} | <layout>,
    sharing: {timeSlicing: {replicas, renameByDefault}}}``; GPUError names what is wrong."""
    unknown = set(gpu) - {"type", "count", "mig", "sharing"}
    if unknown:
        raise GPUError(f"unknown gpu setting(s) {sorted(unknown)}; expected type, count, mig, sharing")
    key = str(gpu.get("type"))
    model(key)
    raw_count = gpu.get("count", 1)
    if isinstance(raw_count, bool) or not str(raw_count).isdigit() or int(raw_count) < 1:
        raise GPUError(f"gpu.count must be a whole number of at least 1, not {raw_count!r}")
    strategy, layout = _mig_setting(key, gpu.get("mig"))
    replicas, rename = _sharing_setting(gpu.get("sharing"))
    if strategy and replicas > 1 and mig_layout(key, layout or "all-disabled"):
        raise GPUError("time-slicing of MIG devices is not simulated: give a pool MIG or sharing, not both")
    return GPUSetup(key, int(raw_count), strategy, layout, replicas, rename)


def _mig_setting(key: str, mig: Any) -> tuple[str | None, str | None]:
    if mig is None:
        return None, None
    if isinstance(mig, str):
        mig = {"strategy": "single", "layout": mig}  # the GPU Operator's default strategy
    if not isinstance(mig, Mapping):
        raise GPUError(f"gpu.mig must be a mig-parted layout name or {{strategy, layout}}, not {mig!r}")
    unknown = set(mig) - {"strategy", "layout"}
    if unknown:
        raise GPUError(f"unknown gpu.mig setting(s) {sorted(unknown)}; expected strategy, layout")
    strategy, layout = mig.get("strategy", "single"), mig.get("layout")
    if strategy not in MIG_STRATEGIES:
        raise GPUError(f"gpu.mig.strategy must be one of {MIG_STRATEGIES}, not {strategy!r}")
    if not isinstance(layout, str):
        raise GPUError(f"gpu.mig.layout names a mig-parted configuration (e.g. all-1g.5gb), not {layout!r}")
    devices = mig_layout(key, layout)
    if strategy == "single" and len(devices) > 1:
        # GFD labels such a node mig-strategy-invalid and the device plugin offers nothing.
        raise GPUError(f"MIG strategy single needs one MIG device type per GPU; layout {layout!r} has "
                       f"{sorted(devices)}: use strategy mixed")
    return str(strategy), layout


def _sharing_setting(sharing: Any) -> tuple[int, bool]:
    if sharing is None:
        return 1, False
    if not isinstance(sharing, Mapping) or set(sharing) != {"timeSlicing"} or not isinstance(
            sharing["timeSlicing"], Mapping):
        raise GPUError(f"gpu.sharing must be {{timeSlicing: {{replicas, renameByDefault}}}}, not {sharing!r}")
    ts = sharing["timeSlicing"]
    unknown = set(ts) - {"replicas", "renameByDefault", "resources", "failRequestsGreaterThanOne"}
    if unknown:
        raise GPUError(f"unknown gpu.sharing.timeSlicing setting(s) {sorted(unknown)}")
    replicas = ts.get("replicas")
    for res in ts.get("resources") or []:  # the device plugin's own form: resources: [{name, replicas}]
        if not isinstance(res, Mapping) or res.get("name") != "nvidia.com/gpu":
            raise GPUError(f"gpu.sharing.timeSlicing.resources shares nvidia.com/gpu only, not {res!r}")
        replicas = res.get("replicas")
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise GPUError(f"gpu.sharing.timeSlicing.replicas must be a whole number of at least 1, not {replicas!r}")
    rename = ts.get("renameByDefault", False)
    if not isinstance(rename, bool):
        raise GPUError(f"gpu.sharing.timeSlicing.renameByDefault must be true or false, not {rename!r}")
    return replicas, rename


def node_labels(gpu: GPUSetup, instance_type: str, *, timestamp: int | None = None) -> dict[str, str]:
    """GFD's labels for a node's GPUs as set up (internal/lm of NVIDIA/k8s-device-plugin): with
    time-slicing the ``replicas``, ``sharing-strategy`` and a ``-SHARED`` product unless renamed;
    with MIG the GPU Operator's mig.config labels and, for ``single``, the nvidia.com/gpu labels
    overridden by the MIG device's (``<product>-MIG-<profile>``, its count, memory and engines),
    for ``mixed``, one label set per MIG device type (nvidia.com/mig-<profile>.*) beside the full
    GPUs' (whose replicas GFD gives as 0)."""
    labels = gfd_labels(gpu.key, gpu.count, instance_type, timestamp=timestamp)
    mig = gpu.mig
    if gpu.mig_layout is not None:
        labels["nvidia.com/mig.config"] = gpu.mig_layout
        labels["nvidia.com/mig.config.state"] = "success"
    if gpu.mig_strategy:
        labels["nvidia.com/mig.strategy"] = gpu.mig_strategy
    if gpu.shared:
        labels["nvidia.com/gpu.replicas"] = str(gpu.replicas)
        labels["nvidia.com/gpu.sharing-strategy"] = "time-slicing"
        if not gpu.rename:
            labels["nvidia.com/gpu.product"] += "-SHARED"
    if not mig:
        return labels
    product = labels["nvidia.com/gpu.product"]
    labels["nvidia.com/gpu.replicas"] = "0"  # MIG-enabled full GPUs: labelled without sharing
    for name, per_gpu in mig.items():
        profile = MIG_PROFILES[gpu.key][name]
        prefix = "nvidia.com/gpu" if gpu.mig_strategy == "single" else f"nvidia.com/mig-{profile.resource}"
        labels.update({
            f"{prefix}.product": f"{product}-MIG-{profile.resource}", f"{prefix}.count": str(gpu.count * per_gpu),
            f"{prefix}.replicas": "1", f"{prefix}.sharing-strategy": "none",
            f"{prefix}.memory": str(profile.memory_mb), f"{prefix}.multiprocessors": str(profile.multiprocessors),
            f"{prefix}.slices.gi": str(profile.slices_gi), f"{prefix}.slices.ci": str(profile.slices_gi),
            f"{prefix}.engines.copy": str(profile.copy), f"{prefix}.engines.decoder": str(profile.decoder),
            f"{prefix}.engines.encoder": "0", f"{prefix}.engines.jpeg": str(profile.jpeg),
            f"{prefix}.engines.ofa": str(profile.ofa),
        })
    return labels


@dataclasses.dataclass(frozen=True)
class MigDevice:
    """One MIG device (a GPU instance with one compute instance spanning it) on a GPU."""

    parent: Device
    profile: MigProfile
    gi_id: int  # DCGM's GPU_I_ID


def mig_devices(parent: Device, layout: Mapping[str, int]) -> list[MigDevice]:
    """A GPU's MIG devices under a layout, the largest first (mig-parted creates them so), each with
    the first GPU instance id of its profile not yet taken."""
    profiles = MIG_PROFILES[parent.model.key]
    taken: set[int] = set()
    found = []
    for name in sorted(layout, key=lambda p: (-profiles[p].slices_gi, p)):
        profile = profiles[name]
        for _ in range(layout[name]):
            gi = next(i for i in profile.gi_ids + tuple(range(14, 64)) if i not in taken)
            taken.add(gi)
            found.append(MigDevice(parent, profile, gi))
    return found


# --------------------------------------------------------------------------- XID faults

#: The XIDs the GPUXid Scenario plays, with dcgm-exporter's err_msg for each (its
#: internal/pkg/collector/xid_errors.go, after NVIDIA's Xid catalog).
XID_TEXT: dict[int, str] = {
    13: "Graphics Engine Exception",
    31: "GPU memory page fault",
    43: "GPU stopped processing",
    45: "Preemptive cleanup, due to previous errors -- Most likely to see when running multiple cuda",
    48: "Double Bit ECC Error",
    63: "ECC page retirement or row remapping recording event",
    64: "ECC page retirement or row remapper recording failure",
    68: "NVDEC0 Exception",
    74: "NVLINK Error",
    79: "GPU has fallen off the bus",
    92: "High single-bit ECC error rate",
    94: "Contained ECC error",
    95: "Uncontained ECC error",
    109: "Context Switch Timeout Error",
}
#: The XIDs NVIDIA's device plugin ignores as application errors (the hard-coded list in its
#: internal/rm/health.go); it marks a device unhealthy on every other XID NVML reports.
IGNORED_XIDS = frozenset({13, 31, 43, 45, 68, 109})
#: The XID of a GPU that has fallen off the bus.
FALLEN_OFF_BUS = 79

#: Node annotations a GPU fault Scenario leaves per device (index), which the operator, the engine
#: and the re-assertion of allocatable read: the XID ({"xid", "scenario"}) and a thermal throttle
#: ({"clockPercent", "scenario"}).
XID_ANNOTATION, THROTTLE_ANNOTATION = "k8sim.io/gpu-xid-", "k8sim.io/gpu-throttle-"


def xid_critical(xid: int) -> bool:
    """Whether the device plugin marks a device unhealthy on this XID."""
    return xid not in IGNORED_XIDS


@dataclasses.dataclass(frozen=True)
class Faults:
    """What GPU fault Scenarios did to one node's devices: device index → XID, → SM clock share."""

    xids: Mapping[int, int] = dataclasses.field(default_factory=dict)
    throttled: Mapping[int, float] = dataclasses.field(default_factory=dict)
    owners: Mapping[str, str] = dataclasses.field(default_factory=dict)  # annotation → Scenario key

    @property
    def unhealthy(self) -> frozenset[int]:
        return frozenset(i for i, x in self.xids.items() if xid_critical(x))


def node_faults(node: Mapping[str, Any]) -> Faults:
    """The faults a node's annotations record (unreadable entries are no fault)."""
    annotations = (node.get("metadata") or {}).get("annotations") or {}
    xids: dict[int, int] = {}
    throttled: dict[int, float] = {}
    owners: dict[str, str] = {}
    for key, raw in annotations.items():
        for prefix in (XID_ANNOTATION, THROTTLE_ANNOTATION):
            if not key.startswith(prefix) or not key[len(prefix):].isdigit():
                continue
            try:
                data = json.loads(raw)
                index = int(key[len(prefix):])
                if prefix == XID_ANNOTATION:
                    xids[index] = int(data["xid"])
                else:
                    throttled[index] = min(1.0, max(0.01, float(data["clockPercent"]) / 100))
                owners[key] = str(data.get("scenario", ""))
            except (ValueError, TypeError, KeyError):
                continue
    return Faults(xids, throttled, owners)


def faults(nodes: Iterable[Mapping[str, Any]]) -> dict[str, Faults]:
    """node name → its GPU faults, for nodes that have any."""
    found = {}
    for node in nodes:
        annotations = (node.get("metadata") or {}).get("annotations") or {}
        if any(k.startswith((XID_ANNOTATION, THROTTLE_ANNOTATION)) for k in annotations):
            found[str(node["metadata"]["name"])] = node_faults(node)
    return found


def allocatable(setup_: GPUSetup, unhealthy: int) -> dict[str, int]:
    """What the device plugin advertises with ``unhealthy`` of the node's GPUs marked unhealthy: each
    GPU's share of every resource (its replicas, its MIG devices) is gone; capacity keeps them all."""
    unhealthy = max(0, min(unhealthy, setup_.count))
    return {name: total - total // max(1, setup_.count) * unhealthy for name, total in setup_.resources().items()}
