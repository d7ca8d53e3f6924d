"""Importing a cluster: planning alone (pure), and the apply into the running cluster beside `kubectl apply`.

The export is synthetic but shaped as `kubectl get nodes,deployments,replicasets,pods,services,configmaps -A
-o yaml` returns an EKS cluster's (tests/import_sample.py's nodes; per Deployment its ReplicaSet, bound pods
with status, a Service and a ConfigMap), in namespaces of ten Deployments each.

Planning: seconds to read the YAML text (the parser and its limits), the same as JSON, and to plan (clean, skip, order,
scale) for --plan-nodes nodes and --plan-pods pods (100 pods a Deployment).

Apply (--apply-nodes > 0; the cluster must be up, and run it under the integration lock): seconds for the
import to return, then until every pod is Running on the imported nodes; then the same cleaned objects,
in fresh namespaces, with `kubectl apply --server-side`, timed the same way. Nodes and namespaces are
deleted afterwards.

    flock /tmp/k8sim-itest.lock python bench/bench_import.py [--plan-nodes 1000] [--plan-pods 10000]
                                                             [--apply-nodes 50] [--apply-pods 1000]

Writes bench/results/bench_import-<UTC time>.json (K8SIM_BENCH_RESULTS: another folder, or '' for none).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.import_sample: the tests' EKS nodes
from common import write_results

from k8sim import importer
from k8sim.kube import Kube
from k8sim.local import cluster
from k8sim.local.settings import ClusterSettings
from k8sim.manifests import Limits
from k8sim.settings import ImportSettings
from tests.import_sample import eks_node

PODS_PER_DEPLOYMENT = 100
OUTPUT: list[str] = []


def say(line: str) -> None:
    OUTPUT.append(line)
    print(line, flush=True)


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """YAML as kubectl writes it: no anchors for objects the export builder shares."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(value: Any) -> str:
    return yaml.dump(value, Dumper=_Dumper, sort_keys=False)
LIMITS = Limits(max_bytes=2**31, max_documents=10**6)


def synthetic_export(tag: str, nodes: int, pods: int) -> dict[str, Any]:
    groups = ("general", "memory", "compute", "batch")
    zones = ("eu-west-1a", "eu-west-1b", "eu-west-1c")
    names = [f"bench-{tag}-{i}" for i in range(nodes)]
    items: list[dict[str, Any]] = [eks_node(name, zones[i % 3], group=f"{groups[i % 4]}-{tag}")
                                   for i, name in enumerate(names)]
    for d in range(max(1, pods // PODS_PER_DEPLOYMENT)):
        namespace = f"bench-{tag}-{d // 10}"
        if d % 10 == 0:
            items.append({"apiVersion": "v1", "kind": "Namespace",
                          "metadata": {"name": namespace, "uid": str(uuid.uuid4()), "resourceVersion": "1"},
                          "status": {"phase": "Active"}})
        name = f"svc-{d}"
        labels = {"app": name}
        groups_here = {"key": "eks.amazonaws.com/nodegroup", "operator": "In", "values": [f"{g}-{tag}" for g in groups]}
        spec = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [groups_here]}]}}},
                "containers": [{"name": "app", "image": "registry.example/app:1",
                                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
        uid = str(uuid.uuid4())
        items.append({"apiVersion": "apps/v1", "kind": "Deployment",
                      "metadata": {"name": name, "namespace": namespace, "uid": uid, "resourceVersion": "7",
                                   "generation": 1, "annotations": {"deployment.kubernetes.io/revision": "1"}},
                      "spec": {"replicas": PODS_PER_DEPLOYMENT, "selector": {"matchLabels": labels},
                               "template": {"metadata": {"labels": labels}, "spec": spec}},
                      "status": {"replicas": PODS_PER_DEPLOYMENT}})
        items.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
                      "spec": {"clusterIP": "10.100.0.1", "clusterIPs": ["10.100.0.1"], "selector": labels,
                               "ports": [{"port": 80}]}})
        items.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
                      "data": {"config": "x" * 200}})
        rs_uid = str(uuid.uuid4())
        items.append({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {
            "name": f"{name}-abc", "namespace": namespace, "uid": rs_uid,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": uid,
                                 "controller": True}]},
            "spec": {"replicas": PODS_PER_DEPLOYMENT, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": spec}}})
        for p in range(PODS_PER_DEPLOYMENT):
            items.append({"apiVersion": "v1", "kind": "Pod", "metadata": {
                "name": f"{name}-abc-{p}", "namespace": namespace, "labels": labels, "uid": str(uuid.uuid4()),
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{name}-abc",
                                     "uid": rs_uid, "controller": True}]},
                "spec": {**spec, "nodeName": names[(d * PODS_PER_DEPLOYMENT + p) % nodes]},
                "status": {"phase": "Running"}})
    return {"apiVersion": "v1", "kind": "List", "items": items}


def planning(nodes: int, pods: int) -> dict[str, Any]:
    source = synthetic_export("plan", nodes, pods)
    text = dump(source)
    started = time.perf_counter()
    docs, export_format = importer.read(text, LIMITS)
    read_s = time.perf_counter() - started
    as_json = json.dumps(source, indent=4)  # kubectl get -o json's layout
    started = time.perf_counter()
    importer.read(as_json, LIMITS)
    read_json_s = time.perf_counter() - started
    started = time.perf_counter()
    the_plan = importer.plan(docs, export_format=export_format)
    plan_s = time.perf_counter() - started
    started = time.perf_counter()
    scaled = importer.plan(docs, scale=0.1, export_format=export_format)
    scaled_s = time.perf_counter() - started
    figures = {"nodes": nodes, "pods": pods, "objects": len(docs), "megabytes": round(len(text) / 2**20, 1),
               "read_s": round(read_s, 2), "read_json_s": round(read_json_s, 2), "plan_s": round(plan_s, 2),
               "plan_scaled_0.1_s": round(scaled_s, 2),
               "applied_objects": len(the_plan.objects), "scaled_nodes": len(scaled.nodes)}
    say(f"planning {nodes} nodes / {pods} pods ({len(docs)} objects, {figures['megabytes']} MB of YAML): "
          f"read {read_s:.2f} s (as JSON: {read_json_s:.2f} s), plan {plan_s:.2f} s "
          f"(scale 0.1: {scaled_s:.2f} s, {len(scaled.nodes)} nodes)")
    return figures


