"""LLM and model servers (vLLM, TGI, Triton): which pods run one, and a queueing model of each.

A pod is an inference server when one of its containers runs a known server image, or when its
``k8sim.io/inference-server`` annotation names one (``none`` opts a pod out). What it serves comes
from the container's arguments as the server reads them (vLLM's ``--model``/``--served-model-name`` or
``vllm serve <model>``, TGI's ``--model-id`` or ``MODEL_ID``, with ``$(VAR)`` expanded from the
container's env) or the ``k8sim.io/model-name`` annotation.

The queueing model is a continuous-batching server on its GPUs, from first principles rather than
measurements:

- A decode step reads the weights once (memory bound) and does ``2 × parameters`` FLOPs per running
  sequence (compute bound), plus each sequence's KV cache; a prefill does ``2 × parameters`` FLOPs per
  prompt token. GPUs' memory bandwidth and dense FP16 tensor throughput are their datasheets'.
- Concurrent sequences are bounded by the server's batch limit (vLLM's ``--max-num-seqs``) and by the
  KV cache that fits in the GPU memory the server may use beside the weights.
- Below capacity the running batch follows Little's law and the waiting queue is the M/M/c one
  (Sakasegawa's approximation); past capacity the excess accumulates tick after tick (a fluid queue),
  and time to first token grows with the backlog ahead of a new request.
- A new replica serves nothing while it loads its model (server start plus reading the weights).

Every figure a pod gets can be overridden with an annotation (``ANNOTATIONS``).
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from k8sim import gpus

SERVER_ANNOTATION = "k8sim.io/inference-server"
KINDS = ("vllm", "tgi", "triton")

#: Image repositories of the servers (tag and registry host aside): vllm/vllm-openai and its mirrors,
#: ghcr.io/huggingface/text-generation-inference, nvcr.io/nvidia/tritonserver.
IMAGE_HINTS: tuple[tuple[str, str], ...] = (
    ("vllm-openai", "vllm"), ("vllm/vllm", "vllm"), ("text-generation-inference", "tgi"),
    ("tritonserver", "triton"),
)

#: Annotations that override what the model assumes of a server: name → what it sets.
ANNOTATIONS = {
    SERVER_ANNOTATION: "the server: vllm, tgi, triton, or none",
    "k8sim.io/model-name": "the model name its metrics carry",
    "k8sim.io/model-params-billions": "the model's size (default: read from its name, else 7)",
    "k8sim.io/model-load-seconds": "how long a new replica loads before it serves",
    "k8sim.io/prompt-tokens": "prompt tokens per request",
    "k8sim.io/output-tokens": "generated tokens per request",
    "k8sim.io/max-num-seqs": "concurrent sequences the server batches at most",
}

DEFAULT_PARAMS_B = 7.0
DEFAULT_PROMPT_TOKENS = 512
DEFAULT_OUTPUT_TOKENS = 128
#: vLLM's --max-num-seqs default; TGI and Triton (TensorRT-LLM) batch as many as their KV cache holds,
#: bounded here the same way.
DEFAULT_MAX_SEQS = 256
#: vLLM's --gpu-memory-utilization default; TGI's --cuda-memory-fraction is 1.0 but it keeps a margin.
DEFAULT_MEMORY_UTILISATION = 0.9
#: Activations and CUDA graphs beside the weights and the KV cache.
ACTIVATION_MIB = 1024.0
#: KV cache per token per billion parameters (FP16): Llama-3-8B's grouped-query layout holds 128 KiB a
#: token; older multi-head models hold more, smaller ones less.
KV_KIB_PER_TOKEN_PER_B = 16.0
#: A server's start (CUDA context, graph capture) before it reads its weights, and how fast it reads them.
LOAD_BASE_S, LOAD_BYTES_PER_S = 15.0, 0.5e9
#: Shares of the datasheet figures kernels reach: memory-bound decode and compute-bound prefill.
BANDWIDTH_EFFICIENCY, COMPUTE_EFFICIENCY = 0.7, 0.4
#: Finished requests that hit their max_tokens (vLLM's finished_reason="length"), the rest stop.
LENGTH_SHARE = 0.1

#: Per GPU: memory bandwidth (GB/s) and dense FP16 tensor throughput (TFLOPS), from NVIDIA's datasheets.
GPU_SPEED: dict[str, tuple[float, float]] = {
    "t4": (320, 65), "v100": (900, 125), "l40s": (864, 362), "a10g": (600, 70),
    "a100": (1555, 312), "a100-80gb": (2039, 312), "h100": (3350, 989),
}


@dataclasses.dataclass(frozen=True)
class Server:
    """What a pod serves and how: the server, its model and the figures the queueing model uses."""

    kind: str  # vllm | tgi | triton
    model: str
    params_b: float  # billions of parameters
    prompt_tokens: int
    output_tokens: int
    max_seqs: int
    memory_utilisation: float
    load_seconds: float

    @property
    def weights_bytes(self) -> float:
        return self.params_b * 1e9 * 2  # FP16


def _number(value: str | None, default: float, low: float = 0.0, high: float = math.inf) -> float:
    try:
        found = float(value) if value is not None else default
    except ValueError:
        return default
    return found if low < found <= high else default


def params_from_name(name: str) -> float | None:
    """Billions of parameters a model's name says (``Llama-3.1-8B-Instruct`` → 8, ``Qwen2.5-0.5B`` → 0.5)."""
    found = re.findall(r"(?<![\d.])(\d+(?:\.\d+)?)[bB](?![a-zA-Z])", name)
    return float(found[-1]) if found else None


