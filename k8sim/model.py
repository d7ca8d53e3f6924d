"""The workload model: per-service load over a simulated clock, and per-pod resource series.

Pure and seeded: the same seed, start time and cluster state give identical series.

Calibration of the defaults (public statistics, not measurements of ECP-AI):
- Daily cycle: online services in the Alibaba 2018 cluster trace show a clear diurnal CPU
  pattern with the daytime peak a few times the night trough, while memory stays roughly
  flat; here a weekday has two business-hours humps (late morning, mid afternoon) over a
  night floor of 15 % of peak, and weekends run at 40 % of weekdays.
- Utilisation: in the Google 2019 Borg trace most machines sit at 20-40 % CPU; profiles are
  sized so that ECP-AI's default tenant (CONTRACT.md's services with their usual requests)
  uses about 30 % of its CPU requests averaged over a week, with weekday peaks near 100 %.
- Noise is AR(1) (an Ornstein-Uhlenbeck process sampled at the tick), never i.i.d. jitter:
  with a 10-minute time constant the lag-1 autocorrelation at 1-minute steps is ≈ 0.90.
- Incidents (failure scenarios) arrive as a Poisson process per service (default ≈ one a
  week) and last minutes; during one a share of requests fails, which is what the SLA sees.

Without noise (``Model(noise=False)``) none of these random parts play: the load is the daily
cycle times the load overrides and Scenarios, so a test can work out what an HPA will see.
A service whose real traffic is replayed (:mod:`k8sim.traffic`) takes its curve in place of the cycle,
noise and bursts; the overrides and Scenarios still apply.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from k8sim import gpus, inference

MIB = 1024 * 1024
GIB = 1024 * MIB

PROFILE_LABEL = "k8sim.io/profile"

#: The GPU a pod's figures assume when its node names none the table knows.
DEFAULT_GPU = gpus.MODELS["t4"]


@dataclasses.dataclass(frozen=True)
class Profile:
    """How one kind of service behaves; every field can be overridden per workload."""

    name: str
    peak_rps: float  # service-wide requests/s at the weekday peak
    cpu_per_request: float  # core-seconds per request
    cpu_idle: float  # cores a pod burns at zero load
    memory_base: float  # bytes of working set per pod at rest
    memory_per_rps: float  # extra bytes per request/s a pod serves
    latency_ms: float  # service time at low utilisation
    request_bytes: float
    response_bytes: float
    error_rate: float  # failed share of requests in normal operation
    gpu_ms_per_request: float = 0.0  # GPU busy time per request
    gpu_model_mib: float = 0.0  # framebuffer a loaded model takes
    burst_per_hour: float = 0.3  # load bursts per hour (Poisson)
    incidents_per_day: float = 0.15  # failure scenarios per day (Poisson)


PROFILES: dict[str, Profile] = {p.name: p for p in [
    Profile("web", 90, 0.004, 0.01, 160 * MIB, 0.4 * MIB, 45, 900, 6000, 0.0005),
    Profile("conversational", 28, 0.012, 0.02, 380 * MIB, 2 * MIB, 140, 2500, 3000, 0.0008),
    Profile("gpu-inference", 18, 0.03, 0.05, 1.5 * GIB, 8 * MIB, 220, 48000, 96000, 0.001,
            gpu_ms_per_request=45, gpu_model_mib=6144),
    Profile("cpu-inference", 10, 0.09, 0.05, 1.1 * GIB, 6 * MIB, 380, 64000, 4000, 0.001),
    Profile("proxy", 300, 0.0006, 0.005, 48 * MIB, 0.05 * MIB, 6, 1200, 7000, 0.0002),
    Profile("database", 150, 0.0015, 0.02, 900 * MIB, 1.5 * MIB, 4, 400, 2400, 0.0001),
    Profile("auth", 60, 0.003, 0.01, 140 * MIB, 0.2 * MIB, 22, 600, 900, 0.0003),
]}

#: Name fragments of ECP-AI's services (and common infrastructure) → profile.
NAME_HINTS = [
    ("tts", "gpu-inference"), ("nlp", "gpu-inference"), ("aicm", "gpu-inference"),
    ("stt", "cpu-inference"), ("ta-server", "cpu-inference"), ("qa-server", "cpu-inference"),
    ("callbot", "conversational"), ("chatbot", "conversational"), ("advisor", "conversational"),
    ("nginx", "proxy"), ("gateway", "proxy"), ("ingress", "proxy"), ("envoy", "proxy"),
    ("postgres", "database"), ("mysql", "database"), ("vectordb", "database"), ("redis", "database"),
    ("mongo", "database"), ("cassandra", "database"), ("zookeeper", "database"),
    ("auth", "auth"), ("keycloak", "auth"),
]


def pick_profile(name: str, labels: Mapping[str, str], annotations: Mapping[str, str], gpus: int) -> Profile:
    chosen = annotations.get(PROFILE_LABEL) or labels.get(PROFILE_LABEL)
    if chosen in PROFILES:
        return PROFILES[chosen]
    if gpus:
        return PROFILES["gpu-inference"]
    lowered = name.lower()
    for fragment, profile in NAME_HINTS:
        if fragment in lowered:
            return PROFILES[profile]
    return PROFILES["web"]


def diurnal(when: dt.datetime) -> float:
    """Share of the weekday peak at this (simulated) time, 0.06-1.0."""
    hour = when.hour + when.minute / 60 + when.second / 3600
    humps = math.exp(-(((hour - 10.5) / 2.3) ** 2)) + 0.95 * math.exp(-(((hour - 15.0) / 2.6) ** 2))
    level = 0.15 + 0.85 * min(1.0, humps)
    if when.weekday() >= 5:
        level *= 0.4
    return level


def seeded(seed: int, *parts: str) -> random.Random:
    digest = hashlib.sha256("/".join([str(seed), *parts]).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


class AR1:
    """An Ornstein-Uhlenbeck process sampled every dt: mean 0, stationary sd sigma."""

    def __init__(self, rng: random.Random, tau: float, sigma: float):
        self.rng, self.tau, self.sigma = rng, tau, sigma
        self.value = rng.gauss(0, sigma)

    def step(self, dt_s: float) -> float:
        phi = math.exp(-dt_s / self.tau)
        self.value = phi * self.value + math.sqrt(1 - phi * phi) * self.sigma * self.rng.gauss(0, 1)
        return self.value


@dataclasses.dataclass(frozen=True)
class Effect:
    """What active model Scenarios do to one service: its load, added latency, failed share."""

    factor: float = 1.0
    latency_ms: float = 0.0
    error_rate: float = 0.0

    def combine(self, other: Effect) -> Effect:
        return Effect(self.factor * other.factor, self.latency_ms + other.latency_ms,
                      max(self.error_rate, other.error_rate))


@dataclasses.dataclass
class ServiceLoad:
    rps: float
    incident: bool
    incident_error_rate: float
    latency_ms: float = 0.0  # added to every request (a LatencyIncident)


class Service:
    """One service's request stream: cycle × AR(1) noise × bursts, plus incidents (the last three
    only with ``noise``)."""

    def __init__(self, key: str, profile: Profile, seed: int, scale: float = 1.0, noise: bool = True):
        self.key, self.profile, self.scale = key, profile, scale
        self.rng = seeded(seed, "service", key)
        self.random = noise
        self.noise = AR1(self.rng, tau=600, sigma=0.18 if noise else 0.0)
        self.burst = 0.0
        self.incident_until: dt.datetime | None = None
        self.incident_error = 0.0

    def step(self, when: dt.datetime, dt_s: float, factor: float = 1.0, effect: Effect | None = None,
             replayed: float | None = None) -> ServiceLoad:
        """One step; ``factor`` scales the load (a load-control override or annotation), ``effect``
        is what active Scenarios do (their error rate is an incident while it lasts); ``replayed`` (requests
        per second of a real traffic curve, :mod:`k8sim.traffic`) takes the place of cycle × noise × bursts."""
        p = self.profile
        noise = self.noise.step(dt_s)
        self.burst *= math.exp(-dt_s / 180)
        if self.random and self.rng.random() < p.burst_per_hour * dt_s / 3600:
            self.burst += self.rng.uniform(0.5, 2.0)
        if self.incident_until is not None and when >= self.incident_until:
            self.incident_until = None
        if self.random and self.incident_until is None and self.rng.random() < p.incidents_per_day * dt_s / 86400:
            self.incident_until = when + dt.timedelta(minutes=self.rng.uniform(2, 20))
            self.incident_error = self.rng.uniform(0.05, 0.6)
        effect = effect or Effect()
        # The noise and bursts above still draw while a curve is replayed: the random stream (and so what
        # follows the replay) is the same whether or not the service was replayed.
        if replayed is not None:
            rps = replayed * factor * effect.factor
        else:
            rps = (p.peak_rps * self.scale * factor * effect.factor * diurnal(when)
                   * math.exp(noise - self.noise.sigma**2 / 2) * (1 + self.burst))
        incident = self.incident_until is not None
        error = self.incident_error if incident else 0.0
        if effect.error_rate > 0:
            incident, error = True, max(error, effect.error_rate)
        return ServiceLoad(rps, incident, error, effect.latency_ms)


@dataclasses.dataclass
class PodSpec:
    """What the model needs to know of one running pod."""

    uid: str
    namespace: str
    name: str
    service: str  # namespace/service key
    container: str
    image: str
    node: str
    tenant: str | None
    cpu_request: float  # cores
    cpu_limit: float | None
    memory_request: float  # bytes
    memory_limit: float | None
    gpus: int
    accelerator: str | None
    ready: bool
    started: dt.datetime | None
    oom_after: float | None = None  # an OOMKill Scenario: seconds for the working set to reach its limit
    container_started: dt.datetime | None = None  # (wall clock) when the container last started
    #: The GPU resources it asks for by name, when other than ``gpus`` of nvidia.com/gpu (MIG devices,
    #: nvidia.com/gpu.shared); ``gpus`` then counts them all.
    gpu_resources: tuple[tuple[str, int], ...] = ()
    server: inference.Server | None = None  # an LLM or model server (vLLM, TGI, Triton) it runs


@dataclasses.dataclass
class PodSample:
    cpu_cores: float
    cpu_percent: float  # of the limit, else the request
    memory_bytes: float
    memory_percent: float
    rx_bytes_s: float
    tx_bytes_s: float
    rps: float
    latency_ms: float
    error_rate: float
    gpu_util: float = 0.0
    gpu_fb_used_mib: float = 0.0
    gpu_fb_free_mib: float = 0.0
    gpu_power_w: float = 0.0
    gpu_temp_c: float = 0.0


class Pod:
    """Counters and slow state of one pod; its load comes from its service."""

    def __init__(self, spec: PodSpec, profile: Profile, seed: int, noise: bool = True):
        self.spec, self.profile = spec, profile
        rng = seeded(seed, "pod", spec.uid)
        self.memory_drift = AR1(rng, tau=3 * 3600, sigma=0.05 if noise else 0.0)
        self.gpu_temp = 35.0
        # What the GPU fleet gave it at the last step_devices (a tick late, as the pod saw its devices
        # then): the share of a full GPU's compute each unit has (a MIG slice's), its framebuffer,
        # and how oversubscribed a time-sliced GPU it shares is (1: not at all).
        self.gpu_fraction = 1.0
        self.gpu_unit_mib: float | None = None
        self.gpu_contention = 1.0
        self.gpu_demand = 0.0  # % of its units' compute it asks for, uncapped
        self.gpu_slowdown = 1.0  # a throttled GPU: its full SM clock over the clock it runs at
        self.cpu_seconds = 0.0
        self.rx_bytes = 0.0
        self.tx_bytes = 0.0
        self.requests = 0.0
        self.errors = 0.0
        self.last: PodSample | None = None
        self.server = inference.ServerState(spec.server, spec.accelerator, spec.gpus) if spec.server else None

    def step(self, rps: float, load: ServiceLoad, dt_s: float, wall: dt.datetime | None = None,
             age_s: float | None = None) -> PodSample:
        p, s = self.profile, self.spec
        cpu_cap = s.cpu_limit or max(s.cpu_request * 4, 1.0)
        demand = p.cpu_idle + rps * p.cpu_per_request
        cpu = min(demand, cpu_cap)  # throttled at the limit, as CFS quota does
        rho = min(demand / cpu_cap, 0.995)
        latency = (p.latency_ms / (1 - rho) if rho > 0.5 else p.latency_ms * (1 + rho)) + load.latency_ms
        error = p.error_rate + max(0.0, rho - 0.85) * 0.5
        if load.incident:
            error = max(error, load.incident_error_rate)
        error = min(error, 1.0)
        base = p.memory_base * (1 + self.memory_drift.step(dt_s)) + rps * p.memory_per_rps
        limit = s.memory_limit
        memory = base
        if limit:
            memory = min(memory, 0.92 * limit)  # a healthy working set stays under its limit
        if s.oom_after:
            # A leak that reaches the limit (or twice the request) when the kernel's OOM killer strikes.
            ceiling = limit or 2 * s.memory_request
            elapsed = (wall - s.container_started).total_seconds() if wall and s.container_started else s.oom_after
            memory += max(0.0, ceiling - memory) * min(1.0, max(0.0, elapsed) / s.oom_after)
        memory = max(memory, 8 * MIB)
        sample = PodSample(
            cpu_cores=cpu,
            cpu_percent=100 * cpu / (s.cpu_limit or s.cpu_request or 1.0),
            memory_bytes=memory,
            memory_percent=100 * memory / (limit or s.memory_request or memory * 2),
            rx_bytes_s=rps * p.request_bytes, tx_bytes_s=rps * p.response_bytes * (1 - error),
            rps=rps, latency_ms=latency, error_rate=error,
        )
        if self.server is not None and not self.server.step(rps, dt_s, age_s, error).loading:
            sample.latency_ms = self.server.last.e2e_s * 1000 + load.latency_ms  # its queue's, not the CPU's
        if s.gpus:
            # A throttled GPU's lower clock stretches each request's GPU time: busier for the same traffic.
            self.gpu_demand = 100 * rps * p.gpu_ms_per_request * self.gpu_slowdown / 1000 / (
                s.gpus * self.gpu_fraction) + 2
            util = min(100.0, self.gpu_demand)
            gpu = gpus.MODELS.get(s.accelerator or "", DEFAULT_GPU)
            total_mib = (self.gpu_unit_mib or gpu.usable_mib) * s.gpus
            # A request's GPU work takes longer on a slice, and longer again while a time-sliced GPU
            # is asked for more than it has (its contexts take turns).
            slower = self.gpu_contention / self.gpu_fraction * self.gpu_slowdown
            if slower > 1:
                sample.latency_ms += p.gpu_ms_per_request * (slower - 1)
            used = min(total_mib, p.gpu_model_mib + rps * 40)
            power = gpu_power(gpu, util) * s.gpus
            self.gpu_temp += (gpu_temperature(gpu, util) - self.gpu_temp) * (1 - math.exp(-dt_s / GPU_THERMAL_TAU))
            sample.gpu_util, sample.gpu_fb_used_mib, sample.gpu_fb_free_mib = util, used, total_mib - used
            sample.gpu_power_w, sample.gpu_temp_c = power, self.gpu_temp
        self.cpu_seconds += cpu * dt_s
        self.rx_bytes += sample.rx_bytes_s * dt_s
        self.tx_bytes += sample.tx_bytes_s * dt_s
        self.requests += rps * dt_s
        self.errors += rps * error * dt_s
        self.last = sample
        return sample


@dataclasses.dataclass
class ServiceSample:
    """A service's figures for one tick (what /monitoring/health reports)."""

    key: str
    tenant: str | None
    profile: str
    pods: int
    ready_pods: int
    rps: float
    good: float  # good requests this tick
    total: float  # all requests this tick
    cpu_percent: float
    cpu_cores: float
    memory_mb: float
    memory_percent: float
    latency_ms: float
    error_rate: float
    incident: bool
    uptime_s: float
    desired: int | None = None  # the workload's spec.replicas (None: pods count)
    available: int | None = None  # the workload's available replicas (None: ready pods)
    gpus: int = 0  # GPUs its pods ask for
    gpu_util: float = 0.0  # mean utilisation over those GPUs, %
    gpu_memory_mib: float = 0.0  # framebuffer used, summed

    @property
    def health(self) -> str:
        if self.ready_pods == 0 or self.incident or self.error_rate > 0.05:
            return "unhealthy"
        if self.error_rate > 0.01 or self.cpu_percent > 90 or self.ready_pods < self.pods:
            return "degraded"
        return "healthy"


