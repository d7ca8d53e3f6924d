"""Failure scenarios on a deployed ECP-AI tenant: each type as the cluster, the history, the metrics,
the monitoring documents, the SLA and the alerts show it, and the recovery after it ends."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from k8sim import capacity
from k8sim.local.settings import ClusterSettings
from tests.ecp_ai import tenant_files

from .conftest import Kubectl, eventually

pytestmark = pytest.mark.integration

GIB = 1024**3


@pytest.fixture(scope="module")
def tenant(api_url: str, loop_engine: str, kubectl: Kubectl) -> Iterator[tuple[str, str]]:
    """An ECP-AI tenant on the L40S pool (its own: the zone outage takes that pool down), all Available."""
    name = f"s{uuid.uuid4().hex[:6]}"
    ns = f"ecp-ai-{name}"
    resp = httpx.post(f"{api_url}/k8s/manifest/deploy", json={"manifest": tenant_files(name, gpu="l40s"),
                                                              "tenant_id": name}, timeout=120)
    assert resp.status_code == 200, resp.text
    kubectl("wait", "-n", ns, "deployment", "--all", "--for=condition=Available", "--timeout=120s")
    yield name, ns
    httpx.delete(f"{api_url}/k8s/resources/tenant/{name}", timeout=120)


# --------------------------------------------------------------------------- helpers


def start(api_url: str, ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    resp = httpx.post(f"{api_url}/scenarios", json={"metadata": {"name": name, "namespace": ns}, "spec": spec})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def stop(api_url: str, ns: str, name: str) -> None:
    resp = httpx.delete(f"{api_url}/scenarios/{ns}/{name}", timeout=30)
    assert resp.status_code == 200 and resp.json()["status"] == "deleted", resp.text


def scenario(api_url: str, ns: str, name: str) -> dict[str, Any]:
    return dict(httpx.get(f"{api_url}/scenarios/{ns}/{name}").json())


def pods(kubectl: Kubectl, ns: str, app: str) -> list[dict[str, Any]]:
    return list(kubectl.json("get", "pods", "-n", ns, "-l", f"app={app}")["items"])


def ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or [])


def container(pod: dict[str, Any]) -> dict[str, Any]:
    return dict((pod["status"].get("containerStatuses") or [{}])[0])


def events(kubectl: Kubectl, ns: str, pod: str) -> list[tuple[str, str]]:
    found = kubectl.json("get", "events", "-n", ns, "--field-selector", f"involvedObject.name={pod}")["items"]
    return [(e["type"], e["reason"]) for e in found]


def history(settings: ClusterSettings, key: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(kind, name, transition, detail) of every recorded change naming this Scenario."""
    async def fetch() -> list[tuple[str, str, str, dict[str, Any]]]:
        conn = await asyncpg.connect(settings.database_url)
        try:
            rows = await conn.fetch("SELECT kind, name, transition, detail FROM resource_events "
                                    "WHERE detail->>'scenario' = $1 ORDER BY id", key)
        finally:
            await conn.close()
        return [(r["kind"], r["name"], r["transition"], json.loads(r["detail"])) for r in rows]
    return asyncio.run(fetch())


def samples(settings: ClusterSettings, service: str) -> list[tuple[float, float]]:
    async def fetch() -> list[tuple[float, float]]:
        conn = await asyncpg.connect(settings.database_url)
        try:
            rows = await conn.fetch("SELECT good, total FROM sla_samples WHERE service = $1 ORDER BY taken_at",
                                    service)
        finally:
            await conn.close()
        return [(r["good"], r["total"]) for r in rows]
    return asyncio.run(fetch())


