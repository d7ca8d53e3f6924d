"""The HTTP API over the real cluster and store, run as a separate process like production."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from k8sim.local import build, layout, services
from k8sim.settings import ROOT
from tests.ecp_ai import object_count, tenant_files, tenant_manifest

from .conftest import Kubectl, eventually, free_port, process, started

pytestmark = pytest.mark.integration

CORPUS = sorted(Path(os.environ.get("K8SIM_CORPUS", ROOT.parent / "shared" / "corpus")).glob("*.yaml"))


def post(url: str, path: str, timeout: float = 60, **body: Any) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=timeout)


def test_root_health_and_openapi(api_url: str) -> None:
    assert httpx.get(f"{api_url}/").status_code == 200
    assert httpx.get(f"{api_url}/health").json()["status"] == "healthy"
    spec = httpx.get(f"{api_url}/openapi.json").json()
    for path in ("/k8s/manifest/parse", "/k8s/manifest/deploy", "/k8s/manifest/upload", "/k8s/resources",
                 "/k8s/resources/{namespace}/{kind}/{name}", "/k8s/resources/tenant/{tenant_id}",
                 "/k8s/service/{name}"):
        assert path in spec["paths"], path
    assert httpx.get(f"{api_url}/docs").status_code == 200
    cors = httpx.options(f"{api_url}/health", headers={"Origin": "http://localhost:3000",
                                                        "Access-Control-Request-Method": "GET"})
    assert cors.headers["access-control-allow-origin"] == "http://localhost:3000"


def test_parse_accepts_strings_file_objects_and_skips_empty_documents(api_url: str) -> None:
    tenant = f"p{uuid.uuid4().hex[:6]}"
    for manifest in (tenant_manifest(tenant), tenant_files(tenant)):
        body = post(api_url, "/k8s/manifest/parse", manifest=manifest, tenant_id=tenant).json()
        assert body["status"] == "success", body
        assert body["count"] == object_count(tenant) == len(body["resources"])
        assert body["valid"] and body["tenant_id"] == tenant
    crlf = "apiVersion: v1\r\nkind: ConfigMap\r\nmetadata:\r\n  name: a\r\n---\r\n# only a comment\r\n---\r\n"
    kyaml = ('{ apiVersion: "v1", kind: "List", '
             'items: [{ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "b" } }] }')
    body = post(api_url, "/k8s/manifest/parse", manifest=crlf + "---\n" + kyaml).json()
    assert [r["metadata"]["name"] for r in body["resources"]] == ["a", "b"]


def test_parse_reports_what_the_apiserver_would_say(api_url: str) -> None:
    bad = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: -1\n"
    body = post(api_url, "/k8s/manifest/parse", manifest=bad).json()
    assert body["status"] == "success" and body["valid"] is False
    fields = {e["field"] for e in body["errors"]}
    assert "spec.replicas" in fields and all(e["kind"] == "Deployment" and e["index"] == 0 for e in body["errors"])
    strict = post(api_url, "/k8s/manifest/parse?strict=true", manifest=bad)
    assert strict.status_code == 422 and strict.json()["status"] == "error"
    assert "spec.replicas" in strict.json()["message"]


def resource_uids(kubectl: Kubectl, namespace: str) -> dict[str, str]:
    items = kubectl.json("get", "deployments,services,configmaps,pvc,hpa,networkpolicies,servicemonitors,"
                         "verticalpodautoscalers", "-n", namespace)["items"]
    return {f"{i['kind']}/{i['metadata']['name']}": i["metadata"]["uid"] for i in items}


def test_ecp_ai_tenant_deploys_ready_is_idempotent_and_deletes_cleanly(api_url: str, kubectl: Kubectl) -> None:
    tenant = f"t{uuid.uuid4().hex[:6]}"
    ns = f"ecp-ai-{tenant}"
    first = post(api_url, "/k8s/manifest/deploy", manifest=tenant_files(tenant), tenant_id=tenant,
                 deployment_mode="demo")
    body = first.json()
    assert first.status_code == 200, body
    assert body["status"] == "completed" and body["failed_count"] == 0
    assert body["deployed_count"] == object_count(tenant) == len(body["resources"])
    assert body["tenant_id"] == tenant and str(uuid.UUID(body["deployment_id"])) == body["deployment_id"]
    for res in body["resources"]:
        assert res["id"] == f"{res['namespace']}/{res['kind']}/{res['name']}"
        assert res["ready"] and res["deployment_time"] is not None
        assert dt.datetime.fromisoformat(res["created_at"].replace("Z", "+00:00")) <= dt.datetime.now(dt.UTC)
    # The cluster agrees: every workload available, claims bound, GPU pods on matching GPU nodes.
    for dep in kubectl.json("get", "deployments", "-n", ns)["items"]:
        assert dep["status"].get("availableReplicas") == dep["spec"]["replicas"], dep["metadata"]["name"]
        assert dep["metadata"]["labels"]["ecp.ai/tenant-id"] == tenant
    assert {p["status"]["phase"] for p in kubectl.json("get", "pvc", "-n", ns)["items"]} == {"Bound"}
    for pod in kubectl.json("get", "pods", "-n", ns, "-l", "app=tts-server")["items"]:
        assert kubectl.json("get", "node", pod["spec"]["nodeName"])["metadata"]["labels"]["accelerator"] == "nvidia-t4"
    uids = resource_uids(kubectl, ns)

    listed = httpx.get(f"{api_url}/k8s/resources", params={"tenant_id": tenant}).json()
    assert listed["status"] == "completed" and listed["deployment_id"] == body["deployment_id"]
    kinds = {r["kind"] for r in listed["resources"]}
    assert {"Namespace", "Deployment", "Pod", "Service", "HorizontalPodAutoscaler", "ServiceMonitor"} <= kinds
    pods = httpx.get(f"{api_url}/k8s/resources", params={"namespace": ns, "kind": "Pod"}).json()["resources"]
    assert len(pods) == sum(d["spec"]["replicas"] for d in kubectl.json("get", "deployments", "-n", ns)["items"])

    for _ in range(3):  # ECP-AI retries with the same manifest, here as one string
        again = post(api_url, "/k8s/manifest/deploy", manifest=tenant_manifest(tenant), tenant_id=tenant)
        assert again.status_code == 200 and again.json()["status"] == "completed", again.text
        assert again.json()["deployment_id"] != body["deployment_id"]
    assert resource_uids(kubectl, ns) == uids, "a redeploy converges; it never recreates"

    gone = httpx.delete(f"{api_url}/k8s/resources/tenant/{tenant}", timeout=10)
    assert gone.status_code == 200, gone.text
    body = gone.json()
    assert body["deleted_count"] + body["pending_count"] == len(body["resources"]) > 0, body
    eventually(lambda: cluster_has_nothing_of(kubectl, tenant, ns), 90, "the tenant's deletion to finish")
    assert httpx.delete(f"{api_url}/k8s/resources/tenant/{tenant}", timeout=60).status_code == 404


def cluster_has_nothing_of(kubectl: Kubectl, tenant: str, ns: str) -> bool:
    out = kubectl("get", "namespace", ns, "--ignore-not-found", "-o", "name")
    labelled = kubectl.json("get", "all,configmaps,pvc,networkpolicies,servicemonitors", "-A",
                            "-l", f"ecp.ai/tenant-id={tenant}")["items"]
    return out.strip() == "" and labelled == []


def test_wait_false_answers_at_once_and_progress_is_visible(api_url: str, kubectl: Kubectl) -> None:
    tenant = f"w{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    resp = post(api_url, "/k8s/manifest/deploy?wait=false", manifest=tenant_manifest(tenant), tenant_id=tenant)
    assert resp.status_code == 202 and resp.json()["status"] == "deploying"
    assert time.monotonic() - started < 5
    seen: list[str] = []

    def finished() -> str | None:
        seen.append(httpx.get(f"{api_url}/k8s/resources", params={"tenant_id": tenant}).json()["status"])
        return seen[-1] if seen[-1] in ("completed", "failed") else None
    assert eventually(finished, 60, "the deploy to finish") == "completed"
    assert set(seen) & {"pending", "deploying"}, seen
    httpx.delete(f"{api_url}/k8s/resources/tenant/{tenant}", timeout=60)


def test_service_rollout_and_single_deletes(api_url: str, kubectl: Kubectl, namespace: str) -> None:
    manifest = yaml.safe_dump_all([
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "callbot", "namespace": namespace},
         "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "callbot"}},
                  "template": {"metadata": {"labels": {"app": "callbot"}},
                               "spec": {"containers": [{"name": "c", "image": "ecp/callbot:2.0"}]}}}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "one", "namespace": namespace},
         "spec": {"containers": [{"name": "c", "image": "x"}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "two", "namespace": namespace},
         "spec": {"containers": [{"name": "c", "image": "x"}]}},
    ])
    assert post(api_url, "/k8s/manifest/deploy", manifest=manifest).json()["status"] == "completed"
    svc = httpx.get(f"{api_url}/k8s/service/callbot", params={"namespace": namespace}).json()
    assert svc["desiredImage"] == svc["currentImage"] == "ecp/callbot:2.0"
    assert svc["replicas"] == {"desired": 3, "ready": 3, "available": 3, "updated": 3}
    assert svc["deploymentStatus"] == "completed" and svc["lastUpdated"]
    assert len(svc["pods"]) == 3 and all(p["ready"] and p["node"] and p["status"] == "Running" for p in svc["pods"])
    assert httpx.get(f"{api_url}/k8s/service/nothing", params={"namespace": namespace}).status_code == 404

    guide = httpx.delete(f"{api_url}/k8s/resources/one", params={"namespace": namespace, "kind": "Pod"})
    assert guide.status_code == 200 and guide.json()["id"] == f"{namespace}/Pod/one"
    ecp = httpx.delete(f"{api_url}/k8s/resources/{namespace}/Pod/two")
    assert ecp.status_code == 200
    assert httpx.delete(f"{api_url}/k8s/resources/{namespace}/Gizmo/two").status_code == 404
    # A pod is gone once its kubelet (KWOK) confirms; until then a second delete finds it terminating.
    eventually(lambda: not kubectl("get", "pods", "one", "two", "-n", namespace, "--ignore-not-found", "-o",
                                   "name").strip(), 30, "deleted pods to go away")
    assert httpx.delete(f"{api_url}/k8s/resources/{namespace}/Pod/two").status_code == 404


BOMB = "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{c}: &{c} [{','.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=False))

HOSTILE: list[tuple[str, Any, int]] = [
    ("malformed yaml", {"manifest": "kind: Pod\nmetadata: [unclosed\n"}, 400),
    ("not a mapping", {"manifest": "- just\n- a list\n"}, 422),
    ("missing name", {"manifest": "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n"}, 422),
    ("wrong type manifest", {"manifest": 12345}, 422),
    ("wrong type tenant", {"manifest": "a: b", "tenant_id": ["x"]}, 422),
    ("no manifest", {"tenant_id": "x"}, 422),
    ("alias bomb", {"manifest": BOMB}, 413),
    ("deep nesting", {"manifest": "a: " + "[" * 200 + "]" * 200}, 400),
    ("too many documents", {"manifest": "---\na: 1\n" * 1500}, 413),
    ("recursive alias", {"manifest": "a: &a [*a]\n"}, 400),
    ("empty", {"manifest": "---\n# nothing\n---\n"}, 422),
]


@pytest.mark.parametrize(("name", "body", "status"), HOSTILE, ids=[h[0] for h in HOSTILE])
@pytest.mark.parametrize("path", ["/k8s/manifest/parse", "/k8s/manifest/deploy"])
def test_hostile_input_gets_a_clear_4xx(api_url: str, path: str, name: str, body: Any, status: int) -> None:
    resp = httpx.post(f"{api_url}{path}", json=body, timeout=30)
    assert resp.status_code == status, resp.text
    assert resp.json()["status"] == "error" and resp.json()["message"]


def test_oversized_bodies_and_non_utf8_uploads_are_refused(api_url: str) -> None:
    big = httpx.post(f"{api_url}/k8s/manifest/parse", content=b'{"manifest": "' + b"x" * (9 * 1024 * 1024) + b'"}',
                     headers={"content-type": "application/json"}, timeout=30)
    assert big.status_code == 413 and big.json()["status"] == "error"
    latin = httpx.post(f"{api_url}/k8s/manifest/upload", files={"file": ("m.yaml", "name: caf\xe9".encode("latin-1"))})
    assert latin.status_code == 400 and "UTF-8" in latin.json()["message"]
    good = httpx.post(f"{api_url}/k8s/manifest/upload", data={"tenant_id": "u1"},
                      files={"file": ("m.yaml", b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: up\n")})
    assert good.status_code == 200 and good.json()["count"] == 1 and good.json()["tenant_id"] == "u1"
    garbage = httpx.post(f"{api_url}/k8s/manifest/parse", content=b"\xff\xfe{not json",
                         headers={"content-type": "application/json"})
    assert garbage.status_code == 400 and garbage.json()["status"] == "error"


def test_an_invalid_object_means_nothing_is_applied(api_url: str, kubectl: Kubectl, namespace: str) -> None:
    manifest = (f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: innocent\n  namespace: {namespace}\n---\n"
                f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: broken\n  namespace: {namespace}\n"
                "spec:\n  replicas: -3\n---\napiVersion: example.com/v1\nkind: Gizmo\nmetadata:\n  name: g\n")
    resp = post(api_url, "/k8s/manifest/deploy", manifest=manifest)
    assert resp.status_code == 422
    errors = resp.json()["errors"]
    assert {(e["kind"], e["index"]) for e in errors} >= {("Deployment", 1), ("Gizmo", 2)}
    assert any("Gizmo" in e["message"] for e in errors)
    assert kubectl("get", "configmap", "innocent", "-n", namespace, "--ignore-not-found", "-o", "name") == ""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_memory_stays_bounded_under_hostile_input(api_url: str, operator_process: Any) -> None:
    port = int(api_url.rsplit(":", 1)[1])
    pid = int(subprocess.run(["sh", "-c", f"ss -ltnpH 'sport = :{port}' | grep -o 'pid=[0-9]*' | head -1"],
                             capture_output=True, text=True).stdout.strip().split("=")[1])
    before = rss_kib(pid)
    for _ in range(20):
        httpx.post(f"{api_url}/k8s/manifest/parse", json={"manifest": BOMB})
        httpx.post(f"{api_url}/k8s/manifest/parse", json={"manifest": "x: " + "y" * 4_000_000})
    grown_mib = (rss_kib(pid) - before) / 1024
    assert grown_mib < 150, f"API grew by {grown_mib:.0f} MiB"


#: The corpus files 1.36.3 refuses with the default pools: removed APIs, namespaces or PriorityClasses
#: the file does not make, IPv6, a malformed Secret or affinity (the dry run); PVCs of a class or name that
#: does not exist, selectors and extended resources no node (nor any NodePool) offers, an HPA whose
#: target the file lacks (never ready). Every other file deploys.
REFUSED = {
    "admin__resource__memory-defaults.yaml": "dry run",
    "application__cassandra__cassandra-statefulset.yaml": "not ready",
    "application__hpa__php-apache.yaml": "not ready",
    "application__job__cronjob.yaml": "dry run",
    "controllers__hpa-rs.yaml": "not ready",
    "controllers__statefulset.yaml": "not ready",
    "pods__pod-nginx.yaml": "not ready",
    "pods__pod-with-node-affinity.yaml": "dry run",
    "pods__pod-with-pod-affinity.yaml": "not ready",
    "pods__qos__qos-pod.yaml": "dry run",
    "pods__resource__extended-resource-pod.yaml": "not ready",
    "pods__storage__pv-pod.yaml": "not ready",
    "policy__high-priority-pod.yaml": "dry run",
    "secret__tls-auth-secret.yaml": "dry run",
    "service__networking__dual-stack-prefer-ipv6-lb-svc.yaml": "dry run",
}
#: Applied, then deleted by the token controller, since its ServiceAccount (`sa-name`) is not in the file:
#: whether the deploy's wait sees it before that deletion is the cluster's race (a fresh cluster's controller
#: is quicker), so either answer is right for it, and only it.
RACING = {"secret__serviceaccount-token-secret.yaml": "not ready"}

async def test_every_corpus_file_parses_and_deploys_or_says_truly_why(api_url: str, kubectl: Kubectl) -> None:
    assert len(CORPUS) == 78
    outcomes: dict[str, tuple[int, dict[str, Any]]] = {}
    texts = {path: path.read_text() for path in CORPUS}
    # Each file gets a namespace of its own (like `kubectl -n`): one file's ResourceQuota or
    # LimitRange must not decide whether another file deploys.
    spaces = {path: f"corpus-{i}" for i, path in enumerate(CORPUS)}
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(
        [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in spaces.values()]))

    async def run() -> None:
        sem = asyncio.Semaphore(8)
        async with httpx.AsyncClient(base_url=api_url, timeout=90) as client:
            async def one(path: Path) -> None:
                async with sem:
                    body = {"manifest": texts[path], "tenant_id": "corpus", "namespace": spaces[path]}
                    parsed = (await client.post("/k8s/manifest/parse", json=body)).json()
                    assert parsed["status"] == "success", (path.name, parsed)
                    resp = await client.post("/k8s/manifest/deploy?timeout=20", json=body)
                    outcomes[path.name] = (resp.status_code, resp.json())
            # Definitions first, as a user would apply them: the custom resources of one file
            # need the CRD of another.
            crds = [p for p in CORPUS if "kind: CustomResourceDefinition" in texts[p]]
            await asyncio.gather(*(one(p) for p in crds))
            await asyncio.gather(*(one(p) for p in CORPUS if p not in crds))

    try:
        await run()
        check_corpus_outcomes(outcomes, kubectl, spaces)
    finally:
        httpx.delete(f"{api_url}/k8s/resources/tenant/corpus", timeout=120)
        # Wait (bounded) for the 78 namespaces to go: their deletion is heavy work for the controllers,
        # and the next test must not share the machine with it.
        kubectl("delete", "namespace", *spaces.values(), "--ignore-not-found", "--timeout=180s")


def check_corpus_outcomes(outcomes: dict[str, tuple[int, dict[str, Any]]], kubectl: Kubectl,
                          spaces: dict[Path, str]) -> None:
    deployed = 0
    for name, (status, body) in outcomes.items():
        assert status in (200, 422), (name, status, body)
        if status == 200:
            deployed += 1
            assert body["status"] == "completed" and body["failed_count"] == 0
            continue
        assert body["message"], name
        if body.get("errors"):  # rejected by the dry run: the apiserver itself agrees
            path = next(p for p in CORPUS if p.name == name)
            check = subprocess.run([*kubectl_cmd(kubectl), "apply", "--dry-run=server", "-n", spaces[path], "-f",
                                    str(path)], capture_output=True, text=True)
            assert check.returncode != 0, f"{name}: we refused it but kubectl's server dry run accepts it"
        else:  # applied, then some resource did not become ready: each failure says why
            failed = [r for r in body["resources"] if not r["ready"]]
            assert failed, (name, body)
            for resource in failed:  # the cluster's own words, not just "not ready"
                assert re.search(r"\(status \w+: \w+", resource["reason"]), (name, resource["reason"])
    refused = {name: "dry run" if body.get("errors") else "not ready"
               for name, (status, body) in outcomes.items() if status != 200}
    for name, how in RACING.items():
        if refused.get(name) == how:
            del refused[name]
    assert refused == REFUSED, "the corpus files the cluster refuses, and how, are known exactly"
    assert len(outcomes) == len(CORPUS)


def kubectl_cmd(kubectl: Kubectl) -> list[str]:
    return [build.kubectl_binary(kubectl.settings), "--kubeconfig", str(kubectl.settings.kubeconfig)]


async def test_ecp_ai_style_client(api_url: str) -> None:
    """The client ECP-AI uses: async, 30 s timeout, 20 connections, raise_for_status on every call."""
    tenant = f"c{uuid.uuid4().hex[:6]}"

    async def run() -> None:
        limits = httpx.Limits(max_connections=20)
        async with httpx.AsyncClient(base_url=api_url, timeout=30, limits=limits) as client:
            async def call(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
                resp = await client.request(method, path, **kwargs)
                try:
                    resp.raise_for_status()
                except httpx.HTTPStatusError as exc:
                    exc.add_note(resp.text[:3000])  # what failed, when it does
                    raise
                return dict(resp.json())

            body = {"manifest": tenant_manifest(tenant), "tenant_id": tenant, "deployment_mode": "demo"}
            parses = await asyncio.gather(*(call("POST", "/k8s/manifest/parse", json=body) for _ in range(20)))
            assert all(p["status"] == "success" for p in parses)
            deployed = await call("POST", "/k8s/manifest/deploy", json=body)
            assert deployed["status"] == "completed" and deployed["deployed_count"] == object_count(tenant)
            polls = await asyncio.gather(*(call("GET", "/k8s/resources", params={"tenant_id": tenant})
                                           for _ in range(20)))
            assert {p["status"] for p in polls} == {"completed"}
            await call("DELETE", f"/k8s/resources/tenant/{tenant}")
            with pytest.raises(httpx.HTTPStatusError):
                await call("POST", "/k8s/manifest/deploy", json={"manifest": "kind: [", "tenant_id": tenant})

    await run()


def test_postgres_outage_gives_503_not_500_and_recovers(api_url: str, engine_url: str, settings: Any) -> None:
    services.postgres_down(settings)
    try:
        health = httpx.get(f"{api_url}/health", timeout=10)
        assert health.status_code == 503 and health.json()["checks"]["postgresql"] != "ok"

        def sla_unknown() -> bool:  # the engine cannot read its samples: it must not claim 100 %
            summary = httpx.get(f"{api_url}/monitoring/health", timeout=10).json()["summary"]
            assert summary["sla_percentage"] is None and summary["sla_status"] == "unknown", summary
            return bool(summary["degraded"])
        eventually(sla_unknown, 30, "the monitoring summary to admit the SLA is unknown")
        tenant_view = httpx.get(f"{api_url}/monitoring/tenant/anyone", timeout=10)
        assert tenant_view.status_code == 200 and tenant_view.json()["summary"]["sla_percentage"] is None
        listing = httpx.get(f"{api_url}/k8s/resources", params={"tenant_id": "nobody"}, timeout=10)
        assert listing.status_code == 200, "listing answers from the cluster alone"
        deploy = post(api_url, "/k8s/manifest/deploy",
                      manifest="apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: during-outage\n")
        assert deploy.status_code == 503 and deploy.json()["status"] == "error"
    finally:
        services.postgres_up(settings)
    eventually(lambda: httpx.get(f"{api_url}/health", timeout=10).status_code == 200, 30, "the API to recover")
    redeploy = post(api_url, "/k8s/manifest/deploy",
                    manifest="apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: after-outage\n")
    assert redeploy.status_code == 200, redeploy.text
    httpx.delete(f"{api_url}/k8s/resources/default/ConfigMap/after-outage")
    eventually(lambda: httpx.get(f"{api_url}/monitoring/health", timeout=10).json()["summary"]["sla_percentage"]
               is not None, 30, "the SLA to be measured again")


async def test_ecp_ai_delete_deployment_replayed_removes_the_namespace_too(api_url: str, kubectl: Kubectl) -> None:
    """ECP-AI's K8sSimulatorClient.delete_deployment, request for request: list the tenant's resources,
    then DELETE /k8s/resources/{item.get("namespace", "default")}/{kind}/{name} for each; cluster-scoped
    items are listed with namespace "" so it sends /k8s/resources//Namespace/<name>."""
    tenant = f"del{uuid.uuid4().hex[:5]}"
    ns = f"ecp-ai-{tenant}"
    manifest = (f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n---\n"
                f"apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {ns}-reader\n"
                "rules: [{apiGroups: [''], resources: [pods], verbs: [get]}]\n---\n"
                f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  namespace: {ns}\n")
    assert post(api_url, "/k8s/manifest/deploy", manifest=manifest, tenant_id=tenant).status_code == 200

    async def replay() -> tuple[int, list[str]]:
        async with httpx.AsyncClient(timeout=30) as client:
            resources = (await client.get(f"{api_url}/k8s/resources", params={"tenant_id": tenant})).json()
            deleted, urls = 0, []
            for resource in resources["resources"]:
                namespace = resource.get("namespace", "default")
                url = f"{api_url}/k8s/resources/{namespace}/{resource.get('kind', '')}/{resource.get('name', '')}"
                urls.append(url)
                if (await client.delete(url)).status_code == 200:
                    deleted += 1
            return deleted, urls
    deleted, urls = await replay()
    assert f"{api_url}/k8s/resources//Namespace/{ns}" in urls
    assert f"{api_url}/k8s/resources//ClusterRole/{ns}-reader" in urls
    assert deleted == len(urls) == 3
    gone = kubectl("get", "namespace", ns, "clusterrole", f"{ns}-reader", "--ignore-not-found", "-o", "name")
    assert f"clusterrole.rbac.authorization.k8s.io/{ns}-reader" not in gone
    eventually(lambda: not kubectl("get", "namespace", ns, "--ignore-not-found", "-o", "name").strip(), 60,
               "the tenant's namespace to be gone")
    placeholder = httpx.delete(f"{api_url}/k8s/resources/-/Namespace/{ns}")
    assert placeholder.status_code == 404, "a placeholder segment is ignored for cluster-scoped kinds"


def test_not_ready_objects_say_why_as_kubectl_would(api_url: str, kubectl: Kubectl) -> None:
    tenant = f"why{uuid.uuid4().hex[:5]}"
    ns = f"ecp-ai-{tenant}"
    gpu_hog = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "gpu-hog", "namespace": ns},
               "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "gpu-hog"}},
                        "template": {"metadata": {"labels": {"app": "gpu-hog"}}, "spec": {
                            "containers": [{"name": "c", "image": "x", "resources": {
                                "limits": {"nvidia.com/gpu": "64"}}}]}}}}
    database = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "database", "namespace": ns},
                "spec": {"replicas": 1, "serviceName": "database", "selector": {"matchLabels": {"app": "db"}},
                         "template": {"metadata": {"labels": {"app": "db"}}, "spec": {
                             "serviceAccountName": "database", "containers": [{"name": "c", "image": "x"}]}}}}
    manifest = yaml.safe_dump_all([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                                   gpu_hog, database])
    try:
        resp = httpx.post(f"{api_url}/k8s/manifest/deploy?timeout=8", json={"manifest": manifest,
                                                                           "tenant_id": tenant}, timeout=60)
        assert resp.status_code == 422, resp.text
        reasons = {r["name"]: r["reason"] for r in resp.json()["resources"] if not r["ready"]}
        assert "FailedScheduling" in reasons["gpu-hog"] and "nvidia.com/gpu" in reasons["gpu-hog"], reasons
        assert "(2 pods pending, 2 unschedulable)" in reasons["gpu-hog"]
        assert "FailedCreate" in reasons["database"] and 'serviceaccount "database" not found' in reasons["database"]
        listed = {r["name"]: r for r in httpx.get(f"{api_url}/k8s/resources", params={"tenant_id": tenant}).json()[
            "resources"]}
        assert "FailedScheduling" in listed["gpu-hog"]["reason"]
        assert "FailedScheduling" in listed[next(n for n in listed if n.startswith("gpu-hog-"))]["reason"]
        rollout = httpx.get(f"{api_url}/k8s/service/gpu-hog", params={"namespace": ns}).json()
        assert "FailedScheduling" in rollout["reason"] and rollout["deploymentStatus"] == "in_progress"
    finally:
        httpx.delete(f"{api_url}/k8s/resources/tenant/{tenant}", timeout=60)