#: A new pod's share of traffic starts at this fraction of a warm one's and reaches it after a minute
#: (load balancers' slow start, caches and JIT warming up).
WARM_UP_FLOOR, WARM_UP_SECONDS = 0.2, 60.0


def warm_up(age: float) -> float:
    """Relative weight of a pod in its service's load balancing, by its age in seconds."""
    return WARM_UP_FLOOR + (1 - WARM_UP_FLOOR) * min(1.0, max(0.0, age) / WARM_UP_SECONDS)


def serving_weight(age: float | None, spec: PodSpec) -> float:
    """:func:`warm_up` (1 for a pod whose start is unknown); an inference server's from when its model has loaded,
    and none before."""
    if age is None:
        return 1.0
    if spec.server is None:
        return warm_up(age)
    loaded = age - spec.server.load_seconds
    return warm_up(loaded) if loaded >= 0 else 0.0


def pod_age(clock: dt.datetime, started: dt.datetime | None, grid: float | None = None,
            pace: float = 1.0) -> float | None:
    """A pod's age in seconds of the cluster's clock: ``pace`` times its wall age (a cluster whose timers run that
    many times faster than Kubernetes', :data:`k8sim.topology.CLUSTER_INFO`), in whole ``grid`` wall seconds (the
    engine's tick) when given: a pod that started during a tick is as old at each later tick whichever instant of
    it it started at, so a session and its replay on a faster cluster count the same warm-up."""
    if started is None:
        return None
    real = max(0.0, (clock - started).total_seconds())
    if grid:
        real = math.floor(real / grid + 1e-9) * grid
    return real * pace


