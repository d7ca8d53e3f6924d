"""The closed loop: the metrics APIs through the real aggregator, kubectl top, and HPAs that scale
on the simulated load (real controller-manager, real HPA controller, no mocks of Kubernetes)."""

from __future__ import annotations

import json
import math
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from k8sim import model
from k8sim.local import cluster
from k8sim.local.processes import free_port
from tests.ecp_ai import APP, CPU, GPU, tenant_files

from .conftest import Kubectl, engine_env, eventually, process, started

pytestmark = pytest.mark.integration

#: The loop engine runs a weekday's late-morning peak without noise (conftest.engine_env): the web
#: profile's load is then exactly its peak_rps times the load factor, whatever the wall clock says.
WEB = model.PROFILES["web"]
#: CPU requests of deployment()'s containers (app, sidecar) in millicores: the HPA's denominator.
REQUESTS_M = (1200, 50)


def deployment(name: str, cpu: str = "1200m", replicas: int = 1, **annotations: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name},
                                               "annotations": {"k8sim.io/profile": "web", **annotations}},
                                  "spec": {"containers": [
                                      {"name": "app", "image": "web:1.0", "resources": {
                                          "requests": {"cpu": cpu, "memory": "256Mi"},
                                          "limits": {"cpu": "4", "memory": "1Gi"}}},
                                      {"name": "sidecar", "image": "envoy:1.30", "resources": {
                                          "requests": {"cpu": "50m", "memory": "64Mi"}}}]}}}}