def test_create_namespace_on_deploy(api_url: str, kubectl: Kubectl) -> None:
    ns = f"cn-{uuid.uuid4().hex[:6]}"
    body = {"manifest": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n", "namespace": ns,
            "tenant_id": "cn"}
    refused = httpx.post(f"{api_url}/k8s/manifest/deploy", json=body, timeout=60)
    assert refused.status_code == 422
    message = refused.json()["message"]
    assert f'namespace "{ns}" not found' in message and "create_namespace" in message
    assert not kubectl("get", "namespace", ns, "--ignore-not-found", "-o", "name").strip()
    try:
        created = httpx.post(f"{api_url}/k8s/manifest/deploy", json={**body, "create_namespace": True}, timeout=60)
        assert created.status_code == 200, created.text
        assert {r["id"] for r in created.json()["resources"]} == {f"/Namespace/{ns}", f"{ns}/ConfigMap/cfg"}
        namespace = kubectl.json("get", "namespace", ns)
        assert namespace["metadata"]["labels"]["ecp.ai/tenant-id"] == "cn"
    finally:
        kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found")


# kube-prometheus's prometheus-adapter APIService, on a group of its own: the simulator serves
# metrics.k8s.io itself while its engine runs.
BROKEN_APISERVICE = """apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: v1beta1.adapter.example.com
spec:
  group: adapter.example.com
  version: v1beta1
  groupPriorityMinimum: 100
  versionPriority: 100
  insecureSkipTLSVerify: true
  service: {name: prometheus-adapter, namespace: monitoring}
"""