# --------------------------------------------------------------------------- GPU devices

#: Where a GPU's temperature settles idle and at full load (°C, a data-centre inlet), and how fast
#: it gets there (a first-order lag, simulated seconds).
GPU_IDLE_TEMP, GPU_LOAD_TEMP, GPU_THERMAL_TAU = 30.0, 72.0, 120.0
#: HBM runs a few degrees above the GPU die it sits beside.
HBM_OFFSET = 3.0
#: Where a thermally throttled GPU sits: at its slowdown temperature, which is why it throttles.
GPU_SLOWDOWN_TEMP = 87.0
#: Shares of a busy inference GPU's time its units are active (DCGM's profiling fields, 0-1):
#: tensor cores for the matrix work, device memory for weights and the KV cache.
TENSOR_SHARE, DRAM_SHARE = 0.4, 0.45


def gpu_power(gpu: gpus.GPUModel, util: float) -> float:
    """Board power (W) at a utilisation (%): idle draw up to the power limit."""
    return gpu.idle_w + (gpu.tdp_w - gpu.idle_w) * min(100.0, max(0.0, util)) / 100


def gpu_temperature(gpu: gpus.GPUModel, util: float) -> float:
    """Where the die's temperature settles at a utilisation (%): it follows the power drawn."""
    share = (gpu_power(gpu, util) - gpu.idle_w) / (gpu.tdp_w - gpu.idle_w)
    return GPU_IDLE_TEMP + (GPU_LOAD_TEMP - GPU_IDLE_TEMP) * share


