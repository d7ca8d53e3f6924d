"""Inference servers: recognised from the pods users apply, a queueing model that saturates like a real
server, and their metrics under the real servers' names, labels and buckets."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8sim_engine.collector import State, render
from k8sim_engine.inference import InferenceCollector
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from k8sim import inference, model

VLLM = Path(__file__).parents[1] / "integration" / "manifests" / "vllm-deployment.yaml"
MONDAY = dt.datetime(2026, 11, 23, 10, 30, tzinfo=dt.UTC)  # the daily cycle's top: exactly peak_rps


def upstream_vllm_pod() -> dict[str, Any]:
    """The pod kubernetes/examples' vLLM Deployment makes (its template, named as a ReplicaSet names it)."""
    deployment = next(yaml.safe_load_all(VLLM.read_text()))
    template = deployment["spec"]["template"]
    return {"metadata": {**template["metadata"], "name": "vllm-gemma-deployment-5d8f-abcde"}, "spec": template["spec"]}


def pod(image: str, args: list[str] | None = None, annotations: dict[str, str] | None = None,
        env: list[dict[str, str]] | None = None, command: list[str] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "server", "image": image, "args": args or [], "env": env or []}
    if command:
        container["command"] = command
    return {"metadata": {"name": "srv-1", "labels": {"app": "srv"}, "annotations": annotations or {}},
            "spec": {"containers": [container]}}


def test_the_upstream_vllm_deployment_is_recognised_with_its_model_and_flags() -> None:
    server = inference.recognise(upstream_vllm_pod())
    assert server is not None
    assert (server.kind, server.model, server.params_b) == ("vllm", "google/gemma-3-1b-it", 1.0)
    assert (server.max_seqs, server.memory_utilisation) == (64, 0.85)  # its --max-num-seqs, --gpu-memory-utilization
    assert server.load_seconds == inference.LOAD_BASE_S + 2e9 / inference.LOAD_BYTES_PER_S


@pytest.mark.parametrize(("given", "kind", "name"), [
    (pod("vllm/vllm-openai:latest", ["--model", "meta-llama/Llama-3.1-8B-Instruct", "--served-model-name", "llama"]),
     "vllm", "llama"),
    (pod("docker.io/vllm/vllm-openai@sha256:0123", command=["vllm", "serve", "Qwen/Qwen2.5-0.5B-Instruct"]),
     "vllm", "Qwen/Qwen2.5-0.5B-Instruct"),
    (pod("ghcr.io/huggingface/text-generation-inference:3.0", ["--model-id", "mistralai/Mistral-7B-v0.1"]),
     "tgi", "mistralai/Mistral-7B-v0.1"),
    (pod("ghcr.io/huggingface/text-generation-inference:2.4",
         env=[{"name": "MODEL_ID", "value": "bigscience/bloom-560m"}]),
     "tgi", "bigscience/bloom-560m"),
    (pod("nvcr.io/nvidia/tritonserver:24.08-py3", ["tritonserver", "--model-repository=/models"]), "triton", "srv"),
    (pod("registry.example/llm:1", annotations={inference.SERVER_ANNOTATION: "vllm", "k8sim.io/model-name": "m-13b"}),
     "vllm", "m-13b"),
])
def test_servers_are_recognised_by_image_or_annotation(given: dict[str, Any], kind: str, name: str) -> None:
    server = inference.recognise(given)
    assert server is not None and (server.kind, server.model) == (kind, name)


def test_other_pods_and_opted_out_ones_are_not_servers() -> None:
    assert inference.recognise(pod("nginx:1.27")) is None
    opted_out = pod("vllm/vllm-openai:v0.11.0", annotations={inference.SERVER_ANNOTATION: "none"})
    assert inference.recognise(opted_out) is None


@pytest.mark.parametrize(("name", "billions"), [
    ("meta-llama/Llama-3.1-8B-Instruct", 8.0), ("Qwen/Qwen2.5-0.5B", 0.5), ("google/gemma-3-1b-it", 1.0),
    ("mistralai/Mistral-7B-v0.1", 7.0), ("gpt2", None), ("bert-base", None),
])
def test_model_size_from_its_name(name: str, billions: float | None) -> None:
    assert inference.params_from_name(name) == billions


