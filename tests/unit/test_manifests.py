"""Manifest parsing with limits, structure checks, tenancy and apply order: pure, no cluster."""

from __future__ import annotations

import pytest

from k8sim import manifests
from k8sim.manifests import Limits, ManifestError

DEFAULT = Limits()
CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n"


def parse(text: str | dict[str, str], limits: Limits = DEFAULT) -> list[manifests.Document]:
    return manifests.parse(text, limits)


def refused(text: str | dict[str, str], limits: Limits = DEFAULT) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        manifests.parse(text, limits)
    return info.value


def test_multi_document_yaml_skips_empty_documents_and_keeps_indexes() -> None:
    docs = parse("---\n" + CM.format(name="a") + "---\n---\n" + CM.format(name="b") + "...\n")
    assert [d.name for d in docs] == ["a", "b"]
    assert [d.index for d in docs] == [0, 2], "a leading --- opens the first document; the empty one counts"


def test_ecp_ai_file_objects_keep_file_names_and_running_indexes() -> None:
    docs = parse({"01-a.yaml": CM.format(name="a"), "02-b.yaml": "---\n" + CM.format(name="b")})
    assert [(d.file, d.name, d.index) for d in docs] == [("01-a.yaml", "a", 0), ("02-b.yaml", "b", 1)]


def test_list_kinds_expand_to_their_items() -> None:
    docs = parse("apiVersion: v1\nkind: List\nitems:\n- " + CM.format(name="a").replace("\n", "\n  ")
                 + "\n- " + CM.format(name="b").replace("\n", "\n  "))
    assert [d.name for d in docs] == ["a", "b"] and {d.index for d in docs} == {0}


@pytest.mark.parametrize("text", [
    CM.format(name="a").replace("\n", "\r\n"),
    '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}',
    "{apiVersion: v1, kind: ConfigMap, metadata: {name: a}, data: {when: 2024-01-15, eq: =}}",
])
def test_crlf_kyaml_flow_style_dates_and_equals_signs(text: str) -> None:
    (doc,) = parse(text)
    assert doc.name == "a"
    if "data" in doc.obj:
        assert doc.obj["data"] == {"when": "2024-01-15", "eq": "="}, "dates stay strings, '=' is a string"


@pytest.mark.parametrize(("text", "status", "words"), [
    ("kind: [", 400, "invalid YAML"),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n\x00", 400, "NUL"),
    ("a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\nd: &d [*c, *c]\ne: &e [*d, *d]\nf: &f [*e, *e]\n"
     "g: [*f, *f]\n", 413, "alias"),
    ("0", 422, "expected a mapping"),
    ("kind: ConfigMap\nmetadata:\n  name: a\n", 422, "apiVersion is required"),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  namespace: 3\n  name: a\n", 422, "namespace must be a string"),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  labels: {x: [1]}\n", 422, "labels must map"),
    ("---\n---\n", 422, "no Kubernetes objects"),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {x: .nan}\n", 400, ".nan"),
])
def test_bad_input_gets_a_clear_error_with_its_status(text: str, status: int, words: str) -> None:
    error = refused(text, Limits(max_aliases=10))
    assert error.status == status and words in str(error), str(error)


def test_limits_on_size_documents_and_depth() -> None:
    assert refused(CM.format(name="a") * 1, Limits(max_bytes=10)).status == 413
    many = "---\n".join(CM.format(name=f"c{i}") for i in range(5))
    assert refused(many, Limits(max_documents=3)).status == 413
    deep = "a: " + "[" * 80 + "]" * 80
    assert "nested deeper" in str(refused(deep, Limits(max_depth=64)))
    billion = "a: &a [x]\n" + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}]\n"
                                        for i in range(20))
    assert refused(billion, Limits(max_nodes=1000, max_aliases=10_000)).status == 413


def test_recursive_aliases_are_refused() -> None:
    assert "recursive" in str(refused("a: &a [*a]\n"))


def test_problems_name_the_document_file_kind_and_field() -> None:
    error = refused({"x.yaml": "apiVersion: v1\nkind: Pod\nmetadata: {}\n"})
    (problem,) = error.problems
    assert (problem.file, problem.index, problem.kind, problem.field) == ("x.yaml", 0, "Pod", "metadata.name")
    assert str(problem) == "x.yaml, document 0, Pod/?, field metadata.name: metadata.name is required and must be " \
                           "a string"


def namespaced(kind: str) -> bool:
    return kind not in ("Namespace", "ClusterRole", "CustomResourceDefinition", "StorageClass")


NAMESPACED = {(av, k): namespaced(k) for av, k in [
    ("v1", "Namespace"), ("v1", "ConfigMap"), ("apps/v1", "Deployment"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"), ("apiextensions.k8s.io/v1", "CustomResourceDefinition")]}


def test_prepare_orders_fills_namespaces_and_labels_tenants_and_pod_templates() -> None:
    docs = parse(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    metadata: {}\n"
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, labels: {tenant: other}}\n"
        "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r, namespace: x}\n"
        "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: ecp-ai-t1}\n"
        "---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n")
    prepared = manifests.prepare(docs, tenant="t1", default_namespace="ecp-ai-t1", namespaced=NAMESPACED)
    assert [d.kind for d in prepared] == ["Namespace", "ConfigMap", "ClusterRole", "Deployment", "Widget"]
    by_kind = {d.kind: d.obj for d in prepared}
    assert by_kind["Deployment"]["metadata"]["namespace"] == "ecp-ai-t1"
    assert "namespace" not in by_kind["ClusterRole"]["metadata"], "cluster-scoped objects name no namespace"
    assert by_kind["Widget"]["metadata"]["namespace"] == "ecp-ai-t1", "unknown kinds are assumed namespaced"
    assert by_kind["Deployment"]["metadata"]["labels"] == {"ecp.ai/tenant-id": "t1"}
    assert by_kind["Deployment"]["spec"]["template"]["metadata"]["labels"] == {"ecp.ai/tenant-id": "t1"}
    assert by_kind["ConfigMap"]["metadata"]["labels"] == {"tenant": "other"}, "a tenant label already there wins"
    assert docs[0].obj["metadata"] == {"name": "web"}, "prepare works on copies"


@pytest.mark.parametrize(("tenant", "expected"), [("t1", "ecp-ai-t1"), ("t10", "t10-ecp-ai"), ("t", None)])
def test_a_manifests_tenant_namespace_is_matched_exactly(tenant: str, expected: str | None) -> None:
    docs = parse("apiVersion: v1\nkind: Namespace\nmetadata: {name: ecp-ai-t1, labels: {tenant: t1}}\n---\n"
                 "apiVersion: v1\nkind: Namespace\nmetadata: {name: t10-ecp-ai, labels: {ecp.ai/tenant-id: t10}}\n")
    assert manifests.tenant_namespace(docs, tenant) == expected


def test_a_single_namespace_is_the_manifests_namespace() -> None:
    assert manifests.tenant_namespace(parse("apiVersion: v1\nkind: Namespace\nmetadata: {name: only}\n"), None) \
        == "only"
