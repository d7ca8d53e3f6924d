"""The engine's inputs from cluster objects: a pod's tenant, its service, its workload's replicas."""

from __future__ import annotations

from typing import Any

from k8sim_engine import sources


def pod(name: str, namespace: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"uid": name, "name": name, "namespace": namespace, "labels": labels or {},
                         "ownerReferences": [{"kind": "ReplicaSet", "name": "web-abc", "controller": True}]},
            "spec": {"nodeName": "cpu-0", "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}


def test_a_pods_tenant_is_its_label_else_its_namespaces_never_a_name_guess() -> None:
    namespaces = [{"metadata": {"name": "ecp-ai-t1", "labels": {"tenant": "t1"}}},
                  {"metadata": {"name": "ecp-ai-t10", "labels": {}}}]
    tenants = {**{"ecp-ai-t10": "t10"}, **sources.namespace_tenants(namespaces)}
    labelled = pod("a", "ecp-ai-t10", {"ecp.ai/tenant-id": "other", "pod-template-hash": "abc"})
    specs = {s.name: s for s in sources.pod_specs([labelled, pod("b", "ecp-ai-t1"), pod("c", "ecp-ai-t10"),
                                                   pod("d", "t1-ecp-ai")], [], tenants)}
    assert specs["a"].tenant == "other"  # its own label wins
    assert specs["b"].tenant == "t1" and specs["c"].tenant == "t10"
    assert specs["d"].tenant is None, "a namespace that merely contains the id belongs to nobody"
    assert specs["a"].service == "ecp-ai-t10/web"


def test_workload_replicas_are_desired_and_available() -> None:
    deployment = {"metadata": {"name": "web", "namespace": "ns"}, "spec": {"replicas": 3},
                  "status": {"availableReplicas": 2}}
    defaulted = {"metadata": {"name": "db", "namespace": "ns"}, "spec": {}, "status": {}}
    assert sources.workload_replicas([deployment, defaulted]) == {"ns/web": (3, 2), "ns/db": (1, 0)}
