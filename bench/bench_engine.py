"""Monitoring engine and monitoring API under load, each against a baseline in the same process.

1. Engine CPU per tick and Prometheus render time at 1,000 and 10,000 pods (synthetic pod
   objects fed to the real model and collector; listing them from the apiserver is the
   apiserver's cost, measured by bench_cluster.py). Baseline: 1,000 pods.
2. GET /monitoring/health latency with 100 concurrent clients vs 1 client (the API as a
   separate process, the snapshot in the real Redis).
3. WebSocket fan-out lag (Redis publish → client receive) with 1,000 clients vs 10, the clients in
   four processes of their own.

    python bench/bench_engine.py [--pods 10000] [--clients 100] [--sockets 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from multiprocessing.connection import Connection
from typing import Any

import httpx
import redis
import websockets
from common import free_port
from k8sim_engine.runner import Engine
from k8sim_engine.settings import EngineSettings
from k8sim_engine.sources import pod_specs, service_labels
from prometheus_client import generate_latest

from k8sim.local import services, supervisor
from k8sim.local.settings import ClusterSettings


def synthetic_pods(n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    nodes = [{"metadata": {"name": f"node-{i}", "labels": {"accelerator": "nvidia-a100"} if i % 10 == 0 else {}}}
             for i in range(max(1, n // 100))]
    pods = []
    for i in range(n):
        service = f"svc-{i // 10}"
        gpu = {"nvidia.com/gpu": "1"} if i % 50 == 0 else {}
        pods.append({
            "metadata": {"name": f"{service}-abc12-{i}", "namespace": f"tenant-{i // 500}", "uid": f"uid-{i}",
                         "labels": {"app": service, "pod-template-hash": "abc12", "tenant": f"t{i // 500}"},
                         "ownerReferences": [{"kind": "ReplicaSet", "name": f"{service}-abc12", "controller": True}]},
            "spec": {"nodeName": nodes[i % len(nodes)]["metadata"]["name"],
                     "containers": [{"name": "app", "image": "app:1", "resources": {
                         "requests": {"cpu": "250m", "memory": "256Mi", **gpu},
                         "limits": {"cpu": "1", "memory": "1Gi", **gpu}}}]},
            "status": {"phase": "Running", "startTime": "2026-11-23T08:00:00Z",
                       "conditions": [{"type": "Ready", "status": "True"}],
                       "containerStatuses": [{"name": "app", "restartCount": 0}]},
        })
    return pods, nodes


def engine_cost(n: int, ticks: int = 5) -> tuple[float, float, int]:
    """(CPU seconds per tick, seconds per /metrics render, exposition bytes) at n pods."""
    engine = Engine(EngineSettings(sim_start=dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC)))
    pods, nodes = synthetic_pods(n)
    cpu, render = [], []
    size = 0
    for _ in range(ticks):
        started = time.process_time()
        engine.ticks += 1
        samples = engine.model.tick(pod_specs(pods, nodes), engine.sim_now(), engine.step, service_labels(pods))
        engine.state.pods, engine.state.model, engine.state.services = pods, engine.model, samples
        cpu.append(time.process_time() - started)
        started = time.perf_counter()
        size = len(generate_latest(engine.registry))
        render.append(time.perf_counter() - started)
    return statistics.median(cpu), statistics.median(render), size


def fake_snapshot(services_n: int) -> dict[str, Any]:
    service = {"cpu": {"usage_percent": 40.0, "load_1m": 1.2}, "memory": {"usage_mb": 512.0, "usage_percent": 25.0},
               "network": {"requests_per_second": 100.0, "response_time_ms": 80.0, "error_rate_percent": 0.1},
               "health": {"status": "healthy", "uptime_seconds": 3600}, "tenant_id": "t1"}
    return {"timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "services": {f"ns-{i // 20}/svc-{i}": service for i in range(services_n)},
            "summary": {"overall_health": "healthy", "sla_percentage": 99.9, "sla_status": "meeting",
                        "total_services": services_n, "healthy_services": services_n}}


def wrk_latency(url: str, clients: int, seconds: int = 10) -> tuple[float, float, float]:
    """(p50 s, p99 s, requests/s) from wrk: load from a second process, as a real client fleet is.
    One wrk thread: on two cores that leaves the API its own core (with two load threads the three
    share two cores, and the tail measures the OS scheduler rather than the API)."""
    out = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--latency",
                          f"{url}/monitoring/health"], capture_output=True, text=True, check=True).stdout
    def value(label: str) -> float:
        line = next(x for x in out.splitlines() if x.strip().startswith(label))
        number = line.split()[1]
        for unit, factor in (("us", 1e-6), ("ms", 1e-3), ("s", 1.0)):
            if number.endswith(unit):
                return float(number[: -len(unit)]) * factor
        return float(number)
    rate = float(next(x for x in out.splitlines() if x.startswith("Requests/sec")).split()[1])
    return value("50%"), value("99%"), rate


async def latency(url: str, clients: int, requests_each: int) -> list[float]:
    times: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=clients)) as http:
        async def one() -> None:
            for _ in range(requests_each):
                started = time.perf_counter()
                resp = await http.get("/monitoring/health")
                resp.raise_for_status()
                times.append(time.perf_counter() - started)
        await asyncio.gather(*(one() for _ in range(clients)))
    return sorted(times)


SENT = re.compile(rb'"sent": ([0-9.e+-]+)')


def _fleet_member(ws_url: str, sockets: int, messages: int, pipe: Connection) -> None:
    """One process of the WebSocket client fleet: its sockets, the lag of every message they get."""
    async def run() -> None:
        conns = [await websockets.connect(ws_url, open_timeout=60, max_queue=64) for _ in range(sockets)]
        for conn in conns:  # the greeting carries the current snapshot
            await asyncio.wait_for(conn.recv(), 60)
        pipe.send("ready")
        lags: list[float] = []

        async def receive(conn: Any) -> None:
            for _ in range(messages):
                raw = await asyncio.wait_for(conn.recv(decode=False), 120)
                received = time.time()
                found = SENT.search(raw)  # not json.loads: the fleet must not be what is measured
                if found:
                    lags.append(received - float(found[1]))

        await asyncio.gather(*(receive(c) for c in conns))
        for conn in conns:
            await conn.close()
        pipe.send(lags)

    asyncio.run(run())


def fanout(url: str, sockets: int, settings: ClusterSettings, messages: int = 5, processes: int = 4) -> list[float]:
    """Redis publish → WebSocket receive lag of every client, the clients spread over a few
    processes (as a real fleet is; one Python process decoding 1,000 sockets measures itself)."""
    ws_url = url.replace("http://", "ws://") + "/ws/monitoring"
    processes = max(1, min(processes, sockets))
    pipes, members = [], []
    for i in range(processes):
        ours, theirs = multiprocessing.Pipe()
        share = sockets // processes + (1 if i < sockets % processes else 0)
        member = multiprocessing.Process(target=_fleet_member, args=(ws_url, share, messages, theirs), daemon=True)
        member.start()
        pipes.append(ours)
        members.append(member)
    for pipe in pipes:
        if not pipe.poll(120) or pipe.recv() != "ready":
            raise RuntimeError("a WebSocket client process did not connect")
    publisher = redis.Redis.from_url(settings.redis_url)
    for _ in range(messages):
        publisher.publish(settings.redis_channel, json.dumps(fake_snapshot(50) | {"sent": time.time()}))
        time.sleep(1.0)  # the engine's fastest tick
    lags: list[float] = []
    for pipe in pipes:
        if not pipe.poll(120):
            raise RuntimeError("a WebSocket client process did not receive every message")
        lags += pipe.recv()
    for member in members:
        member.join(30)
    if len(lags) != sockets * messages:
        raise RuntimeError(f"{sockets * messages - len(lags)} WebSocket messages lost")
    return sorted(lags)


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=10000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--sockets", type=int, default=1000)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 8192)), hard))

    base_cpu, base_render, base_size = engine_cost(1000)
    cpu, render, size = engine_cost(args.pods)
    print(f"engine CPU per tick: 1000 pods {base_cpu * 1000:.0f} ms, {args.pods} pods {cpu * 1000:.0f} ms "
          f"(ratio {cpu / base_cpu:.1f}x for {args.pods / 1000:.0f}x pods)")
    print(f"/metrics render: 1000 pods {base_render * 1000:.0f} ms ({base_size / 1e6:.1f} MB), {args.pods} pods "
          f"{render * 1000:.0f} ms ({size / 1e6:.1f} MB), ratio {render / base_render:.1f}x; scrapes serve the "
          "bytes rendered once per tick")

    settings = ClusterSettings()
    services.up(settings)
    publisher = redis.Redis.from_url(settings.redis_url)
    channel = f"k8sim:bench:{uuid.uuid4().hex[:6]}"
    key = f"{channel}:latest"
    publisher.set(key, json.dumps(fake_snapshot(200)))
    port = free_port()
    env = {**os.environ, "K8SIM_API_PORT": str(port), "K8SIM_REDIS_CHANNEL": channel, "K8SIM_REDIS_KEY": key,
           "K8SIM_WS_QUEUE": "64"}
    api = subprocess.Popen([sys.executable, "-m", "k8sim_api"], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        supervisor.wait_healthy(f"{url}/monitoring/health", proc=api)
        if shutil.which("wrk"):
            p50_1, p99_1, rate_1 = wrk_latency(url, 1)
            p50_n, p99_n, rate_n = wrk_latency(url, args.clients)
            print(f"/monitoring/health (200 services, wrk): 1 client p50 {p50_1 * 1000:.1f} ms p99 "
                  f"{p99_1 * 1000:.1f} ms {rate_1:.0f} req/s; {args.clients} clients p50 {p50_n * 1000:.1f} ms "
                  f"p99 {p99_n * 1000:.1f} ms {rate_n:.0f} req/s (p99 ratio {p99_n / p99_1:.1f}x)")
        else:  # an in-process client competes with the server for the CPU: an upper bound
            one = asyncio.run(latency(url, 1, 200))
            many = asyncio.run(latency(url, args.clients, 20))
            print(f"/monitoring/health (200 services, httpx): 1 client p50 {pct(one, .5) * 1000:.1f} ms p95 "
                  f"{pct(one, .95) * 1000:.1f} ms; {args.clients} clients p50 {pct(many, .5) * 1000:.1f} ms p95 "
                  f"{pct(many, .95) * 1000:.1f} ms (p95 ratio {pct(many, .95) / pct(one, .95):.1f}x)")
        settings_ch = settings.model_copy(update={"redis_channel": channel})
        few = fanout(url, 10, settings_ch)
        lots = fanout(url, args.sockets, settings_ch)
        print(f"WebSocket fan-out lag: 10 clients p50 {pct(few, .5) * 1000:.1f} ms p95 {pct(few, .95) * 1000:.1f} ms; "
              f"{args.sockets} clients p50 {pct(lots, .5) * 1000:.1f} ms p95 {pct(lots, .95) * 1000:.1f} ms "
              f"(p95 ratio {pct(lots, .95) / pct(few, .95):.1f}x)")
    finally:
        api.terminate()
        api.wait(timeout=30)
        publisher.delete(key)
    return 0


if __name__ == "__main__":
    from common import run_recorded

    sys.exit(run_recorded("bench_engine", main))
