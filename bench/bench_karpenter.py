"""Karpenter on the simulated cluster: pods Pending to Running on a new node, nodes per second, and what
the Karpenter process costs, side by side with a static pool in the same process.

Each pod asks for 20 of a c6i.8xlarge's 32 cores, so each needs a node of its own. Autoscaled: a
NodePool of its own (the ``cpu`` KWOKNodeClass, tainted for the bench, no other pod lands there)
starts empty and Karpenter launches a node per pod. Static: as many tainted nodes registered up front
(as bench_cluster registers them), and the same pods. Per pod, the time from the watch first showing it
(Pending) to the watch showing it Running; nodes per second from the first pod seen to every node
Ready. Karpenter's CPU seconds (/proc) and peak RSS over each run. Everything it made is deleted.

    python bench/bench_karpenter.py [--pods 100] [--nodes 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from k8sim import topology
from k8sim.kube import Kube
from k8sim.local import build, cluster
from k8sim.local import karpenter as local_karpenter
from k8sim.local.settings import ClusterSettings

TAINT = {"key": "k8sim.io/bench", "value": "true", "effect": "NoSchedule"}
CPU_PER_POD = "20"  # of a c6i.8xlarge's 32: one pod per node


def karpenter_pid(settings: ClusterSettings) -> int:
    found = [pid for pid in local_karpenter.process_pids(settings)
             if Path(f"/proc/{pid}/exe").resolve().name == build.KARPENTER_BINARY]
    if len(found) != 1:
        raise RuntimeError(f"Karpenter is not running (K8SIM_KARPENTER, `python -m k8sim up`): {found}")
    return found[0]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Watch:
    """A watch of the namespace's pods in a thread of its own: when each pod was first seen and first
    seen Running (monotonic seconds)."""

    def __init__(self, settings: ClusterSettings, namespace: str) -> None:
        self.namespace, self.kubeconfig = namespace, settings.kubeconfig
        self.seen: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.error: BaseException | None = None
        self.started, self.finished = threading.Event(), threading.Event()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.task = asyncio.run_coroutine_threadsafe(self._run(), self.loop)
        if not self.started.wait(30):
            raise RuntimeError("the pod watch did not start")

    async def _run(self) -> None:
        kube = Kube(self.kubeconfig)
        try:
            _, version = await kube.list_versioned("v1", "Pod", self.namespace)
            self.started.set()
            while True:  # the server ends a watch now and then: resume where it stopped
                async for event in kube.watch("v1", "Pod", version, timeout_seconds=120):
                    now = time.monotonic()
                    meta = (event.get("object") or {}).get("metadata") or {}
                    version = meta.get("resourceVersion") or version
                    if event.get("type") == "BOOKMARK" or meta.get("namespace") != self.namespace:
                        continue
                    self.seen.setdefault(meta["name"], now)
                    if event["object"].get("status", {}).get("phase") == "Running":
                        self.running.setdefault(meta["name"], now)
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            await kube.close()
            self.finished.set()

    def close(self) -> None:
        self.task.cancel()  # the watch's await is cancelled; its finally still closes the client
        self.finished.wait(10)  # before the loop stops: a client closed on a stopped loop complains
        self.loop.call_soon_threadsafe(self.loop.stop)


class Sampler:
    """Karpenter's peak RSS while a run lasts (sampled every 0.5 s) and its CPU seconds over it."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.stop = pid, rss_bytes(pid), threading.Event()
        self.cpu0 = cpu_seconds(pid)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.5):
            self.peak = max(self.peak, rss_bytes(self.pid))

    def done(self) -> tuple[float, int]:
        self.stop.set()
        self.thread.join()
        return cpu_seconds(self.pid) - self.cpu0, max(self.peak, rss_bytes(self.pid))


def kubectl(settings: ClusterSettings, *args: str, stdin: str | None = None, check: bool = True) -> str:
    return str(cluster.kubectl(settings, *args, stdin=stdin, check=check).stdout)


