"""The API layer without a cluster: the real app and routes, their dependencies overridden with a small
in-memory Kube (``FakeKube``: objects in a dict, the apiserver's 404s and 409s) and no store."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException
from k8sim_api import deps
from k8sim_api.broadcast import Update
from k8sim_api.core.config import ApiSettings
from k8sim_api.main import create_app
from starlette.testclient import TestClient

from k8sim.kube import KubeError, ResourceInfo, UnknownKind

KINDS = {
    ("v1", "Namespace"): ("namespaces", False, {"ns"}),
    ("v1", "ConfigMap"): ("configmaps", True, {"cm"}),
    ("v1", "Service"): ("services", True, {"svc"}),
    ("v1", "Pod"): ("pods", True, {"po"}),
    ("apps/v1", "Deployment"): ("deployments", True, {"deploy"}),
    ("apps/v1", "StatefulSet"): ("statefulsets", True, {"sts"}),
    ("apps/v1", "DaemonSet"): ("daemonsets", True, {"ds"}),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ("clusterroles", False, set()),
}


class FakeKube:
    """The calls the routes make, over a dict of objects. A deleted namespace lingers (Terminating,
    with a deletionTimestamp) for ``terminating_reads`` reads of it, as the namespace controller takes
    a while to empty it; ``None`` keeps it forever."""

    def __init__(self, objects: list[dict[str, Any]], terminating_reads: int | None = 0):
        self.objects: dict[tuple[str, str, str | None, str], dict[str, Any]] = {}
        self.terminating_reads = terminating_reads
        self.reads_left: dict[tuple[str, str, str | None, str], int] = {}
        self.deleted: list[str] = []
        for index, obj in enumerate(objects):
            obj = copy.deepcopy(obj)
            obj["metadata"].setdefault("uid", f"uid-{index}")
            obj["metadata"].setdefault("creationTimestamp", "2026-01-05T09:00:00Z")
            self.objects[self.key(obj["apiVersion"], obj["kind"], obj["metadata"]["name"],
                                  obj["metadata"].get("namespace"))] = obj

    @staticmethod
    def key(api_version: str, kind: str, name: str, namespace: str | None) -> tuple[str, str, str | None, str]:
        return api_version, kind, namespace if KINDS[(api_version, kind)][1] else None, name

    async def discover(self, refresh: bool = False) -> dict[tuple[str, str], ResourceInfo]:
        return {k: ResourceInfo(k[0], k[1], plural, namespaced, frozenset({"list", "get", "delete", "create"}),
                                frozenset(short)) for k, (plural, namespaced, short) in KINDS.items()}

    async def resource(self, api_version: str, kind: str) -> ResourceInfo:
        info = (await self.discover()).get((api_version, kind))
        if info is None:
            raise UnknownKind(api_version, kind)
        return info

    async def ready(self) -> bool:
        return True

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        await self.resource(api_version, kind)
        key = self.key(api_version, kind, name, namespace)
        if key in self.reads_left:
            if self.reads_left[key] == 0:
                del self.reads_left[key]
                self.purge(name)
                return None
            self.reads_left[key] -= 1
        found = self.objects.get(key)
        return copy.deepcopy(found) if found is not None else None

    async def list(self, api_version: str, kind: str, namespace: str | None = None, *,
                   label_selector: str | None = None) -> list[dict[str, Any]]:
        info = await self.resource(api_version, kind)
        wanted = dict(part.split("=", 1) for part in label_selector.split(",")) if label_selector else {}
        return [copy.deepcopy(o) for (av, k, ns, _), o in sorted(self.objects.items(), key=lambda i: str(i[0]))
                if (av, k) == (api_version, kind) and (not namespace or not info.namespaced or ns == namespace)
                and all((o["metadata"].get("labels") or {}).get(lk) == lv for lk, lv in wanted.items())]

    async def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        await self.resource(api_version, kind)
        key = self.key(api_version, kind, name, namespace)
        obj = self.objects.get(key)
        if obj is None:
            return False
        if kind == "Namespace" and obj["metadata"].get("deletionTimestamp"):
            raise KubeError(409, "Conflict", "The system is ensuring all content is removed from this namespace.")
        self.deleted.append(f"{namespace or ''}/{kind}/{name}")
        if kind == "Namespace" and self.terminating_reads != 0:
            obj["metadata"]["deletionTimestamp"] = "2026-01-05T09:01:00Z"
            obj["status"] = {"phase": "Terminating", "conditions": [
                {"type": "NamespaceContentRemaining", "status": "True", "message": "Some resources are remaining"}]}
            if self.terminating_reads is not None:
                self.reads_left[key] = self.terminating_reads
            return True
        if kind == "Namespace":
            self.purge(name)
        else:
            del self.objects[key]
        return True

    def purge(self, namespace: str) -> None:
        """A namespace goes, and its contents with it."""
        self.objects = {k: o for k, o in self.objects.items()
                        if k[2] != namespace and k[1:] != ("Namespace", None, namespace)}


def ns(name: str, tenant: str | None = None) -> dict[str, Any]:
    labels = {"ecp.ai/tenant-id": tenant} if tenant else {}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels},
            "status": {"phase": "Active"}}


def cm(name: str, namespace: str, tenant: str | None = None) -> dict[str, Any]:
    labels = {"ecp.ai/tenant-id": tenant} if tenant else {}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace,
                                                                 "labels": labels}}


def tenants(*ids: str, per_namespace: int = 2) -> list[dict[str, Any]]:
    """Per tenant: its namespace with ``per_namespace`` ConfigMaps, and one ConfigMap in kube-public."""
    found = [ns("kube-public")]
    for tenant in ids:
        found += [ns(f"ecp-ai-{tenant}", tenant), cm(f"cfg-{tenant}", "kube-public", tenant)]
        found += [cm(f"c{i}", f"ecp-ai-{tenant}", tenant) for i in range(per_namespace)]
    return found


def app_with(kube: FakeKube, **settings: Any) -> FastAPI:
    app = create_app(ApiSettings(tenant_delete_wait=settings.pop("tenant_delete_wait", 0.2), **settings))

    async def kube_dep() -> FakeKube:
        return kube

    async def no_pool() -> None:
        return None

    async def store_down() -> None:
        raise HTTPException(503, "PostgreSQL unavailable: connection refused")

    app.dependency_overrides[deps.kube_dep] = kube_dep
    app.dependency_overrides[deps.maybe_pool_dep] = no_pool
    app.dependency_overrides[deps.pool_dep] = store_down
    return app


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube(tenants("t1", "t10"))


@pytest.fixture
def client(kube: FakeKube) -> Iterator[TestClient]:
    # Not entered as a context manager: no lifespan, so nothing connects anywhere.
    yield TestClient(app_with(kube), raise_server_exceptions=False)


def test_index_and_health_answer_their_schemas(client: TestClient) -> None:
    index = client.get("/")
    assert index.status_code == 200
    assert index.json() == {"name": "k8s-simulator", "version": index.json()["version"], "status": "running",
                            "docs": "/docs", "openapi": "/openapi.json", "health": "/health", "dashboard": "/ui/"}
    health = client.get("/health")
    assert health.status_code == 503
    assert health.json() == {"status": "unhealthy", "checks": {"kubernetes": "ok", "postgresql": "unavailable"}}


def test_a_tenants_listing_is_its_own_exactly(client: TestClient) -> None:
    body = client.get("/k8s/resources", params={"tenant_id": "t1"}).json()
    assert sorted(r["id"] for r in body["resources"]) == [
        "/Namespace/ecp-ai-t1", "ecp-ai-t1/ConfigMap/c0", "ecp-ai-t1/ConfigMap/c1", "kube-public/ConfigMap/cfg-t1"]
    assert (body["count"], body["tenant_id"], body["status"], body["deployment_id"]) == (4, "t1", "completed", None)
    item = next(r for r in body["resources"] if r["kind"] == "Namespace")
    assert item == {"id": "/Namespace/ecp-ai-t1", "name": "ecp-ai-t1", "namespace": "", "kind": "Namespace",
                    "api_version": "v1", "status": "Active", "ready": True, "created_at": "2026-01-05T09:00:00Z",
                    "tenant_id": "t1", "node": None, "replicas": None, "reason": None}
    nobody = client.get("/k8s/resources", params={"tenant_id": "t2"}).json()
    assert (nobody["resources"], nobody["count"], nobody["status"]) == ([], 0, "not_found")


def test_unknown_kinds_and_bad_parameters_are_4xx(client: TestClient) -> None:
    unknown = client.get("/k8s/resources", params={"kind": "Gizmo"})
    assert unknown.status_code == 404 and unknown.json() == {"status": "error", "message": 'unknown kind "Gizmo"'}
    bad = client.get("/k8s/resources", params={"tenant_id": "t 1"})
    assert bad.status_code == 422 and bad.json()["status"] == "error"
    assert bad.json()["errors"][0]["field"] == "tenant_id"
    for path, allowed in (("/k8s/resources", "GET"), ("/k8s/resources/history", "GET"),
                          ("/k8s/resources/c0", "DELETE"), ("/sla/alerts/rules", "GET, POST"),
                          ("/scenarios/ns/name", "DELETE, GET")):
        wrong_method = client.put(path)
        assert (wrong_method.status_code, wrong_method.headers["allow"]) == (405, allowed), path


def test_single_deletes(client: TestClient, kube: FakeKube) -> None:
    gone = client.delete("/k8s/resources/ecp-ai-t1/cm/c0")
    assert gone.status_code == 200
    assert gone.json() == {"status": "success", "message": "ConfigMap c0 deleted", "id": "ecp-ai-t1/ConfigMap/c0"}
    again = client.delete("/k8s/resources/c0", params={"namespace": "ecp-ai-t1", "kind": "ConfigMap"})
    assert again.status_code == 404
    assert again.json() == {"status": "error", "message": 'ConfigMap "c0" not found in namespace "ecp-ai-t1"'}
    refused = client.delete("/k8s/resources//Namespace/kube-public")
    assert refused.status_code == 403
    assert refused.json()["message"] == 'namespace "kube-public" belongs to the cluster and cannot be deleted'
    assert kube.deleted == ["ecp-ai-t1/ConfigMap/c0"]


def test_a_tenant_delete_answers_at_once_with_what_still_terminates(kube: FakeKube) -> None:
    kube.terminating_reads = None  # the namespace outlives the answer's wait
    client = TestClient(app_with(kube), raise_server_exceptions=False)
    answer = client.delete("/k8s/resources/tenant/t1")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "status": "success", "tenant_id": "t1", "deleted_count": 1, "pending_count": 3,
        "resources": ["/Namespace/ecp-ai-t1", "ecp-ai-t1/ConfigMap/c0", "ecp-ai-t1/ConfigMap/c1",
                      "kube-public/ConfigMap/cfg-t1"],
        "pending": [{"id": "/Namespace/ecp-ai-t1",
                     "reason": "NamespaceContentRemaining: Some resources are remaining"}],
        "message": "/Namespace/ecp-ai-t1: NamespaceContentRemaining: Some resources are remaining"}
    # The namespace's contents go with it: one call for the namespace, one for what is outside it.
    assert sorted(kube.deleted) == ["/Namespace/ecp-ai-t1", "kube-public/ConfigMap/cfg-t1"]
    # A second delete while it terminates is another 200 (no 409 from deleting a terminating namespace).
    again = client.delete("/k8s/resources/tenant/t1")
    assert again.status_code == 200 and again.json()["pending_count"] == 3, again.text
    # t10, which t1 prefixes, is whole.
    t10 = client.get("/k8s/resources", params={"tenant_id": "t10"}).json()
    assert t10["count"] == 4 and all(r["status"] == "Active" for r in t10["resources"])


def test_a_tenant_delete_that_finishes_within_the_wait(kube: FakeKube) -> None:
    kube.terminating_reads = 2
    client = TestClient(app_with(kube, tenant_delete_wait=5.0), raise_server_exceptions=False)
    answer = client.delete("/k8s/resources/tenant/t10")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["deleted_count"], body["pending_count"], body["pending"], body["message"]) == (4, 0, None, None)
    assert client.delete("/k8s/resources/tenant/t10").json() == {
        "status": "error", "message": 'tenant "t10" has no resources'}
    assert client.get("/k8s/resources", params={"tenant_id": "t1"}).json()["count"] == 4


def test_a_tenant_that_only_labels_a_system_namespace_is_not_found_and_the_namespace_stays() -> None:
    kube = FakeKube([{**ns("kube-public"), "metadata": {"name": "kube-public", "labels": {"tenant": "t1"}}}])
    client = TestClient(app_with(kube), raise_server_exceptions=False)
    answer = client.delete("/k8s/resources/tenant/t1")
    assert answer.status_code == 404
    assert answer.json()["message"] == "tenant \"t1\" has no resources but the cluster's namespaces kube-public"
    assert kube.deleted == []


def test_malformed_and_oversized_manifests(client: TestClient) -> None:
    malformed = client.post("/k8s/manifest/parse", json={"manifest": "a: [unclosed"})
    assert malformed.status_code == 400 and malformed.json()["status"] == "error"
    empty = client.post("/k8s/manifest/parse", json={"manifest": ""})
    assert empty.status_code == 422 and empty.json()["errors"][0]["field"].startswith("manifest")
    not_json = client.post("/k8s/manifest/parse", content=b"{", headers={"content-type": "application/json"})
    assert not_json.status_code in (400, 422) and not_json.json()["status"] == "error"
    small = TestClient(app_with(FakeKube([]), max_body_bytes=100), raise_server_exceptions=False)
    big = small.post("/k8s/manifest/parse", json={"manifest": "x" * 200})
    assert big.status_code == 413
    assert big.json() == {"status": "error", "message": "request body is larger than 100 bytes"}


def test_a_service_rollout_and_its_404(client: TestClient, kube: FakeKube) -> None:
    missing = client.get("/k8s/service/nothing", params={"namespace": "ecp-ai-t1"})
    assert missing.status_code == 404
    assert missing.json()["message"] == 'no Deployment, StatefulSet, DaemonSet or Service "nothing" in "ecp-ai-t1"'
    kube.objects[kube.key("v1", "Service", "web", "ecp-ai-t1")] = {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "ecp-ai-t1",
                                                            "creationTimestamp": "2026-01-05T09:00:00Z"},
        "spec": {"selector": {"app": "web"}}}
    kube.objects[kube.key("v1", "Pod", "web-1", "ecp-ai-t1")] = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": "ecp-ai-t1", "uid": "p1",
                                                        "labels": {"app": "web"},
                                                        "creationTimestamp": "2026-01-05T09:00:01Z"},
        "spec": {"nodeName": "cpu-0", "containers": [{"name": "web", "image": "nginx:1.27"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                   "containerStatuses": [{"name": "web", "ready": True, "restartCount": 2}]}}
    body = client.get("/k8s/service/web", params={"namespace": "ecp-ai-t1"}).json()
    assert body == {
        "name": "web", "namespace": "ecp-ai-t1", "kind": "Service", "desiredImage": "nginx:1.27",
        "currentImage": "nginx:1.27", "replicas": {"desired": 1, "ready": 1, "available": 1, "updated": 1},
        "pods": [{"name": "web-1", "status": "Running", "image": "nginx:1.27", "ready": True, "restarts": 2,
                  "created": "2026-01-05T09:00:01Z", "node": "cpu-0"}],
        "deploymentStatus": "completed", "lastUpdated": "2026-01-05T09:00:00Z", "reason": None}


def test_routes_needing_the_store_say_it_is_down(client: TestClient) -> None:
    for path in ("/sla/status", "/sla/report", "/sla/alerts/rules", "/k8s/resources/history"):
        down = client.get(path)
        assert down.status_code == 503, path
        assert down.json() == {"status": "error", "message": "PostgreSQL unavailable: connection refused"}


def test_a_tenants_monitoring_view_is_its_services_only(kube: FakeKube) -> None:
    snapshot = {"timestamp": "2026-01-05T09:00:00Z", "services": {
        key: {"tenant_id": tenant, "cpu": {"usage_percent": 10.0, "load_1m": 0.1},
              "memory": {"usage_mb": 100.0, "usage_percent": 5.0},
              "network": {"requests_per_second": 10.0, "response_time_ms": 50.0, "error_rate_percent": 0.0},
              "health": {"status": "healthy", "uptime_seconds": 60}}
        for key, tenant in (("ecp-ai-t1/web", "t1"), ("ecp-ai-t10/web", "t10"))},
        "summary": {"overall_health": "healthy", "sla_percentage": 100.0, "sla_status": "meeting",
                    "total_services": 2, "healthy_services": 2}}
    app = app_with(kube)

    async def latest() -> Update:
        return Update("snapshot", json.dumps(snapshot).encode())

    app.dependency_overrides[deps.snapshot_dep] = latest
    client = TestClient(app, raise_server_exceptions=False)
    body = client.get("/monitoring/tenant/t1").json()
    assert (body["tenant_id"], list(body["services"])) == ("t1", ["ecp-ai-t1/web"])
    assert (body["summary"]["total_services"], body["summary"]["sla_percentage"]) == (1, 100.0)
    assert client.get("/monitoring/health", params={"tenant_id": "t10"}).json()["services"].keys() == {"ecp-ai-t10/web"}
    metrics = client.get("/monitoring/metrics").json()
    assert sorted(metrics["tenants"]) == ["t1", "t10"] and metrics["tenants"]["t10"]["total_services"] == 1
