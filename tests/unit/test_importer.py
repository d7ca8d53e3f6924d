"""Importing a cluster, the pure half: reading exports, cleaning, ordering, owners, scale, secrets."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from k8sim import importer
from k8sim.manifests import Document, Limits, ManifestError
from tests.import_sample import eks_node, export, export_yaml

DATA = Path(__file__).parent / "data" / "import"
LIMITS = Limits()


def planned(text: str | dict[str, str], **kwargs: Any) -> importer.Plan:
    docs, export_format = importer.read(text, LIMITS)
    return importer.plan(docs, export_format=export_format, **kwargs)


def by_id(the_plan: importer.Plan) -> dict[str, importer.Entry]:
    return {e.id: e for e in the_plan.entries}


def obj(the_plan: importer.Plan, kind: str, name: str) -> dict[str, Any]:
    return next(d.obj for d in the_plan.objects if d.kind == kind and d.name == name)


def test_a_kubectl_list_is_imported_without_what_the_source_cluster_owns() -> None:
    the_plan = planned(export_yaml())
    assert the_plan.format == "list"
    for doc in the_plan.objects:
        meta = doc.obj["metadata"]
        assert not set(meta) & {"uid", "resourceVersion", "managedFields", "creationTimestamp", "generation",
                                "ownerReferences", "selfLink"}, doc.name
        assert "status" not in doc.obj, doc.name
        assert "kubectl.kubernetes.io/last-applied-configuration" not in (meta.get("annotations") or {})
    assert "annotations" not in obj(the_plan, "Deployment", "php-apache")["metadata"], \
        "the revision and last-applied annotations gone, nothing left"
    service = obj(the_plan, "Service", "php-apache")["spec"]
    assert "clusterIP" not in service and "clusterIPs" not in service
    assert service["ports"] == [{"port": 80}]


def test_order_is_dependencies_first_and_autoscalers_last() -> None:
    kinds = [d.kind for d in planned(export_yaml()).objects]
    assert kinds == ["Namespace", "Secret", "ConfigMap", "ConfigMap", "Service", "Deployment", "Deployment",
                     "Job", "HorizontalPodAutoscaler"]


def test_controller_owned_objects_and_cluster_objects_are_skipped_with_the_reason() -> None:
    entries = by_id(planned(export_yaml()))
    skipped = {k: e.reason or "" for k, e in entries.items() if e.action == "skip"}
    rs = next(k for k in skipped if "/ReplicaSet/php-apache-" in k)
    assert skipped[rs] == "made by its Deployment php-apache"
    pods = [k for k in skipped if "/Pod/" in k]
    assert len(pods) == 4 and all(skipped[p].startswith("made by its ReplicaSet ") for p in pods)
    assert skipped["shop/ServiceAccount/default"] == "every namespace has it"
    assert skipped["shop/ConfigMap/kube-root-ca.crt"].startswith("the cluster's CA")
    assert skipped["shop/Event/php-apache.17c"].startswith("events are")
    assert entries["shop/Deployment/php-apache"].action == "apply"


def test_bare_pods_are_imported_and_keep_their_node_only_when_it_is_imported() -> None:
    source = export()
    pod = copy.deepcopy(next(i for i in source["items"] if i["kind"] == "Pod"))
    pod["metadata"].pop("ownerReferences")
    pod["metadata"]["name"] = "debug"
    source["items"].append(pod)
    node = pod["spec"]["nodeName"]
    kept = planned(yaml.safe_dump(source))
    assert obj(kept, "Pod", "debug")["spec"]["nodeName"] == node
    scaled = planned(yaml.safe_dump(source), scale=0.1)
    names = {n["metadata"]["name"] for n in scaled.nodes}
    assert ("nodeName" in obj(scaled, "Pod", "debug")["spec"]) == (node in names)


def test_job_loses_the_selector_generated_from_the_source_uid() -> None:
    job = obj(planned(export_yaml()), "Job", "pi")
    assert "selector" not in job["spec"]
    assert job["spec"]["template"]["metadata"]["labels"] == {"batch.kubernetes.io/job-name": "pi", "job-name": "pi"}


def test_secret_values_become_placeholders_unless_kept() -> None:
    secret = obj(planned(export_yaml()), "Secret", "db-password")
    assert base64.b64decode(secret["data"]["password"]) == importer.PLACEHOLDER
    kept = obj(planned(export_yaml(), keep_secrets=True), "Secret", "db-password")
    assert base64.b64decode(kept["data"]["password"]) == b"hunter2"


def test_docker_config_placeholders_stay_valid_json() -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
              "metadata": {"name": "pull", "namespace": "shop"},
              "data": {".dockerconfigjson": base64.b64encode(b'{"auths":{"r":{"auth":"eDp5"}}}').decode()}}
    cleaned = importer.clean(secret)
    assert json.loads(base64.b64decode(cleaned["data"][".dockerconfigjson"])) == {"auths": {}}


def test_nodes_keep_shape_and_lose_the_kubelets_status() -> None:
    source = eks_node("ip-1", "eu-west-1a", taints=[{"key": "workload", "value": "batch", "effect": "NoSchedule"}])
    node = importer.node_object(source, "10.240.0.50")
    labels = node["metadata"]["labels"]
    assert labels["node.kubernetes.io/instance-type"] == "m5.xlarge"
    assert labels["topology.kubernetes.io/zone"] == "eu-west-1a"
    assert labels["eks.amazonaws.com/nodegroup"] == "general"
    assert labels["k8sim.io/pool"] == "general" and labels[importer.IMPORTED_LABEL] == "true"
    assert node["spec"] == {"providerID": "kwok://ip-1",
                            "taints": [{"key": "workload", "value": "batch", "effect": "NoSchedule"}]}, \
        "the transient not-ready taint goes, the node group's taint stays"
    status = node["status"]
    assert status["capacity"] == source["status"]["capacity"]
    assert status["allocatable"] == source["status"]["allocatable"]
    assert set(status) == {"capacity", "allocatable", "addresses", "nodeInfo"}
    assert status["addresses"][0] == {"type": "InternalIP", "address": "10.240.0.50"}
    assert status["nodeInfo"]["kubeletVersion"] != source["status"]["nodeInfo"]["kubeletVersion"]
    assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"


@pytest.mark.parametrize(("labels", "pool"), [
    ({"k8sim.io/pool": "cpu", "karpenter.sh/nodepool": "x"}, "cpu"),
    ({"karpenter.sh/nodepool": "default"}, "default"),
    ({"eks.amazonaws.com/nodegroup": "ng-1"}, "ng-1"),
    ({"cloud.google.com/gke-nodepool": "pool-1"}, "pool-1"),
    ({"kubernetes.azure.com/agentpool": "agent"}, "agent"),
    ({"node.kubernetes.io/instance-type": "m5.large", "topology.kubernetes.io/zone": "a"}, "m5.large/a"),
])
def test_pool_is_inferred_from_labels(labels: dict[str, str], pool: str) -> None:
    assert importer.pool_of({"metadata": {"name": "n", "labels": labels}}) == pool


def test_scale_keeps_every_pool_and_its_zones() -> None:
    nodes = [eks_node(f"g{i}", f"z{i % 3}") for i in range(30)] + [eks_node("b0", "z0", group="batch")]
    kept = importer.scale_nodes(nodes, 0.1)
    pools = [importer.pool_of(n) for n in kept]
    assert pools.count("general") == 3 and pools.count("batch") == 1, "at least one per pool"
    zones = sorted(n["metadata"]["labels"]["topology.kubernetes.io/zone"] for n in kept
                   if importer.pool_of(n) == "general")
    assert zones == ["z0", "z1", "z2"]
    assert importer.scale_nodes(nodes, 1.0) == nodes


def test_scale_out_of_range_is_refused() -> None:
    docs, _ = importer.read(export_yaml(), LIMITS)
    for scale in (0, -1, 1.5):
        with pytest.raises(ManifestError) as info:
            importer.plan(docs, scale=scale)
        assert info.value.status == 422


def test_source_totals_are_the_source_nodes_and_their_bound_pods() -> None:
    source = planned(export_yaml()).source
    assert source.nodes == 3
    assert source.allocatable.cpu == pytest.approx(3 * 3.92)
    assert source.allocatable.pods == 174
    assert source.requested_from == "pods"
    assert source.requested.pods == 4 and source.requested.cpu == pytest.approx(0.2)
    assert set(source.pools) == {"general", "batch"} and source.pools["general"]["nodes"] == 2


def test_cluster_info_dump_lists_without_item_kinds_and_with_logs() -> None:
    the_plan = planned((DATA / "cluster-info-dump.txt").read_text())
    assert the_plan.format == "cluster-info-dump"
    assert sorted(n["metadata"]["name"] for n in the_plan.nodes) == ["cpu-0", "cpu-1", "gpu-t4-0"]
    kinds = {e.kind: e.reason or "" for e in the_plan.entries}
    assert kinds["Event"].startswith("events are")
    assert by_id(the_plan)["default/Service/kubernetes"].reason == "the apiserver's own Service"
    assert the_plan.objects == []


def test_kwokctl_snapshot_imports_nodes_and_skips_the_clusters_own() -> None:
    the_plan = planned((DATA / "kwokctl-snapshot.yaml").read_text())
    assert the_plan.format == "kwokctl-snapshot"
    assert len(the_plan.nodes) == 3
    entries = by_id(the_plan)
    assert entries["/Namespace/kube-system"].reason == "every cluster has it"
    assert entries["/ClusterRoleBinding/cluster-admin"].reason == "the cluster's own RBAC"
    assert entries["/PriorityClass/system-node-critical"].reason == "built into every cluster"
    pv = next(e for e in the_plan.entries if e.kind == "PersistentVolume")
    assert pv.reason == "its provisioner makes one here for its claim"
    assert entries["kube-system/ConfigMap/extension-apiserver-authentication"].reason == \
        "kube-system belongs to the simulated cluster"


def test_several_files_and_duplicates_import_once() -> None:
    text = export_yaml()
    the_plan = planned({"a.yaml": text, "b.yaml": text})
    assert len(the_plan.objects) == 9
    duplicates = [e for e in the_plan.entries if e.reason == "the same object appears earlier in the export"]
    assert len(duplicates) == 9


@pytest.mark.parametrize("text", ["this is: [not valid", "{\"kind\": \"List\", ", "plain words", "- a\n- b\n"])
def test_not_yaml_or_json_is_422_naming_the_problem(text: str) -> None:
    with pytest.raises(ManifestError) as info:
        importer.read(text, LIMITS)
    assert info.value.status == 422
    assert info.value.problems, str(info.value)


def test_limits_are_the_parsers() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefg", "bcdefgh", strict=True))
    with pytest.raises(ManifestError) as info:
        importer.read(bomb, LIMITS)
    assert info.value.status == 413
    with pytest.raises(ManifestError) as info:
        importer.read(export_yaml(), Limits(max_bytes=1000))
    assert info.value.status == 413
    with pytest.raises(ManifestError) as info:
        importer.read(export_yaml(), Limits(max_documents=5))
    assert info.value.status == 413


def test_addresses_skip_those_taken() -> None:
    assert importer.addresses("10.240.0.0/16", 3, taken={"10.240.0.11"}) == ["10.240.0.10", "10.240.0.12",
                                                                             "10.240.0.13"]


def test_report_counts_and_comparison() -> None:
    the_plan = planned(export_yaml())
    report = importer.Report("list", 1.0, False, [importer.Entry("v1", "Node", "", "n", "created")],
                             [importer.Entry("v1", "ConfigMap", "shop", "c", "unchanged"),
                              importer.Entry("v1", "Pod", "shop", "p", "skipped", "made by"),
                              importer.Entry("v1", "Secret", "shop", "s", "failed", "forbidden")], the_plan.source, [])
    body = report.as_dict()
    assert body["status"] == "failed" and body["counts"] == {"created": 1, "configured": 0, "unchanged": 1,
                                                             "skipped": 1, "failed": 1}
    node = {"metadata": {"name": "n"}, "status": {"allocatable": {"cpu": "2", "memory": "1Gi", "pods": "10"}}}
    pod = {"metadata": {"name": "p"}, "spec": {"nodeName": "n", "containers": [
        {"resources": {"requests": {"cpu": "500m"}}}]}, "status": {"phase": "Running"}}
    other = {"metadata": {"name": "p2"}, "spec": {"nodeName": "m", "containers": []}, "status": {"phase": "Running"}}
    block = importer.compare({**the_plan.source.as_dict(), "imported_nodes": ["n"]}, [node], [pod, other])
    assert block["imported"] == {"nodes": 1, "allocatable": {"cpu_cores": 2.0, "memory_bytes": 1073741824,
                                                             "gpus": 0.0, "pods": 10},
                                 "requested": {"cpu_cores": 0.5, "memory_bytes": 0, "gpus": 0.0, "pods": 1}}
    assert block["nodes"] == 3


def test_documents_without_namespace_stay_so_until_apply() -> None:
    doc = Document({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}, 0)
    the_plan = importer.plan([doc])
    assert the_plan.objects[0].namespace is None and the_plan.entries[0].stage == "configuration"


def test_one_large_list_document_is_not_an_alias_bomb() -> None:
    # kubectl get -A -o yaml is one document; its size in YAML nodes follows its size in bytes.
    docs, _ = importer.read(export_yaml(), Limits(max_nodes=1000))
    assert len(docs) == 21


def test_kubectl_json_reads_as_its_yaml() -> None:
    from_json = planned(json.dumps(export()))
    from_yaml = planned(export_yaml())
    assert from_json.format == "json"
    assert [d.obj for d in from_json.objects] == [d.obj for d in from_yaml.objects]
    assert from_json.source == from_yaml.source


@pytest.mark.parametrize(("text", "words"), [
    ('{"kind": "List", "items": [{"x": NaN}]}', "NaN is not a JSON value"),
    ("[" * 100 + "]" * 100, "nested deeper than 64 levels"),
    ('{"kind": "List"} trailing words', "not YAML or JSON"),
])
def test_bad_json_is_422(text: str, words: str) -> None:
    with pytest.raises(ManifestError) as info:
        importer.read(text, LIMITS)
    assert info.value.status == 422 and words in str(info.value)


def test_names_that_cannot_go_into_a_url_and_nodes_without_capacity_fail_in_the_plan() -> None:
    bad = {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "../secrets/x", "namespace": "a"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ok", "namespace": "a b"}},
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "bare"}},
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "odd"}, "status": {"capacity": {"cpu": ["4"]}}},
        eks_node("fine", "z"), eks_node("fine", "z"),
    ]}
    the_plan = planned(yaml.safe_dump(bad))
    assert [(e.name, e.action) for e in the_plan.entries] == [("../secrets/x", "fail"), ("ok", "fail")]
    assert the_plan.entries[1].reason == "metadata.namespace 'a b' is not a valid Kubernetes name"
    assert the_plan.objects == []
    assert [n["metadata"]["name"] for n in the_plan.nodes] == ["fine"], "a node twice is one node"
    failures = {e.name: e.reason for e in the_plan.node_failures}
    assert failures["bare"] is not None and failures["bare"].startswith("status.capacity is missing")
    assert failures["odd"] == "status.capacity must map resource names to quantities"


def test_a_node_is_the_same_whatever_the_node_lifecycle_added() -> None:
    wanted = importer.node_object(eks_node("n", "z", taints=[{"key": "team", "value": "a", "effect": "NoSchedule"}]),
                                  "10.240.0.10")
    existing = copy.deepcopy(wanted)
    existing["spec"]["taints"] = [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"},
                                  {"key": "team", "value": "a", "effect": "NoSchedule"}]
    existing["metadata"]["labels"]["extra"] = "x"
    assert importer._same_node(existing, wanted)
    existing["spec"]["taints"] = []
    assert not importer._same_node(existing, wanted)
    existing = copy.deepcopy(wanted)
    existing["status"]["allocatable"]["cpu"] = "1"
    assert not importer._same_node(existing, wanted)


def test_an_apply_that_only_rewrote_bookkeeping_changed_nothing() -> None:
    before: dict[str, Any] = {"apiVersion": "v1", "kind": "Namespace", "status": {"phase": "Active"},
                               "metadata": {"name": "a", "resourceVersion": "1", "managedFields": [{"manager": "x"}]}}
    after: dict[str, Any] = {**before, "status": {"phase": "Terminating"},
                             "metadata": {**before["metadata"], "resourceVersion": "2", "managedFields": []}}
    assert importer._content(before) == importer._content(after)
    labelled = {**after, "metadata": {**after["metadata"], "labels": {"a": "b"}}}
    assert importer._content(before) != importer._content(labelled)
