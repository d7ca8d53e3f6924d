"""An LLM server as users deploy it (kubernetes/examples' vLLM Deployment, on a T4) exports vLLM's metrics
into a real Prometheus; past its capacity its waiting queue grows and its time to first token rises, and a
second replica brings both back down once it has loaded its model."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from k8sim import inference
from k8sim.local.processes import free_port
from k8sim.local.settings import ClusterSettings

from .conftest import Kubectl, engine_env, eventually, process, promql, scraping, started

pytestmark = pytest.mark.integration

VLLM = Path(__file__).parent / "manifests" / "vllm-deployment.yaml"
#: The profile of a GPU pod (gpu-inference) at the engine's weekday peak, without noise.
BASE_RPS = 18.0


@pytest.fixture(scope="module")
def inference_prometheus(live_services: ClusterSettings, live_cluster: ClusterSettings,
                         tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An engine at a weekday peak without noise (so the load follows from the factor), not registered as the
    metrics APIs (another test's engine may hold them), and a real Prometheus scraping it every second."""
    tmp = tmp_path_factory.mktemp("inference")
    env = {**engine_env(free_port()), "K8SIM_REGISTER_METRICS_APIS": "false"}
    with process([sys.executable, "-m", "k8sim_engine"], env, tmp / "engine.log") as proc:
        engine = f"127.0.0.1:{env['K8SIM_ENGINE_PORT']}"
        started(f"http://{engine}/health", proc, tmp / "engine.log")
        with scraping(engine, tmp) as url:
            eventually(lambda: httpx.get(f"{url}/-/ready", timeout=5).status_code == 200, 60, "Prometheus ready")
            yield url


def one(prometheus: str, query: str) -> float:
    (found,) = promql(prometheus, query)
    return float(found["value"][1])


def pods(kubectl: Kubectl, namespace: str) -> list[dict[str, Any]]:
    return list(kubectl.json("get", "pods", "-n", namespace, "-l", "app=gemma-server")["items"])


def test_vllm_queue_and_ttft_grow_past_capacity_and_a_second_replica_brings_them_down(
        api_url: str, inference_prometheus: str, kubectl: Kubectl, namespace: str) -> None:
    prom = inference_prometheus
    deployment = next(yaml.safe_load_all(VLLM.read_text()))
    deployment["spec"]["template"]["spec"]["nodeSelector"] = {"accelerator": "nvidia-t4"}
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(deployment))
    kubectl("wait", "-n", namespace, "deployment/vllm-gemma-deployment", "--for=condition=Available",
            "--timeout=120s")
    (first,) = pods(kubectl, namespace)
    server = inference.recognise(first)
    assert server is not None and server.model == "google/gemma-3-1b-it"
    peak = inference.capacity(server, "t4", 1).max_rps(server.output_tokens)
    ns = f'namespace="{namespace}"'
    ttft_p95 = (f"histogram_quantile(0.95, sum by (le) "
                f"(rate(vllm:time_to_first_token_seconds_bucket{{{ns}}}[5s])))")

    def exported() -> set[str]:
        found = promql(prom, f'count by (__name__, model_name, engine, pod) ({{__name__=~"vllm:.+", {ns}}})')
        assert {r["metric"]["model_name"] for r in found} == {"google/gemma-3-1b-it"}
        assert {r["metric"]["pod"] for r in found} == {first["metadata"]["name"]}
        names = {r["metric"]["__name__"] for r in found}
        assert "vllm:num_requests_waiting" in names
        return names
    names = eventually(exported, 90, "the vLLM pod's metrics in Prometheus once its model has loaded")
    assert names >= {"vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                     "vllm:gpu_cache_usage_perc", "vllm:prompt_tokens_total", "vllm:generation_tokens_total",
                     "vllm:request_success_total", "vllm:time_to_first_token_seconds_bucket",
                     "vllm:time_per_output_token_seconds_bucket", "vllm:e2e_request_latency_seconds_bucket"}
    # Below capacity (18 of ~30 requests/s): nothing waits, the first token comes after the prefill.
    eventually(lambda: one(prom, ttft_p95) < 0.1, 30, "a calm TTFT p95")
    assert one(prom, f"sum(vllm:num_requests_waiting{{{ns}}})") == 0
    served = f"sum(rate(vllm:request_success_total{{{ns}}}[5s]))"
    eventually(lambda: one(prom, served) == pytest.approx(BASE_RPS, rel=0.1), 30, "every request served")

    # 1.3 times what one replica serves: two share it at 0.65 each.
    factor = round(1.3 * peak / BASE_RPS, 2)
    load = {"namespace": namespace, "duration_seconds": 900}
    assert httpx.post(f"{api_url}/monitoring/load", json={**load, "factor": factor}, timeout=30).status_code == 200
    try:
        def waiting() -> float:
            return one(prom, f"sum(vllm:num_requests_waiting{{{ns}}})")
        eventually(lambda: waiting() > 50, 60, "requests queueing past the replica's capacity")
        before = waiting()
        eventually(lambda: waiting() > before + 20, 30, "the queue growing tick after tick")
        eventually(lambda: one(prom, ttft_p95) > 2, 30, "the TTFT p95 rising with the backlog")

        kubectl("scale", "-n", namespace, "deployment/vllm-gemma-deployment", "--replicas=2")

        def second() -> dict[str, Any]:
            found = [p for p in pods(kubectl, namespace) if p["metadata"]["name"] != first["metadata"]["name"]
                     and p["status"].get("phase") == "Running"]
            assert found
            return found[0]
        new = eventually(second, 60, "a second replica running")
        new_pod = f'pod="{new["metadata"]["name"]}"'
        # While it loads its model it exports nothing and serves nothing: the queue goes on growing.
        loading_until = time.monotonic() + server.load_seconds - 5
        still = waiting()
        if time.monotonic() < loading_until:
            assert promql(prom, f"vllm:num_requests_running{{{ns}, {new_pod}}}") == []
        eventually(lambda: one(prom, f"vllm:num_requests_running{{{ns}, {new_pod}}}") > 0, 90,
                   "the second replica serving once loaded")
        assert waiting() > still
        eventually(lambda: waiting() < 5, 240, "the backlog drained by two replicas")
        eventually(lambda: one(prom, ttft_p95) < 0.5, 60, "the TTFT p95 back down")
        running = promql(prom, f"vllm:num_requests_running{{{ns}}}")
        assert len(running) == 2 and all(float(r["value"][1]) > 0 for r in running)
    finally:
        httpx.post(f"{api_url}/monitoring/load", json={**load, "factor": 1}, timeout=30)