def nodepool(name: str, limit: int) -> dict[str, Any]:
    return {"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": name},
            "spec": {"template": {"metadata": {"labels": {"type": "kwok", "k8sim.io/pool": name,
                                                          "k8sim.io/bench": name}},
                                  "spec": {"nodeClassRef": {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass",
                                                            "name": "cpu"},
                                           "requirements": [
                                               {"key": "node.kubernetes.io/instance-type", "operator": "In",
                                                "values": ["c6i.8xlarge"]},
                                               {"key": "karpenter.sh/capacity-type", "operator": "In",
                                                "values": ["on-demand"]}],
                                           "taints": [dict(TAINT)], "expireAfter": "Never"}},
                     "disruption": {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "Never"},
                     "limits": {"nodes": str(limit)}}}


def pods(settings: ClusterSettings, namespace: str, pool: str, count: int) -> None:
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "load", "namespace": namespace},
        "spec": {"replicas": count, "selector": {"matchLabels": {"app": "load"}},
                 "template": {"metadata": {"labels": {"app": "load"}}, "spec": {
                     "nodeSelector": {"k8sim.io/bench": pool}, "tolerations": [{**TAINT, "operator": "Equal"}],
                     "containers": [{"name": "app", "image": "bench:1",
                                     "resources": {"requests": {"cpu": CPU_PER_POD, "memory": "1Gi"}}}]}}}}
    kubectl(settings, "apply", "-f", "-", stdin=yaml.safe_dump(deployment))


def ready_nodes(settings: ClusterSettings, pool: str) -> int:
    listing = json.loads(kubectl(settings, "get", "nodes", "-l", f"k8sim.io/bench={pool}", "-o", "json"))
    return sum(1 for n in listing["items"] for c in n["status"].get("conditions", [])
               if c["type"] == "Ready" and c["status"] == "True")


