"""Issue 28's benchmark: the engine's CPU per tick with inference servers' metrics and a played
prometheus-adapter of 50 rules, against the same tick without the adapter, and the custom metrics API's
latency for the query an HPA sends every sync.

The cluster is bench_tick's (pods decoded from watch lines, as the watch cache holds them), plus a share of
vLLM, TGI and Triton pods on A100 nodes, ten to a Deployment and one Deployment to a namespace, as an LLM
team runs them. Both settings run the engine's tick (pods to the model's inputs, the model's and the GPUs'
step, the metrics APIs' usage, the health document and the alerts) and render /metrics once, as a
Prometheus scrape makes it. With the adapter the tick also does what ``Engine.play`` does once the adapter
is read: collect the registry once, ``Played.observe`` those families (the series the rules read, the
adapter's relist), and the scrape renders the same families (``runner._Collected``) instead of
collecting again. Reading the cluster (``Played.refresh``) is left out: the holder is built directly.
The two settings take turns, tick by tick, over the same heap.

The API's latency is ``adapter_api.custom_values`` for ``pods/*`` of one namespace (the ten pods of a
Deployment), as the HPA controller asks for a Pods metric, in-process and through the engine's metrics
app (starlette's TestClient, the object listing answered from memory rather than by the apiserver).

    python bench/bench_adapter.py [--pods 1000] [--inference 0.2] [--ticks 8] [--rounds 4] [--calls 500]
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import functools
import gc
import io
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "engine"))

from bench_tick import POD, PODS_PER_NODE
from common import write_results
from k8sim_engine import adapter_api
from k8sim_engine.app import create_metrics_app
from k8sim_engine.cache import _slim
from k8sim_engine.collector import SimulatorCollector, State, render
from k8sim_engine.cost import CostCollector
from k8sim_engine.inference import InferenceCollector
from k8sim_engine.metrics_api import Usage, usage_from
from k8sim_engine.played import AdapterState, Holder, Played
from k8sim_engine.runner import _Collected
from k8sim_engine.sources import Memo, pod_specs, service_labels, workload_replicas
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from k8sim import adapter, alerts, contract, gpus, model, played
from k8sim.settings import CommonSettings, tune_gc

#: After the pods' start (2026-11-28T18:05Z) and their models' load: every server serves.
START = dt.datetime(2026, 11, 28, 20, 0, tzinfo=dt.UTC)
STEP = 5.0
PER_DEPLOYMENT, PER_SERVER_DEPLOYMENT, GPUS_PER_NODE = 100, 10, 8
#: Server kind → (image, arguments): what the images' own documentation runs.
SERVERS = {
    "vllm": ("vllm/vllm-openai:v0.6.3", ["--model", "meta-llama/Llama-3.1-8B-Instruct", "--max-num-seqs", "128"]),
    "tgi": ("ghcr.io/huggingface/text-generation-inference:2.4.0", ["--model-id", "mistralai/Mistral-7B-v0.3"]),
    "triton": ("nvcr.io/nvidia/tritonserver:24.08-trtllm-python-py3", ["tritonserver", "--model-repository=/models"]),
}
#: Half of the servers are vLLM, a quarter each TGI and Triton.
KIND_CYCLE = ("vllm", "tgi", "vllm", "triton")

GAUGE = "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)"
RATE = "sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)"
POD_LABELS = {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
#: dcgm-exporter's pod labels, renamed exported_* by the scrape (what NVIDIA's adapter guides map).
DCGM_LABELS = {"exported_namespace": {"resource": "namespace"}, "exported_pod": {"resource": "pod"}}
#: (series, counter, name.matches, name.as): fifty rules over the series an LLM team's HPAs read.
SERIES: tuple[tuple[str, bool, str, str], ...] = (
    *((f"vllm:{s}", False, "^vllm:(.*)$", "vllm_${1}") for s in (
        "num_requests_running", "num_requests_waiting", "gpu_cache_usage_perc", "kv_cache_usage_perc")),
    *((f"vllm:{s}_total", True, "^vllm:(.*)_total$", "vllm_${1}_per_second") for s in (
        "prompt_tokens", "generation_tokens", "request_success", "num_preemptions")),
    *((f"vllm:{s}_{part}", True, "^vllm:(.*)_seconds_(sum|count)$", "vllm_${1}_${2}_per_second")
      for s in ("time_to_first_token_seconds", "time_per_output_token_seconds", "e2e_request_latency_seconds")
      for part in ("sum", "count")),
    ("vllm:request_queue_time_seconds_sum", True, "^vllm:(.*)_seconds_sum$", "vllm_${1}_seconds_per_second"),
    ("vllm:request_inference_time_seconds_sum", True, "^vllm:(.*)_seconds_sum$", "vllm_${1}_seconds_per_second"),
    *((f"tgi_{s}", False, "^(.*)$", "${1}") for s in ("queue_size", "batch_current_size", "batch_current_max_tokens")),
    *((f"tgi_{s}", True, "^(.*)$", "${1}_per_second") for s in (
        "request_count", "request_success", "request_failure", "request_duration_sum", "request_duration_count",
        "request_queue_duration_sum", "request_mean_time_per_token_duration_sum")),
    ("nv_inference_pending_request_count", False, "^nv_(.*)$", "triton_${1}"),
    *((f"nv_inference_{s}", True, "^nv_(.*)$", "triton_${1}_per_second") for s in (
        "request_success", "request_failure", "count", "exec_count", "request_duration_us", "queue_duration_us",
        "compute_infer_duration_us")),
    ("container_cpu_usage_seconds_total", True, "^container_(.*)_seconds_total$", "container_${1}_cores"),
    ("container_memory_working_set_bytes", False, "^container_(.*)$", "container_${1}"),
    ("container_spec_memory_limit_bytes", False, "^container_(.*)$", "container_${1}"),
    ("container_network_receive_bytes_total", True, "^container_(.*)_total$", "container_${1}_per_second"),
    ("container_network_transmit_bytes_total", True, "^container_(.*)_total$", "container_${1}_per_second"),
    *((f"DCGM_FI_{s}", False, "^DCGM_FI_(.*)$", "dcgm_${1}") for s in (
        "DEV_GPU_UTIL", "DEV_MEM_COPY_UTIL", "DEV_FB_USED", "DEV_FB_FREE", "DEV_POWER_USAGE", "DEV_GPU_TEMP",
        "DEV_SM_CLOCK", "PROF_GR_ENGINE_ACTIVE", "PROF_PIPE_TENSOR_ACTIVE", "PROF_DRAM_ACTIVE")),
    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", True, "^DCGM_FI_(.*)$", "dcgm_${1}_per_second"),
)
#: What the HPA asks for: a queue gauge and a token rate of one vLLM Deployment's pods.
HPA_METRICS = ("vllm_num_requests_waiting", "vllm_generation_tokens_per_second")


def adapter_config() -> str:
    """The ConfigMap's ``config.yaml``: one rule per series, as LLM-serving HPA guides write them."""
    rules = []
    for series, counter, matches, as_ in SERIES:
        dcgm = series.startswith("DCGM_")
        where = 'exported_namespace!="",exported_pod!=""' if dcgm else 'namespace!="",pod!=""'
        if series.startswith("container_"):
            where += ',container!="POD"'
        rules.append({"seriesQuery": f"{series}{{{where}}}",
                      "resources": {"overrides": DCGM_LABELS if dcgm else POD_LABELS},
                      "name": {"matches": matches, "as": as_},
                      "metricsQuery": RATE if counter else GAUGE})
    return yaml.safe_dump({"rules": rules}, sort_keys=False)