def window(settings: ClusterSettings, tenant: str, end: str, seconds: float) -> tuple[float, float]:
    """(good, total) of a tenant's samples in (end - seconds, end]."""
    async def fetch() -> tuple[float, float]:
        conn = await asyncpg.connect(settings.database_url)
        try:
            until = dt.datetime.fromisoformat(end)
            row = await conn.fetchrow("SELECT sum(good) AS good, sum(total) AS total FROM sla_samples "
                                      "WHERE tenant = $1 AND taken_at > $2 AND taken_at <= $3", tenant,
                                      until - dt.timedelta(seconds=seconds), until)
        finally:
            await conn.close()
        return float(row["good"]), float(row["total"])
    return asyncio.run(fetch())


def alerts(api_url: str, tenant: str | None, name: str, subject: str) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"name": name, **({"tenant_id": tenant} if tenant else {})}
    found = httpx.get(f"{api_url}/sla/alerts/history", params=params).json()["alerts"]
    return [a for a in found if a["name"] == name and a["service"] == subject]


def firing(api_url: str, tenant: str | None, name: str, subject: str) -> bool:
    return any(a["state"] == "firing" for a in alerts(api_url, tenant, name, subject))


def resolved(api_url: str, tenant: str, name: str, subject: str) -> bool:
    found = alerts(api_url, tenant, name, subject)
    return bool(found) and all(a["state"] == "resolved" for a in found)


