"""The metrics LLM and model servers export, under their own names and labels, for every pod the model
plays as one (k8sim.inference): what their autoscalers (prometheus-adapter rules, KEDA triggers) and
dashboards read.

- vLLM (vllm/v1/metrics/loggers.py): ``vllm:*`` with ``model_name`` and ``engine``.
- TGI (router/src/server.rs, backends/v3): ``tgi_*``, no labels of its own; counters without ``_total``
  and histograms with its duration buckets, as metrics-exporter-prometheus writes them.
- Triton (docs/user_guide/metrics.md): ``nv_inference_*`` with ``model`` and ``version``, counters
  without ``_total``, durations in microseconds.

Every series also carries ``namespace``, ``pod`` and ``container``: the labels Prometheus' Kubernetes
service discovery adds to a scraped pod, which prometheus-adapter maps back to the pod. A family is
written only when some pod runs that server. A replica still loading its model exports nothing, as the
real server has not opened its metrics port yet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client import utils
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from k8sim import inference

from .collector import State

_number: Callable[[float], str] = utils.floatToGoString


class HasState(Protocol):
    @property
    def state(self) -> State: ...


class Families:
    """Metric families by name, made on first use (so families of servers nobody runs stay out)."""

    def __init__(self) -> None:
        self.found: dict[str, Metric] = {}

    def add(self, name: str, kind: str, text: str, labels: dict[str, str], value: float, sample: str = "") -> None:
        family = self.found.get(name)
        if family is None:
            family = self.found[name] = Metric(name, text, kind)
        family.add_sample(sample or name, labels, value)

    def histogram(self, name: str, text: str, labels: dict[str, str], h: inference.Histogram) -> None:
        for bound, count in zip(h.bounds, h.buckets, strict=True):
            self.add(name, "histogram", text, {**labels, "le": _number(bound)}, count, f"{name}_bucket")
        self.add(name, "histogram", text, {**labels, "le": "+Inf"}, h.count, f"{name}_bucket")
        self.add(name, "histogram", text, labels, h.sum, f"{name}_sum")
        self.add(name, "histogram", text, labels, h.count, f"{name}_count")


class InferenceCollector(Collector):
    def __init__(self, ref: HasState):
        self.ref = ref

    def collect(self) -> Iterator[Metric]:
        found = Families()
        state = self.ref.state
        pods = state.model.pods if state.model else {}
        for pod in sorted(pods.values(), key=lambda p: (p.spec.namespace, p.spec.name)):
            server = pod.server
            if server is None or server.last.loading:
                continue
            where = {"namespace": pod.spec.namespace, "pod": pod.spec.name, "container": pod.spec.container}
            if server.server.kind == "vllm":
                vllm(found, where, server)
            elif server.server.kind == "tgi":
                tgi(found, where, server)
            else:
                triton(found, where, server)
        yield from found.found.values()


def vllm(out: Families, where: dict[str, str], s: inference.ServerState) -> None:
    labels = {**where, "model_name": s.server.model, "engine": "0"}
    last = s.last
    out.add("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.", labels,
            round(last.running))
    out.add("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.", labels,
            round(last.waiting))
    out.add("vllm:gpu_cache_usage_perc", "gauge", "GPU KV-cache usage. 1 means 100 percent usage.DEPRECATED: Use "
            "vllm:kv_cache_usage_perc instead.", labels, last.kv_usage)
    out.add("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", labels, last.kv_usage)
    out.add("vllm:num_preemptions", "counter", "Cumulative number of preemption from the engine.", labels, 0.0,
            "vllm:num_preemptions_total")
    out.add("vllm:prompt_tokens", "counter", "Number of prefill tokens processed.", labels, s.prompt_tokens,
            "vllm:prompt_tokens_total")
    out.add("vllm:generation_tokens", "counter", "Number of generation tokens processed.", labels,
            s.generation_tokens, "vllm:generation_tokens_total")
    good = s.finished - s.failed
    for reason, value in (("stop", good * (1 - inference.LENGTH_SHARE)), ("length", good * inference.LENGTH_SHARE),
                          ("abort", s.failed)):
        out.add("vllm:request_success", "counter", "Count of successfully processed requests.",
                {**labels, "finished_reason": reason}, value, "vllm:request_success_total")
    out.histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", labels, s.ttft)
    out.histogram("vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds.", labels,
                  s.tpot)
    # vLLM emits its newer name beside the older one, from the same observations.
    out.histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", labels, s.tpot)
    out.histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", labels, s.e2e)
    out.histogram("vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", labels,
                  s.queue)
    out.histogram("vllm:request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request.",
                  labels, s.inference)


def tgi(out: Families, where: dict[str, str], s: inference.ServerState) -> None:
    last = s.last
    out.add("tgi_queue_size", "gauge", "Current queue size", where, round(last.waiting))
    out.add("tgi_batch_current_size", "gauge", "Current batch size", where, round(last.running))
    out.add("tgi_batch_current_max_tokens", "gauge", "Maximum tokens for the current batch", where,
            round(last.running) * (s.server.prompt_tokens + s.server.output_tokens))
    out.add("tgi_request_count", "counter", "Total number of requests", where, s.requests)
    out.add("tgi_request_success", "counter", "Number of successful requests", where, s.finished - s.failed)
    out.add("tgi_request_failure", "counter", "Number of failed requests", {**where, "err": "generation"}, s.failed)
    out.histogram("tgi_request_duration", "Total time spent processing the request (e2e latency)", where, s.e2e)
    out.histogram("tgi_request_queue_duration", "Time spent in the queue per request", where, s.queue)
    out.histogram("tgi_request_inference_duration", "Request inference duration", where, s.inference)
    out.histogram("tgi_request_mean_time_per_token_duration", "Mean time per token per request (inter-token latency)",
                  where, s.tpot)
    if s.generated is not None:
        out.histogram("tgi_request_generated_tokens", "Generated tokens per request", where, s.generated)


def triton(out: Families, where: dict[str, str], s: inference.ServerState) -> None:
    labels = {**where, "model": s.server.model, "version": "1"}
    us = 1e6
    compute = s.compute_time_s * us
    for name, text, value in (
        ("nv_inference_request_success", "Number of successful inference requests, all batch sizes",
         s.finished - s.failed),
        ("nv_inference_request_failure", "Number of failed inference requests, all batch sizes", s.failed),
        ("nv_inference_count", "Number of inferences performed (does not include cached requests)", s.finished),
        ("nv_inference_exec_count", "Number of model executions performed (does not include cached requests)",
         s.batches),
        ("nv_inference_request_duration_us", "Cumulative inference request duration in microseconds (includes "
         "cached requests)", s.queue_time_s * us + compute),
        ("nv_inference_queue_duration_us", "Cumulative inference queuing duration in microseconds (includes cached "
         "requests)", s.queue_time_s * us),
        # Inputs and outputs are token ids: the model's own work is the whole of its compute time.
        ("nv_inference_compute_input_duration_us", "Cumulative compute input duration in microseconds (does not "
         "include cached requests)", 0.0),
        ("nv_inference_compute_infer_duration_us", "Cumulative compute inference duration in microseconds (does not "
         "include cached requests)", compute),
        ("nv_inference_compute_output_duration_us", "Cumulative inference compute output duration in microseconds "
         "(does not include cached requests)", 0.0),
    ):
        out.add(name, "counter", text, labels, value)
    out.add("nv_inference_pending_request_count", "gauge", "Instantaneous number of pending requests awaiting "
            "execution per-model.", labels, round(s.last.waiting))