def run(settings: ClusterSettings, pool: str, count: int, pid: int, timeout: float) -> dict[str, Any]:
    """``count`` one-node pods onto the pool's nodes: per-pod Pending→Running seconds, nodes/s, Karpenter's cost."""
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    kubectl(settings, "create", "namespace", namespace)
    watch, sampler = Watch(settings, namespace), Sampler(pid)
    try:
        started = time.monotonic()
        pods(settings, namespace, pool, count)
        while len(watch.running) < count:
            if watch.error is not None:
                raise RuntimeError(f"the pod watch failed: {watch.error!r}")
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"{len(watch.running)} of {count} pods Running after {timeout:.0f} s")
            time.sleep(0.5)
        all_running = time.monotonic() - started
        while ready_nodes(settings, pool) < count:  # every node Ready (a pod Running implies its own is)
            time.sleep(0.5)
        cpu, rss = sampler.done()
        waits = sorted(watch.running[p] - watch.seen[p] for p in watch.running)
    finally:
        watch.close()
        sampler.stop.set()
        kubectl(settings, "delete", "namespace", namespace, "--wait=false", check=False)
    return {"pods": count, "p50_s": percentile(waits, 50), "p99_s": percentile(waits, 99),
            "all_running_s": round(all_running, 2), "nodes_per_s": round(count / all_running, 2),
            "karpenter_cpu_s": round(cpu, 2), "karpenter_peak_rss_mib": round(rss / 2**20, 1)}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted values."""
    rank = max(1, -(-len(values) * q // 100))
    return round(values[int(rank) - 1], 3)


def static_pool(settings: ClusterSettings, count: int, timeout: float) -> tuple[str, float]:
    """``count`` tainted c6i.8xlarge-sized nodes registered up front (KWOK plays them as it plays ours)."""
    prefix = f"bs{uuid.uuid4().hex[:4]}"
    nodes = topology.node_manifests([{"name": prefix, "count": count, "cpu": "32", "memory": "64Gi", "pods": 110,
                                      "labels": {"k8sim.io/bench": prefix,
                                                 "node.kubernetes.io/instance-type": "c6i.8xlarge"}}],
                                    ip_range="10.128.0.0/9")  # apart from the default pools' range
    for node in nodes:
        node["spec"]["taints"] = [dict(TAINT)]
    started = time.monotonic()
    for chunk in range(0, len(nodes), 500):
        kubectl(settings, "apply", "--server-side", "--field-manager=k8sim-bench", "-f", "-",
                stdin=yaml.safe_dump_all(nodes[chunk:chunk + 500]))
    while ready_nodes(settings, prefix) < count:
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{count} static nodes not Ready after {timeout:.0f} s")
        time.sleep(0.5)
    seconds = time.monotonic() - started
    print(f"static: {count} nodes registered and Ready in {seconds:.1f} s ({count / seconds:.1f} nodes/s)")
    return prefix, seconds


def gone(settings: ClusterSettings, selector: str, timeout: float = 600) -> float:
    started = time.monotonic()
    while json.loads(kubectl(settings, "get", "nodes", "-l", selector, "-o", "json"))["items"]:
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"nodes {selector} still there after {timeout:.0f} s")
        time.sleep(1)
    return time.monotonic() - started


def line(what: str, static: dict[str, Any], karp: dict[str, Any]) -> None:
    print(f"{what}: static pool p50 {static['p50_s']:.2f} s p99 {static['p99_s']:.2f} s; "
          f"Karpenter p50 {karp['p50_s']:.2f} s p99 {karp['p99_s']:.2f} s; "
          f"p50 ratio {karp['p50_s'] / max(static['p50_s'], 1e-3):.1f}x (Karpenter / static)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=100, help="pods (one node each) for the latency runs")
    parser.add_argument("--nodes", type=int, default=300, help="nodes Karpenter creates for the rate run (0: skip)")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    # A stop (timeout, ^C from a supervisor) runs the cleanups: no NodePool, node or namespace left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    settings = ClusterSettings()
    pid = karpenter_pid(settings)
    idle_cpu0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(10)
    idle = (cpu_seconds(pid) - idle_cpu0) / (time.monotonic() - t0)
    print(f"Karpenter idle: {idle * 100:.1f} % of a core, RSS {rss_bytes(pid) / 2**20:.0f} MiB")

    prefix, registered = static_pool(settings, args.pods, args.timeout)
    try:
        static = run(settings, prefix, args.pods, pid, args.timeout)
        static["nodes_per_s"] = round(args.pods / registered, 2)  # its nodes were registered, not launched
    finally:
        kubectl(settings, "delete", "node", "-l", f"k8sim.io/bench={prefix}", "--wait=false", check=False)
    print(f"static pool, {args.pods} pods on existing nodes: {json.dumps(static)}")

    results = {}
    for count in dict.fromkeys(c for c in (args.pods, args.nodes) if c):
        name = f"bench-karp-{uuid.uuid4().hex[:4]}"
        kubectl(settings, "apply", "-f", "-", stdin=yaml.safe_dump(nodepool(name, count)))
        try:
            results[count] = run(settings, name, count, pid, args.timeout)
        finally:
            kubectl(settings, "delete", "nodepool", name, "--wait=false", check=False)
            removed = gone(settings, f"k8sim.io/bench={name}")
        print(f"Karpenter, {count} pods each on a new node: {json.dumps(results[count])}; "
              f"its nodes deleted in {removed:.1f} s after the NodePool")
    gone(settings, f"k8sim.io/bench={prefix}")
    karp = results[args.pods]
    line(f"Pending to Running, {args.pods} pods", static, karp)
    for count, found in results.items():
        print(f"nodes/s at {count} nodes: Karpenter {found['nodes_per_s']:.2f} (pods applied to all Running), "
              f"static registration {static['nodes_per_s']:.2f} at {args.pods}; Karpenter CPU "
              f"{found['karpenter_cpu_s']:.1f} s over {found['all_running_s']:.1f} s "
              f"({found['karpenter_cpu_s'] / found['all_running_s'] * 100:.0f} % of a core), "
              f"peak RSS {found['karpenter_peak_rss_mib']:.0f} MiB; static-pool run: Karpenter CPU "
              f"{static['karpenter_cpu_s']:.1f} s, peak RSS {static['karpenter_peak_rss_mib']:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import run_recorded

    sys.exit(run_recorded("bench_karpenter", main))