def pod_line(index: int, namespace: str, deployment: str, node: str, kind: str | None) -> dict[str, Any]:
    """A Running pod of a Deployment as the watch cache holds it (bench_tick's, renamed; a server's image)."""
    pod: dict[str, Any] = orjson.loads(orjson.dumps(POD))
    meta, spec = pod["metadata"], pod["spec"]
    meta.update(name=f"{deployment}-9cf98cdfc-{index}", namespace=namespace,
                uid=f"00000000-0000-4000-8000-{index:012d}", resourceVersion=str(index + 1))
    meta["labels"]["app"] = deployment
    meta["ownerReferences"][0]["name"] = f"{deployment}-9cf98cdfc"
    spec["nodeName"] = node
    if kind is not None:
        image, args = SERVERS[kind]
        container = spec["containers"][0]
        container.update(name=kind, image=image, args=args,
                         resources={"requests": {"cpu": "4", "memory": "32Gi", "nvidia.com/gpu": "1"},
                                    "limits": {"nvidia.com/gpu": "1"}})
        pod["status"]["containerStatuses"][0].update(name=kind, image=image)
    slim: dict[str, Any] = _slim(orjson.loads(orjson.dumps({"type": "MODIFIED", "object": pod}))["object"])
    return slim


class Kube:
    """The ``list`` the custom metrics route makes for ``pods/*``, answered from the cache (no apiserver)."""

    def __init__(self, pods: list[dict[str, Any]]):
        self.pods = pods

    async def list(self, api_version: str, kind: str, namespace: str | None = None, *,
                   label_selector: str | None = None, field_selector: str | None = None,
                   metadata_only: bool = False) -> list[dict[str, Any]]:
        return [{"metadata": p["metadata"]} for p in self.pods
                if namespace is None or p["metadata"]["namespace"] == namespace]