def hpa(name: str, metric: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": name},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                     "minReplicas": 1, "maxReplicas": 10, "metrics": [metric]}}


def raw(kubectl: Kubectl, path: str) -> dict[str, Any]:
    return dict(json.loads(kubectl("get", "--raw", path)))


def replicas(kubectl: Kubectl, namespace: str, name: str) -> int:
    return int(kubectl.json("get", "deployment", name, "-n", namespace)["spec"].get("replicas") or 0)


def hpa_utilisation(pods: int, factor: float) -> int:
    """The CPU utilisation (%) an HPA computes for ``pods`` ready web pods at the noiseless peak: the
    engine shares the load among the pods and each pod's usage among its containers by request
    (in nanocores), the metrics client rounds each container up to millicores, the HPA sums them
    over the pods' requests and truncates."""
    per_pod = WEB.cpu_idle + WEB.peak_rps * factor * WEB.cpu_per_request / pods
    milli = sum(-(-round(per_pod * r / sum(REQUESTS_M) * 1e9) // 1_000_000) for r in REQUESTS_M)
    return pods * milli * 100 // (pods * sum(REQUESTS_M))


def hpa_replicas(pods: int, utilisation: int, target: int) -> int:
    """What the HPA asks for (its default 10 % tolerance; no scale-up limit reached)."""
    ratio = utilisation / target
    return pods if abs(1 - ratio) <= 0.1 else math.ceil(ratio * pods)


def test_apiservices_are_available_and_kubectl_top_shows_the_simulated_load(
        loop_engine: str, api_url: str, kubectl: Kubectl) -> None:
    tenant = f"top{uuid.uuid4().hex[:5]}"
    ns = f"ecp-ai-{tenant}"
    manifest = yaml.safe_dump_all([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                                   *[{**deployment(n, replicas=2), "metadata": {"name": n, "namespace": ns}}
                                     for n in ("callbot", "stt-server")]])
    deployed = httpx.post(f"{api_url}/k8s/manifest/deploy", json={"manifest": manifest, "tenant_id": tenant},
                          timeout=60)
    assert deployed.status_code == 200, deployed.text
    try:
        for item in kubectl.json("get", "apiservices")["items"]:
            if item["spec"].get("group", "").endswith("metrics.k8s.io"):
                conditions = {c["type"]: c["status"] for c in item["status"]["conditions"]}
                assert conditions["Available"] == "True", item["metadata"]["name"]

        def top() -> dict[str, tuple[int, int]]:
            rows = [line.split() for line in kubectl("top", "pods", "-n", ns, "--no-headers", check=False).splitlines()]
            assert len(rows) == 4, rows
            return {r[0]: (int(r[1].removesuffix("m")), int(r[2].removesuffix("Mi"))) for r in rows}
        pods = eventually(top, 60, "kubectl top pods to list every pod")
        assert all(cpu > 0 and memory > 0 for cpu, memory in pods.values())

        def matches_the_monitoring_api() -> bool:
            doc = httpx.get(f"{api_url}/monitoring/tenant/{tenant}").json()
            metrics = raw(kubectl, f"/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods")["items"]
            for service in ("callbot", "stt-server"):
                mine = [m for m in metrics if m["metadata"]["labels"]["app"] == service]
                assert len(mine) == 2
                memory_mb = sum(int(c["usage"]["memory"].removesuffix("Ki")) for m in mine
                                for c in m["containers"]) / 1024
                reported = doc["services"][f"{ns}/{service}"]["memory"]["usage_mb"]
                # Without noise both show the same tick's figures: they differ by the rounding alone
                # (the document's to 0.1, the metrics API's to KiB).
                assert abs(memory_mb - reported) <= 0.06, (service, memory_mb, reported)
                # CPU as % of the pods' requests (1.2 + 0.05 cores: the sidecar sets no limit)
                cpu_percent = sum(int(c["usage"]["cpu"].removesuffix("n")) / 1e9 for m in mine
                                  for c in m["containers"]) / 1.25 / len(mine) * 100
                shown = doc["services"][f"{ns}/{service}"]["cpu"]["usage_percent"]
                assert abs(cpu_percent - shown) <= 0.06, (service, cpu_percent, shown)
            return True
        eventually(matches_the_monitoring_api, 30, "the metrics API and /monitoring/tenant to agree")
        containers = kubectl("top", "pods", "-A", "--containers", "--no-headers")
        assert {"app", "sidecar"} <= {line.split()[2] for line in containers.splitlines() if line.startswith(ns)}
        nodes = kubectl("top", "nodes", "--no-headers").splitlines()
        assert len(nodes) >= 18 and all(int(line.split()[1].removesuffix("m")) > 0 for line in nodes)
    finally:
        httpx.delete(f"{api_url}/k8s/resources/tenant/{tenant}", timeout=60)


def test_every_hpa_of_an_ecp_ai_tenant_shows_utilisation_within_a_minute(loop_engine: str, api_url: str,
                                                                        kubectl: Kubectl) -> None:
    tenant = f"hpa{uuid.uuid4().hex[:5]}"
    deployed = httpx.post(f"{api_url}/k8s/manifest/deploy", json={"manifest": tenant_files(tenant, gpu="l40s"),
                                                                  "tenant_id": tenant}, timeout=60)
    assert deployed.status_code == 200, deployed.text
    started = time.monotonic()
    try:
        def measuring() -> list[str]:
            hpas = kubectl.json("get", "hpa", "-n", f"ecp-ai-{tenant}")["items"]
            assert len(hpas) == len(APP + GPU + CPU)
            for item in hpas:
                conditions = {c["type"]: c["status"] for c in item["status"].get("conditions") or []}
                assert conditions.get("ScalingActive") == "True", (item["metadata"]["name"], conditions)
                assert item["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"] > 0
            return [h["metadata"]["name"] for h in hpas]
        eventually(measuring, 60, "every HPA of the tenant to show current utilisation")
        assert time.monotonic() - started < 60
    finally:
        httpx.delete(f"{api_url}/k8s/resources/tenant/{tenant}", timeout=60)


def test_the_metrics_api_answers_selectors_as_metrics_server_does(loop_engine: str, kubectl: Kubectl,
                                                                  namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all([deployment("one"), deployment("two")]))
    base = f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods"

    def both() -> list[dict[str, Any]]:
        items = raw(kubectl, base)["items"]
        assert len(items) == 2
        return list(items)
    items = eventually(both, 60, "both pods in the metrics API")
    (one,) = raw(kubectl, f"{base}?labelSelector=app%3Done")["items"]
    assert one["metadata"]["labels"]["app"] == "one" and one["window"] and one["timestamp"]
    assert {c["name"] for c in one["containers"]} == {"app", "sidecar"}
    name = items[1]["metadata"]["name"]
    assert [i["metadata"]["name"] for i in raw(kubectl, f"{base}?fieldSelector=metadata.name%3D{name}")["items"]] \
        == [name]
    assert raw(kubectl, f"{base}/{name}")["metadata"]["name"] == name
    assert not raw(kubectl, f"{base}?labelSelector=app+notin+%28one%2Ctwo%29")["items"]
    missing = cluster.kubectl(kubectl.settings, "get", "--raw", f"{base}/nothing", check=False)
    assert missing.returncode != 0 and "not found" in missing.stderr.lower(), missing.stderr
    node = raw(kubectl, "/apis/metrics.k8s.io/v1beta1/nodes/cpu-0")
    assert node["usage"]["cpu"].endswith("n") and node["usage"]["memory"].endswith("Ki")


def test_an_hpa_scales_out_on_a_load_step_and_back_in(loop_engine: str, api_url: str, kubectl: Kubectl,
                                                      namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all([
        deployment("callbot"),
        hpa("callbot", {"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": 50}}})]))

    def measuring() -> int:
        status = kubectl.json("get", "hpa", "callbot", "-n", namespace)["status"]
        conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
        assert conditions.get("ScalingActive") == "True", status
        return int(status["currentMetrics"][0]["resource"]["current"]["averageUtilization"])
    # Without noise every figure follows from the factor: one pod at 1x is at 29 % (the HPA keeps
    # 1); at 4.3x it is at 124 % (ceil(2.48) = 3 pods), and three pods share it at 42 %
    # (ceil(3 x 0.84) = 3): the HPA settles at exactly 3, whichever sync sees the step first.
    step = 4.3
    assert [hpa_utilisation(1, 1), hpa_utilisation(1, step), hpa_utilisation(3, step)] == [29, 124, 42]
    assert hpa_replicas(1, 124, 50) == 3 and hpa_replicas(3, 42, 50) == 3 and hpa_replicas(3, 10, 50) == 1
    assert eventually(measuring, 60, "the HPA to show current utilisation") == hpa_utilisation(1, 1)
    assert replicas(kubectl, namespace, "callbot") == 1
    load = {"namespace": namespace, "service": "callbot", "duration_seconds": 600}
    assert httpx.post(f"{api_url}/monitoring/load", json={**load, "factor": step}).status_code == 200

    def settled(count: int, utilisation: int) -> bool:
        status = kubectl.json("get", "hpa", "callbot", "-n", namespace)["status"]
        seen = (replicas(kubectl, namespace, "callbot"), status.get("currentReplicas"),
                status["currentMetrics"][0]["resource"]["current"]["averageUtilization"])
        assert seen == (count, count, utilisation), (seen, status.get("conditions"))
        return True
    eventually(lambda: settled(3, hpa_utilisation(3, step)), 45,
               "the HPA to scale out to 3 (a 5 s sync, the pods' start, the next sync)")
    assert httpx.post(f"{api_url}/monitoring/load", json={**load, "factor": 1}).status_code == 200
    # Three pods at 1x are at 10 %: ceil(3 x 0.2) = 1, once the 15 s stabilisation window has passed.
    eventually(lambda: settled(1, hpa_utilisation(1, 1)), 60,
               "the HPA to scale back in to 1 after the 15 s stabilisation window")


@pytest.mark.parametrize("kind", ["Pods", "External"])
def test_hpas_scale_on_the_rps_metrics_too(kind: str, loop_engine: str, api_url: str, kubectl: Kubectl,
                                           namespace: str) -> None:
    name = f"rps-{kind.lower()}"
    target = {"type": "AverageValue", "averageValue": "150"}
    metric = ({"type": "Pods", "pods": {"metric": {"name": "requests_per_second"}, "target": target}}
              if kind == "Pods" else
              {"type": "External", "external": {"metric": {"name": "requests_per_second", "selector": {
                  "matchLabels": {"service": name}}}, "target": target}})
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all([deployment(name), hpa(name, metric)]))

    def measuring() -> bool:
        status = kubectl.json("get", "hpa", name, "-n", namespace)["status"]
        assert status.get("currentMetrics"), status
        return True
    eventually(measuring, 60, f"the {kind} metric to reach the HPA")
    # One pod serves the whole 90 requests/s (0.6 of the target: it stays alone); at 5.5x the service
    # serves 495/s: ceil(3.3) = 4 pods, which share it at 0.825 of the target, ceil(4 x 0.825) = 4.
    assert hpa_replicas(1, round(100 * WEB.peak_rps / 150), 100) == 1
    assert hpa_replicas(1, round(100 * 5.5 * WEB.peak_rps / 150), 100) == 4
    assert hpa_replicas(4, round(100 * 5.5 * WEB.peak_rps / 4 / 150), 100) == 4
    assert replicas(kubectl, namespace, name) == 1
    load = {"namespace": namespace, "service": name}
    assert httpx.post(f"{api_url}/monitoring/load", json={**load, "factor": 5.5}).status_code == 200
    try:
        def settled() -> bool:
            status = kubectl.json("get", "hpa", name, "-n", namespace)["status"]
            seen = (replicas(kubectl, namespace, name), status.get("currentReplicas"), status.get("desiredReplicas"))
            assert seen == (4, 4, 4), (seen, status.get("currentMetrics"), status.get("conditions"))
            return True
        eventually(settled, 60, f"scale-out to 4 on the {kind} metric")
    finally:
        httpx.post(f"{api_url}/monitoring/load", json={**load, "factor": 1})


