"""The monitoring engine, its Prometheus exposition, the API's monitoring endpoints and WebSocket."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest
import websockets

from k8sim import sla, store
from k8sim.local.settings import ClusterSettings
from k8sim.settings import ROOT
from tests.ecp_ai import APP, CPU, GPU, INFRA, tenant_files

from .conftest import eventually, promql, scratch_pool

pytestmark = pytest.mark.integration

SERVICE_SHAPE = {"cpu": {"usage_percent", "load_1m"}, "memory": {"usage_mb", "usage_percent"},
                 "network": {"requests_per_second", "response_time_ms", "error_rate_percent"},
                 "health": {"status", "uptime_seconds"}}
SUMMARY = {"overall_health", "sla_percentage", "sla_status", "total_services", "healthy_services",
           "total_requests_per_second", "average_response_time"}


def tenant_keys(tenant: str, names: list[str] = APP + GPU + CPU + INFRA) -> set[str]:
    return {f"ecp-ai-{tenant}/{name}" for name in names}


@pytest.fixture(scope="module")
def tenants(api_url: str, engine_url: str) -> Iterator[list[str]]:
    """Two tenants whose ids collide by prefix (m1a2b3 and m1a2b30): every filter must keep them apart."""
    base = f"m{uuid.uuid4().hex[:5]}"
    names = [base, f"{base}0"]
    for tenant in names:
        resp = httpx.post(f"{api_url}/k8s/manifest/deploy", json={"manifest": tenant_files(tenant, gpu="a100"),
                                                                  "tenant_id": tenant}, timeout=60)
        assert resp.status_code == 200, resp.text
    yield names
    for tenant in names:
        httpx.delete(f"{api_url}/k8s/resources/tenant/{tenant}", timeout=60)


def test_tenant_services_appear_with_the_contract_shape(api_url: str, tenants: list[str]) -> None:
    tenant = tenants[0]
    expected = tenant_keys(tenant)

    def listed() -> dict[str, Any]:
        doc = httpx.get(f"{api_url}/monitoring/tenant/{tenant}").json()
        assert set(doc["services"]) == expected
        return doc
    doc = eventually(listed, what="the tenant's services in /monitoring/tenant")
    assert set(doc["summary"]) >= SUMMARY
    assert doc["summary"]["total_services"] == len(expected)
    assert 0 <= doc["summary"]["healthy_services"] <= len(expected)
    for key, service in doc["services"].items():
        for section, fields in SERVICE_SHAPE.items():
            assert set(service[section]) >= fields, (key, section)
        assert 0 <= service["cpu"]["usage_percent"] <= 100
        assert service["network"]["requests_per_second"] > 0
        assert service["health"]["status"] in ("healthy", "degraded", "unhealthy")
    taken = dt.datetime.fromisoformat(doc["timestamp"].replace("Z", "+00:00"))
    assert abs((taken - dt.datetime.now(dt.UTC)).total_seconds()) < 3600, "simulated time runs at speed 1"
    everything = httpx.get(f"{api_url}/monitoring/health").json()
    assert expected <= set(everything["services"]) and set(everything["summary"]) >= SUMMARY
    for service in doc["services"].values():
        assert service["replicas"]["desired"] >= service["replicas"]["ready"] >= 0
        assert service["replicas"]["available"] >= 0
    assert doc["services"][f"ecp-ai-{tenant}/callbot"]["replicas"]["desired"] == 2
    assert doc["summary"]["total_requests_per_second"] > 0 and doc["summary"]["average_response_time"] > 0
    status = httpx.get(f"{api_url}/sla/status").json()
    assert set(status) >= {"status", "percentage", "target", "data_points", "healthy_points"}
    assert status["target"] == 99.5 and status["status"] in ("meeting", "at_risk", "breached")

    def history() -> dict[str, Any]:
        body = httpx.get(f"{api_url}/monitoring/metrics/history", params={"hours": 1}).json()
        assert body["history"] and any(f"ecp-ai-{tenant}/callbot" in h["data"]["services"] for h in body["history"])
        return dict(body)
    body = eventually(history, what="history with the tenant's services")
    # The shape ECP-AI's data adapter reads (convert_to_ecp_sla_data): an object with `history`.
    assert body["status"] == "success" and body["hours"] == 1 and body["data_points"] == len(body["history"])
    latest = body["history"][-1]
    assert set(latest["data"]["summary"]) >= SUMMARY
    assert dt.datetime.fromisoformat(latest["timestamp"].replace("Z", "+00:00")).tzinfo is not None
    key = f"ecp-ai-{tenant}/callbot"
    narrowed = httpx.get(f"{api_url}/monitoring/metrics/history", params={"hours": 1, "service": key}).json()
    assert narrowed["service_filter"] == key
    assert all(set(h["data"]["services"]) <= {key} for h in narrowed["history"])
    assert any(h["data"]["services"] for h in narrowed["history"])
    report = httpx.get(f"{api_url}/sla/report").json()
    assert report["daily"] and {"period", "availability"} <= set(report["daily"][-1])


async def test_websocket_tenant_filter_gets_only_its_tenant(api_url: str, tenants: list[str]) -> None:
    ws_url = api_url.replace("http://", "ws://")

    async def collect(path: str, count: int) -> list[dict[str, Any]]:
        """The first ``count`` monitoring updates; deploy progress (another test's deploy, the same
        stream's other message type) is left out."""
        updates: list[dict[str, Any]] = []
        async with websockets.connect(f"{ws_url}{path}", open_timeout=10) as ws:
            while len(updates) < count:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 15))
                if msg["type"] != "deployment_progress":
                    updates.append(msg)
        return updates

    async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        return await asyncio.gather(collect(f"/ws/monitoring/{tenants[0]}", 3),
                                    collect(f"/ws/monitoring?tenant_id={tenants[1]}", 3),
                                    collect("/ws/monitoring", 2))
    first, second, everything = await run()
    for messages, tenant in ((first, tenants[0]), (second, tenants[1])):
        for msg in messages:
            assert msg["type"] == "monitoring_update" and msg["tenant_id"] == tenant and msg["timestamp"]
            assert msg["data"]["services"], "updates carry the tenant's services"
            # Exactly this tenant's namespace: tenants[0] is a prefix of tenants[1].
            assert set(msg["data"]["services"]) <= tenant_keys(tenant), (tenant, sorted(msg["data"]["services"]))
    assert len({m["timestamp"] for m in first}) >= 2, "updates keep coming"
    keys = set(everything[-1]["data"]["services"])
    assert keys & tenant_keys(tenants[0]) and keys & tenant_keys(tenants[1])


