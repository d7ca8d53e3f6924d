"""DCGM exporter's default counter set in the engine, against the reduced set it replaced, in one process.

Synthetic GPU nodes and pods (half the GPUs held, one or two per pod, beside CPU pods) go through the
real model and collector; nothing else runs. For each of the two sets: engine CPU per tick (the model's
tick plus the GPU devices' step) and the /metrics render time and size. The reduced set is the five
gauges per GPU pod the engine had before (GPU_UTIL, FB_USED, FB_FREE, POWER_USAGE, GPU_TEMP), rendered by
prometheus_client's generate_latest as before.

    python bench/bench_dcgm.py [--gpus 1000] [--ticks 7]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from collections.abc import Iterator
from typing import Any

from k8sim_engine.collector import SimulatorCollector, State, render
from k8sim_engine.sources import pod_specs, service_labels
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from k8sim import gpus, model

START = dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC)
GPUS_PER_NODE = 8


def cluster(gpu_count: int, cpu_pods: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """GPU nodes of every model in turn, half their GPUs held by pods of one or two GPUs, and CPU pods."""
    types = list(gpus.MODELS)
    nodes = [{"metadata": {"name": f"gpu-{i}", "labels": {"accelerator": f"nvidia-{types[i % len(types)]}"}},
              "status": {"capacity": {"nvidia.com/gpu": str(GPUS_PER_NODE)}}}
             for i in range(max(1, gpu_count // GPUS_PER_NODE))]
    nodes.append({"metadata": {"name": "cpu-0", "labels": {}}, "status": {"capacity": {}}})
    pods = []
    for n, node in enumerate(nodes[:-1]):
        for k, want in enumerate((1, 1, 2)):  # four of the node's eight GPUs
            pods.append(pod(f"gpu-{n}-{k}", f"svc-gpu-{n % 50}", node["metadata"]["name"], want))
    pods += [pod(f"cpu-{i}", f"svc-{i // 10}", "cpu-0", 0) for i in range(cpu_pods)]
    return pods, nodes


def pod(name: str, service: str, node: str, gpu_count: int) -> dict[str, Any]:
    gpu = {"nvidia.com/gpu": str(gpu_count)} if gpu_count else {}
    return {
        "metadata": {"name": f"{name}-abc12", "namespace": "tenant-0", "uid": f"uid-{name}",
                     "labels": {"app": service, "pod-template-hash": "abc12"},
                     "ownerReferences": [{"kind": "ReplicaSet", "name": f"{service}-abc12", "controller": True}]},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "app:1", "resources": {
            "requests": {"cpu": "250m", "memory": "256Mi", **gpu}, "limits": {"cpu": "1", "memory": "1Gi", **gpu}}}]},
        "status": {"phase": "Running", "startTime": "2026-11-23T08:00:00Z",
                   "conditions": [{"type": "Ready", "status": "True"}],
                   "containerStatuses": [{"name": "app", "restartCount": 0}]},
    }


class ReducedCollector(SimulatorCollector):
    """The engine's collector with the five DCGM gauges per GPU pod it exported before."""

    def _dcgm(self, state: State) -> Iterator[Metric]:
        labels = ["gpu", "UUID", "device", "modelName", "Hostname", "namespace", "pod", "container"]
        fams = {key: GaugeMetricFamily(name, "", labels=labels) for key, name in (
            ("util", "DCGM_FI_DEV_GPU_UTIL"), ("used", "DCGM_FI_DEV_FB_USED"), ("free", "DCGM_FI_DEV_FB_FREE"),
            ("power", "DCGM_FI_DEV_POWER_USAGE"), ("temp", "DCGM_FI_DEV_GPU_TEMP"))}
        for p in (state.model.pods if state.model else {}).values():
            s, last = p.spec, p.last
            if not s.gpus or last is None:
                continue
            for index in range(s.gpus):
                values = [str(index), f"GPU-{s.uid[:8]}-{index}", f"nvidia{index}", str(s.accelerator), s.node,
                          s.namespace, s.name, s.container]
                fams["util"].add_metric(values, last.gpu_util)
                fams["used"].add_metric(values, last.gpu_fb_used_mib / s.gpus)
                fams["free"].add_metric(values, last.gpu_fb_free_mib / s.gpus)
                fams["power"].add_metric(values, last.gpu_power_w / s.gpus)
                fams["temp"].add_metric(values, last.gpu_temp_c)
        yield from fams.values()


class Ref:
    def __init__(self) -> None:
        self.state = State()


def cost(gpu_count: int, cpu_pods: int, ticks: int, full: bool, writer: Any = None) -> tuple[float, float, int, int]:
    """(CPU seconds per tick, seconds per render, exposition bytes, DCGM series) with one of the two sets,
    each written as the engine writes it unless ``writer`` says otherwise."""
    pods, nodes = cluster(gpu_count, cpu_pods)
    m = model.Model(42)
    ref = Ref()
    registry = CollectorRegistry(auto_describe=False)
    registry.register((SimulatorCollector if full else ReducedCollector)(ref))
    write = writer or (render if full else generate_latest)
    cpu, took = [], []
    size = dcgm = 0
    for i in range(ticks):
        started = time.process_time()
        when = START + dt.timedelta(seconds=5 * i)
        samples = m.tick(pod_specs(pods, nodes), when, 5, service_labels(pods))
        if full:
            m.step_devices(gpus.inventory(nodes), 5)
        cpu.append(time.process_time() - started)
        ref.state = State()
        ref.state.pods, ref.state.model, ref.state.services = pods, m, samples
        started = time.perf_counter()
        text = write(registry)
        took.append(time.perf_counter() - started)
        size = len(text)
        dcgm = sum(1 for line in text.splitlines() if line.startswith(b"DCGM_"))
    return statistics.median(cpu[1:]), statistics.median(took[1:]), size, dcgm


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=1000)
    parser.add_argument("--cpu-pods", type=int, default=1000)
    parser.add_argument("--ticks", type=int, default=7)
    args = parser.parse_args()
    old = cost(args.gpus, args.cpu_pods, args.ticks, full=False)
    new = cost(args.gpus, args.cpu_pods, args.ticks, full=True)
    plain = cost(args.gpus, args.cpu_pods, args.ticks, full=True, writer=generate_latest)
    print(f"{args.gpus} GPUs ({args.gpus // 2} held), {args.cpu_pods} CPU pods, median of {args.ticks - 1} ticks")
    print(f"engine CPU per tick: reduced set {old[0] * 1000:.1f} ms, DCGM default set {new[0] * 1000:.1f} ms "
          f"(ratio {new[0] / old[0]:.2f}x)")
    print(f"/metrics render: reduced set {old[1] * 1000:.1f} ms ({old[2] / 1e6:.2f} MB, {old[3]} DCGM series), "
          f"DCGM default set {new[1] * 1000:.1f} ms ({new[2] / 1e6:.2f} MB, {new[3]} DCGM series), "
          f"ratio {new[1] / old[1]:.2f}x; the DCGM set through generate_latest {plain[1] * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