@dataclasses.dataclass
class DeviceSample:
    """One GPU's figures for a tick, as DCGM's default counters report them; ``pod`` is empty while
    no pod holds the device."""

    device: gpus.Device
    namespace: str
    pod: str
    container: str
    util: float  # %
    mem_copy_util: float  # %
    fb_used_mib: float
    fb_free_mib: float
    power_w: float
    energy_mj: float  # since the engine started (DCGM: since boot), a counter
    temp_c: float
    memory_temp_c: float | None  # None: GDDR reports no memory temperature
    sm_clock_mhz: float
    mem_clock_mhz: float
    gr_engine_active: float  # 0-1
    tensor_active: float  # 0-1
    dram_active: float  # 0-1
    pcie_tx_bytes_s: float
    pcie_rx_bytes_s: float
    xid: int = 0  # the last XID error (0: none)
    pcie_replays: float = 0.0
    nvlink_bytes: float = 0.0
    mig: gpus.MigDevice | None = None  # a MIG device's own series (DCGM's GPU instance entity)
    mig_enabled: bool = False  # a GPU in MIG mode: DCGM leaves its utilisation fields blank
    vgpu: str | None = None  # a time-sliced GPU: the replica the pod holds (dcgm-exporter's vgpu label)
    throttled: bool = False  # a GPUThermalThrottle Scenario holds its clocks down