async def test_no_tenant_filter_lets_a_prefix_colliding_tenant_through(api_url: str, tenants: list[str],
                                                                 settings: ClusterSettings) -> None:
    """tenants[0] is a prefix of tenants[1] (m1a2b3 / m1a2b30): each view holds exactly its own."""
    for tenant in tenants:
        def exact(tenant: str = tenant) -> bool:
            view = httpx.get(f"{api_url}/monitoring/tenant/{tenant}").json()
            also = httpx.get(f"{api_url}/monitoring/health", params={"tenant_id": tenant}).json()
            assert set(view["services"]) == tenant_keys(tenant), sorted(view["services"])
            assert set(also["services"]) == tenant_keys(tenant)
            return True
        eventually(exact, 60, f"{tenant}'s exact services")
        listed = httpx.get(f"{api_url}/k8s/resources", params={"tenant_id": tenant}).json()["resources"]
        assert listed and {r["namespace"] for r in listed} <= {f"ecp-ai-{tenant}", ""}
        assert {r["tenant_id"] for r in listed} == {tenant}
        metrics = httpx.get(f"{api_url}/monitoring/metrics").json()["tenants"]
        assert metrics[tenant]["total_services"] == len(tenant_keys(tenant))

    async def recorded() -> dict[str, set[str]]:
        conn = await asyncpg.connect(settings.database_url)
        try:
            rows = await conn.fetch("SELECT DISTINCT tenant, service FROM sla_samples WHERE tenant = ANY($1)",
                                    tenants)
        finally:
            await conn.close()
        found: dict[str, set[str]] = {}
        for row in rows:
            found.setdefault(row["tenant"], set()).add(row["service"])
        return found
    samples = await recorded()
    for tenant in tenants:  # SLA per tenant sums exactly these rows
        assert samples[tenant] and samples[tenant] <= tenant_keys(tenant)
        status = httpx.get(f"{api_url}/sla/status", params={"tenant_id": tenant}).json()
        assert status["tenant_id"] == tenant and status["data_points"] > 0