def gemma_on_t4() -> inference.ServerState:
    server = inference.recognise(upstream_vllm_pod())
    assert server is not None
    return inference.ServerState(server, "t4", 1)


def quantile(h: inference.Histogram, q: float, before: tuple[list[float], float] | None = None) -> float:
    """histogram_quantile over what was observed since ``before`` (buckets, count), as PromQL computes it."""
    buckets = [b - (before[0][i] if before else 0.0) for i, b in enumerate(h.buckets)]
    count = h.count - (before[1] if before else 0.0)
    rank = q * count
    lower, below = 0.0, 0.0
    for bound, cumulative in zip(h.bounds, buckets, strict=True):
        if cumulative >= rank:
            return lower + (bound - lower) * (rank - below) / (cumulative - below)
        lower, below = bound, cumulative
    return math.inf


def test_below_capacity_nothing_waits_and_latency_is_the_service_time() -> None:
    state = gemma_on_t4()
    cap = state.capacity
    rps = 0.5 * cap.max_rps(128)
    for _ in range(20):
        tick = state.step(rps, 1.0, age_s=3600)
    assert tick.waiting < 0.01
    assert tick.throughput_rps == rps
    # Little's law: the running batch is the arrival rate times the time each request spends in it.
    assert tick.running == pytest.approx(rps * cap.service_s(tick.running, 128))
    assert tick.ttft_s == pytest.approx(cap.prefill_s + cap.step_s(tick.running), rel=0.01)
    assert tick.e2e_s == pytest.approx(cap.service_s(tick.running, 128), rel=0.01)
    assert state.prompt_tokens == pytest.approx(20 * rps * 512)
    assert state.generation_tokens == pytest.approx(20 * rps * 128)
    assert quantile(state.ttft, 0.95) < 0.1


def test_past_capacity_the_queue_grows_every_tick_and_ttft_p95_rises() -> None:
    state = gemma_on_t4()
    peak = state.capacity.max_rps(128)
    for _ in range(5):
        state.step(0.5 * peak, 1.0, age_s=3600)
    calm = quantile(state.ttft, 0.95)
    waiting, ttft = [], []
    for _ in range(30):
        before = (list(state.ttft.buckets), state.ttft.count)
        tick = state.step(1.5 * peak, 1.0, age_s=3600)
        waiting.append(tick.waiting)
        ttft.append(quantile(state.ttft, 0.95, before))
        assert tick.throughput_rps == pytest.approx(peak)  # it serves at capacity, no more
        assert tick.running == state.capacity.slots
    assert all(b > a for a, b in itertools.pairwise(waiting))
    # The backlog grows by the excess: half the capacity a second.
    assert waiting[-1] - waiting[0] == pytest.approx(29 * 0.5 * peak)
    assert ttft[-1] > 10 * calm and ttft[-1] > ttft[5] > ttft[0]
    # Back under capacity the backlog drains at the spare capacity.
    for _ in range(200):
        tick = state.step(0.5 * peak, 1.0, age_s=3600)
    assert tick.waiting < 1 and tick.queue_s < 0.05


def test_a_new_replica_serves_nothing_while_its_model_loads() -> None:
    state = gemma_on_t4()
    load = state.server.load_seconds
    tick = state.step(10, 1.0, age_s=load - 1)
    assert tick.loading and tick.running == 0 and state.finished == 0
    tick = state.step(10, 1.0, age_s=load)
    assert not tick.loading and state.finished == pytest.approx(20)  # what waited, served once loaded


def spec(uid: str, server: inference.Server | None, started: dt.datetime, accelerator: str = "t4") -> model.PodSpec:
    return model.PodSpec(uid=uid, namespace="llm", name=uid, service="llm/chat", container="server",
                         image="vllm/vllm-openai:v0.11.0", node="gpu-1", tenant="t1", cpu_request=2, cpu_limit=2,
                         memory_request=10 * model.GIB, memory_limit=10 * model.GIB, gpus=1, accelerator=accelerator,
                         ready=True, started=started, server=server)