class GPUDevice:
    """The slow state of one GPU: its temperature and energy counter."""

    def __init__(self, device: gpus.Device):
        self.device = device
        self.temp = GPU_IDLE_TEMP
        self.energy_mj = 0.0
        self.xid = 0  # the last XID a GPUXid Scenario gave it (0: none)
        self.clock_share = 1.0  # below 1 while a GPUThermalThrottle Scenario holds its SM clock down

    def _advance(self, util: float, dt_s: float) -> float:
        gpu = self.device.model
        power = gpu_power(gpu, util)
        settle = gpu_temperature(gpu, util)
        if self.clock_share < 1:
            settle = max(settle, GPU_SLOWDOWN_TEMP)
        self.temp += (settle - self.temp) * (1 - math.exp(-dt_s / GPU_THERMAL_TAU))
        self.energy_mj += power * dt_s * 1000
        return power

    def _sample(self, holder: Pod | None, util: float, used: float, free: float, power: float, held: bool,
                rx: float, tx: float, **extra: Any) -> DeviceSample:
        gpu = self.device.model
        busy = util / 100
        return DeviceSample(
            device=self.device,
            namespace=holder.spec.namespace if holder is not None else "",
            pod=holder.spec.name if holder is not None else "",
            container=holder.spec.container if holder is not None else "",
            util=util, mem_copy_util=100 * busy * DRAM_SHARE,
            fb_used_mib=used, fb_free_mib=free, power_w=power, energy_mj=self.energy_mj,
            temp_c=self.temp, memory_temp_c=self.temp + HBM_OFFSET if gpu.hbm else None,
            sm_clock_mhz=min(gpu.sm_clock if held else gpu.sm_clock_idle, gpu.sm_clock * self.clock_share),
            mem_clock_mhz=gpu.mem_clock if held else gpu.mem_clock_idle,
            gr_engine_active=busy, tensor_active=busy * TENSOR_SHARE, dram_active=busy * DRAM_SHARE,
            pcie_tx_bytes_s=tx, pcie_rx_bytes_s=rx, xid=self.xid, throttled=self.clock_share < 1, **extra,
        )

    def step(self, holders: Sequence[Pod], dt_s: float, shared: bool = False) -> list[DeviceSample]:
        """One tick of a whole GPU and its series: one, or one per pod on a time-sliced GPU (each pod
        its replica's copy, as dcgm-exporter's virtual-GPU mapping gives them). The pods' work adds up
        to at most the whole device."""
        gpu = self.device.model
        live = [(h, h.last, 1 / h.spec.gpus if h.spec.gpus else 0.0) for h in holders if h.last is not None]
        util = min(100.0, sum(x.gpu_util for _, x, _ in live))
        demand = sum(h.gpu_demand for h, _, _ in live)
        for h, _, _ in live:
            h.gpu_contention = max(1.0, demand / 100) if shared else 1.0
        power = self._advance(util, dt_s)
        used = min(float(gpu.usable_mib), sum(x.gpu_fb_used_mib * share for _, x, share in live))
        rx = sum(x.rx_bytes_s * share for _, x, share in live)
        tx = sum(x.tx_bytes_s * share for _, x, share in live)
        held = bool(holders)  # a CUDA context keeps the GPU out of its idle clocks
        if not holders:
            return [self._sample(None, util, used, gpu.usable_mib - used, power, held, rx, tx)]
        return [self._sample(h, util, used, gpu.usable_mib - used, power, held, rx, tx,
                             vgpu=str(i) if shared else None) for i, h in enumerate(holders)]

    def step_mig(self, instances: Sequence[tuple[gpus.MigDevice, Pod | None]], dt_s: float) -> list[DeviceSample]:
        """One tick of a GPU in MIG mode: the GPU's own series (power, temperature, clocks, its
        framebuffer) with no pod, then one per MIG device with the pod holding it."""
        gpu = self.device.model
        per: list[tuple[gpus.MigDevice, Pod | None, float, float]] = []
        for mig, holder in instances:
            x = holder.last if holder is not None else None
            util = x.gpu_util if x is not None else 0.0
            used = min(float(mig.profile.memory_mb), x.gpu_fb_used_mib / holder.spec.gpus) \
                if x is not None and holder is not None and holder.spec.gpus else 0.0
            per.append((mig, holder, util, used))
        whole = sum(util * mig.profile.slices_gi / 7 for mig, _, util, _ in per)
        power = self._advance(whole, dt_s)
        used_all = sum(used for *_, used in per)
        held = any(h is not None for _, h, _, _ in per)
        samples = [self._sample(None, whole, used_all, gpu.usable_mib - used_all, power, held, 0.0, 0.0,
                                mig_enabled=True)]
        for mig, holder, util, used in per:
            samples.append(self._sample(holder, util, used, mig.profile.memory_mb - used, power, held, 0.0, 0.0,
                                        mig=mig, mig_enabled=True))
        return samples


_NEVER = dt.datetime.max.replace(tzinfo=dt.UTC)


@dataclasses.dataclass(frozen=True)
class GPUUnit:
    """What the device plugin hands a pod: a whole GPU, a MIG device, or a time-sliced GPU's replica
    (``slots`` pods at once)."""

    resource: str
    device: int  # the GPU's index on its node
    mig: gpus.MigDevice | None
    slots: int