def test_a_broken_aggregated_api_is_reported_not_silent(api_url: str, kubectl: Kubectl) -> None:
    """kube-prometheus's prometheus-adapter APIService alone: discovery fails, namespaces cannot be
    deleted. /health says degraded and names it; a tenant delete says why its namespace stays."""
    tenant = f"agg{uuid.uuid4().hex[:5]}"
    manifest = f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ecp-ai-{tenant}\n"
    assert post(api_url, "/k8s/manifest/deploy", manifest=manifest, tenant_id=tenant).status_code == 200
    kubectl("apply", "-f", "-", stdin=BROKEN_APISERVICE)
    try:
        def degraded() -> dict[str, Any]:
            body = httpx.get(f"{api_url}/health", timeout=10).json()
            assert body["status"] == "degraded", body
            return dict(body)
        body = eventually(degraded, 60, "/health to report the unavailable APIService")
        broken = {b["name"]: b for b in body["unavailable_apiservices"]}
        assert broken["v1beta1.adapter.example.com"]["message"]
        # The answer comes before the namespace controller has looked; asked again, the delete says why.
        def explained() -> dict[str, Any]:
            answer = httpx.delete(f"{api_url}/k8s/resources/tenant/{tenant}", timeout=10)
            assert answer.status_code == 200, answer.text
            deleted = dict(answer.json())
            assert deleted["pending_count"] == 1, deleted
            assert deleted["pending"][0]["id"] == f"/Namespace/ecp-ai-{tenant}"
            assert "NamespaceDeletionDiscoveryFailure" in deleted["pending"][0]["reason"], deleted
            return deleted
        deleted = eventually(explained, 60, "the tenant delete to say why its namespace stays")
        assert "adapter.example.com" in deleted["message"]
    finally:
        kubectl("delete", "apiservice", "v1beta1.adapter.example.com", "--ignore-not-found")
    eventually(lambda: not kubectl("get", "namespace", f"ecp-ai-{tenant}", "--ignore-not-found", "-o",
                                   "name").strip(), 90, "the namespace to go once the APIService is gone")
    assert httpx.get(f"{api_url}/health", timeout=10).json()["status"] == "healthy"