def test_the_model_sends_a_loading_replica_no_traffic_and_its_latency_follows_the_queue() -> None:
    server = inference.recognise(upstream_vllm_pod())
    assert server is not None
    m = model.Model(noise=False)
    old = spec("old", server, MONDAY - dt.timedelta(hours=1))
    new = spec("new", server, MONDAY)
    factor = {"llm/chat": 3.0}  # 54 requests/s: past one gemma-on-T4's capacity

    def last(uid: str) -> model.PodSample:
        sample = m.pods[uid].last
        assert sample is not None
        return sample
    for i in range(int(server.load_seconds) - 1):
        m.tick([old, new], MONDAY + dt.timedelta(seconds=i), 1.0, factors=factor)
        assert last("new").rps == 0.0 and last("old").rps == pytest.approx(54)
    overloaded = last("old").latency_ms
    assert overloaded > 1000 * gemma_on_t4().capacity.service_s(64, 128)  # it waits in the queue
    assert m.pods["old"].server is not None and m.pods["old"].server.last.waiting > 100
    for i in range(int(server.load_seconds), 600):
        m.tick([old, new], MONDAY + dt.timedelta(seconds=i), 1.0, factors=factor)
    assert last("new").rps == pytest.approx(27) and last("old").rps == pytest.approx(27)
    drained = m.pods["old"].server
    assert drained is not None and drained.backlog == 0
    # What is left waiting is the M/M/c queue's at 27 of its ~30 requests/s.
    assert drained.last.waiting == pytest.approx(inference.mmc_waiting(27 / drained.capacity.max_rps(128), 64))
    assert last("old").latency_ms < overloaded / 5


def test_while_every_replica_loads_requests_fail_and_nothing_queues() -> None:
    server = inference.recognise(upstream_vllm_pod())
    assert server is not None
    m = model.Model(noise=False)
    (sample,) = m.tick([spec("a", server, MONDAY)], MONDAY, 1.0)
    state = m.pods["a"].server
    assert state is not None and state.last.loading and state.last.waiting == 0
    assert (sample.error_rate, sample.good, sample.total) == (1.0, 0.0, 18.0)
    (sample,) = m.tick([spec("a", server, MONDAY)], MONDAY + dt.timedelta(seconds=server.load_seconds), 1.0)
    assert sample.error_rate < 0.01 and state.finished == pytest.approx(18)


def collected(specs: list[model.PodSpec], ticks: int = 30) -> str:
    m = model.Model(noise=False)
    for i in range(ticks):
        m.tick(specs, MONDAY + dt.timedelta(seconds=i), 1.0, wall=MONDAY + dt.timedelta(hours=1, seconds=i))
    state = State()
    state.model = m

    @dataclasses.dataclass
    class Engine:
        state: State
    registry = CollectorRegistry(auto_describe=False)
    registry.register(InferenceCollector(Engine(state)))
    return str(render(registry).decode())


def servers() -> list[model.PodSpec]:
    made = []
    for uid, image, args in (("v", "vllm/vllm-openai:v0.11.0", ["--model=org/m-8b"]),
                             ("t", "ghcr.io/huggingface/text-generation-inference:3.0", ["--model-id", "org/m-7b"]),
                             ("n", "nvcr.io/nvidia/tritonserver:24.08-py3", [])):
        server = inference.recognise(pod(image, args))
        assert server is not None
        made.append(dataclasses.replace(spec(uid, server, MONDAY, "l40s"), service=f"llm/{uid}"))
    return made