class GPUNode:
    """One GPU node's devices and the units its device plugin offers."""

    def __init__(self, name: str, setup: gpus.GPUSetup):
        self.setup = setup
        self.devices = [GPUDevice(d) for d in gpus.devices(name, setup.key, setup.count)]
        layout = self.mig = setup.mig
        self.units: list[GPUUnit] = []
        for d in self.devices:
            if not layout:
                self.units.append(GPUUnit(setup.gpu_resource, d.device.index, None, setup.replicas))
                continue
            for mig in gpus.mig_devices(d.device, layout):
                resource = "nvidia.com/gpu" if setup.mig_strategy == "single" else \
                    f"nvidia.com/mig-{mig.profile.resource}"
                self.units.append(GPUUnit(resource, d.device.index, mig, 1))
        self.by_device: list[list[int]] = [[] for _ in self.devices]
        for i, unit in enumerate(self.units):
            self.by_device[unit.device].append(i)

    def step(self, holders: list[list[Pod]], dt_s: float, faults: gpus.Faults | None = None) -> list[DeviceSample]:
        samples: list[DeviceSample] = []
        for index, device in enumerate(self.devices):
            device.xid = faults.xids.get(index, 0) if faults else 0
            device.clock_share = faults.throttled.get(index, 1.0) if faults else 1.0
            for u in self.by_device[index]:
                for pod in holders[u]:
                    pod.gpu_slowdown = max(pod.gpu_slowdown, 1 / device.clock_share)
            mine = self.by_device[index]
            if self.mig:
                samples += device.step_mig([(mig, holders[u][0] if holders[u] else None)
                                            for u in mine if (mig := self.units[u].mig) is not None], dt_s)
            else:
                samples += device.step(holders[mine[0]], dt_s, shared=self.setup.shared)
        return samples


def gpu_requests(spec: PodSpec) -> tuple[tuple[str, int], ...]:
    """The GPU resources a pod asks for, by name."""
    return spec.gpu_resources or (("nvidia.com/gpu", spec.gpus),)


def _as_setup(value: gpus.GPUSetup | tuple[str, int]) -> gpus.GPUSetup:
    return value if isinstance(value, gpus.GPUSetup) else gpus.GPUSetup(*value)


class GPUFleet:
    """Every GPU of every GPU node and which pod holds it, as the device plugin allots them: a pod
    asking for N units of a resource (nvidia.com/gpu, a MIG device type, nvidia.com/gpu.shared) gets
    N distinct units of its node, the lowest free indices (a time-sliced GPU: the one with the most
    free replicas), in the order the pods started (then by uid); it keeps them while it runs, and a
    unit serves no more pods than it has replicas."""

    def __init__(self) -> None:
        self.nodes: dict[str, GPUNode] = {}
        self.held: dict[str, tuple[str, tuple[int, ...]]] = {}  # pod uid → (node, unit indices)

    def step(self, inventory: Mapping[str, gpus.GPUSetup | tuple[str, int]], pods: Iterable[Pod],
             dt_s: float, faults: Mapping[str, gpus.Faults] | None = None) -> list[DeviceSample]:
        """One tick of every GPU; ``faults`` (node → :class:`k8sim.gpus.Faults`) are the GPU fault
        Scenarios': an unhealthy device's units go to no pod (the device plugin no longer offers them)."""
        faults = faults or {}
        on_node: dict[str, list[Pod]] = {}
        for pod in pods:
            if pod.spec.gpus > 0 and pod.last is not None and pod.spec.node in inventory:
                on_node.setdefault(pod.spec.node, []).append(pod)
                pod.gpu_slowdown = 1.0
        held: dict[str, tuple[str, tuple[int, ...]]] = {}
        samples: list[DeviceSample] = []
        for node in sorted(inventory):
            setup = _as_setup(inventory[node])
            found = self.nodes.get(node)
            if found is None or found.setup != setup:
                found = self.nodes[node] = GPUNode(node, setup)
            units = found.units
            dead = faults[node].unhealthy if node in faults else frozenset()
            holders: list[list[Pod]] = [[] for _ in units]
            members = sorted(on_node.get(node, []), key=lambda p: (p.spec.started or _NEVER, p.spec.uid))
            mine: dict[str, list[int]] = {p.spec.uid: [] for p in members}
            for pod in members:  # a running pod keeps its units
                before = self.held.get(pod.spec.uid)
                if before is None or before[0] != node:
                    continue
                wanted = dict(gpu_requests(pod.spec))
                for i in before[1]:
                    if i < len(units) and units[i].device not in dead and wanted.get(units[i].resource, 0) > 0 \
                            and len(holders[i]) < units[i].slots:
                        holders[i].append(pod)
                        mine[pod.spec.uid].append(i)
                        wanted[units[i].resource] -= 1
            for pod in members:
                taken = mine[pod.spec.uid]
                for resource, count in gpu_requests(pod.spec):
                    have = sum(1 for i in taken if units[i].resource == resource)
                    free = sorted((i for i, u in enumerate(units)
                                   if u.resource == resource and len(holders[i]) < u.slots and i not in taken
                                   and u.device not in dead),
                                  key=lambda i: (len(holders[i]) - units[i].slots, i))
                    for i in free[: max(0, count - have)]:
                        holders[i].append(pod)
                        taken.append(i)
                if taken:
                    held[pod.spec.uid] = (node, tuple(sorted(taken)))
                    mig = units[taken[0]].mig
                    pod.gpu_fraction = mig.profile.slices_gi / 7 if mig is not None else 1.0
                    pod.gpu_unit_mib = float(mig.profile.memory_mb) if mig is not None else None
            samples += found.step(holders, dt_s, faults.get(node))
        for gone in [n for n in self.nodes if n not in inventory]:
            del self.nodes[gone]
        self.held = held
        return samples


@dataclasses.dataclass(frozen=True)
class Background:
    """Failures a well-run cluster has on its own, per simulated day (a cluster profile's
    ``background``). Error bursts are the services' own incidents (Profile.incidents_per_day)."""

    pod_crashes_per_day: float = 0.0  # per running pod: its container crashes and restarts
    pod_crash_seconds: float = 90.0  # out of service: the 10 s back-off, start-up and readiness
    node_failures_per_day: float = 0.0  # per node: it stops posting status
    node_failure_seconds: float = 420.0  # its pods out: the 300 s toleration, then rescheduled elsewhere

    @property
    def active(self) -> bool:
        return self.pod_crashes_per_day > 0 or self.node_failures_per_day > 0


