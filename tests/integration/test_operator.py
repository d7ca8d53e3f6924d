"""The Kopf operator against the real cluster and PostgreSQL, run as production runs it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from kopf.testing import KopfRunner

from k8sim.local import services, supervisor
from k8sim.local.settings import ClusterSettings

from .conftest import Kubectl, eventually
from .records import deployment, history, live, query

pytestmark = pytest.mark.integration

TENANT = {"tenant": "acme"}



@pytest.fixture
def operator_env(live_services: ClusterSettings, live_cluster: ClusterSettings, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> ClusterSettings:
    monkeypatch.setenv("K8SIM_SPOOL", str(tmp_path / "spool.jsonl"))
    monkeypatch.setenv("K8SIM_SWEEP_DELAY", "2")
    monkeypatch.setenv("K8SIM_SWEEP_INTERVAL", "5")
    return live_cluster


@contextmanager
def operator() -> Iterator[KopfRunner]:
    with KopfRunner(supervisor.KOPF_ARGS) as runner:
        yield runner
    assert runner.exit_code == 0, runner.output
    assert runner.exception is None


def cluster_uids(kubectl: Kubectl, namespace: str, resource: str) -> set[str]:
    return {i["metadata"]["uid"] for i in kubectl.json("get", resource, "-n", namespace)["items"]}


def test_deployment_scale_and_delete_are_recorded_transition_by_transition(
        operator_env: ClusterSettings, kubectl: Kubectl, namespace: str) -> None:
    db = operator_env.database_url
    with operator():
        kubectl("apply", "-n", namespace, "-f", "-", stdin=deployment("web", 5, TENANT))
        kubectl("wait", "-n", namespace, "deployment/web", "--for=condition=Available", "--timeout=60s")
        first = cluster_uids(kubectl, namespace, "pods")
        assert len(first) == 5

        def five_running() -> bool:
            pods = live(db, namespace, "Pod")
            return set(pods) == first and all(p["phase"] == "Running" and p["ready"] for p in pods.values())
        eventually(five_running, what="5 running pods in the store")
        for uid, steps in history(db, namespace, "Pod").items():
            assert steps[:1] == ["created"] and {"scheduled", "running", "ready"} <= set(steps), (uid, steps)
            assert steps.index("scheduled") < steps.index("running") < steps.index("ready"), (uid, steps)
        # Kubernetes Events are steps of their object's history, not objects of their own.
        def scheduled_events() -> dict[str, Any]:
            rows = query(db, "SELECT uid, name, detail FROM resource_events WHERE namespace = $1 AND kind = 'Pod' "
                         "AND transition = 'event'", namespace)
            return {r["uid"]: r for r in rows if r["detail"]["reason"] == "Scheduled"}
        eventually(lambda: set(scheduled_events()) == first, what="each pod's Scheduled event in its history")
        for row in scheduled_events().values():
            assert row["detail"]["type"] == "Normal" and row["name"] in row["detail"]["message"], row
        assert not query(db, "SELECT 1 FROM resources WHERE namespace = $1 AND kind = 'Event'", namespace)

        kubectl("scale", "-n", namespace, "deployment/web", "--replicas=2")
        eventually(lambda: len(cluster_uids(kubectl, namespace, "pods")) == 2, what="scale-down in the cluster")
        kept = cluster_uids(kubectl, namespace, "pods")
        eventually(lambda: set(live(db, namespace, "Pod")) == kept, what="scale-down in the store")
        pods = history(db, namespace, "Pod")
        for uid in first - kept:
            assert pods[uid][-1] == "deleted", pods[uid]
        dep = history(db, namespace, "Deployment")
        (dep_uid, steps), = dep.items()
        assert steps[0] == "created" and "scaled" in steps
        scaled = query(db, "SELECT detail FROM resource_events WHERE uid = $1 AND transition = 'scaled'", dep_uid)
        assert [r["detail"] for r in scaled] == [{"from": 5, "to": 2}]
        row = live(db, namespace, "Deployment")[dep_uid]
        assert row["tenant"] == "acme" and row["state"]["replicas"] == 2

        kubectl("delete", "-n", namespace, "deployment/web")
        eventually(lambda: not cluster_uids(kubectl, namespace, "pods"), what="pods gone")
        eventually(lambda: not live(db, namespace, "Pod") and not live(db, namespace, "Deployment"),
                   what="deletions in the store")
        assert history(db, namespace, "Deployment")[dep_uid][-1] == "deleted"
        assert all(steps[-1] == "deleted" for steps in history(db, namespace, "Pod").values())
        # Pods inherit the tenant of their owners when their own labels name none.
        tenants = query(db, "SELECT DISTINCT tenant FROM resources WHERE namespace = $1 AND kind IN "
                        "('Pod', 'ReplicaSet', 'Deployment')", namespace)
        assert [r["tenant"] for r in tenants] == ["acme"]


def test_volumes_are_provisioned_and_load_balancers_get_addresses(
        operator_env: ClusterSettings, kubectl: Kubectl, namespace: str) -> None:
    manifest = [
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "shared"},
         "spec": {"storageClassName": "fast-ssd", "accessModes": ["ReadWriteMany"],
                  "resources": {"requests": {"storage": "20Gi"}}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "local"},
         "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "db"},
         "spec": {"containers": [{"name": "db", "image": "postgres:16",
                                  "volumeMounts": [{"name": "a", "mountPath": "/a"},
                                                   {"name": "b", "mountPath": "/b"}]}],
                  "volumes": [{"name": "a", "persistentVolumeClaim": {"claimName": "shared"}},
                              {"name": "b", "persistentVolumeClaim": {"claimName": "local"}}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "gateway"},
         "spec": {"type": "LoadBalancer", "selector": {"app": "gw"}, "ports": [{"port": 443}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "gateway2"},
         "spec": {"type": "LoadBalancer", "selector": {"app": "gw"}, "ports": [{"port": 80}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"},
         "spec": {"rules": [{"host": "a.example", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                  "backend": {"service": {"name": "gateway", "port": {"number": 443}}}}]}}]}},
    ]
    with operator():
        kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(manifest))
        kubectl("wait", "-n", namespace, "pod/db", "--for=condition=Ready", "--timeout=90s")
        for claim in ("shared", "local"):
            kubectl("wait", "-n", namespace, f"pvc/{claim}", "--for=jsonpath={.status.phase}=Bound", "--timeout=30s")
        shared = kubectl.json("get", "pvc", "shared", "-n", namespace)
        assert shared["status"]["accessModes"] == ["ReadWriteMany"]
        assert shared["status"]["capacity"]["storage"] == "20Gi"
        local = kubectl.json("get", "pvc", "local", "-n", namespace)
        assert local["spec"]["storageClassName"] == "standard"  # the default class
        pv = kubectl.json("get", "pv", local["spec"]["volumeName"])
        node = kubectl.json("get", "pod", "db", "-n", namespace)["spec"]["nodeName"]
        assert pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == [node]

        def addresses() -> list[str]:
            ips = []
            for name in ("gateway", "gateway2"):
                svc = kubectl.json("get", "svc", name, "-n", namespace)
                ingress = (svc.get("status", {}).get("loadBalancer") or {}).get("ingress") or []
                if not ingress:
                    return []
                ips.append(ingress[0]["ip"])
            return ips
        ips = eventually(addresses, 30, "load-balancer addresses")
        assert len(set(ips)) == 2, "two Services must not share an address"
        eventually(lambda: kubectl.json("get", "ingress", "web", "-n", namespace)["status"]["loadBalancer"]
                   .get("ingress"), 30, "an ingress address")
        # Deleting the claims reclaims their volumes (policy Delete).
        volumes = {shared["spec"]["volumeName"], local["spec"]["volumeName"]}
        kubectl("delete", "-n", namespace, "pod/db", "pvc/shared", "pvc/local", "--wait=false")
        eventually(lambda: not volumes & {p["metadata"]["name"] for p in kubectl.json("get", "pv")["items"]},
                   60, "the volumes to be reclaimed")


def test_changes_while_the_operator_is_down_are_reconciled(
        operator_env: ClusterSettings, kubectl: Kubectl, namespace: str) -> None:
    db = operator_env.database_url
    for name in ("keep", "change", "remove"):
        kubectl("create", "configmap", name, "-n", namespace, f"--from-literal=k={name}")
    with operator():
        eventually(lambda: len(live(db, namespace, "ConfigMap")) >= 3, what="configmaps recorded")
        kubectl("apply", "-n", namespace, "-f", "-", stdin=deployment("grow", 1, TENANT))
        eventually(lambda: any(r["ready"] for r in live(db, namespace, "Deployment").values()),
                   what="deployment ready")
    removed = kubectl.json("get", "configmap", "remove", "-n", namespace)["metadata"]["uid"]
    kubectl("delete", "configmap", "remove", "-n", namespace)
    kubectl("create", "configmap", "born", "-n", namespace, "--from-literal=k=v")
    kubectl("scale", "-n", namespace, "deployment/grow", "--replicas=3")
    kubectl("wait", "-n", namespace, "deployment/grow", "--for=jsonpath={.status.readyReplicas}=3", "--timeout=60s")
    with operator():
        def converged() -> bool:
            for kind, resource in (("ConfigMap", "configmaps"), ("Pod", "pods"), ("Deployment", "deployments")):
                if set(live(db, namespace, kind)) != cluster_uids(kubectl, namespace, resource):
                    return False
            return True
        eventually(converged, what="the store to match the cluster")
    rows = query(db, "SELECT transition, reconciled FROM resource_events WHERE uid = $1 ORDER BY id", removed)
    assert [(r["transition"], r["reconciled"]) for r in rows][-1] == ("deleted", True)
    dep_uid = kubectl.json("get", "deployment", "grow", "-n", namespace)["metadata"]["uid"]
    scaled = query(db, "SELECT detail, reconciled FROM resource_events WHERE uid = $1 AND transition = 'scaled'",
                   dep_uid)
    assert [(r["detail"], r["reconciled"]) for r in scaled] == [({"from": 1, "to": 3}, True)]
    assert all("ready" in steps for steps in history(db, namespace, "Pod").values())


def test_postgres_outage_under_churn_loses_no_history(
        operator_env: ClusterSettings, kubectl: Kubectl, namespace: str) -> None:
    s, db = operator_env, operator_env.database_url
    spool = Path(os.environ["K8SIM_SPOOL"])
    with operator():
        kubectl("apply", "-n", namespace, "-f", "-", stdin=deployment("churn", 2, TENANT))
        eventually(lambda: len(live(db, namespace, "Pod")) == 2, what="first pods")
        services.postgres_down(s)
        try:
            kubectl("scale", "-n", namespace, "deployment/churn", "--replicas=6")
            kubectl("wait", "-n", namespace, "deployment/churn", "--for=jsonpath={.status.readyReplicas}=6",
                    "--timeout=60s")
            during = cluster_uids(kubectl, namespace, "pods")
            kubectl("scale", "-n", namespace, "deployment/churn", "--replicas=1")
            eventually(lambda: len(cluster_uids(kubectl, namespace, "pods")) == 1, what="scale-down")
            eventually(lambda: spool.exists() and spool.stat().st_size > 0, 30, "the writer to spool")
        finally:
            services.postgres_up(s)
        final = cluster_uids(kubectl, namespace, "pods")
        eventually(lambda: (not spool.exists() or spool.stat().st_size == 0)
                   and set(live(db, namespace, "Pod")) == final, 90, "the spool to be written")
    steps = history(db, namespace, "Pod")
    assert during <= set(steps)
    for uid in during:
        assert {"created", "scheduled", "running", "ready"} <= set(steps[uid]), steps[uid]
        if uid not in final:
            assert steps[uid][-1] == "deleted"
    assert not spool.exists() or spool.stat().st_size == 0, "the spool is drained once PostgreSQL is back"


def test_custom_resources_of_a_crd_created_later_are_recorded(
        operator_env: ClusterSettings, kubectl: Kubectl, namespace: str) -> None:
    group = f"g{uuid.uuid4().hex[:6]}.example.com"
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": f"widgets.{group}"},
           "spec": {"group": group, "scope": "Namespaced",
                    "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
                    "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                        "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}}
    with operator():
        try:
            kubectl("apply", "-f", "-", stdin=yaml.safe_dump(crd))
            kubectl("wait", "--for=condition=Established", f"crd/widgets.{group}", "--timeout=30s")
            kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(
                {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 3}}))
            uid = kubectl.json("get", f"widgets.{group}", "w1", "-n", namespace)["metadata"]["uid"]
            eventually(lambda: uid in live(operator_env.database_url, namespace, "Widget"), 60,
                       "the custom resource recorded")
        finally:
            kubectl("delete", "crd", f"widgets.{group}", "--wait=false", check=False)
