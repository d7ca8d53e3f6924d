"""Cluster throughput: pods/second to all Running and nodes/second to all Ready.

Each measurement runs a small baseline first (N/10) in the same process and prints the ratio
of throughputs, so numbers from different machines compare. Pods go to dedicated bench nodes
(tainted, 1,000 pods each) so the default pools stay free.

    python bench/bench_cluster.py [--pods 1000] [--nodes 1000] [--skip-nodes]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import uuid
from typing import Any

import yaml

from k8sim import topology
from k8sim.local import cluster
from k8sim.local.settings import ClusterSettings

TAINT = {"key": "k8sim.io/bench", "value": "true", "effect": "NoSchedule"}


def bench_nodes(settings: ClusterSettings, prefix: str, count: int, pods_per_node: int = 1000,
                timeout: float = 1800) -> float:
    """Register `count` tainted bench nodes (labelled k8sim.io/bench=prefix); seconds until all are Ready."""
    nodes = topology.node_manifests([{"name": prefix, "count": count, "cpu": "1000", "memory": "4Ti",
                                     "pods": pods_per_node, "labels": {"k8sim.io/bench": prefix}}],
                                    ip_range="10.128.0.0/9")  # apart from the default pools' range
    for node in nodes:
        node["spec"]["taints"] = [dict(TAINT)]
    started = time.monotonic()
    for chunk in range(0, len(nodes), 500):  # one apply of thousands of nodes is one huge request
        cluster.kubectl(settings, "apply", "--server-side", "--field-manager=k8sim-bench", "-f", "-",
                        stdin=yaml.safe_dump_all(nodes[chunk:chunk + 500]))
    # One list per poll: `kubectl wait` on many nodes waits for them one by one (~0.1 s each).
    while time.monotonic() - started < timeout:
        listing = json.loads(cluster.kubectl(settings, "get", "nodes", "-l", f"k8sim.io/bench={prefix}",
                                             "-o", "json").stdout)
        ready = sum(1 for n in listing["items"] for c in n["status"].get("conditions", [])
                    if c["type"] == "Ready" and c["status"] == "True")
        if ready >= count:
            return time.monotonic() - started
        time.sleep(0.5)
    raise RuntimeError(f"{count} nodes not Ready after {timeout:.0f} s")


def delete_nodes(settings: ClusterSettings, prefix: str) -> None:
    cluster.kubectl(settings, "delete", "node", "-l", f"k8sim.io/bench={prefix}", "--wait=false", check=False)


def running_pods(settings: ClusterSettings, count: int, pool: str, resources: dict[str, Any] | None = None) -> str:
    """A namespace with a Deployment of `count` Ready pods on the bench pool's nodes."""
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    cluster.kubectl(settings, "create", "namespace", ns)
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "load", "namespace": ns},
        "spec": {"replicas": count, "selector": {"matchLabels": {"app": "load"}},
                 "template": {"metadata": {"labels": {"app": "load"}}, "spec": {
                     "nodeSelector": {"k8sim.io/bench": pool}, "tolerations": [{**TAINT, "operator": "Equal"}],
                     "containers": [{"name": "app", "image": "bench:1", "resources": resources or {}}]}}},
    }
    cluster.kubectl(settings, "apply", "-f", "-", stdin=yaml.safe_dump(deployment))
    cluster.kubectl(settings, "wait", "-n", ns, "deployment/load",
                    f"--for=jsonpath={{.status.readyReplicas}}={count}", "--timeout=1800s")
    return ns


def bench_pods(settings: ClusterSettings, count: int, pool: str) -> float:
    started = time.monotonic()
    ns = running_pods(settings, count, pool)
    elapsed = time.monotonic() - started
    cluster.kubectl(settings, "delete", "namespace", ns, "--wait=false")
    return elapsed


def report(what: str, baseline_n: int, baseline_s: float, n: int, seconds: float) -> None:
    base_rate, rate = baseline_n / baseline_s, n / seconds
    print(f"{what}: baseline {baseline_n} in {baseline_s:.1f} s ({base_rate:.0f}/s); "
          f"{n} in {seconds:.1f} s ({rate:.0f}/s); throughput ratio {rate / base_rate:.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--skip-nodes", action="store_true")
    args = parser.parse_args()
    settings = ClusterSettings()
    cluster.up(settings)
    pool = f"bp{uuid.uuid4().hex[:4]}"
    bench_nodes(settings, pool, max(1, math.ceil(args.pods / 1000)))
    try:
        small = max(10, args.pods // 10)
        report("pods to Running", small, bench_pods(settings, small, pool), args.pods,
               bench_pods(settings, args.pods, pool))
    finally:
        delete_nodes(settings, pool)
    if not args.skip_nodes:
        small = max(10, args.nodes // 10)
        base = bench_nodes(settings, f"bn{uuid.uuid4().hex[:4]}", small)
        full_prefix = f"bn{uuid.uuid4().hex[:4]}"
        report("nodes to Ready", small, base, args.nodes, bench_nodes(settings, full_prefix, args.nodes))
        cluster.kubectl(settings, "delete", "node", "-l", "k8sim.io/bench", "--wait=false", check=False)
    return 0


if __name__ == "__main__":
    from common import run_recorded

    sys.exit(run_recorded("bench_cluster", main))