class Model:
    """Every service and pod; :meth:`tick` advances them all by one step of simulated time.

    With a ``background``, the model itself plays pod crashes and node failures on simulated time
    (the engine asks for that when its clock is accelerated: the cluster cannot fail that fast).
    Without ``noise`` the load has no random parts (see the module's docstring)."""

    def __init__(self, seed: int = 42, background: Background | None = None, noise: bool = True):
        self.seed, self.noise = seed, noise
        self.background = background or Background()
        self.services: dict[str, Service] = {}
        self.pods: dict[str, Pod] = {}
        self.down: dict[str, dt.datetime] = {}  # "pod:<uid>" or "node:<name>" → back at
        self._failures: dict[str, random.Random] = {}
        self.failures = 0  # background failures played so far (pods and nodes)
        self.gpus = GPUFleet()
        self.devices: list[DeviceSample] = []  # every GPU's figures, from the last step_devices

    def _fails(self, key: str, rate_per_day: float, dt_s: float) -> bool:
        rng = self._failures.get(key)
        if rng is None:
            rng = self._failures[key] = seeded(self.seed, "background", key)
        return rng.random() < rate_per_day * dt_s / 86400

    def _background(self, specs: list[PodSpec], when: dt.datetime, dt_s: float) -> list[PodSpec]:
        """The specs with the pods a background failure has taken out marked not ready."""
        bg = self.background
        self.down = {k: t for k, t in self.down.items() if t > when}
        for node in sorted({s.node for s in specs}):
            if f"node:{node}" not in self.down and self._fails(f"node:{node}", bg.node_failures_per_day, dt_s):
                self.down[f"node:{node}"] = when + dt.timedelta(seconds=bg.node_failure_seconds)
                self.failures += 1
        by_service: dict[str, list[PodSpec]] = {}
        for spec in specs:
            by_service.setdefault(spec.service, []).append(spec)
        for key in sorted(by_service):  # one process per service, so a tenant's month replays with its seed
            members = sorted(by_service[key], key=lambda s: s.name)
            if self._fails(f"service:{key}", bg.pod_crashes_per_day * len(members), dt_s):
                victim = members[self._failures[f"service:{key}"].randrange(len(members))]
                self.down[f"pod:{victim.uid}"] = when + dt.timedelta(seconds=bg.pod_crash_seconds)
                self.failures += 1
        return [dataclasses.replace(s, ready=False)
                if s.ready and (f"pod:{s.uid}" in self.down or f"node:{s.node}" in self.down) else s
                for s in specs]

    def tick(self, specs: Iterable[PodSpec], when: dt.datetime, dt_s: float,
             labels: Mapping[str, tuple[dict[str, str], dict[str, str]]] | None = None,
             replicas: Mapping[str, tuple[int, int]] | None = None,
             factors: Mapping[str, float] | None = None, effects: Mapping[str, Effect] | None = None,
             wall: dt.datetime | None = None, replayed: Mapping[str, float] | None = None,
             grid: float | None = None, pace: float = 1.0) -> list[ServiceSample]:
        """Advance every service and pod one step. Ready pods share their service's load, new ones
        a growing share over their first minute (:func:`warm_up`); ``factors`` scale services' load,
        ``effects`` are active Scenarios'; ``wall`` (the real time, default ``when``) ages pods and paces
        OOMKill leaks; ``replayed`` (service key → requests per second) are real traffic curves played in place
        of those services' synthetic load; ``grid`` and ``pace`` put pods' ages on the cluster's clock
        (:func:`pod_age`)."""
        if self.background.active:
            specs = self._background(list(specs), when, dt_s)
        by_service: dict[str, list[PodSpec]] = {}
        for spec in specs:
            by_service.setdefault(spec.service, []).append(spec)
        labels = labels or {}
        replicas = replicas or {}
        factors = factors or {}
        effects = effects or {}
        replayed = replayed or {}
        # Pods' start times are the cluster's (wall) clock; simulated time may run elsewhere or faster.
        clock = wall or when
        samples = []
        for key in sorted(by_service):
            members = sorted(by_service[key], key=lambda s: s.uid)
            name = key.split("/", 1)[1]
            service_labels, annotations = labels.get(key, ({}, {}))
            profile = pick_profile(name, service_labels, annotations, max(s.gpus for s in members))
            service = self.services.get(key)
            if service is None or service.profile is not profile:  # PROFILES hold one of each
                service = self.services[key] = Service(key, profile, self.seed, noise=self.noise)
            load = service.step(when, dt_s, factors.get(key, 1.0), effects.get(key), replayed.get(key))
            ready = [s for s in members if s.ready]
            ages = {s.uid: pod_age(clock, s.started, grid, pace) for s in members}
            weights = {s.uid: serving_weight(ages[s.uid], s) for s in ready}
            total_weight = sum(weights.values())
            pod_samples = []
            for spec in members:
                pod = self.pods.get(spec.uid)
                if pod is None or pod.profile is not profile:
                    pod = self.pods[spec.uid] = Pod(spec, profile, self.seed, self.noise)
                pod.spec = spec
                share = load.rps * weights[spec.uid] / total_weight if spec.ready and total_weight else 0.0
                pod_samples.append(pod.step(share, load, dt_s, wall, ages[spec.uid]))
            total = load.rps * dt_s  # with no ready replica every request fails
            # Replicas still loading their model serve nothing: while all do, every request fails.
            served = [x for x, s in zip(pod_samples, members, strict=True) if s.ready and weights[s.uid]]
            error = (sum(x.error_rate for x in served) / len(served)) if served else 1.0
            uptimes = [age for age in ages.values() if age is not None]
            gpus = sum(s.gpus for s in members)
            samples.append(ServiceSample(
                key=key, tenant=next((s.tenant for s in members if s.tenant), None), profile=profile.name,
                pods=len(members), ready_pods=len(ready), rps=load.rps,
                good=total * (1 - error), total=total,
                cpu_percent=sum(x.cpu_percent for x in pod_samples) / len(pod_samples),
                cpu_cores=sum(x.cpu_cores for x in pod_samples),
                memory_mb=sum(x.memory_bytes for x in pod_samples) / MIB,
                memory_percent=sum(x.memory_percent for x in pod_samples) / len(pod_samples),
                latency_ms=(sum(x.latency_ms for x in served) / len(served)) if served else 0.0,
                error_rate=error, incident=load.incident,
                uptime_s=max(uptimes) if uptimes else 0.0,
                desired=replicas[key][0] if key in replicas else None,
                available=replicas[key][1] if key in replicas else None,
                gpus=gpus,
                gpu_util=sum(x.gpu_util * s.gpus for x, s in zip(pod_samples, members, strict=True)) / gpus
                if gpus else 0.0,
                gpu_memory_mib=sum(x.gpu_fb_used_mib for x in pod_samples),
            ))
        live = {s.uid for members in by_service.values() for s in members}
        for uid in [u for u in self.pods if u not in live]:
            del self.pods[uid]  # a deleted pod's counters go with it, as cAdvisor's do
        for key in [k for k in self.services if k not in by_service]:
            del self.services[key]
        return samples


    def step_devices(self, inventory: Mapping[str, gpus.GPUSetup | tuple[str, int]],
                     dt_s: float, faults: Mapping[str, gpus.Faults] | None = None) -> list[DeviceSample]:
        """Advance every GPU of ``inventory`` (node → its GPUs, :func:`k8sim.gpus.inventory`, or (GPU
        type, count))
        one step with the pods the last :meth:`tick` ran; idle devices too. ``faults`` are the GPU
        fault Scenarios' (:func:`k8sim.gpus.faults`): XIDs, dead devices, throttled clocks."""
        self.devices = self.gpus.step(inventory, self.pods.values(), dt_s, faults)
        return self.devices