class Cluster:
    """The engine's per-tick work over ``pods`` pods, ``share`` of them inference servers, and its registry."""

    def __init__(self, pods: int, share: float):
        servers = round(pods * share / PER_SERVER_DEPLOYMENT) * PER_SERVER_DEPLOYMENT
        plain = pods - servers
        self.cache: dict[str, dict[str, Any]] = {}
        cpu_nodes, gpu_nodes = -(-plain // PODS_PER_NODE), -(-servers // GPUS_PER_NODE)
        for index in range(plain):
            self._put(pod_line(index, "bench", f"load-{index // PER_DEPLOYMENT}", f"bench-{index // PODS_PER_NODE}",
                               None))
        self.server_namespaces: list[str] = []
        for offset in range(servers):
            group = offset // PER_SERVER_DEPLOYMENT
            kind = KIND_CYCLE[group % len(KIND_CYCLE)]
            namespace = f"llm-{group}"
            if offset % PER_SERVER_DEPLOYMENT == 0:
                self.server_namespaces.append(namespace)
            self._put(pod_line(plain + offset, namespace, f"{kind}-{group}", f"gpu-{offset // GPUS_PER_NODE}", kind))
        self.nodes = [{"metadata": {"name": f"bench-{n}", "labels": {}},
                       "status": {"capacity": {"cpu": "16", "memory": "64Gi"},
                                  "conditions": [{"type": "Ready", "status": "True"}]}} for n in range(cpu_nodes)]
        self.nodes += [{"metadata": {"name": f"gpu-{n}", "labels": {
                            "accelerator": "nvidia-a100", "node.kubernetes.io/instance-type": "p4d.24xlarge"}},
                        "status": {"capacity": {"cpu": "96", "memory": "1152Gi", "nvidia.com/gpu": str(GPUS_PER_NODE)},
                                   "conditions": [{"type": "Ready", "status": "True"}]}} for n in range(gpu_nodes)]
        by_deployment: dict[tuple[str, str], int] = {}
        for pod in self.cache.values():
            key = (pod["metadata"]["namespace"], pod["metadata"]["labels"]["app"])
            by_deployment[key] = by_deployment.get(key, 0) + 1
        self.deployments = [{"metadata": {"name": name, "namespace": ns}, "spec": {"replicas": n},
                             "status": {"availableReplicas": n}} for (ns, name), n in by_deployment.items()]
        self.servers = servers
        self.model = model.Model(1)
        self.specs, self.containers, self.services = Memo(), Memo(), Memo()
        self.ticks = 0
        self.usage: Usage = Usage.empty()
        self.state = State()
        # The engine's registry: its collectors read this tick's state and the (synced) watch cache's nodes.
        self.registry = CollectorRegistry(auto_describe=False)
        ref = CacheRef(self)
        for collector in (SimulatorCollector(ref), CostCollector(ref), InferenceCollector(ref)):
            self.registry.register(collector)

    def _put(self, pod: dict[str, Any]) -> None:
        self.cache[pod["metadata"]["uid"]] = pod

    # What CostCollector reads of the watch cache.
    @property
    def synced(self) -> bool:
        return True

    def items(self, kind: str) -> list[dict[str, Any]]:
        return self.nodes if kind == "Node" else []

    def pods(self) -> list[dict[str, Any]]:
        return list(self.cache.values())

    def tick(self) -> None:
        """``Engine.tick`` between reading the cache and writing to the stores."""
        self.ticks += 1
        now = START + dt.timedelta(seconds=STEP * self.ticks)
        pods = self.pods()
        specs = pod_specs(pods, self.nodes, {}, self.specs)
        labels = service_labels(pods, self.services)
        samples = self.model.tick(specs, now, STEP, labels, workload_replicas(self.deployments), {}, {}, now)
        self.model.step_devices(gpus.inventory(self.nodes), STEP, gpus.faults(self.nodes))
        self.usage = usage_from(pods, self.nodes, self.model, samples, now, STEP, self.containers)
        live = {p["metadata"]["uid"] for p in pods}
        for memo in (self.specs, self.containers, self.services):
            memo.keep(live)
        contract.health_document(samples, now, None, {})
        alerts.cluster_alerts(pods, self.nodes, {}, now) + alerts.gpu_alerts(self.model.devices)
        state = State()
        state.pods, state.deployments, state.model, state.services = pods, self.deployments, self.model, samples
        self.state = state


class CacheRef:
    """CostCollector's view of the engine: its state and its (synced) watch cache."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster

    @property
    def state(self) -> State:
        return self.cluster.state

    @property
    def cache(self) -> Cluster:
        return self.cluster


def played_adapter(cluster: Cluster, config: str) -> Played:
    """A Played holding custom.metrics.k8s.io with ``config``'s rules, as ``refresh`` leaves it."""
    found = Played(Kube(cluster.pods()))
    backend = played.Backend(played.Addon.PROMETHEUS_ADAPTER, "monitoring", "prometheus-adapter",
                             deployment="prometheus-adapter", config_map="adapter-config", config_key="config.yaml")
    found.holders = {adapter_api.CUSTOM: Holder(adapter_api.CUSTOM, "v1beta1.custom.metrics.k8s.io", backend,
                                                AdapterState("1", adapter.Adapter(adapter.load(config)), None))}
    # refresh() sets what observe keeps from the rules it read; the bench does not read the cluster.
    found._names = found._needed()
    return found


OUTPUT: list[str] = []


def say(line: str) -> None:
    OUTPUT.append(line)
    print(line, flush=True)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class Pauses:
    """The garbage collector's passes while it is installed: how many, and the slowest (a tail's usual cause)."""

    def __init__(self) -> None:
        self.count, self.longest, self._began = 0, 0.0, 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.count += 1
            self.longest = max(self.longest, time.perf_counter() - self._began)


def timed_calls(call: Callable[[], Any], count: int) -> tuple[list[float], list[float], Pauses]:
    """Seconds of each of ``count`` calls, wall clock (what the HPA controller waits) and CPU (what the call
    costs: a tail the CPU lacks is the process waiting for a core), and the GC's passes."""
    wall, cpu = [], []
    pauses = Pauses()
    gc.callbacks.append(pauses)
    try:
        for _ in range(count):
            began, began_cpu = time.perf_counter(), time.process_time()
            call()
            cpu.append(time.process_time() - began_cpu)
            wall.append(time.perf_counter() - began)
    finally:
        gc.callbacks.remove(pauses)
    return wall, cpu, pauses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--inference", type=float, default=0.2, help="share of the pods that are LLM servers")
    parser.add_argument("--ticks", type=int, default=8, help="ticks of each setting per round")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of ticks, the two settings taking turns")
    parser.add_argument("--calls", type=int, default=500, help="custom metrics API calls per metric")
    parser.add_argument("--profile", action="store_true", help="profile the add-on ticks even within the goal")
    args = parser.parse_args()
    started_at = dt.datetime.now(dt.UTC)
    tune_gc(CommonSettings())  # as the engine's __main__ does
    started = time.monotonic()
    cluster = Cluster(args.pods, args.inference)
    held = played_adapter(cluster, adapter_config())
    holder = held.holders[adapter_api.CUSTOM]
    rules = holder.config.rules if holder.config is not None else None
    assert rules is not None and len(rules.config.rules) == 50, "fifty rules"
    say(f"{args.pods} pods ({cluster.servers} LLM servers in {len(cluster.server_namespaces)} namespaces, "
        f"{len(cluster.nodes)} nodes) cached in {time.monotonic() - started:.1f} s; the adapter keeps "
        f"{len(held._names or ())} metric names")
    # The store's clock (epoch seconds) starts far enough back for the catch-up before the API's figures to end now.
    origin = time.time() - STEP * (2 + 2 * args.rounds * args.ticks) - 3600

    # CPU seconds of each part of a tick, per setting: where the adapter's share goes.
    parts: dict[str, dict[str, list[float]]] = {"baseline": {}, "adapter": {}}

    def mark(setting: str, part: str, began: float) -> float:
        now = time.process_time()
        parts[setting].setdefault(part, []).append(now - began)
        return now

    def baseline() -> None:
        began = time.process_time()
        cluster.tick()
        began = mark("baseline", "engine tick", began)
        render(cluster.registry)
        mark("baseline", "collect + render /metrics", began)

    def with_adapter(at: float | None = None) -> None:
        began = time.process_time()
        cluster.tick()
        began = mark("adapter", "engine tick", began)
        families = list(cluster.registry.collect())
        began = mark("adapter", "collect", began)
        held.observe(families, origin + STEP * cluster.ticks if at is None else at)
        began = mark("adapter", "Played.observe (store, relist)", began)
        render(_Collected(families))
        mark("adapter", "render /metrics from the families", began)

    # The model's first sight of every pod and the adapter's first series are not steady ticks.
    baseline()
    with_adapter()
    for warm_up in parts.values():
        warm_up.clear()
    base_name, addon_name = "baseline (tick + /metrics)", "prometheus-adapter, 50 rules"
    cases: dict[str, Callable[[], None]] = {base_name: baseline, addon_name: with_adapter}
    per_tick: dict[str, list[float]] = {name: [] for name in cases}
    # Tick by tick, in turns and each first every other time: the machine's load (other processes, its
    # clock) drifts over a run, and both settings see the same drift.
    order = list(cases.items())
    for round_ in range(args.rounds):
        for _ in range(args.ticks):
            for name, run in order:
                began = time.process_time()
                run()
                per_tick[name].append(time.process_time() - began)
            order.reverse()
        say(f"  round {round_ + 1}: " + ", ".join(
            f"{name} median {statistics.median(spent[-args.ticks:]) * 1000:.0f} ms a tick"
            for name, spent in per_tick.items()))
    base, addon = statistics.median(per_tick[base_name]), statistics.median(per_tick[addon_name])
    ratio = addon / base
    exported = sum(len(f.samples) for f in cluster.registry.collect())
    say(f"engine tick at {args.pods} pods, CPU per tick (process time, median of {args.rounds * args.ticks} ticks; "
        f"share of a core at a {STEP:.0f} s tick); /metrics has {exported} samples, the adapter's store "
        f"{len(held.store)} series:")
    say(f"  {'setting':<32} {'CPU/tick':>9} {'core':>6} {'ratio':>6}")
    for name, value in ((base_name, base), (addon_name, addon)):
        say(f"  {name:<32} {value * 1000:>7.0f}ms {value / STEP:>6.1%} {value / base:>6.2f}")
    say(f"  goal <= 1.50x: {'met' if ratio <= 1.5 else 'NOT met'} ({ratio:.2f}x)")
    breakdown = {setting: {part: statistics.median(spent) for part, spent in timed.items()}
                 for setting, timed in parts.items()}
    say("  medians of the parts (ms):")
    for setting, medians in breakdown.items():
        say(f"    {setting}: " + ", ".join(f"{part} {value * 1000:.0f}" for part, value in medians.items()))
    figures: dict[str, Any] = {
        "pods": args.pods, "llm_servers": cluster.servers, "rules": len(rules.config.rules),
        "exported_samples": exported, "stored_series": len(held.store),
        "cpu_per_tick_s": {"baseline": base, "adapter": addon}, "ratio": ratio, "goal_met": ratio <= 1.5,
        "parts_s": breakdown, "ticks_s": per_tick}

    # The HPA's query reads the last two minutes up to now: a few more ticks observed at wall-clock times.
    catch_up = 30
    for i in range(catch_up):
        with_adapter(time.time() - STEP * (catch_up - 1 - i))
    at, when = time.time(), dt.datetime.now(dt.UTC)
    namespace = cluster.server_namespaces[0]
    members = sorted(p["metadata"]["name"] for p in cluster.pods() if p["metadata"]["namespace"] == namespace)
    discovered = {m.name for m in rules.custom_metrics(held.store)}
    say(f"custom.metrics.k8s.io ({len(discovered)} metrics discovered): an HPA's query for pods/* of {namespace} "
        f"({len(members)} pods), {args.calls} calls each:")
    say(f"  {'path':<12} {'metric':<36} {'p50':>8} {'p99':>8} {'CPU p99':>8} GC passes (longest)")
    latency: dict[str, dict[str, float]] = {}

    def report(path: str, metric: str, timed: tuple[list[float], list[float], Pauses]) -> None:
        wall, cpu, pauses = timed
        p50, p99, cpu99 = percentile(wall, 0.5), percentile(wall, 0.99), percentile(cpu, 0.99)
        latency[f"{path} {metric}"] = {"p50_s": p50, "p99_s": p99, "cpu_p50_s": percentile(cpu, 0.5),
                                       "cpu_p99_s": cpu99, "gc_passes": pauses.count,
                                       "longest_gc_pass_s": pauses.longest}
        say(f"  {path:<12} {metric:<36} {p50 * 1000:>6.2f}ms {p99 * 1000:>6.2f}ms {cpu99 * 1000:>6.2f}ms "
            f"{pauses.count:>3} ({pauses.longest * 1000:.0f}ms)")

    for metric in HPA_METRICS:
        assert f"pods/{metric}" in discovered, metric

        def in_process(metric: str = metric) -> dict[str, Any]:
            answer: dict[str, Any] = adapter_api.custom_values(
                rules, held.store, at, version="v1beta1", resource="pods", kind="Pod", api_version="/v1",
                namespace=namespace, names=members, requested="*", metric=metric, metric_selector=None, when=when)
            return answer

        items = in_process()["items"]
        assert len(items) == len(members), f"{metric}: {len(items)} of {len(members)} pods answered"
        say(f"  {metric} of {namespace}: " + ", ".join(item["value"] for item in items))
        report("in-process", metric, timed_calls(in_process, args.calls))
    source = type("Source", (), {"usage": cluster.usage, "played": held})()
    with TestClient(create_metrics_app(source)) as client:
        # What the HTTP stack costs alone (a probe), then the HPA's query through it.
        report("HTTP", "/healthz (the stack alone)", timed_calls(functools.partial(client.get, "/healthz"),
                                                                 args.calls))
        for metric in HPA_METRICS:
            url = (f"/apis/custom.metrics.k8s.io/v1beta1/namespaces/{namespace}/pods/*/{metric}"
                   f"?labelSelector=app%3D{members[0].split('-9cf98cdfc-')[0]}")
            answer = client.get(url)
            assert answer.status_code == 200 and len(answer.json()["items"]) == len(members), answer.text[:300]
            report("HTTP", metric, timed_calls(functools.partial(client.get, url), args.calls))
        # Discovery relists every rule over the store on each request (kube-aggregator and clients ask for it).
        url = "/apis/custom.metrics.k8s.io/v1beta1"
        assert len(client.get(url).json()["resources"]) == len(discovered)
        report("HTTP", "discovery (APIResourceList)", timed_calls(functools.partial(client.get, url),
                                                                  max(10, args.calls // 10)))
    figures["custom_metrics_latency"] = latency

    if ratio > 1.5 or args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.ticks):
            with_adapter()
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(15)
        stats.sort_stats("cumulative").print_stats(25)
        say(f"profile of {args.ticks} ticks with the adapter:")
        for line in out.getvalue().splitlines():
            if line.strip():
                say(line)
    figures["output"] = OUTPUT  # what the results page shows
    write_results("bench_adapter", vars(args), figures, started_at)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
