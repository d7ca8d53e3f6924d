"""A tenant delete over the real cluster answers within ECP-AI's 10-second timeout whatever the tenant
holds; what is still terminating then goes on going, and a tenant whose id extends it keeps everything."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest
import yaml

from .conftest import Kubectl, eventually

pytestmark = pytest.mark.integration

NAMESPACES = 3
REPLICAS = 8
CONFIGMAPS = 15


def manifest(tenant: str, namespaces: int) -> str:
    docs: list[dict[str, Any]] = []
    labels = {"ecp.ai/tenant-id": tenant}
    for i in range(namespaces):
        ns = f"ecp-ai-{tenant}-{i}"
        docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}})
        docs.append({"apiVersion": "apps/v1", "kind": "Deployment",
                     "metadata": {"name": "callbot", "namespace": ns, "labels": labels},
                     "spec": {"replicas": REPLICAS, "selector": {"matchLabels": {"app": "callbot"}},
                              "template": {"metadata": {"labels": {"app": "callbot", **labels}},
                                           "spec": {"containers": [{"name": "c", "image": "ecp-ai/callbot:1.0",
                                                                    "resources": {"requests": {"cpu": "10m"}}}]}}}})
        docs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "callbot", "namespace": ns,
                                                                       "labels": labels},
                     "spec": {"selector": {"app": "callbot"}, "ports": [{"port": 80}]}})
        docs += [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cfg-{n}", "namespace": ns,
                                                                      "labels": labels}, "data": {"n": str(n)}}
                 for n in range(CONFIGMAPS)]
    return yaml.safe_dump_all(docs)


def uids(kubectl: Kubectl, tenant: str) -> dict[str, str]:
    found = kubectl.json("get", "namespaces,deployments,services,configmaps,pods", "-A",
                         "-l", f"ecp.ai/tenant-id={tenant}")["items"]
    return {f"{o['metadata'].get('namespace', '')}/{o['kind']}/{o['metadata']['name']}": o["metadata"]["uid"]
            for o in found if not o["metadata"].get("deletionTimestamp")}


def test_a_big_tenant_is_deleted_within_seconds_and_its_neighbour_is_untouched(api_url: str,
                                                                              kubectl: Kubectl) -> None:
    tenant = f"d{uuid.uuid4().hex[:5]}"
    neighbour = f"{tenant}0"  # the tenant's id is a prefix of its neighbour's
    try:
        for who, count in ((tenant, NAMESPACES), (neighbour, 1)):
            deployed = httpx.post(f"{api_url}/k8s/manifest/deploy", json={"manifest": manifest(who, count),
                                                                         "tenant_id": who}, timeout=120)
            assert deployed.status_code == 200 and deployed.json()["status"] == "completed", deployed.text[:2000]
        kept = uids(kubectl, neighbour)
        assert len(kept) == 1 + 1 + 1 + CONFIGMAPS + REPLICAS, kept
        assert len(uids(kubectl, tenant)) == NAMESPACES * (3 + CONFIGMAPS + REPLICAS)

        started = time.monotonic()
        answer = httpx.delete(f"{api_url}/k8s/resources/tenant/{tenant}", timeout=10)  # ECP-AI's timeout
        elapsed = time.monotonic() - started
        assert answer.status_code == 200, answer.text
        assert elapsed < 6, f"the answer took {elapsed:.1f} s"
        body = answer.json()
        namespaces = {f"/Namespace/ecp-ai-{tenant}-{i}" for i in range(NAMESPACES)}
        assert namespaces <= set(body["resources"]), body["resources"]
        assert all(r.startswith((f"/Namespace/ecp-ai-{tenant}-", f"ecp-ai-{tenant}-")) for r in body["resources"]), \
            body["resources"]
        assert body["deleted_count"] + body["pending_count"] == len(body["resources"])
        assert {p["id"] for p in body["pending"] or []} <= namespaces, body["pending"]
        assert (body["pending_count"] > 0) == bool(body["pending"]), body

        def all_gone() -> bool:
            left = kubectl("get", "namespaces", "-l", f"ecp.ai/tenant-id={tenant}", "-o", "name").split()
            return not left
        eventually(all_gone, 120, "the tenant's namespaces to go")
        assert httpx.delete(f"{api_url}/k8s/resources/tenant/{tenant}", timeout=10).status_code == 404
        assert uids(kubectl, neighbour) == kept, "the neighbour keeps every object, same uids"
        listed = httpx.get(f"{api_url}/k8s/resources", params={"tenant_id": neighbour}, timeout=30).json()
        assert listed["status"] == "completed" and not any(r["id"].startswith(f"ecp-ai-{tenant}-")
                                                             for r in listed["resources"])
    finally:
        for who in (tenant, neighbour):
            httpx.delete(f"{api_url}/k8s/resources/tenant/{who}", timeout=30)


def test_a_second_delete_while_the_namespaces_terminate_is_a_200_too(api_url: str, kubectl: Kubectl) -> None:
    """A namespace kept Terminating by a finalizer on an object in it: the delete answers at once with
    the namespace pending and why; asked again, the same (not the apiserver's 409 for deleting a
    terminating namespace); released, it goes."""
    tenant = f"f{uuid.uuid4().hex[:5]}"
    ns = f"ecp-ai-{tenant}"
    text = yaml.safe_dump_all([
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "held", "namespace": ns,
                                                              "finalizers": ["k8sim.io/test-hold"]}}])
    deployed = httpx.post(f"{api_url}/k8s/manifest/deploy", json={"manifest": text, "tenant_id": tenant}, timeout=60)
    assert deployed.status_code == 200, deployed.text
    try:
        for _ in range(2):
            started = time.monotonic()
            answer = httpx.delete(f"{api_url}/k8s/resources/tenant/{tenant}", timeout=10)
            assert answer.status_code == 200, answer.text
            assert time.monotonic() - started < 6
            body = answer.json()
            assert body["resources"] == [f"/Namespace/{ns}", f"{ns}/ConfigMap/held"], body
            assert body["pending_count"] == 2 and body["deleted_count"] == 0, body
            assert [p["id"] for p in body["pending"]] == [f"/Namespace/{ns}"], body
            # The namespace's own finalizer at first; the namespace controller's conditions once it has looked.
            reason = body["pending"][0]["reason"]
            assert reason == "waiting for finalizers: kubernetes" or "k8sim.io/test-hold" in reason, body
    finally:
        kubectl("patch", "configmap", "held", "-n", ns, "--type=merge", "-p", '{"metadata":{"finalizers":null}}',
                check=False)
    eventually(lambda: not kubectl("get", "namespace", ns, "--ignore-not-found", "-o", "name").strip(), 90,
               "the namespace to go once released")
    assert httpx.delete(f"{api_url}/k8s/resources/tenant/{tenant}", timeout=10).status_code == 404