def scrape(engine: str, name: str, **labels: str) -> list[float]:
    text = httpx.get(f"{engine}/metrics", timeout=30).text
    return [s.value for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def service(api_url: str, tenant: str, key: str) -> dict[str, Any]:
    return dict(httpx.get(f"{api_url}/monitoring/tenant/{tenant}").json()["services"][key])


# --------------------------------------------------------------------------- pod scenarios


def test_pod_crash_loops_with_kubernetes_back_off_and_recovers(api_url: str, loop_engine: str, kubectl: Kubectl,
                                                               tenant: tuple[str, str],
                                                               live_services: ClusterSettings) -> None:
    tenant_id, ns = tenant
    start(api_url, ns, "crash-vectordb", {"type": "PodCrash", "target": {
        "namespace": ns, "selector": {"matchLabels": {"app": "vectordb"}}}, "parameters": {"after": 2, "exitCode": 3}})
    row = kubectl("get", "scenarios", "-n", ns, "crash-vectordb", "--no-headers")
    assert row.split()[:2] == ["crash-vectordb", "PodCrash"]
    eventually(lambda: scenario(api_url, ns, "crash-vectordb")["status"]["phase"] == "Active", 20, what="Active")
    assert scenario(api_url, ns, "crash-vectordb")["status"]["affectedCount"] == 1

    def looping() -> list[dict[str, Any]]:
        found = pods(kubectl, ns, "vectordb")
        assert len(found) == 1  # no HPA: the Deployment's one replica
        for pod in found:
            c = container(pod)
            assert c["state"]["waiting"]["reason"] == "CrashLoopBackOff" and not ready(pod)
            assert c["lastState"]["terminated"]["exitCode"] == 3 and c["lastState"]["terminated"]["reason"] == "Error"
        return found
    first = eventually(looping, 30, what="the vectordb pod in CrashLoopBackOff")
    assert all("back-off 10s" in container(p)["state"]["waiting"]["message"] for p in first)
    # The back-off doubles: after the first restart the kubelet waits 20 s.
    eventually(lambda: all(container(p)["restartCount"] >= 1 and "back-off 20s" in container(p)["state"].get(
        "waiting", {}).get("message", "") for p in pods(kubectl, ns, "vectordb")), 45, what="a 20 s back-off")
    deployment = kubectl.json("get", "deployment", "-n", ns, "vectordb")
    assert deployment["status"].get("availableReplicas", 0) == 0 and deployment["status"]["unavailableReplicas"] == 1
    name = first[0]["metadata"]["name"]
    assert ("Warning", "BackOff") in events(kubectl, ns, name)
    assert "CrashLoopBackOff" in kubectl("describe", "pod", "-n", ns, name)

    rows = history(live_services, f"{ns}/crash-vectordb")
    steps = {(kind, transition) for kind, _, transition, _ in rows}
    assert {("Pod", "not_ready"), ("Pod", "restarted")} <= steps, rows
    assert scrape(loop_engine, "kube_pod_container_status_restarts_total", namespace=ns, pod=name)[0] >= 1
    assert scrape(loop_engine, "kube_pod_status_ready", namespace=ns, pod=name, condition="true") == [0.0]
    key = f"{ns}/vectordb"
    eventually(lambda: service(api_url, tenant_id, key)["health"]["status"] == "unhealthy", 15, what="unhealthy")
    # No ready replica: every request of the service fails (good = 0), as the SLA counts it.
    eventually(lambda: samples(live_services, key)[-1][0] == 0 and samples(live_services, key)[-1][1] > 0, 15,
               what="a sample with every request failed")
    eventually(lambda: firing(api_url, tenant_id, "KubePodCrashLooping", f"{ns}/{name}"), 15, what="the alert")
    assert firing(api_url, tenant_id, "ServiceUnavailable", key)

    stop(api_url, ns, "crash-vectordb")

    def recovered() -> bool:
        found = pods(kubectl, ns, "vectordb")
        return len(found) == 1 and all(ready(p) and "running" in container(p)["state"] for p in found)
    eventually(recovered, 30, what="the pods Ready again")
    assert all(container(p)["restartCount"] >= 2 for p in pods(kubectl, ns, "vectordb")), "restarts are kept"
    assert all("k8sim.io/fault" not in p["metadata"]["labels"] for p in pods(kubectl, ns, "vectordb"))
    kubectl("wait", "-n", ns, "deployment/vectordb", "--for=condition=Available", "--timeout=30s")
    eventually(lambda: resolved(api_url, tenant_id, "KubePodCrashLooping", f"{ns}/{name}")
               and resolved(api_url, tenant_id, "ServiceUnavailable", key), 20, what="the alerts resolved")
    assert service(api_url, tenant_id, key)["health"]["status"] != "unhealthy"
    assert ("Pod", "ready") in {(k, t) for k, _, t, _ in history(live_services, f"{ns}/crash-vectordb")}


def test_oom_kill_grows_memory_to_the_limit_then_kills(api_url: str, loop_engine: str, kubectl: Kubectl,
                                                       tenant: tuple[str, str], live_services: ClusterSettings) -> None:
    tenant_id, ns = tenant
    start(api_url, ns, "oom-stt", {"type": "OOMKill", "target": {
        "namespace": ns, "selector": {"matchLabels": {"app": "stt-server"}}}, "parameters": {"after": 15, "pods": 1}})
    victim = eventually(lambda: scenario(api_url, ns, "oom-stt")["status"]["affected"][0]["name"], 20,
                        what="the victim")
    peak: list[float] = []

    def near_limit() -> bool:
        peak.extend(scrape(loop_engine, "container_memory_working_set_bytes", namespace=ns, pod=victim))
        return max(peak, default=0) >= 0.9 * 2 * GIB
    eventually(near_limit, 30, what="the working set near its 2 GiB limit")

    def killed() -> dict[str, Any]:
        pod = kubectl.json("get", "pod", "-n", ns, victim)
        last = container(pod)["lastState"]["terminated"]
        assert last["reason"] == "OOMKilled" and last["exitCode"] == 137
        return pod
    eventually(killed, 30, what="OOMKilled, exit 137")
    eventually(lambda: firing(api_url, tenant_id, "KubeContainerOOMKilled", f"{ns}/{victim}"), 15,
               what="KubeContainerOOMKilled")
    assert any(d.get("reason") == "OOMKilled" for _, _, _, d in history(live_services, f"{ns}/oom-stt"))
    others = [p for p in pods(kubectl, ns, "stt-server") if p["metadata"]["name"] != victim]
    assert others and all(ready(p) and container(p)["restartCount"] == 0 for p in others), "pods: 1 takes one"
    stop(api_url, ns, "oom-stt")
    eventually(lambda: ready(kubectl.json("get", "pod", "-n", ns, victim)), 30, what="the pod back")
    eventually(lambda: max(scrape(loop_engine, "container_memory_working_set_bytes", namespace=ns, pod=victim))
               < 0.92 * 2 * GIB, 15, what="memory back under the limit")


def test_probe_failure_takes_pods_out_of_their_service(api_url: str, kubectl: Kubectl, tenant: tuple[str, str],
                                                       live_services: ClusterSettings) -> None:
    tenant_id, ns = tenant
    start(api_url, ns, "probe-advisor", {"type": "ProbeFailure", "target": {
        "namespace": ns, "selector": {"matchLabels": {"app": "advisor"}}}})

    def endpoints() -> list[bool]:
        slices = kubectl.json("get", "endpointslices", "-n", ns, "-l", "kubernetes.io/service-name=advisor")["items"]
        return [e["conditions"]["ready"] for s in slices for e in s.get("endpoints") or []]
    eventually(lambda: (found := pods(kubectl, ns, "advisor")) and not any(ready(p) for p in found)
               and all("running" in container(p)["state"] for p in found), 20, what="running but not Ready")
    eventually(lambda: endpoints() and not any(endpoints()), 20, what="the endpoints not ready")
    name = pods(kubectl, ns, "advisor")[0]["metadata"]["name"]
    assert ("Warning", "Unhealthy") in events(kubectl, ns, name)
    assert all(container(p)["restartCount"] == 0 for p in pods(kubectl, ns, "advisor")), "readiness only"
    assert any(t == "not_ready" for _, _, t, _ in history(live_services, f"{ns}/probe-advisor"))
    eventually(lambda: service(api_url, tenant_id, f"{ns}/advisor")["health"]["status"] == "unhealthy", 15,
               what="the service unhealthy")
    stop(api_url, ns, "probe-advisor")
    eventually(lambda: endpoints() and all(endpoints()), 30, what="the endpoints ready again")


def test_image_pull_back_off_holds_the_new_pods_of_a_rollout(api_url: str, kubectl: Kubectl,
                                                             tenant: tuple[str, str]) -> None:
    tenant_id, ns = tenant
    before = {p["metadata"]["name"] for p in pods(kubectl, ns, "nginx")}
    start(api_url, ns, "pull-nginx", {"type": "ImagePullBackOff", "duration": "40s", "target": {
        "namespace": ns, "selector": {"matchLabels": {"app": "nginx"}}}})

    def stuck() -> list[dict[str, Any]]:
        new = [p for p in pods(kubectl, ns, "nginx") if p["metadata"]["name"] not in before]
        assert new and all(container(p)["state"]["waiting"]["reason"] in ("ErrImagePull", "ImagePullBackOff")
                           for p in new)
        return new
    new = eventually(stuck, 30, what="new pods failing to pull")
    eventually(lambda: any(container(p)["state"]["waiting"]["reason"] == "ImagePullBackOff" for p in stuck()), 15,
               what="ImagePullBackOff")
    old = [p for p in pods(kubectl, ns, "nginx") if p["metadata"]["name"] in before]
    assert old and all(ready(p) for p in old), "the old ReplicaSet keeps serving while the rollout is stuck"
    assert ("Warning", "Failed") in events(kubectl, ns, new[0]["metadata"]["name"])
    eventually(lambda: firing(api_url, tenant_id, "KubePodImagePullBackOff", f"{ns}/{new[0]['metadata']['name']}"),
               15, what="KubePodImagePullBackOff")
    # The duration ends it: the template is given back and the rollout returns to the old pods.
    eventually(lambda: scenario(api_url, ns, "pull-nginx")["status"]["phase"] == "Completed", 60, what="Completed")
    template = kubectl.json("get", "deployment", "-n", ns, "nginx")["spec"]["template"]["metadata"]["labels"]
    assert "k8sim.io/fault" not in template
    def rolled_back() -> bool:
        found = pods(kubectl, ns, "nginx")
        return bool(found) and all("k8sim.io/fault" not in p["metadata"]["labels"] and ready(p) for p in found)
    eventually(rolled_back, 60, what="the failing pods gone, the old ones serving")
    assert before <= {p["metadata"]["name"] for p in pods(kubectl, ns, "nginx")}, "the old pods never restarted"
    kubectl("wait", "-n", ns, "deployment/nginx", "--for=condition=Available", "--timeout=30s")


# --------------------------------------------------------------------------- node scenarios


def test_node_not_ready_makes_the_controllers_move_its_pods(api_url: str, kubectl: Kubectl, tenant: tuple[str, str],
                                                            live_services: ClusterSettings) -> None:
    _, ns = tenant
    before = pods(kubectl, ns, "callbot")
    start(api_url, ns, "node-down", {"type": "NodeNotReady", "target": {
        "namespace": ns, "selector": {"matchLabels": {"app": "callbot"}}}})
    node = eventually(lambda: scenario(api_url, ns, "node-down")["status"]["affected"][0]["name"], 20, what="a node")
    victims = {p["metadata"]["name"] for p in before if p["spec"]["nodeName"] == node}
    assert victims

    def down() -> dict[str, Any]:
        found = kubectl.json("get", "node", node)
        cond = next(c for c in found["status"]["conditions"] if c["type"] == "Ready")
        assert cond["status"] == "Unknown" and cond["reason"] == "NodeStatusUnknown"
        assert "node.kubernetes.io/unreachable" in {t["key"] for t in found["spec"].get("taints") or []}
        return found
    eventually(down, 30, what="the node NotReady and tainted by the node-lifecycle controller")
    eventually(lambda: firing(api_url, None, "KubeNodeNotReady", node), 15, what="KubeNodeNotReady")  # no tenant

    def moved() -> bool:
        found = pods(kubectl, ns, "callbot")
        live = [p for p in found if not p["metadata"].get("deletionTimestamp")]
        gone = [p for p in found if p["metadata"]["name"] in victims]
        # Evicted after the 20 s toleration; nobody on the dead node confirms, so they stay Terminating.
        assert gone and all(p["metadata"].get("deletionTimestamp") for p in gone)
        desired = kubectl.json("get", "deployment", "-n", ns, "callbot")["spec"]["replicas"]  # the HPA's
        return len(live) >= desired and all(ready(p) and p["spec"]["nodeName"] != node for p in live)
    eventually(moved, 90, what="callbot rescheduled on other nodes")
    assert any(kind == "Node" and t == "not_ready" for kind, _, t, _ in history(live_services, f"{ns}/node-down"))

    stop(api_url, ns, "node-down")
    eventually(lambda: next(c["status"] for c in kubectl.json("get", "node", node)["status"]["conditions"]
                            if c["type"] == "Ready") == "True", 30, what="the node Ready")
    eventually(lambda: not {p["metadata"]["name"] for p in pods(kubectl, ns, "callbot")} & victims, 60,
               what="the evicted pods gone once the node confirms")
    eventually(lambda: not any(t["key"].startswith("node.kubernetes.io/") for t in
                               kubectl.json("get", "node", node)["spec"].get("taints") or []), 30,
               what="the taints removed")


def test_zone_outage_takes_a_whole_pool_down(api_url: str, kubectl: Kubectl, tenant: tuple[str, str]) -> None:
    tenant_id, ns = tenant
    # Pinned to the static nodes, as a workload that refuses autoscaled ones is: otherwise Karpenter
    # launches a replacement L40S node and the stranded pods move there (tests/integration/test_karpenter.py).
    spec = kubectl.json("get", "deployment", "tts-server", "-n", ns)["spec"]["template"]["spec"]
    pinned = {"spec": {"template": {"spec": {"affinity": capacity.on_existing_nodes(spec)}}}}
    kubectl("patch", "deployment", "tts-server", "-n", ns, "--type=merge", "-p", json.dumps(pinned))
    kubectl("rollout", "status", "deployment/tts-server", "-n", ns, "--timeout=120s")
    # Long enough that the pods are still stranded when the model is read: evictions come 20 s after
    # the nodes go NotReady, and a busy machine had seen the outage end before the model said so.
    start(api_url, ns, "l40s-out", {"type": "ZoneOutage", "duration": "75s", "target": {"pool": "gpu-l40s"}})
    nodes = eventually(lambda: {a["name"] for a in scenario(api_url, ns, "l40s-out")["status"]["affected"]}, 20,
                       what="the pool's nodes")
    assert nodes == {"gpu-l40s-0", "gpu-l40s-1"}

    def stranded() -> bool:
        found = [p for p in pods(kubectl, ns, "tts-server") if not p["metadata"].get("deletionTimestamp")]
        # No other L40S node: the replacement waits, and the scheduler says why.
        return bool(found) and all(p["status"]["phase"] == "Pending" for p in found)
    eventually(stranded, 90, what="tts-server evicted and unschedulable")
    eventually(lambda: service(api_url, tenant_id, f"{ns}/tts-server")["health"]["status"] == "unhealthy"
               if f"{ns}/tts-server" in httpx.get(f"{api_url}/monitoring/tenant/{tenant_id}").json()["services"]
               else True, 30, what="tts-server unhealthy or gone from the model")  # evictions finish first
    eventually(lambda: scenario(api_url, ns, "l40s-out")["status"]["phase"] == "Completed", 90, what="Completed")
    kubectl("wait", "-n", ns, "deployment/tts-server", "--for=condition=Available", "--timeout=90s")


# --------------------------------------------------------------------------- model scenarios


def test_load_spike_drives_the_hpa(api_url: str, kubectl: Kubectl, tenant: tuple[str, str]) -> None:
    tenant_id, ns = tenant
    key = f"{ns}/callbot"
    base = service(api_url, tenant_id, key)["network"]["requests_per_second"]
    start(api_url, ns, "spike", {"type": "LoadSpike", "duration": "60s", "parameters": {"factor": 4},
                                 "target": {"tenant": tenant_id, "selector": {"matchLabels": {"app": "callbot"}}}})
    eventually(lambda: service(api_url, tenant_id, key)["network"]["requests_per_second"] > 3 * base, 20,
               what="four times the load")
    eventually(lambda: kubectl.json("get", "hpa", "-n", ns, "callbot")["status"]["desiredReplicas"] > 2, 60,
               what="the HPA scaling out")
    stop(api_url, ns, "spike")
    eventually(lambda: service(api_url, tenant_id, key)["network"]["requests_per_second"] < 2 * base, 20,
               what="the load back")


def test_latency_incident_slows_a_service_and_alerts(api_url: str, tenant: tuple[str, str]) -> None:
    tenant_id, ns = tenant
    key = f"{ns}/nginx"
    base = service(api_url, tenant_id, key)["network"]["response_time_ms"]
    start(api_url, ns, "slow", {"type": "LatencyIncident", "parameters": {"latencyMs": 1500},
                                "target": {"namespace": ns, "selector": {"matchLabels": {"app": "nginx"}}}})
    eventually(lambda: service(api_url, tenant_id, key)["network"]["response_time_ms"] >= base + 1400, 20,
               what="1.5 s more latency")
    eventually(lambda: firing(api_url, tenant_id, "ServiceLatencyHigh", key), 15, what="ServiceLatencyHigh")
    stop(api_url, ns, "slow")
    eventually(lambda: resolved(api_url, tenant_id, "ServiceLatencyHigh", key), 20, what="resolved")
    assert service(api_url, tenant_id, key)["network"]["response_time_ms"] < base + 500


def test_error_burst_costs_the_sla_exactly_its_share(api_url: str, tenant: tuple[str, str],
                                                     live_services: ClusterSettings) -> None:
    tenant_id, ns = tenant
    key = f"{ns}/api-gateway"
    start(api_url, ns, "errors", {"type": "ErrorBurst", "duration": "8s", "parameters": {"rate": 0.25},
                                  "target": {"namespace": ns, "selector": {"matchLabels": {"app": "api-gateway"}}}})
    eventually(lambda: firing(api_url, tenant_id, "ServiceErrorRateHigh", key), 20, what="ServiceErrorRateHigh")
    eventually(lambda: scenario(api_url, ns, "errors")["status"]["phase"] == "Completed", 30, what="Completed")
    eventually(lambda: resolved(api_url, tenant_id, "ServiceErrorRateHigh", key), 20, what="resolved")
    burst = [(good, total) for good, total in samples(live_services, key) if total and good / total < 0.99]
    # By hand: a quarter of every request fails while it lasts, the proxy's own 0.02 % included in it.
    assert 5 <= len(burst) <= 12, burst
    assert all(good == pytest.approx(0.75 * total, rel=1e-9) for good, total in burst)
    # The tenant's burn rates are its recorded samples' own: over 5 minutes up to its newest sample,
    # with the burst's failed requests in them.
    status = httpx.get(f"{api_url}/sla/status", params={"tenant_id": tenant_id}).json()
    good, total = window(live_services, tenant_id, status["as_of"], 300)
    assert status["burn_rates"]["5m"] == pytest.approx((total - good) / total / 0.005, abs=1e-3)
    assert total - good >= sum(t - g for g, t in burst) > 0


def test_a_scheduled_scenario_waits_then_repeats_its_runs(api_url: str, kubectl: Kubectl,
                                                          tenant: tuple[str, str]) -> None:
    _, ns = tenant
    start(api_url, ns, "twice", {"type": "LatencyIncident", "start": "+4s", "duration": "3s",
                                 "repeat": {"every": "8s", "times": 2}, "parameters": {"latencyMs": 100},
                                 "target": {"namespace": ns, "selector": {"matchLabels": {"app": "auth-service"}}}})
    pending = eventually(lambda: (s := scenario(api_url, ns, "twice")["status"]).get("phase") == "Pending" and s, 10,
                         what="Pending until its start")
    assert pending["nextStart"] and "run 1 starts at" in pending["message"]
    eventually(lambda: scenario(api_url, ns, "twice")["status"].get("runs") == 2, 30, what="the second run")
    done = eventually(lambda: (s := scenario(api_url, ns, "twice")["status"]).get("phase") == "Completed" and s, 20,
                      what="Completed after two runs")
    assert done["runs"] == 2
    listed = kubectl("get", "scenarios", "-n", ns, "twice", "-o", "wide", "--no-headers").split()
    assert listed[1:3] == ["LatencyIncident", "Completed"]


def test_bad_scenarios_are_refused_and_change_nothing(api_url: str, tenant: tuple[str, str]) -> None:
    _, ns = tenant
    for spec, status in [({"type": "Meltdown"}, 422), ({"type": "PodCrash"}, 422),
                         ({"type": "ErrorBurst", "target": {"namespace": ns}, "parameters": {"rate": 3}}, 422),
                         ({"type": "PodCrash", "target": {"namespace": ns}, "duration": "soon"}, 422)]:
        resp = httpx.post(f"{api_url}/scenarios", json={"metadata": {"name": "bad", "namespace": ns}, "spec": spec})
        assert resp.status_code == status, resp.text
        assert resp.json()["message"]
    resp = httpx.post(f"{api_url}/scenarios", json={"metadata": {"name": "x", "namespace": "no-such-ns"},
                                                    "spec": {"type": "PodCrash", "target": {"namespace": ns}}})
    assert resp.status_code == 404
    assert httpx.get(f"{api_url}/scenarios/{ns}/bad").status_code == 404
    assert httpx.delete(f"{api_url}/scenarios/{ns}/bad").status_code == 404
    listed = httpx.get(f"{api_url}/scenarios", params={"namespace": ns}).json()
    assert listed["count"] == len(listed["scenarios"]) and "bad" not in {s["metadata"]["name"]
                                                                       for s in listed["scenarios"]}