def test_a_namespace_a_tenants_deploy_made_is_the_tenants_even_without_labels(
        api_url: str, engine_url: str, kubectl: Any) -> None:
    """Pods created later by hand, in a namespace the tenant's deploy created and whose labels were
    since removed, still belong to the tenant (the store remembers the deploy); a tenant whose id
    is a prefix sees none of them."""
    tenant = f"acme{uuid.uuid4().hex[:4]}-small"
    ns = f"{tenant}-ecp-ai"
    manifest = f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"
    resp = httpx.post(f"{api_url}/k8s/manifest/deploy", json={"manifest": manifest, "tenant_id": tenant}, timeout=60)
    assert resp.status_code == 200, resp.text
    try:
        kubectl("label", "namespace", ns, "ecp.ai/tenant-id-", "tenant-")
        kubectl("create", "deployment", "handmade", "--image=nginx", "-n", ns)

        def seen() -> bool:
            view = httpx.get(f"{api_url}/monitoring/tenant/{tenant}").json()
            assert set(view["services"]) == {f"{ns}/handmade"}
            return True
        eventually(seen, 60, "the hand-made service under its tenant")
        prefix = tenant.removesuffix("-small")
        assert not httpx.get(f"{api_url}/monitoring/tenant/{prefix}").json()["services"]
    finally:
        httpx.delete(f"{api_url}/k8s/resources/tenant/{tenant}", timeout=60)
        kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found")


def test_metrics_use_exporter_names_and_counters_only_grow(engine_url: str, tenants: list[str]) -> None:
    def scrape() -> dict[str, float]:
        values = {}
        for line in httpx.get(f"{engine_url}/metrics").text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values
    first = eventually(lambda: (s := scrape()) and any(tenants[0] in k for k in s) and s, what="tenant metrics")
    cpu = [k for k in first if k.startswith("container_cpu_usage_seconds_total")]
    second = eventually(lambda: (s := scrape()) and any(s.get(k, 0) > first[k] for k in cpu) and s, 30,
                        "the engine's next ticks")
    names = {k.split("{")[0] for k in second}
    assert {"container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
            "container_network_receive_bytes_total", "kube_pod_status_phase", "kube_pod_info", "kube_pod_owner",
            "kube_deployment_status_replicas_available", "kube_pod_container_status_restarts_total",
            "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_POWER_USAGE", "http_requests_total"} <= names
    counters = [k for k in first if k.split("{")[0].endswith("_total") and k in second]
    assert counters
    assert all(second[k] >= first[k] for k in counters)
    grew = [k for k in counters if k.startswith("container_cpu_usage_seconds_total") and second[k] > first[k]]
    assert grew, "CPU counters advance with time"
    gpu = [k for k in second if k.startswith("DCGM_FI_DEV_GPU_UTIL") and f'namespace="ecp-ai-{tenants[0]}"' in k]
    assert len(gpu) == 3 and all('modelName="NVIDIA A100-SXM4-40GB"' in k for k in gpu)


def test_real_prometheus_scrapes_and_answers_promql(prometheus: str, tenants: list[str]) -> None:
    query = "sum by (namespace) (rate(container_cpu_usage_seconds_total[1m]))"

    def answer() -> set[str]:
        found = {r["metric"]["namespace"] for r in promql(prometheus, query) if float(r["value"][1]) > 0}
        assert {f"ecp-ai-{t}" for t in tenants} <= found
        return found
    eventually(answer, 60, "PromQL to see both tenants' namespaces")