def test_a_deploy_killed_with_the_api_is_marked_interrupted(api_url: str, tmp_path: Path) -> None:
    """kill -9 of the API in the middle of a deploy; the next API marks that deploy failed: interrupted."""
    tenant = f"kill{uuid.uuid4().hex[:5]}"
    ns = f"ecp-ai-{tenant}"
    never_ready = yaml.safe_dump_all([
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "waits", "namespace": ns},
         "spec": {"selector": {"matchLabels": {"app": "w"}}, "template": {"metadata": {"labels": {"app": "w"}},
                  "spec": {"containers": [{"name": "c", "image": "x", "resources": {
                      "limits": {"nvidia.com/gpu": "64"}}}]}}}}])

    def api(log: Path) -> tuple[Any, str]:
        port = free_port()
        ctx = process([sys.executable, "-m", "k8sim_api"], {"K8SIM_API_PORT": str(port)}, log)
        proc = ctx.__enter__()
        started(f"http://127.0.0.1:{port}/health", proc, log)
        return (ctx, proc), f"http://127.0.0.1:{port}"

    (ctx, proc), url = api(tmp_path / "doomed.log")
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        pool.submit(httpx.post, f"{url}/k8s/manifest/deploy?timeout=300",
                    json={"manifest": never_ready, "tenant_id": tenant}, timeout=300)
        eventually(lambda: httpx.get(f"{url}/k8s/resources", params={"tenant_id": tenant}).json()["status"]
                   == "deploying", 30, "the deploy to be under way")
        proc.kill()  # SIGKILL: no shutdown handler runs
        proc.wait(10)
    finally:
        ctx.__exit__(None, None, None)
        pool.shutdown(wait=True)
    (ctx, proc), url = api(tmp_path / "next.log")
    try:
        listed = httpx.get(f"{url}/k8s/resources", params={"tenant_id": tenant}).json()
        assert listed["status"] == "failed" and "interrupted" in listed["message"], listed
    finally:
        httpx.delete(f"{url}/k8s/resources/tenant/{tenant}", timeout=60)
        ctx.__exit__(None, None, None)