# --------------------------------------------------------------------------- load control

#: A pod template annotation that scales its service's load (for example "3" for three times the usual).
LOAD_ANNOTATION = "k8sim.io/load-factor"


@dataclasses.dataclass(frozen=True)
class LoadOverride:
    """A load factor on a service, a namespace or a tenant until a (wall-clock) time."""

    scope: str  # service:<namespace>/<name> | namespace:<namespace> | tenant:<id>
    factor: float
    until: float  # epoch seconds

    @classmethod
    def stored(cls, scope: bytes | str, value: bytes | str) -> LoadOverride:
        """One entry of the Redis hash the API writes and the engine reads (ValueError if unreadable)."""
        try:
            data = json.loads(value)
            return cls(scope.decode() if isinstance(scope, bytes) else str(scope), float(data["factor"]),
                       float(data["until"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"unreadable load override {scope!r}: {exc}") from None

    def stored_value(self) -> str:
        return json.dumps({"factor": self.factor, "until": self.until})

    def as_json(self) -> dict[str, Any]:
        return {"scope": self.scope, "factor": self.factor,
                "until": dt.datetime.fromtimestamp(self.until, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


def load_scope(namespace: str | None, service: str | None, tenant: str | None) -> str:
    """The scope key of an override: exactly one of a service (with its namespace), a namespace or a tenant."""
    if service:
        if not namespace:
            raise ValueError("a service is named with its namespace")
        if tenant:
            raise ValueError("name a service or a tenant, not both")
        return f"service:{namespace}/{service}"
    if namespace and tenant:
        raise ValueError("name a namespace or a tenant, not both")
    if namespace:
        return f"namespace:{namespace}"
    if tenant:
        return f"tenant:{tenant}"
    raise ValueError("name a service (with its namespace), a namespace or a tenant")


def annotation_factor(annotations: Mapping[str, str]) -> float:
    """The load factor a pod template's annotation asks for (1 when absent or unreadable)."""
    try:
        factor = float(annotations.get(LOAD_ANNOTATION, "1"))
    except ValueError:
        return 1.0
    return factor if 0 < factor <= 100 else 1.0


def service_factors(services: Mapping[str, str | None], overrides: Iterable[LoadOverride], now: float,
                    annotations: Mapping[str, float] | None = None) -> dict[str, float]:
    """service key → the product of every active override that covers it (and its annotation)."""
    active = {o.scope: o.factor for o in overrides if o.until > now}
    annotations = annotations or {}
    found = {}
    for key, tenant in services.items():
        factor = annotations.get(key, 1.0)
        for scope in (f"service:{key}", f"namespace:{key.split('/', 1)[0]}", f"tenant:{tenant}" if tenant else ""):
            factor *= active.get(scope, 1.0)
        if factor != 1.0:
            found[key] = factor
    return found
