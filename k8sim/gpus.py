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


def inventory(nodes: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, int]]:
    """node name → (GPU type, GPUs) for nodes labelled ``accelerator=nvidia-<type>`` of a known type
    with ``nvidia.com/gpu`` capacity (the devices exist while the device plugin may not offer them)."""
    found = {}
    for node in nodes:
        meta = node.get("metadata") or {}
        accelerator = str((meta.get("labels") or {}).get("accelerator") or "")
        key = accelerator.removeprefix("nvidia-")
        if not accelerator.startswith("nvidia-") or key not in MODELS:
            continue
        raw = ((node.get("status") or {}).get("capacity") or {}).get("nvidia.com/gpu")
        try:
            count = int(str(raw))
        except ValueError:
            continue
        if count > 0:
            found[str(meta.get("name"))] = (key, count)
    return found