def dashboard_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and query variable of a Grafana dashboard."""
    found = [(f"panel {p['title']!r}", t["expr"]) for p in board["panels"] for t in p.get("targets") or []]
    for var in board["templating"]["list"]:
        if var.get("type") == "query":  # label_values(metric, label) is Grafana's; ask PromQL the same
            match = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"]["query"])
            assert match, var
            metric, label = match.groups()
            found.append((f"variable {var['name']}", f"group by ({label}) ({metric})"))
    return found


def test_every_grafana_query_returns_data(prometheus: str, tenants: list[str]) -> None:
    boards = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
    assert {b.stem for b in boards} == {"k8sim-cluster", "k8sim-tenant", "k8sim-service", "k8sim-gpu", "k8sim-sla"}
    values = {"$tenant": tenants[0], "$namespace": f"ecp-ai-{tenants[0]}", "$service": "callbot",
              "$__rate_interval": "1m"}
    queries = []
    for path in boards:
        for where, expr in dashboard_queries(json.loads(path.read_text())):
            for name, value in values.items():
                expr = expr.replace(name, value)
            queries.append((f"{path.stem} {where}", expr))
    assert len(queries) >= 30

    def all_answer() -> list[str]:
        empty = [f"{where}: {expr}" for where, expr in queries if not promql(prometheus, expr)]
        assert not empty, empty
        return [q for q, _ in queries]
    eventually(all_answer, 90, "every dashboard query to return data")


def test_alert_rules_fire_and_are_kept(api_url: str, tenants: list[str]) -> None:
    rule = {"name": f"busy {tenants[0]}", "metric": "requests_per_second", "operator": ">", "threshold": 0,
            "tenant_id": tenants[0], "severity": "critical"}
    created = httpx.post(f"{api_url}/sla/alerts/rules", json=rule)
    assert created.status_code == 201
    rule_id = created.json()["rule"]["id"]
    assert rule_id in {r["id"] for r in httpx.get(f"{api_url}/sla/alerts/rules").json()["rules"]}
    bad = httpx.post(f"{api_url}/sla/alerts/rules", json={**rule, "metric": "nonsense"})
    assert bad.status_code == 422 and bad.json()["status"] == "error"

    def fired() -> list[dict[str, Any]]:
        alerts = httpx.get(f"{api_url}/sla/alerts/history", params={"tenant_id": tenants[0]}).json()["alerts"]
        return [a for a in alerts if a["rule_id"] == rule_id and a["state"] == "firing"]
    alerts = eventually(fired, 30, "the rule to fire")
    assert {a["service"] for a in alerts} <= tenant_keys(tenants[0])
    assert {a["service"] for a in alerts} & tenant_keys(tenants[0], APP), "the busy app services fire"
    for alert in alerts:  # what ECP-AI's alert sync reads
        assert alert["severity"] == "critical" and alert["resolved"] is False and alert["type"] == rule["name"]
        assert dt.datetime.fromisoformat(alert["timestamp"]) == dt.datetime.fromisoformat(alert["fired_at"])
    others = httpx.get(f"{api_url}/sla/alerts/history", params={"tenant_id": tenants[1]}).json()["alerts"]
    assert not [a for a in others if a["rule_id"] == rule_id], "the prefix-colliding tenant sees none of them"
    # The tenant goes away, its services stop serving: every alert of the rule resolves.
    survivor = httpx.get(f"{api_url}/k8s/resources", params={"tenant_id": tenants[1]}).json()["resources"]
    deleted = httpx.delete(f"{api_url}/k8s/resources/tenant/{tenants[0]}", timeout=60)
    assert deleted.status_code == 200
    assert all(r.split("/", 1)[0] in (f"ecp-ai-{tenants[0]}", "") for r in deleted.json()["resources"])
    after = httpx.get(f"{api_url}/k8s/resources", params={"tenant_id": tenants[1]}).json()["resources"]
    assert {r["id"] for r in survivor if r["kind"] != "Pod"} <= {r["id"] for r in after}, \
        "deleting a tenant leaves the prefix-colliding tenant whole"

    def resolved() -> list[dict[str, Any]]:
        alerts = httpx.get(f"{api_url}/sla/alerts/history", params={"tenant_id": tenants[0]}).json()["alerts"]
        mine = [a for a in alerts if a["rule_id"] == rule_id]
        assert mine and all(a["state"] == "resolved" and a["resolved"] is True and a["resolved_at"] >= a["fired_at"]
                            for a in mine)
        return mine
    eventually(resolved, 60, "the alerts to resolve")


async def test_sla_on_a_known_failure_schedule_equals_the_hand_computed_value(settings: ClusterSettings,
                                                                         live_services: Any) -> None:
    """One hour, two services: A serves 100 requests a minute, 40 of them failing in minutes 10-14;
    B serves 50 a minute, all good. Availability = (9000 - 200) / 9000 = 97.78 %: breached; the
    5 bad minutes are 73.3 % available, so 55 of 60 data points are healthy."""
    async def run() -> dict[str, Any]:
        start = dt.datetime(2026, 1, 5, 9, tzinfo=dt.UTC)
        rows = []
        for minute in range(60):
            at = start + dt.timedelta(minutes=minute, seconds=30)
            bad = 40 if 10 <= minute < 15 else 0
            rows += [(at, "ns/a", "t1", 100.0 - bad, 100.0, bad == 0), (at, "ns/b", "t10", 50.0, 50.0, True)]
        async with scratch_pool(settings) as pool, pool.acquire() as conn:
            await store.insert_samples(conn, rows)
            result = (await sla.current(conn, target=99.5, window_s=3600)).as_json()
            result["t1"] = (await sla.current(conn, target=99.5, window_s=3600, tenant="t1")).as_json()
            result["t10"] = (await sla.current(conn, target=99.5, window_s=3600, tenant="t10")).as_json()
        return result

    result = await run()
    assert result["percentage"] == round(100 * 8800 / 9000, 3) == 97.778
    assert result["status"] == "breached"
    assert (result["data_points"], result["healthy_points"]) == (60, 55)
    assert result["burn_rates"]["1h"] == round((200 / 9000) / 0.005, 3)
    assert result["error_budget_remaining"] == round(1 - 200 / (0.005 * 9000), 4)
    # Per tenant, exactly its own service: t1 has A's failures, t10 (whose id t1 prefixes) none.
    assert result["t1"]["percentage"] == round(100 * 5800 / 6000, 3) and result["t1"]["status"] == "breached"
    assert result["t10"]["percentage"] == 100.0 and result["t10"]["status"] == "meeting"


async def test_deploy_progress_reaches_the_tenants_websocket(api_url: str, engine_url: str) -> None:
    tenant = f"d{uuid.uuid4().hex[:5]}"
    ws_url = api_url.replace("http://", "ws://")

    async def run() -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        async with websockets.connect(f"{ws_url}/ws/monitoring/{tenant}", open_timeout=10) as ws:
            async with httpx.AsyncClient(timeout=60) as client:
                resp = await client.post(f"{api_url}/k8s/manifest/deploy?wait=false",
                                         json={"manifest": tenant_files(tenant), "tenant_id": tenant})
                assert resp.status_code == 202
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if msg["type"] == "deployment_progress":
                    events.append(msg)
                    if msg["status"] in ("completed", "failed"):
                        break
        return events

    try:
        events = await run()
    finally:
        httpx.delete(f"{api_url}/k8s/resources/tenant/{tenant}", timeout=60)
    assert events and events[-1]["status"] == "completed"
    assert all(e["tenant_id"] == tenant and e["deployment_id"] == events[0]["deployment_id"] for e in events)
    assert events[0]["status"] == "deploying" and events[-1]["deployed_count"] == len(events[-1]["resources"])