def test_the_exported_families_parse_with_the_real_names_labels_and_buckets() -> None:
    text = collected(servers())
    families = {f.name: f for f in text_string_to_metric_families(text)}
    where = {"namespace": "llm", "container": "server"}
    vllm_labels = {**where, "pod": "v", "model_name": "org/m-8b", "engine": "0"}
    for name, kind in (("vllm:num_requests_running", "gauge"), ("vllm:num_requests_waiting", "gauge"),
                       ("vllm:gpu_cache_usage_perc", "gauge"), ("vllm:kv_cache_usage_perc", "gauge"),
                       ("vllm:prompt_tokens", "counter"), ("vllm:generation_tokens", "counter"),
                       ("vllm:request_success", "counter"), ("vllm:time_to_first_token_seconds", "histogram"),
                       ("vllm:time_per_output_token_seconds", "histogram"),
                       ("vllm:e2e_request_latency_seconds", "histogram"),
                       ("vllm:request_queue_time_seconds", "histogram")):
        assert families[name].type == kind, name
        for s in families[name].samples:
            assert {k: v for k, v in s.labels.items() if k not in ("le", "finished_reason")} == vllm_labels, s
    assert "# TYPE vllm:prompt_tokens_total counter" in text
    reasons = {s.labels["finished_reason"] for s in families["vllm:request_success"].samples}
    assert reasons == {"stop", "length", "abort"}
    ttft = families["vllm:time_to_first_token_seconds"].samples
    bounds = [float(s.labels["le"]) for s in ttft if s.name.endswith("_bucket")]
    assert bounds == [*inference.VLLM_TTFT_BUCKETS, math.inf]
    tpot = [float(s.labels["le"]) for s in families["vllm:time_per_output_token_seconds"].samples if "le" in s.labels]
    assert tpot == [*inference.VLLM_TPOT_BUCKETS, math.inf]
    # The newer name beside the older one, from the same observations (as vLLM emits both).
    itl = families["vllm:inter_token_latency_seconds"]
    assert itl.type == "histogram"
    assert [(s.name.replace("inter_token_latency", "time_per_output_token"), s.labels, s.value) for s in itl.samples] \
        == [(s.name, s.labels, s.value) for s in families["vllm:time_per_output_token_seconds"].samples]
    count = next(s.value for s in ttft if s.name.endswith("_count"))
    assert count == pytest.approx(30 * 18)  # gpu-inference's peak, every request served
    # TGI: no labels of its own, counters without _total, its geometric duration buckets.
    for name in ("tgi_queue_size", "tgi_batch_current_size", "tgi_request_count", "tgi_request_success",
                 "tgi_request_duration", "tgi_request_queue_duration", "tgi_request_mean_time_per_token_duration",
                 "tgi_request_generated_tokens"):
        assert {k: v for k, v in families[name].samples[0].labels.items() if k != "le"} == {**where, "pod": "t"}
    assert "# TYPE tgi_request_count counter\ntgi_request_count{" in text
    assert [float(s.labels["le"]) for s in families["tgi_request_duration"].samples if "le" in s.labels][:3] == \
        pytest.approx([0.00015, 0.000225, 0.0003375])
    # Triton: model and version, counters without _total, microseconds.
    for name in ("nv_inference_request_success", "nv_inference_count", "nv_inference_exec_count",
                 "nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us",
                 "nv_inference_request_duration_us", "nv_inference_pending_request_count"):
        (s,) = families[name].samples
        assert s.labels == {**where, "pod": "n", "model": "srv", "version": "1"}, s
        # As written (the parser reads a counter's samples as <name>_total whatever the text says).
        assert f"\n{name}{{" in text, name
    assert "# TYPE nv_inference_request_success counter\n" in text


def test_a_loading_replica_exports_nothing_and_no_server_no_families() -> None:
    server = inference.recognise(upstream_vllm_pod())
    assert server is not None
    loading = spec("a", server, MONDAY + dt.timedelta(hours=1))  # started as the wall clock begins
    assert "vllm:" not in collected([loading], ticks=3)
    assert collected([dataclasses.replace(loading, server=None)]) == ""


def test_the_same_inputs_give_the_same_exposition() -> None:
    assert collected(servers()) == collected(servers())


def test_annotations_override_and_unreadable_ones_fall_back_to_the_defaults() -> None:
    given = pod("vllm/vllm-openai:v0.11.0", ["--model", "org/m-8b"], annotations={
        "k8sim.io/model-load-seconds": "0", "k8sim.io/prompt-tokens": "1000", "k8sim.io/output-tokens": "many",
        "k8sim.io/max-num-seqs": "-3", "k8sim.io/model-params-billions": "70"})
    server = inference.recognise(given)
    assert server is not None
    assert (server.load_seconds, server.prompt_tokens, server.params_b) == (0.0, 1000, 70.0)
    assert (server.output_tokens, server.max_seqs) == (inference.DEFAULT_OUTPUT_TOKENS, inference.DEFAULT_MAX_SEQS)
    # 70B of FP16 weights do not fit one T4: one sequence at a time, far below the 8B's capacity on an H100.
    assert inference.capacity(server, "t4", 1).slots == 1
    assert inference.capacity(server, "h100", 8).max_rps(128) > inference.capacity(server, "h100", 2).max_rps(128)