def test_a_killed_engine_blocks_nothing_once_it_is_back(loop_engine: str, kubectl: Kubectl, tmp_path: Path) -> None:
    """kill -9 leaves the APIServices pointing at nothing (as a crashed metrics-server would): namespace
    deletion waits; the next start repairs them and the namespace goes. Runs last: it takes over the
    registration from the module's engine."""
    env = engine_env(free_port())
    log = tmp_path / "engine.log"
    ns = f"kill-{uuid.uuid4().hex[:6]}"
    with process([sys.executable, "-m", "k8sim_engine"], env, log) as proc:
        started(f"http://127.0.0.1:{env['K8SIM_ENGINE_PORT']}/health", proc, log)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def unavailable() -> bool:
        item = kubectl.json("get", "apiservice", "v1beta1.metrics.k8s.io")
        return bool({c["type"]: c["status"] for c in item["status"]["conditions"]}["Available"] == "False")
    eventually(unavailable, 60, "the aggregator to notice the engine is gone")
    kubectl("create", "namespace", ns)
    kubectl("delete", "namespace", ns, "--wait=false")
    try:
        def blocked() -> bool:
            phase = kubectl.json("get", "namespace", ns)["status"]
            conditions = {c["type"]: c["status"] for c in phase.get("conditions") or []}
            return conditions.get("NamespaceDeletionDiscoveryFailure") == "True"
        eventually(blocked, 60, "the dead APIServices to stall the namespace's deletion")
        with process([sys.executable, "-m", "k8sim_engine"], env, log) as proc:
            started(f"http://127.0.0.1:{env['K8SIM_ENGINE_PORT']}/health", proc, log)
            eventually(lambda: not kubectl("get", "namespace", ns, "--ignore-not-found", "-o", "name").strip(), 90,
                       "the namespace to go once the engine is back")
    finally:
        kubectl("delete", "apiservice", "v1beta1.metrics.k8s.io", "v1beta2.custom.metrics.k8s.io",
                "v1beta1.external.metrics.k8s.io", "--ignore-not-found")