def test_the_clusters_own_namespaces_are_never_deleted_through_the_api(api_url: str, kubectl: Kubectl) -> None:
    """kube-node-lease is the one the apiserver itself would delete: without it KWOK plays no
    node, and every pod created after stays Pending. No delete form, tenant or deploy reaches it."""
    before = {ns: kubectl.json("get", "namespace", ns)["metadata"]["uid"]
              for ns in ("default", "kube-system", "kube-public", "kube-node-lease")}
    for ns in before:
        for path in (f"/k8s/resources/-/Namespace/{ns}", f"/k8s/resources//namespaces/{ns}",
                     f"/k8s/resources/{ns}?kind=ns"):
            refused = httpx.delete(f"{api_url}{path}", timeout=60)
            assert refused.status_code == 403, (path, refused.text)
            assert f'namespace "{ns}" belongs to the cluster' in refused.json()["message"]

    # A tenant's manifest may put objects in a system namespace but not declare (and so own) it.
    tenant = f"sys{uuid.uuid4().hex[:6]}"
    declared = ("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kube-node-lease\n---\n"
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  namespace: kube-node-lease\n")
    refused = httpx.post(f"{api_url}/k8s/manifest/deploy", json={"manifest": declared, "tenant_id": tenant},
                         timeout=60)
    assert refused.status_code == 422, refused.text
    assert 'namespace "kube-node-lease" belongs to the cluster' in refused.json()["message"]
    labels = kubectl.json("get", "namespace", "kube-node-lease")["metadata"].get("labels") or {}
    assert not {"ecp.ai/tenant-id", "tenant"} & set(labels), labels
    assert not kubectl("get", "configmap", "cfg", "-n", "kube-node-lease", "--ignore-not-found", "-o", "name")

    # A system namespace labelled for a tenant (by hand, as kubectl users may): the tenant's delete
    # takes what the tenant put there and leaves the namespace; a colliding tenant keeps its own.
    other = f"{tenant}0"
    cfg = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: kube-public\n"
    try:
        for who in (tenant, other):
            deployed = httpx.post(f"{api_url}/k8s/manifest/deploy",
                                  json={"manifest": cfg.format(name=f"cfg-{who}"), "tenant_id": who}, timeout=60)
            assert deployed.status_code == 200, deployed.text
        kubectl("label", "namespace", "kube-public", f"ecp.ai/tenant-id={tenant}")
        gone = httpx.delete(f"{api_url}/k8s/resources/tenant/{tenant}", timeout=120)
        assert gone.status_code == 200, gone.text
        body = gone.json()
        assert body["resources"] == [f"kube-public/ConfigMap/cfg-{tenant}"], body
        assert "kept the cluster's namespaces kube-public" in body["message"]
        assert not kubectl("get", "configmap", f"cfg-{tenant}", "-n", "kube-public", "--ignore-not-found")
        assert kubectl("get", "configmap", f"cfg-{other}", "-n", "kube-public", "-o", "name").strip()
        # Nothing of the tenant left but the namespace it labels: a second delete says so.
        again = httpx.delete(f"{api_url}/k8s/resources/tenant/{tenant}", timeout=60)
        assert again.status_code == 404 and "kube-public" in again.json()["message"], again.text
    finally:
        kubectl("label", "namespace", "kube-public", "ecp.ai/tenant-id-", check=False)
        kubectl("delete", "configmap", "-n", "kube-public", f"cfg-{tenant}", f"cfg-{other}", "--ignore-not-found")
    assert {ns: kubectl.json("get", "namespace", ns)["metadata"]["uid"] for ns in before} == before


def test_the_audit_log_names_the_process_that_deleted_a_namespace(api_url: str, kubectl: Kubectl,
                                                                  live_cluster: Any) -> None:
    audit = layout.cluster_dir(live_cluster) / "logs" / "audit.log"
    if "kubeAuditPolicy" not in (layout.cluster_dir(live_cluster) / "kwok.yaml").read_text():
        pytest.skip("this cluster was created before it had an audit policy (`make cluster-delete` recreates it)")
    ns = f"audit-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", ns)
    kubectl("create", "configmap", "cfg", "-n", ns)
    assert httpx.delete(f"{api_url}/k8s/resources/-/Namespace/{ns}", timeout=60).status_code == 200

    def deletes() -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in audit.read_text().splitlines() if f'"{ns}"' in line]
        return [e for e in lines if e["objectRef"].get("resource") == "namespaces" and e["verb"] == "delete"
                and e["stage"] == "ResponseComplete"]
    entries = eventually(deletes, 10, "the namespace's delete in the audit log")
    assert [e["userAgent"] for e in entries] == ["k8sim-api"], entries
    # Only what the policy names: the ConfigMap's delete inside it is not there.
    assert not [line for line in audit.read_text().splitlines() if f'"{ns}"' in line and '"configmaps"' in line]
