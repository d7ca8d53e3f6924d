"""POST /cluster/import against the real cluster: a 3-node EKS export with its workloads comes in, KWOK plays
its nodes, the scheduler places its pods there, a second import changes nothing, bad input changes nothing."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from tests.import_sample import export

from .conftest import Kubectl, eventually

pytestmark = pytest.mark.integration


@pytest.fixture
def source(kubectl: Kubectl) -> Iterator[dict[str, Any]]:
    """An export whose namespace and node names are this test's own; they and the import's record go after."""
    tag = uuid.uuid4().hex[:6]
    namespace = f"imp-{tag}"
    nodes = [f"imp-{tag}-{zone}" for zone in ("a", "b", "c")]
    the_export = export(namespace, nodes)
    # A workload bigger than any node of its group: the scheduler's reason must show after the import.
    too_big = copy.deepcopy(next(i for i in the_export["items"] if i["kind"] == "Deployment"))
    too_big["metadata"]["name"] = "too-big"
    container = too_big["spec"]["template"]["spec"]["containers"][0]
    container["resources"] = {"requests": {"cpu": "64"}}
    the_export["items"].append(too_big)
    yield {"namespace": namespace, "nodes": nodes, "export": the_export}
    kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    kubectl("delete", "node", *nodes, "--wait=false", check=False)
    kubectl("delete", "configmap", "-n", "kube-system", "k8sim-import-source", check=False)


def post(api_url: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{api_url}/cluster/import", json=body, timeout=120)


def test_import_a_cluster_and_again(api_url: str, kubectl: Kubectl, source: dict[str, Any]) -> None:
    namespace, names = source["namespace"], source["nodes"]
    text = yaml.safe_dump(source["export"])
    answer = post(api_url, {"manifest": text, "scale": 1.0})
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["status"] == "completed" and report["format"] == "list"
    assert [(n["name"], n["action"]) for n in report["nodes"]] == [(n, "created") for n in names]
    applied = {o["id"]: o["action"] for o in report["objects"] if o["action"] != "skipped"}
    objects = [("Secret", "db-password"), ("Deployment", "php-apache"), ("Service", "php-apache"),
               ("HorizontalPodAutoscaler", "php-apache"), ("Job", "pi"), ("ConfigMap", "special-config"),
               ("ConfigMap", "env-config"), ("Deployment", "nginx-deployment"), ("Deployment", "too-big")]
    assert applied == {f"/Namespace/{namespace}": "created",
                       **{f"{namespace}/{kind}/{name}": "created" for kind, name in objects}}
    assert report["counts"]["skipped"] == 9 and report["counts"]["failed"] == 0

    # The nodes: same names, labels, taints and capacity; KWOK makes them Ready.
    wanted = {n["metadata"]["name"]: n for n in source["export"]["items"] if n["kind"] == "Node"}

    def ready() -> bool:
        for node in kubectl.json("get", "nodes", "-l", "k8sim.io/imported=true")["items"]:
            name = node["metadata"]["name"]
            if name not in wanted:
                continue
            conditions = {c["type"]: c["status"] for c in node["status"].get("conditions") or []}
            assert conditions.get("Ready") == "True", (name, conditions)
        return True
    eventually(ready, 60, what="the imported nodes Ready")
    for name, source_node in wanted.items():
        node = kubectl.json("get", "node", name)
        labels = node["metadata"]["labels"]
        assert {k: v for k, v in source_node["metadata"]["labels"].items()} == \
            {k: labels[k] for k in source_node["metadata"]["labels"]}
        assert node["status"]["capacity"] == source_node["status"]["capacity"]
        assert node["status"]["allocatable"] == source_node["status"]["allocatable"]
        source_taints = [t for t in source_node["spec"]["taints"] if not t["key"].startswith("node.kubernetes.io/")]
        assert [t for t in node["spec"].get("taints") or [] if not t["key"].startswith("node.kubernetes.io/")] \
            == [{k: v for k, v in t.items() if k != "timeAdded"} for t in source_taints]
        address = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
        assert address.startswith("10.240."), address

    # The workloads: the Deployments' pods Running on the imported general-group nodes.
    def running() -> list[dict[str, Any]]:
        pods = kubectl.json("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/name")["items"]
        up = [p for p in pods if p["status"].get("phase") == "Running"
              and p["metadata"]["labels"]["app.kubernetes.io/name"] in ("nginx", "php-apache")]
        assert len(up) == 4, [(p["metadata"]["name"], p["status"].get("phase")) for p in pods]
        assert {p["spec"]["nodeName"] for p in up} <= set(names[:2])
        return up
    eventually(running, 90, what="the imported Deployments' pods Running")

    # The pod that fits nowhere waits with the scheduler's reason; capacity compares with the source.
    def compared() -> dict[str, Any]:
        doc = httpx.get(f"{api_url}/cluster/capacity", timeout=30).json()
        waiting = [g for g in doc["pending"] if any(p.startswith(f"{namespace}/too-big") for p in g["pods"])]
        assert waiting and "Insufficient cpu" in waiting[0]["reason"], doc["pending"]
        return dict(doc["source"])
    block = eventually(compared, 60, what="the scheduler's reason for too-big")
    assert block["nodes"] == 3 and block["imported"]["nodes"] == 3
    assert block["allocatable"] == block["imported"]["allocatable"]
    assert block["imported"]["requested"]["cpu_cores"] == pytest.approx(0.2)  # php-apache's one pod; nginx asks none

    # Importing again changes nothing.
    again = post(api_url, {"manifest": text}).json()
    assert again["counts"] == {"created": 0, "configured": 0, "unchanged": 13, "skipped": 9, "failed": 0}, again


def test_bad_input_is_refused_and_refused_objects_are_named(api_url: str, kubectl: Kubectl,
                                                            source: dict[str, Any]) -> None:
    namespace = source["namespace"]
    nodes_before = len(kubectl.json("get", "nodes")["items"])
    for bad in ("kind: List\nitems: [oops", "just words", '{"kind": "NodeList", "items": [{"metadata": {}}]}'):
        answer = post(api_url, {"manifest": bad})
        assert answer.status_code == 422, answer.text
        assert answer.json()["status"] == "error" and answer.json()["message"]
    assert post(api_url, {"manifest": "kind: List\nitems: []\n", "scale": 2}).status_code == 422
    assert len(kubectl.json("get", "nodes")["items"]) == nodes_before
    assert kubectl("get", "namespace", namespace, check=False).strip() == ""

    refused = {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fine", "namespace": namespace},
         "data": {"a": "b"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "broken", "namespace": namespace},
         "spec": {"ports": [{"port": 99999}]}},
    ]}
    answer = post(api_url, {"manifest": yaml.safe_dump(refused)})
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["status"] == "failed" and report["failed_count"] == 1
    broken = next(o for o in report["objects"] if o["name"] == "broken")
    assert broken["action"] == "failed" and "99999" in broken["reason"], broken
    assert kubectl.json("get", "configmap", "-n", namespace, "fine")["data"] == {"a": "b"}


def test_command_line_and_dry_run(api_url: str, kubectl: Kubectl, source: dict[str, Any]) -> None:
    namespace, names = source["namespace"], source["nodes"]
    small = {"apiVersion": "v1", "kind": "List", "items": [
        next(i for i in source["export"]["items"] if i["kind"] == "Node"),
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": namespace},
         "data": {"mode": "fast"}}]}
    text = yaml.safe_dump(small)
    dry = post(api_url, {"manifest": text, "dry_run": True}).json()
    assert dry["dry_run"] and dry["counts"]["created"] == 3, dry
    assert kubectl("get", "namespace", namespace, "--ignore-not-found").strip() == ""
    assert kubectl("get", "node", names[0], "--ignore-not-found").strip() == ""

    # At once, before KWOK has made the node Ready (the node lifecycle's not-ready taint is on it).
    command = [sys.executable, "-m", "k8sim", "import", "-", "--json"]
    env = {**os.environ, "K8SIM_KUBECONFIG": str(kubectl.settings.kubeconfig)}
    first = subprocess.run(command, input=text, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert first.returncode == 0, first.stderr
    assert "k8sim import: 3/3 applied" in first.stderr and "3 created" in first.stderr, first.stderr
    assert json.loads(first.stdout)["counts"]["created"] == 3
    again = subprocess.run(command, input=text, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert again.returncode == 0 and "3 unchanged" in again.stderr, (again.stderr, again.stdout)
    assert kubectl.json("get", "configmap", "-n", namespace, "settings")["data"] == {"mode": "fast"}
