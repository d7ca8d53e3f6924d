"""Deploy through the API vs kubectl on the same cluster: the API's overhead as a ratio.

1. The ECP-AI tenant manifest (45 objects): POST /k8s/manifest/deploy (waits until ready) vs
   `kubectl apply --server-side` + `kubectl wait` for the same readiness (Deployments
   Available, PVCs Bound, HPAs AbleToScale). Goal: ratio ≤ 1.1.
2. One Deployment of N replicas (default 1,000) on dedicated bench nodes, the same two ways.

    python bench/bench_api.py [--replicas 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid

import httpx
import yaml
from bench_cluster import TAINT, bench_nodes, delete_nodes
from common import ratio_line, repo_path, simulator

from k8sim.local import cluster
from k8sim.local.settings import ClusterSettings

sys.path.insert(0, str(repo_path()))
from tests.ecp_ai import tenant_files, tenant_manifest


def kubectl(settings: ClusterSettings, *args: str) -> None:
    cluster.kubectl(settings, *args)


def via_api(url: str, manifest: object, tenant: str, timeout: float = 600) -> float:
    started = time.monotonic()
    resp = httpx.post(f"{url}/k8s/manifest/deploy?timeout={timeout}", json={"manifest": manifest, "tenant_id": tenant},
                      timeout=timeout + 30)
    elapsed = time.monotonic() - started
    if resp.status_code != 200:
        raise RuntimeError(f"API deploy failed: {resp.text[:500]}")
    return elapsed


def via_kubectl(settings: ClusterSettings, text: str, waits: list[list[str]]) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as handle:
        handle.write(text)
        handle.flush()
        started = time.monotonic()
        kubectl(settings, "apply", "--server-side", "--field-manager=bench", "-f", handle.name)
        for wait in waits:
            kubectl(settings, "wait", "--timeout=600s", *wait)
        return time.monotonic() - started


def tenant_round(settings: ClusterSettings, url: str) -> tuple[float, float]:
    api_tenant, kubectl_tenant = f"ba{uuid.uuid4().hex[:5]}", f"bk{uuid.uuid4().hex[:5]}"
    api_s = via_api(url, tenant_files(api_tenant), api_tenant)
    ns = f"ecp-ai-{kubectl_tenant}"
    kubectl_s = via_kubectl(settings, tenant_manifest(kubectl_tenant), [
        ["-n", ns, "deployment", "--all", "--for=condition=Available"],
        ["-n", ns, "pvc", "--all", "--for=jsonpath={.status.phase}=Bound"],
        ["-n", ns, "hpa", "--all", "--for=condition=AbleToScale"],
    ])
    for tenant in (api_tenant, kubectl_tenant):
        httpx.delete(f"{url}/k8s/resources/tenant/{tenant}", timeout=120)
    return api_s, kubectl_s


def replicas_manifest(ns: str, replicas: int, pool: str) -> str:
    return yaml.safe_dump_all([
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "big", "namespace": ns},
         "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "big"}},
                  "template": {"metadata": {"labels": {"app": "big"}}, "spec": {
                      "nodeSelector": {"k8sim.io/bench": pool}, "tolerations": [{**TAINT, "operator": "Equal"}],
                      "containers": [{"name": "c", "image": "app:1"}]}}}},
    ])


def wait_gone(settings: ClusterSettings, ns: str) -> None:
    cluster.kubectl(settings, "delete", "namespace", ns, "--wait=true", "--timeout=600s", check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings = ClusterSettings()
    with simulator(settings, "operator", "api") as urls:
        url = urls["api"]
        tenant_round(settings, url)  # warm-up: discovery caches, first HPA sync
        rounds = [tenant_round(settings, url) for _ in range(args.rounds)]
        api_s = statistics.median(r[0] for r in rounds)
        kubectl_s = statistics.median(r[1] for r in rounds)
        print(ratio_line(f"ECP-AI tenant (45 objects, median of {args.rounds})", "kubectl", kubectl_s, "API", api_s))

        pool = f"bp{uuid.uuid4().hex[:4]}"
        bench_nodes(settings, pool, max(1, -(-args.replicas // 1000)))
        try:
            ns_api, ns_kubectl = f"big-api-{uuid.uuid4().hex[:4]}", f"big-kc-{uuid.uuid4().hex[:4]}"
            api_big = via_api(url, replicas_manifest(ns_api, args.replicas, pool), "bench-big")
            wait_gone(settings, ns_api)
            kubectl_big = via_kubectl(settings, replicas_manifest(ns_kubectl, args.replicas, pool), [
                ["-n", ns_kubectl, "deployment/big", "--for=condition=Available"],
                ["-n", ns_kubectl, "deployment/big", f"--for=jsonpath={{.status.readyReplicas}}={args.replicas}"]])
            wait_gone(settings, ns_kubectl)
            print(ratio_line(f"Deployment of {args.replicas} replicas", "kubectl", kubectl_big, "API", api_big))
        finally:
            delete_nodes(settings, pool)
    return 0


if __name__ == "__main__":
    from common import run_recorded

    sys.exit(run_recorded("bench_api", main))