def _expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command and args; unknown references stay as written."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), value)


def _flags(argv: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """``--name=value`` and ``--name value`` flags, and the positional words."""
    flags: dict[str, str] = {}
    words: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word.startswith("--"):
            name, eq, value = word[2:].partition("=")
            if not eq and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                value, i = argv[i + 1], i + 1
            flags[name.replace("_", "-")] = value
        else:
            words.append(word)
        i += 1
    return flags, words


def _kind_of(image: str) -> str | None:
    repository = image.split("@", 1)[0]
    if ":" in repository.rsplit("/", 1)[-1]:
        repository = repository.rsplit(":", 1)[0]
    for fragment, kind in IMAGE_HINTS:
        if fragment in repository.lower():
            return kind
    return None


def recognise(pod: Mapping[str, Any]) -> Server | None:
    """The inference server a pod runs (None: not one)."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    annotations: Mapping[str, str] = meta.get("annotations") or {}
    asked = annotations.get(SERVER_ANNOTATION, "").strip().lower()
    if asked == "none":
        return None
    containers = spec.get("containers") or []
    chosen, kind = None, asked if asked in KINDS else None
    for c in containers:
        found = _kind_of(str(c.get("image") or ""))
        if found is not None and (kind is None or found == kind):
            chosen, kind = c, found
            break
    if kind is None:
        return None
    container = chosen or (containers[0] if containers else {})
    env = {str(e.get("name")): str(e["value"]) for e in container.get("env") or [] if "value" in e}
    argv = [_expand(str(w), env) for w in [*(container.get("command") or []), *(container.get("args") or [])]]
    flags, words = _flags(argv)
    model = annotations.get("k8sim.io/model-name") or _model_of(kind, flags, words, env) or _owner_name(meta)
    params = _number(annotations.get("k8sim.io/model-params-billions"), params_from_name(model) or DEFAULT_PARAMS_B,
                     high=2000)
    max_seqs = _number(annotations.get("k8sim.io/max-num-seqs"),
                       _number(flags.get("max-num-seqs") or flags.get("max-batch-size"), DEFAULT_MAX_SEQS), high=1e6)
    utilisation = _number(flags.get("gpu-memory-utilization") or flags.get("cuda-memory-fraction"),
                          DEFAULT_MEMORY_UTILISATION, high=1.0)
    load = LOAD_BASE_S + params * 1e9 * 2 / LOAD_BYTES_PER_S
    return Server(
        kind=kind, model=model, params_b=params,
        prompt_tokens=int(_number(annotations.get("k8sim.io/prompt-tokens"), DEFAULT_PROMPT_TOKENS, high=1e7)),
        output_tokens=int(_number(annotations.get("k8sim.io/output-tokens"), DEFAULT_OUTPUT_TOKENS, high=1e7)),
        max_seqs=int(max_seqs), memory_utilisation=utilisation,
        load_seconds=max(0.0, _number(annotations.get("k8sim.io/model-load-seconds"), load, low=-1, high=86400)))


def _model_of(kind: str, flags: Mapping[str, str], words: Sequence[str], env: Mapping[str, str]) -> str | None:
    if kind == "vllm":
        if flags.get("served-model-name"):
            return flags["served-model-name"]
        if flags.get("model"):
            return flags["model"]
        if "serve" in words and words.index("serve") + 1 < len(words):
            return words[words.index("serve") + 1]
        return None
    if kind == "tgi":
        return flags.get("model-id") or env.get("MODEL_ID")
    return None


def _owner_name(meta: Mapping[str, Any]) -> str:
    """Triton names its models after its model repository's directories, which a pod does not show:
    the workload's name stands in."""
    labels = meta.get("labels") or {}
    return str(labels.get("app.kubernetes.io/name") or labels.get("app") or meta.get("generateName", "").rstrip("-")
               or meta.get("name", "model"))


# --------------------------------------------------------------------------- capacity


@dataclasses.dataclass(frozen=True)
class Capacity:
    """A server on its GPUs: the queueing model's constants."""

    slots: int  # concurrent sequences
    kv_tokens: float  # KV-cache capacity in tokens
    step_fixed_s: float  # a decode step's time with an empty batch (reading the weights)
    step_per_seq_s: float  # what each running sequence adds to a step
    prefill_s: float  # a request's prompt

    def step_s(self, running: float) -> float:
        return self.step_fixed_s + self.step_per_seq_s * running

    def service_s(self, running: float, output_tokens: int) -> float:
        """A request's time in the batch: its prefill, then one decode step per generated token."""
        return self.prefill_s + output_tokens * self.step_s(running)

    def max_rps(self, output_tokens: int) -> float:
        return self.slots / self.service_s(self.slots, output_tokens)


def capacity(server: Server, gpu_key: str | None, count: int) -> Capacity:
    """``count`` GPUs of ``gpu_key`` (tensor parallel: their bandwidth and FLOPs add up)."""
    gpu = gpus.MODELS.get(gpu_key or "", gpus.MODELS["t4"])
    bandwidth, tflops = GPU_SPEED.get(gpu.key, GPU_SPEED["t4"])
    count = max(1, count)
    bytes_s = bandwidth * 1e9 * BANDWIDTH_EFFICIENCY * count
    flops_s = tflops * 1e12 * COMPUTE_EFFICIENCY * count
    kv_bytes_token = KV_KIB_PER_TOKEN_PER_B * 1024 * server.params_b
    free_mib = gpu.usable_mib * count * server.memory_utilisation - server.weights_bytes / 2**20 - ACTIVATION_MIB
    kv_tokens = max(0.0, free_mib * 2**20 / kv_bytes_token)
    per_request = server.prompt_tokens + server.output_tokens
    # A model too large for its GPUs still gets one sequence: a real server would not start at all.
    slots = max(1, min(server.max_seqs, int(kv_tokens // per_request)))
    context = server.prompt_tokens + server.output_tokens / 2
    flops_token = 2 * server.params_b * 1e9
    return Capacity(slots=slots, kv_tokens=max(kv_tokens, float(per_request)),
                    step_fixed_s=server.weights_bytes / bytes_s,
                    step_per_seq_s=flops_token / flops_s + context * kv_bytes_token / bytes_s,
                    prefill_s=server.prompt_tokens * flops_token / flops_s)


# --------------------------------------------------------------------------- the queue


#: The real servers' histogram buckets: vLLM's (vllm/v1/metrics/loggers.py), TGI's durations (router/src/
#: server.rs: 35 steps, each 1.5 times the last, from 0.00015 s).
VLLM_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                     20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
VLLM_TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                     40.0, 80.0)
VLLM_LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
                        240.0, 480.0, 960.0, 1920.0, 7680.0)
TGI_DURATION_BUCKETS = tuple(0.0001 * 1.5 ** (i + 1) for i in range(35))
#: TGI's generated-token buckets: a hundredth of --max-total-tokens each (its former default, 2048).
TGI_MAX_TOTAL_TOKENS = 2048
TGI_TOKEN_BUCKETS = tuple(TGI_MAX_TOTAL_TOKENS / 100 * (i + 1) for i in range(100))


class Histogram:
    """A Prometheus histogram's counts: per bucket (cumulated when read, so a tick costs the buckets its
    observations reach, not all of them), a sum and a count."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]):
        self.bounds = tuple(bounds)
        self.counts = [0.0] * (len(self.bounds) + 1)  # the last: above every bound (+Inf only)
        self.sum = 0.0
        self.count = 0.0

    @property
    def buckets(self) -> list[float]:
        """Cumulative counts per bound (``le``), +Inf aside (that is :attr:`count`)."""
        return list(itertools.accumulate(self.counts[:-1]))

    def observe(self, n: float, base: float, spread: float) -> None:
        """``n`` observations of ``base`` plus an exponential wait of mean ``spread`` (none when 0)."""
        if n <= 0:
            return
        self.sum += n * (base + spread)
        self.count += n
        first = bisect.bisect_left(self.bounds, base)
        if spread <= 0:
            self.counts[first] += n
            return
        below = 0.0
        for i in range(first, len(self.bounds)):
            share = -math.expm1(-(self.bounds[i] - base) / spread)
            self.counts[i] += n * (share - below)
            below = share
            if share > 1 - 1e-12:
                return
        self.counts[-1] += n * (1 - below)


@dataclasses.dataclass
class Tick:
    """A server's figures for the last tick."""

    loading: bool = True
    running: float = 0.0
    waiting: float = 0.0
    kv_usage: float = 0.0  # 0-1
    throughput_rps: float = 0.0  # requests finished per second
    queue_s: float = 0.0  # mean wait of a request admitted now
    ttft_s: float = 0.0
    tpot_s: float = 0.0
    e2e_s: float = 0.0


def mmc_waiting(rho: float, servers: int) -> float:
    """Mean queue length of an M/M/c queue at utilisation ``rho`` (Sakasegawa's approximation)."""
    if rho <= 0:
        return 0.0
    rho = min(rho, 0.99)
    return float(rho ** math.sqrt(2 * (servers + 1)) / (1 - rho))


class ServerState:
    """One replica's queue and counters. :meth:`step` advances it by one tick at an arrival rate."""

    def __init__(self, server: Server, gpu_key: str | None, gpus_count: int):
        self.server = server
        self.capacity = capacity(server, gpu_key, gpus_count)
        self.backlog = 0.0  # requests past capacity, carried from tick to tick
        self.last = Tick()
        self.requests = 0.0  # arrived
        self.finished = 0.0
        self.failed = 0.0
        self.prompt_tokens = 0.0
        self.generation_tokens = 0.0
        self.queue_time_s = 0.0  # summed over finished requests
        self.compute_time_s = 0.0
        self.batches = 0.0  # batch executions (Triton's exec count)
        self.ttft = Histogram(VLLM_TTFT_BUCKETS if server.kind == "vllm" else TGI_DURATION_BUCKETS)
        self.tpot = Histogram(VLLM_TPOT_BUCKETS if server.kind == "vllm" else TGI_DURATION_BUCKETS)
        self.e2e = Histogram(VLLM_LATENCY_BUCKETS if server.kind == "vllm" else TGI_DURATION_BUCKETS)
        self.queue = Histogram(VLLM_LATENCY_BUCKETS if server.kind == "vllm" else TGI_DURATION_BUCKETS)
        self.inference = Histogram(VLLM_LATENCY_BUCKETS if server.kind == "vllm" else TGI_DURATION_BUCKETS)
        self.generated = Histogram(TGI_TOKEN_BUCKETS) if server.kind == "tgi" else None

    def loading(self, age_s: float | None) -> bool:
        """Still loading its model at this age (None: age unknown, taken as loaded)."""
        return age_s is not None and age_s < self.server.load_seconds

    def step(self, rps: float, dt_s: float, age_s: float | None = None, error_rate: float = 0.0) -> Tick:
        """One tick at ``rps`` arrivals; ``age_s`` is the pod's age (its model loads first: arrivals
        wait), ``error_rate`` the share of finished requests that fail."""
        cap, server = self.capacity, self.server
        arrivals = max(0.0, rps) * dt_s
        self.requests += arrivals
        if self.loading(age_s):
            self.backlog += arrivals
            self.last = Tick(loading=True, waiting=self.backlog)
            return self.last
        out = server.output_tokens
        peak = cap.max_rps(out)
        if self.backlog > 0 or rps > peak:
            served = min(self.backlog + arrivals, peak * dt_s)
            self.backlog += arrivals - served
            running = float(cap.slots)
            throughput = served / dt_s
            waiting = self.backlog + mmc_waiting(1.0, cap.slots)
            queue_s = self.backlog / peak
        else:
            throughput = rps
            # Little's law with a step time that grows with the batch: R = λ·(prefill + out·(a + b·R)).
            running = min(float(cap.slots), rps * (cap.prefill_s + out * cap.step_fixed_s)
                          / max(1e-9, 1 - rps * out * cap.step_per_seq_s))
            waiting = mmc_waiting(rps / peak, cap.slots)
            queue_s = waiting / rps if rps > 0 else 0.0
        tpot = cap.step_s(running)
        first = cap.prefill_s + tpot
        ttft = queue_s + first
        e2e = ttft + (out - 1) * tpot
        done = throughput * dt_s
        self.finished += done
        self.failed += done * min(1.0, max(0.0, error_rate))
        self.prompt_tokens += done * server.prompt_tokens
        self.generation_tokens += done * out
        self.queue_time_s += done * queue_s
        self.compute_time_s += done * (e2e - queue_s)
        self.batches += done / max(1.0, running)
        # The waits ahead of requests vary: exponential about their mean, as in an M/M/c queue.
        self.ttft.observe(done, first, queue_s)
        self.tpot.observe(done, tpot, 0.0)
        self.e2e.observe(done, e2e - queue_s, queue_s)
        self.queue.observe(done, 0.0, queue_s)
        self.inference.observe(done, e2e - queue_s, 0.0)
        if self.generated is not None:
            self.generated.observe(done, float(out), 0.0)
        context = server.prompt_tokens + out / 2
        self.last = Tick(loading=False, running=running, waiting=waiting,
                         kv_usage=min(1.0, running * context / cap.kv_tokens), throughput_rps=throughput,
                         queue_s=queue_s, ttft_s=ttft, tpot_s=tpot, e2e_s=e2e)
        return self.last
