"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against the real API,
engine, operator and cluster. Screenshots are kept under .artifacts/dashboard/ (K8SIM_ARTIFACTS)."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from k8sim.settings import ROOT

from .conftest import Kubectl, eventually
from .test_metrics_api_healing import PROMETHEUS_ADAPTER_APISERVICE, backend

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("K8SIM_ARTIFACTS", ROOT / ".artifacts")) / "dashboard"
VIEWPORT = {"width": 1366, "height": 768}


def manifest(tenant: str, replicas: int = 2) -> str:
    ns = f"dash-{tenant}"
    labels = {"ecp.ai/tenant-id": tenant, "app": "voicebot"}
    meta = {"name": "voicebot", "namespace": ns}
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"ecp.ai/tenant-id": tenant}}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {**meta, "labels": dict(labels)},
         "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "voicebot"}},
                  "template": {"metadata": {"labels": dict(labels)}, "spec": {"containers": [{
                      "name": "voicebot", "image": "ecp-ai/voicebot:1.4",
                      "resources": {"requests": {"cpu": "250m", "memory": "512Mi"},
                                    "limits": {"cpu": "1", "memory": "1Gi"}}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {**meta, "labels": dict(labels)},
         "spec": {"selector": {"app": "voicebot"}, "ports": [{"port": 8080}]}},
    ]
    return yaml.safe_dump_all(docs, sort_keys=False)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (scripts/install-deps.sh does)")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def tenants(api_url: str, engine_url: str) -> Iterator[list[str]]:
    """The tenant the browser deploys and one whose id extends it (the filters must keep them apart)."""
    base = f"d{uuid.uuid4().hex[:5]}"
    other = f"{base}0"
    resp = httpx.post(f"{api_url}/k8s/manifest/deploy", json={"manifest": manifest(other, 1), "tenant_id": other},
                      timeout=60)
    assert resp.status_code == 200, resp.text
    yield [base, other]
    for tenant in (base, other):
        httpx.delete(f"{api_url}/k8s/resources/tenant/{tenant}", timeout=60)


def open_view(page: Any, link: str, heading: str) -> None:
    """Follow a navigation link and wait until its view replaced the last one: the old view's labels
    (the Tenants view's "Tenant" picker, say) stay in the page until the new view renders."""
    page.get_by_role("link", name=link, exact=True).click()
    page.get_by_role("heading", level=2, name=heading, exact=True).wait_for()


def shot(page: Any, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def test_a_browser_deploys_a_manifest_and_watches_it_run(browser: Any, api_url: str, tenants: list[str],
                                                         tmp_path: Path) -> None:
    tenant, other = tenants
    assert other.startswith(tenant)  # deployed by the fixture: a pod the tenant filter must leave out
    context = browser.new_context(viewport=VIEWPORT, color_scheme="light")
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None)
    page.on("dialog", lambda dialog: dialog.accept())

    # A browser opening the simulator's address lands on the cluster overview.
    page.goto(api_url + "/")
    assert page.url.endswith("/ui/#/overview"), page.url
    page.get_by_role("heading", name="Cluster overview").wait_for()
    page.locator("[data-pool='cpu']").wait_for()
    nodes = httpx.get(f"{api_url}/cluster/capacity", timeout=30).json()["nodes"]
    assert page.locator("table", has_text=f"{len(nodes)} nodes").locator("tbody tr").count() == len(nodes)
    # Nodes over time: the count as 60 columns, a row per Karpenter node and per node that went.
    timeline = page.get_by_role("region", name="Nodes over time")
    timeline.get_by_role("img").wait_for()
    assert timeline.locator(".node-count span").count() == 60
    lives = httpx.get(f"{api_url}/cluster/nodes/history", params={"hours": 6}, timeout=30).json()
    static = [n for n in lives["nodes"] if not n["autoscaled"] and n["deleted_at"] is None]
    assert len(static) >= len([n for n in nodes if not n["name"].startswith("kwok-")]) > 0
    assert f"{len(static)} static-pool nodes still there" in timeline.get_by_role("heading").inner_text()
    moved = [n for n in lives["nodes"] if n["autoscaled"] or n["deleted_at"]]
    assert timeline.locator("caption").inner_text() == f"{len(moved)} autoscaled or gone"
    shot(page, "1-overview")

    # Deploy: a broken manifest is explained per document, field by field, and nothing is applied.
    open_view(page, "Deploy", "Deploy a manifest")
    bad = tmp_path / "broken.yaml"
    bad.write_text(manifest(tenant).replace("replicas: 2", "replicas: -3"))
    page.get_by_label("Manifest file").set_input_files(str(bad))
    page.get_by_label("Tenant id").fill(tenant)
    page.get_by_role("button", name="Validate").click()
    invalid = page.locator("#deploy-result tbody tr", has_text="invalid")
    invalid.wait_for()
    assert invalid.count() == 1
    assert "Deployment" in invalid.inner_text() and "spec.replicas" in invalid.inner_text()
    assert page.locator("#deploy-result tbody tr", has_text="valid").count() == 3
    assert httpx.get(f"{api_url}/k8s/resources", params={"tenant_id": tenant}, timeout=30).json()["count"] == 0

    # The good one passes, deploys, and its progress arrives over the WebSocket.
    good = tmp_path / "voicebot.yaml"
    good.write_text(manifest(tenant))
    page.get_by_label("Manifest file").set_input_files(str(good))
    page.get_by_role("button", name="Validate").click()
    page.get_by_text("All 3 documents pass the cluster's dry run.").wait_for()
    page.get_by_role("button", name="Deploy", exact=True).click()
    page.locator("#deploy-result [role=status] .badge", has_text="completed").wait_for(timeout=60_000)
    rows = page.locator("#deploy-result tbody tr")
    assert rows.count() == 3
    shot(page, "2-deploy")

    # Resources: the tenant's pods become Running in the table; the tenant filter is exact.
    open_view(page, "Resources", "Resources")
    page.get_by_label("Tenant").select_option(tenant)
    page.get_by_label("Kind").select_option("Pod")
    running = page.locator("tbody tr[data-status='Running']")
    eventually(lambda: running.count() == 2, 60, "both pods Running in the table")
    tenant_cells = page.locator("tbody tr td:nth-child(7)").all_inner_texts()
    assert tenant_cells == [tenant, tenant], tenant_cells  # never the colliding tenant's pod
    page.get_by_label("Kind").select_option("")
    # The operator's record of an object, from the table.
    page.get_by_role("button", name=f"History of Deployment dash-{tenant}/voicebot").click()
    history = page.locator("#object-history")
    history.get_by_role("heading", name=f"History of Deployment dash-{tenant}/voicebot").wait_for()
    steps = history.locator("tbody tr")
    eventually(lambda: "created" in steps.first.inner_text() and steps.count() >= 2, 30, "the Deployment's history")
    shot(page, "3-resources")
    history.get_by_role("button", name="Close history").click()
    history.locator("table").wait_for(state="detached")

    # The tenant's dashboard, as ECP-AI links it, shows its service and a chart that gains points.
    page.goto(f"{api_url}/monitoring/tenant/{tenant}")
    assert page.url.endswith(f"/ui/#/tenants/{tenant}"), page.url
    services = page.locator("table", has_text=f"Services of {tenant}")
    services.get_by_role("link", name="voicebot").wait_for(timeout=30_000)
    assert services.locator("tbody tr").count() == 1
    chart = page.locator("figure[data-metric='rps']")
    chart.wait_for()
    first = int(chart.get_attribute("data-points") or 0)
    eventually(lambda: int(chart.get_attribute("data-points") or 0) >= first + 3, 30, "the RPS chart gaining points")
    assert re.search(r"latest [\d,.]+ req/s", chart.inner_text())
    page.get_by_label("Time range").select_option("6")
    page.get_by_text(re.compile(r"points of history over 6 h")).wait_for()
    shot(page, "4-tenant")

    # Delete from the table: the Service goes from the cluster.
    open_view(page, "Resources", "Resources")
    page.get_by_label("Tenant").select_option(tenant)
    page.get_by_role("button", name=f"Delete Service dash-{tenant}/voicebot").click()
    page.get_by_text(re.compile("deleted")).first.wait_for()
    eventually(lambda: not [r for r in httpx.get(f"{api_url}/k8s/resources", params={"tenant_id": tenant},
                                                 timeout=30).json()["resources"] if r["kind"] == "Service"],
               30, "the Service deleted")

    # SLA, alerts (a rule created and deleted in the page) and scenarios (started and ended).
    open_view(page, "SLA", "Service level")
    page.locator("[data-sla='gauge'] meter").wait_for()
    page.get_by_role("heading", name="Burn rates").wait_for()
    shot(page, "5-sla")
    open_view(page, "Alerts", "Alerts")
    rule = f"dash rule {tenant}"
    page.get_by_label("Name", exact=True).fill(rule)
    page.get_by_label("Threshold").fill("5000")
    page.get_by_label("Tenant id").fill(tenant)
    page.get_by_role("button", name="Create rule").click()
    page.get_by_role("button", name=f"Delete rule {rule}").wait_for()
    assert any(r["name"] == rule and r["tenant_id"] == tenant
               for r in httpx.get(f"{api_url}/sla/alerts/rules", timeout=30).json()["rules"])
    shot(page, "6-alerts")
    page.get_by_role("button", name=f"Delete rule {rule}").click()
    page.get_by_role("button", name=f"Delete rule {rule}").wait_for(state="detached")

    open_view(page, "Scenarios", "Failure scenarios")
    name = f"spike-{tenant}"
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Namespace", exact=True).fill(f"dash-{tenant}")
    page.get_by_label("Type").select_option("LoadSpike")
    page.get_by_label("Parameters").fill('{"factor": 3}')
    page.get_by_role("button", name="Start").click()
    row = page.locator("tbody tr", has_text=name)
    row.locator(".badge", has_text="Active").wait_for(timeout=30_000)
    shot(page, "7-scenarios")
    page.get_by_role("button", name=f"End scenario {name}").click()
    row.wait_for(state="detached", timeout=30_000)

    # Readable on a 1366x768 laptop in both themes: no sideways scrolling, every control labelled.
    for view in ("overview", f"tenants/{tenant}", "resources", "deploy", "sla", "alerts", "scenarios"):
        page.goto(f"{api_url}/ui/#/{view}")
        page.get_by_role("heading", level=2).wait_for()
        page.wait_for_timeout(300)
        assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORT["width"], view
        unlabelled = page.evaluate("""[...document.querySelectorAll('input, select, textarea, button')]
            .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.textContent.trim())
            .map(el => el.outerHTML.slice(0, 80))""")
        assert unlabelled == [], (view, unlabelled)
    page.reload()
    page.get_by_role("heading", level=2).wait_for()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "k8s-simulator"
    page.get_by_role("button", name="Switch between light and dark theme").click()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    page.goto(f"{api_url}/ui/#/tenants/{tenant}")
    page.locator("figure[data-metric='rps']").wait_for()
    page.wait_for_timeout(1500)
    shot(page, "8-tenant-dark")
    context.close()
    assert problems == [], problems
    taken = {p.stem for p in ARTIFACTS.glob("*.png")}
    assert {"1-overview", "2-deploy", "3-resources", "4-tenant", "5-sla", "6-alerts", "7-scenarios",
            "8-tenant-dark"} <= taken, taken
    print("screenshots:", *sorted(str(p) for p in ARTIFACTS.glob("*.png")), sep="\n  ")


def test_programs_still_get_json_where_browsers_get_the_dashboard(api_url: str, tenants: list[str]) -> None:
    tenant = tenants[1]
    for accept in ("application/json", "*/*", None):
        headers = {"Accept": accept} if accept else {}
        root = httpx.get(f"{api_url}/", headers=headers, timeout=30)
        assert root.status_code == 200 and root.json()["name"] == "k8s-simulator"
        doc = eventually(lambda h=headers: httpx.get(f"{api_url}/monitoring/tenant/{tenant}", headers=h, timeout=30)
                         .raise_for_status().json(), 30, "the tenant document")
        assert doc["tenant_id"] == tenant
    html = httpx.get(f"{api_url}/monitoring/tenant/{tenant}", headers={"Accept": "text/html,*/*;q=0.8"}, timeout=30)
    assert html.status_code == 303 and html.headers["location"] == f"/ui/#/tenants/{tenant}"
    page = httpx.get(f"{api_url}/ui/", timeout=30)
    assert page.status_code == 200 and "k8s-simulator" in page.text
    for asset in re.findall(r'(?:src|href)="(vendor/[^"]+|app\.[a-z]+)"', page.text):
        assert httpx.get(f"{api_url}/ui/{asset}", timeout=30).status_code == 200, asset
    assert "cdn" not in page.text.lower() and "https://" not in page.text


def test_a_banner_names_the_backend_that_holds_metrics_k8s_io(browser: Any, api_url: str, engine_url: str,
                                                             kubectl: Kubectl) -> None:
    """kube-prometheus' adapter APIService repoints metrics.k8s.io: the engine's snapshot names it and
    every view shows a banner until it is gone (removed here before the engine's 30 s grace ends)."""
    context = browser.new_context(viewport=VIEWPORT, color_scheme="light")
    page = context.new_page()
    page.goto(api_url + "/ui/#/overview")
    page.get_by_role("heading", name="Cluster overview").wait_for()
    banner = page.locator("#banner")
    assert banner.is_hidden()
    kubectl("apply", "-f", "-", stdin=PROMETHEUS_ADAPTER_APISERVICE)
    try:
        page.locator("#banner", has_text="v1beta1.metrics.k8s.io is served by monitoring/prometheus-adapter") \
            .wait_for(timeout=20_000)
        shot(page, "9-foreign-metrics-banner")
    finally:
        if backend(kubectl, "v1beta1.metrics.k8s.io")[0] == "monitoring/prometheus-adapter":
            kubectl("delete", "apiservice", "v1beta1.metrics.k8s.io", "--ignore-not-found")
    banner.wait_for(state="hidden", timeout=20_000)
    context.close()


def shown_usd(text: str, expected: float) -> None:
    """A figure as a cost card shows it ($1,234.56, $0.0042, or "< $0.0001" for a cost too small for four places)
    is the API's figure to the places shown."""
    if text.startswith("< $"):
        assert 0 < expected < float(text.removeprefix("< $")), (text, expected)
        return
    places = 2 if expected >= 1 else 4
    assert float(text.removeprefix("$").replace(",", "")) == pytest.approx(expected, abs=0.5 * 10**-places + 1e-12), (
        text, expected)


def test_the_tenant_view_shows_what_the_tenant_costs(browser: Any, api_url: str, tenants: list[str]) -> None:
    """The tenant view's cost cards are GET /cluster/cost?aggregate=tenant's figures for the tenant's exact id,
    over the windows the cards name (the page's own, asked again): the tenant whose id the other extends is not
    charged the other's pods."""
    base, other = tenants  # other's pod runs from the fixture on; base's only after the test above deployed it

    def allocation(window: str, tenant: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
        doc = httpx.get(f"{api_url}/cluster/cost", params={"window": window, "aggregate": "tenant"},
                        timeout=60).raise_for_status().json()
        return doc, doc["data"][0].get(tenant)
    eventually(lambda: (allocation("1h", other)[1] or {}).get("totalCost", 0) > 0, 60,
               f"the operator to record {other}'s pod and the cost API to charge it")
    context = browser.new_context(viewport=VIEWPORT, color_scheme="light")
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None)
    for tenant in (other, base):
        page.goto(f"{api_url}/ui/#/tenants/{tenant}")
        cards = page.get_by_role("region", name="Cost of the tenant")
        total, hourly = cards.locator("[data-card='cost-window']"), cards.locator("[data-card='cost-hourly']")
        total.wait_for(timeout=30_000)
        assert total.locator(".label").inner_text() == "Cost over the last 1 hour"
        # Over the window the card names: the tenant's totalCost, shown to the places it is given in.
        _, mine = allocation(str(total.get_attribute("data-window")), tenant)
        start, end = (int(x) for x in str(total.get_attribute("data-window")).split(","))
        assert end - start == 3600
        expected = mine["totalCost"] if mine else 0.0
        assert float(str(total.get_attribute("data-usd"))) == expected
        shown_usd(total.locator(".value").inner_text(), expected)
        # $/h now: its cost over the last five minutes per hour its pods ran in them (0 when none runs now).
        doc, mine = allocation(str(hourly.get_attribute("data-window")), tenant)
        start, end = (int(x) for x in str(hourly.get_attribute("data-window")).split(","))
        assert end - start == 300
        rate = (mine["totalCost"] * 60 / mine["minutes"]
                if mine and mine["end"] == doc["window"]["end"] and mine["minutes"] > 0 else 0.0)
        assert float(str(hourly.get_attribute("data-usd"))) == pytest.approx(rate, rel=1e-12, abs=1e-12)
        text = hourly.locator(".value").inner_text()
        assert text.endswith("/h"), text
        shown_usd(text.removesuffix("/h"), rate)
        if tenant == other:
            assert expected > 0 and rate > 0  # its pod is running: a figure that could be wrong, not a zero
    # The time range picks the window of the total.
    page.get_by_label("Time range").select_option("6")
    page.locator("[data-card='cost-window'] .label", has_text="Cost over the last 6 hours").wait_for()
    total = page.locator("[data-card='cost-window']")
    start, end = (int(x) for x in str(total.get_attribute("data-window")).split(","))
    assert end - start == 6 * 3600
    assert float(str(total.get_attribute("data-usd"))) == (allocation(f"{start},{end}", base)[1] or {}).get(
        "totalCost", 0.0)
    context.close()
    assert problems == [], problems