def kubectl(settings: ClusterSettings, *args: str, stdin: str | None = None) -> str:
    return cluster.kubectl(settings, *args, stdin=stdin).stdout


def wait_running(settings: ClusterSettings, namespaces: list[str], pods: int, stall: float = 120.0) -> float:
    """Seconds until ``pods`` pods of the namespaces are Running; gives up when none more has been for
    ``stall`` seconds."""
    started = progressed = time.monotonic()
    best = -1
    while True:
        out = kubectl(settings, "get", "pods", "-A", "--field-selector=status.phase=Running", "--no-headers",
                      "-o", "custom-columns=NS:.metadata.namespace")
        running = sum(1 for line in out.split() if line in namespaces)
        if running >= pods:
            return time.monotonic() - started
        if running > best:
            best, progressed = running, time.monotonic()
        elif time.monotonic() - progressed > stall:
            raise TimeoutError(f"{running} of {pods} pods Running, none more for {stall:.0f} s")
        time.sleep(1.0)


def applying(nodes: int, pods: int) -> dict[str, Any]:
    settings = ClusterSettings()
    tag = uuid.uuid4().hex[:5]
    source = synthetic_export(tag, nodes, pods)
    text = dump(source)
    namespaces = sorted({i["metadata"]["name"] for i in source["items"] if i["kind"] == "Namespace"})
    node_names = [i["metadata"]["name"] for i in source["items"] if i["kind"] == "Node"]
    figures: dict[str, Any] = {"nodes": nodes, "pods": pods}
    cleanup = list(namespaces)

    async def run_import() -> importer.Report:
        kube = Kube(settings.kubeconfig, agent="bench-import")
        try:
            return await importer.run(kube, text, limits=LIMITS, ip_range=settings.node_ip_range,
                                      concurrency=ImportSettings().import_concurrency)
        finally:
            await kube.close()

    try:
        started = time.monotonic()
        report = asyncio.run(run_import())
        figures["import_s"] = round(time.monotonic() - started, 2)
        figures["import_counts"] = report.counts()
        figures["import_to_running_s"] = round(figures["import_s"] + wait_running(settings, namespaces, pods), 2)
        say(f"import of {nodes} nodes / {pods} pods: applied in {figures['import_s']} s, all Running after "
              f"{figures['import_to_running_s']} s ({report.counts()})")
        # The same cleaned objects with kubectl, in fresh namespaces, on the nodes just imported.
        docs, export_format = importer.read(text, LIMITS)
        the_plan = importer.plan(docs, export_format=export_format)
        renamed = yaml.safe_dump_all([_renamed(d.obj) for d in the_plan.objects])
        k_namespaces = [f"{n}-k" for n in namespaces]
        cleanup = [*namespaces, *k_namespaces]
        started = time.monotonic()
        kubectl(settings, "apply", "--server-side", "--field-manager=bench-kubectl", "-f", "-", stdin=renamed)
        figures["kubectl_s"] = round(time.monotonic() - started, 2)
        figures["kubectl_to_running_s"] = round(figures["kubectl_s"]
                                                + wait_running(settings, k_namespaces, pods), 2)
        say(f"kubectl apply --server-side of the same objects: {figures['kubectl_s']} s, all Running after "
              f"{figures['kubectl_to_running_s']} s")
    finally:
        for ns in cleanup:
            kubectl(settings, "delete", "namespace", ns, "--wait=false", "--ignore-not-found")
        kubectl(settings, "delete", "node", *node_names, "--wait=false", "--ignore-not-found")
        # Pods on deleted nodes are nobody's to confirm gone: the pod GC takes minutes over thousands of them
        # (other tests share the cluster), so they go at once, as `kubectl delete --force` does.
        for ns in cleanup:
            kubectl(settings, "delete", "pods", "-n", ns, "--all", "--force", "--grace-period=0", "--wait=false",
                    "--ignore-not-found")
        kubectl(settings, "delete", "configmap", "-n", "kube-system", importer.SOURCE_CONFIGMAP[1],
                "--ignore-not-found")
    return figures


def _renamed(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    if obj["kind"] == "Namespace":
        return {**obj, "metadata": {**meta, "name": f"{meta['name']}-k"}}
    return {**obj, "metadata": {**meta, "namespace": f"{meta['namespace']}-k"}}


def main() -> int:
    # A stop (timeout, Ctrl-C) still removes the nodes and namespaces the run made: other tests share the cluster.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan-nodes", type=int, default=1000)
    parser.add_argument("--plan-pods", type=int, default=10_000)
    parser.add_argument("--apply-nodes", type=int, default=50)
    parser.add_argument("--apply-pods", type=int, default=1000)
    args = parser.parse_args()
    started = dt.datetime.now(dt.UTC)
    figures: dict[str, Any] = {"planning": planning(args.plan_nodes, args.plan_pods)}
    if args.apply_nodes > 0:
        figures["apply"] = applying(args.apply_nodes, args.apply_pods)
    figures["output"] = OUTPUT  # what the results page shows
    write_results("bench_import", vars(args), figures, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
