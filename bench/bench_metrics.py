"""The closed loop under load, each figure against a baseline measured in the same run.

1. Engine CPU per tick with N pods running in the cluster: listing every kind every tick
   (K8SIM_WATCH=false, the baseline) vs following the cluster with watches.
2. `kubectl top pods -A` latency (p50/p99) through the real aggregator vs `kubectl get pods -A`
   (the same CLI listing the same pods from the apiserver itself).
3. Load step → HPA: seconds from POST /monitoring/load to a new replica count, vs the goal of
   two HPA sync periods plus the metric window.

    python bench/bench_metrics.py [--pods 1000,10000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml
from bench_cluster import bench_nodes, delete_nodes, running_pods
from common import cpu_seconds, simulator

from k8sim.local import build, cluster, services, supervisor
from k8sim.local.processes import free_port
from k8sim.local.settings import ClusterSettings

PEAK = "2026-11-23T10:30:00Z"


@contextmanager
def engine(settings: ClusterSettings, log: Path, **env: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    log.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    full = {**os.environ, "K8SIM_ENGINE_PORT": str(port), "K8SIM_METRICS_API_PORT": str(free_port()),
            "K8SIM_SIM_START": PEAK, **env}
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "k8sim_engine"], env=full, stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        supervisor.wait_healthy(f"{url}/health", proc=proc, timeout=120)
        yield proc, url
    finally:
        proc.terminate()
        proc.wait(30)



def cpu_per_tick(settings: ClusterSettings, seconds: float, pods: int, watch: bool) -> float:
    log = settings.state_dir / "logs" / "bench-metrics-engine.log"
    with engine(settings, log, K8SIM_WATCH=str(watch).lower()) as (proc, url):
        def ticks() -> int:
            return int(httpx.get(f"{url}/health").json()["ticks"])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # warm up: every pod in the model
            doc = httpx.get(f"{url}/snapshot").json()
            if sum(s["pods"]["total"] for s in doc["services"].values()) >= pods:
                break
            time.sleep(1)
        start_cpu, start_ticks = cpu_seconds(proc.pid), ticks()
        time.sleep(seconds)
        used, done = cpu_seconds(proc.pid) - start_cpu, ticks() - start_ticks
    return used / max(1, done)


def timed(cmd: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.monotonic()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.monotonic() - started)
    return sorted(times)


def p(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, math.ceil(q * len(values)) - 1)]


def hpa_reaction(settings: ClusterSettings, api: str) -> float:
    ns = f"bench-hpa-{uuid.uuid4().hex[:4]}"
    cluster.kubectl(settings, "create", "namespace", ns)
    objects = [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                  "template": {"metadata": {"labels": {"app": "web"}, "annotations": {"k8sim.io/profile": "web"}},
                               "spec": {"containers": [{"name": "app", "image": "web:1", "resources": {
                                   "requests": {"cpu": "1200m"}, "limits": {"cpu": "4"}}}]}}}},
        {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
         "metadata": {"name": "web", "namespace": ns},
         "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                  "minReplicas": 1, "maxReplicas": 10, "metrics": [{"type": "Resource", "resource": {
                      "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]}}]
    cluster.kubectl(settings, "apply", "-f", "-", stdin=yaml.safe_dump_all(objects))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the HPA measures before the step
            status = json.loads(cluster.kubectl(settings, "get", "hpa", "web", "-n", ns, "-o", "json").stdout)["status"]
            if status.get("currentMetrics"):
                break
            time.sleep(1)
        before = status.get("desiredReplicas", 1)
        started = time.monotonic()
        httpx.post(f"{api}/monitoring/load", json={"namespace": ns, "service": "web", "factor": 5})
        while time.monotonic() < started + 180:
            spec = json.loads(cluster.kubectl(settings, "get", "deployment", "web", "-n", ns, "-o", "json").stdout)
            if spec["spec"]["replicas"] > before:
                return time.monotonic() - started
            time.sleep(0.25)
        raise RuntimeError("the HPA did not react within 180 s")
    finally:
        cluster.kubectl(settings, "delete", "namespace", ns, "--wait=false")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", default="1000,10000", help="pod counts, comma-separated")
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring window per engine")
    parser.add_argument("--runs", type=int, default=20, help="kubectl runs per latency figure")
    args = parser.parse_args()
    settings = ClusterSettings()
    services.up(settings)
    cluster.up(settings)
    kubectl = [build.kubectl_binary(settings), "--kubeconfig", str(settings.kubeconfig)]
    counts = [int(n) for n in args.pods.split(",")]
    pool = f"bm{uuid.uuid4().hex[:4]}"
    bench_nodes(settings, pool, max(1, math.ceil(max(counts) / 1000)))
    try:
        for count in counts:
            ns = running_pods(settings, count, pool, {"requests": {"cpu": "10m", "memory": "16Mi"}})
            try:
                listing = cpu_per_tick(settings, args.seconds, count, watch=False)
                watching = cpu_per_tick(settings, args.seconds, count, watch=True)
                print(f"engine CPU per tick at {count} pods: listing {listing * 1000:.0f} ms (baseline), "
                      f"watching {watching * 1000:.0f} ms; {listing / watching:.1f}x less")
                log = settings.state_dir / "logs" / "bench-metrics-engine.log"
                with engine(settings, log):
                    top = timed([*kubectl, "top", "pods", "-A", "--no-headers"], args.runs)
                    get = timed([*kubectl, "get", "pods", "-A", "--no-headers"], args.runs)
                print(f"kubectl top pods -A at {count} pods: p50 {p(top, 0.5):.2f} s, p99 {p(top, 0.99):.2f} s; "
                      f"kubectl get pods -A (baseline) p50 {statistics.median(get):.2f} s; "
                      f"ratio {statistics.median(top) / statistics.median(get):.2f}")
            finally:
                cluster.kubectl(settings, "delete", "namespace", ns, "--wait=false")
    finally:
        delete_nodes(settings, pool)
    with simulator(settings, "api") as urls, engine(settings, settings.state_dir / "logs" / "bench-hpa.log",
                                                    K8SIM_TICK_SECONDS="1"):
        seconds = hpa_reaction(settings, urls["api"])
    goal = 2 * 5 + 1
    print(f"load step to a new HPA replica count: {seconds:.1f} s; goal {goal} s (two 5 s syncs plus the 1 s "
          f"window); ratio {seconds / goal:.2f}")
    return 0


if __name__ == "__main__":
    from common import run_recorded

    sys.exit(run_recorded("bench_metrics", main))
