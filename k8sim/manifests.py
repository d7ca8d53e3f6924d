"""Manifests: safe YAML parsing with limits, structure checks, tenancy and apply order.

Everything here is pure (no cluster): the API calls these, then dry-runs and applies
what they return. Parsing follows what kubectl and sigs.k8s.io/yaml accept: multi-document
YAML and KYAML flow style, YAML 1.1 scalars, dates kept as strings, ``List`` kinds expanded,
empty documents skipped. Hostile input (alias bombs, deep nesting, huge documents) is
rejected before anything is built from it.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from k8sim.lifecycle import TENANT_LABELS

TENANT_LABEL = TENANT_LABELS[0]  # the label we add to objects whose labels name no tenant

# Kinds applied first, in this order; the rest follow in ORDER, unknown kinds (custom
# resources) last. Namespaces and CRDs must exist before what lives in or uses them.
ORDER = [
    "Namespace", "CustomResourceDefinition", "PriorityClass", "StorageClass", "CSIDriver",
    "ResourceQuota", "LimitRange", "PodSecurityPolicy", "PodDisruptionBudget", "ServiceAccount",
    "Secret", "SecretList", "ConfigMap", "PersistentVolume", "PersistentVolumeClaim",
    "ClusterRole", "ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList",
    "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service", "DaemonSet", "Pod",
    "ReplicationController", "ReplicaSet", "Deployment", "HorizontalPodAutoscaler", "StatefulSet",
    "Job", "CronJob", "IngressClass", "Ingress", "NetworkPolicy", "APIService",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
]
RANK = {kind: i for i, kind in enumerate(ORDER)}

#: Workload kinds whose pod template gets the tenant label too (path to the template).
POD_TEMPLATES = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


@dataclasses.dataclass(frozen=True)
class Limits:
    """Bounds against hostile input; every one is a setting of the API."""

    max_bytes: int = 5 * 1024 * 1024
    max_documents: int = 1000
    max_depth: int = 64
    max_aliases: int = 1000
    max_nodes: int = 500_000


@dataclasses.dataclass
class Problem:
    """One thing wrong with one document: where, and what."""

    message: str
    index: int | None = None
    file: str | None = None
    kind: str | None = None
    name: str | None = None
    field: str | None = None
    line: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(self.file)
        if self.index is not None:
            where.append(f"document {self.index}")
        if self.kind or self.name:
            where.append(f"{self.kind or '?'}/{self.name or '?'}")
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.field:
            where.append(f"field {self.field}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class ManifestError(ValueError):
    """A manifest that cannot be accepted; ``status`` is the HTTP status it deserves."""

    def __init__(self, message: str, problems: Iterable[Problem] = (), status: int = 400):
        self.problems = list(problems)
        self.status = status
        super().__init__(message)


@dataclasses.dataclass
class Document:
    """One Kubernetes object of a manifest and where it came from."""

    obj: dict[str, Any]
    index: int
    file: str | None = None

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind", ""))

    @property
    def api_version(self) -> str:
        return str(self.obj.get("apiVersion", ""))

    @property
    def name(self) -> str:
        return str((self.obj.get("metadata") or {}).get("name", ""))

    @property
    def namespace(self) -> str | None:
        ns = (self.obj.get("metadata") or {}).get("namespace")
        return str(ns) if ns else None

    def problem(self, message: str, field: str | None = None) -> Problem:
        return Problem(message, index=self.index, file=self.file, kind=self.kind or None,
                       name=self.name or None, field=field)


# --------------------------------------------------------------------------- YAML


# libyaml's parser when PyYAML was built with it (much faster), else the pure one.
_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[valid-type,misc]
    """SafeLoader as Kubernetes reads YAML: '=' is a plain string (PyYAML's 'value' tag has no
    constructor and rejects valid CRDs), and timestamps stay strings as in JSON."""

    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers
                if tag not in ("tag:yaml.org,2002:value", "tag:yaml.org,2002:timestamp")]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


def _check_graph(root: yaml.Node, limits: Limits, where: Problem) -> None:
    """Refuse alias bombs, cycles and deep nesting before constructing anything."""
    def fail(message: str, status: int = 400) -> ManifestError:
        problem = dataclasses.replace(where, message=message)
        return ManifestError(str(problem), [problem], status=status)

    sizes: dict[int, int] = {}
    aliases = 0
    # Iterative post-order walk: (node, depth, children-done flag); `active` detects cycles.
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    active: set[int] = set()
    while stack:
        node, depth, done = stack.pop()
        key = id(node)
        if done:
            active.discard(key)
            total = 1
            for child in _children(node):
                total += sizes[id(child)]
            sizes[key] = total
            if total > limits.max_nodes:
                raise fail(f"expands to more than {limits.max_nodes} nodes (YAML alias expansion limit)", 413)
            continue
        if key in sizes:
            aliases += 1  # a node reached a second time is an alias use
            if aliases > limits.max_aliases:
                raise fail(f"more than {limits.max_aliases} YAML alias uses", 413)
            continue
        if key in active:
            raise fail("recursive YAML alias")
        if depth > limits.max_depth:
            raise fail(f"nested deeper than {limits.max_depth} levels")
        active.add(key)
        stack.append((node, depth, True))
        for child in _children(node):
            if id(child) in active:
                raise fail("recursive YAML alias")
            stack.append((child, depth + 1, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _jsonable(value: Any, path: str, where: Problem) -> Any:
    """Values as JSON sees them: string keys, no binary, no sets."""
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, bool) else str(k).lower(): _jsonable(v, f"{path}.{k}", where)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v, f"{path}[{i}]", where) for i, v in enumerate(value)]
    if isinstance(value, bytes) or (isinstance(value, float) and value != value):  # NaN has no JSON form
        problem = dataclasses.replace(where, message="binary and .nan values are not allowed",
                                      field=path.lstrip("."))
        raise ManifestError(str(problem), [problem])
    return value


def load_yaml(text: str, *, file: str | None = None, start_index: int = 0,
              limits: Limits = Limits()) -> list[tuple[int, Any]]:
    """(document index, value) of every non-empty YAML document in ``text``."""
    if "\x00" in text:
        raise ManifestError(f"{file or 'manifest'}: contains NUL bytes; expected UTF-8 text")
    loader = _Loader(text)
    docs: list[tuple[int, Any]] = []
    index = start_index
    try:
        while loader.check_node():
            node = loader.get_node()
            where = Problem("", index=index, file=file, line=node.start_mark.line + 1 if node else None)
            if node is not None:
                _check_graph(node, limits, where)
                value = loader.construct_document(node)
                if value is not None:
                    docs.append((index, _jsonable(value, "", where)))
                    if len(docs) + start_index > limits.max_documents:
                        raise ManifestError(f"more than {limits.max_documents} documents", status=413)
            index += 1
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = Problem(f"invalid YAML: {exc.problem or exc.context}", index=index, file=file, line=line)
        raise ManifestError(str(problem), [problem]) from None
    except yaml.YAMLError as exc:
        problem = Problem(f"invalid YAML: {exc}", index=index, file=file)
        raise ManifestError(str(problem), [problem]) from None
    except RecursionError:
        problem = Problem(f"nested deeper than {limits.max_depth} levels", index=index, file=file)
        raise ManifestError(str(problem), [problem]) from None
    finally:
        loader.dispose()
    return docs


def split_sources(manifest: str | Mapping[str, str]) -> list[tuple[str | None, str]]:
    """A manifest string, or ECP-AI's {file name: YAML} object, as (file, text) pairs in order."""
    if isinstance(manifest, str):
        return [(None, manifest)]
    return [(str(name), text) for name, text in manifest.items()]


def parse(manifest: str | Mapping[str, str], limits: Limits = Limits()) -> list[Document]:
    """Every object of a manifest, structure-checked; raises ManifestError listing all problems."""
    sources = split_sources(manifest)
    total = sum(len(text.encode("utf-8", "surrogatepass")) for _, text in sources)
    if total > limits.max_bytes:
        raise ManifestError(f"manifest is {total} bytes; the limit is {limits.max_bytes}", status=413)
    documents: list[Document] = []
    problems: list[Problem] = []
    index = 0
    for file, text in sources:
        if not isinstance(text, str):
            raise ManifestError(f"{file}: expected a YAML string", [Problem("expected a YAML string", file=file)])
        for doc_index, value in load_yaml(text, file=file, start_index=index, limits=limits):
            for obj in expand(value, doc_index, file, problems):
                documents.append(Document(obj, doc_index, file))
            index = doc_index + 1
        if len(documents) > limits.max_documents:
            raise ManifestError(f"more than {limits.max_documents} objects", status=413)
    for doc in documents:
        problems.extend(check_structure(doc))
    if problems:
        raise ManifestError(f"{len(problems)} problem(s): " + "; ".join(map(str, problems[:5])), problems, 422)
    if not documents:
        raise ManifestError("manifest holds no Kubernetes objects", [Problem("no documents")], 422)
    return documents


def expand(value: Any, index: int, file: str | None, problems: list[Problem]) -> list[dict[str, Any]]:
    """The objects of one document: itself, or a List's items. Items without a kind or apiVersion get
    the List's (``PodList`` → ``Pod``), as a cluster-info dump writes them; Go writes an empty list as
    ``null``."""
    if not isinstance(value, dict):
        problems.append(Problem(f"expected a mapping (an object), found {type(value).__name__}",
                                index=index, file=file))
        return []
    kind = value.get("kind")
    if not (isinstance(kind, str) and kind.endswith("List") and "items" in value
            and isinstance(value["items"], list | None)):
        return [value]
    item_kind, api_version = kind.removesuffix("List"), value.get("apiVersion")
    items = []
    for i, item in enumerate(value["items"] or []):
        if not isinstance(item, dict):
            problems.append(Problem(f"items[{i}] is not an object", index=index, file=file, kind=kind))
            continue
        if item_kind and not item.get("kind"):
            item["kind"] = item_kind
        if api_version and not item.get("apiVersion"):
            item["apiVersion"] = api_version
        items.append(item)
    return items


def check_structure(doc: Document) -> list[Problem]:
    obj, found = doc.obj, []
    for field in ("apiVersion", "kind"):
        if not isinstance(obj.get(field), str) or not obj.get(field):
            found.append(doc.problem(f"{field} is required and must be a string", field))
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        found.append(doc.problem("metadata is required and must be an object", "metadata"))
        return found
    if not isinstance(meta.get("name"), str) or not meta.get("name"):
        found.append(doc.problem("metadata.name is required and must be a string", "metadata.name"))
    if meta.get("namespace") is not None and not isinstance(meta["namespace"], str):
        found.append(doc.problem("metadata.namespace must be a string", "metadata.namespace"))
    for field in ("labels", "annotations"):
        value = meta.get(field)
        if value is not None and (not isinstance(value, dict)
                                  or not all(isinstance(v, str) for v in value.values())):
            found.append(doc.problem(f"metadata.{field} must map strings to strings", f"metadata.{field}"))
    return found


# --------------------------------------------------------------------------- tenancy


def tenant_namespace(documents: Iterable[Document], tenant: str | None) -> str | None:
    """The namespace a manifest implies for its tenant: its only Namespace, or the one labelled so."""
    namespaces = [d for d in documents if d.kind == "Namespace"]
    if len(namespaces) == 1:
        return namespaces[0].name
    if tenant:
        for doc in namespaces:
            labels = (doc.obj.get("metadata") or {}).get("labels") or {}
            if any(labels.get(k) == tenant for k in TENANT_LABELS):
                return doc.name
    return None


def prepare(documents: Iterable[Document], *, tenant: str | None, default_namespace: str,
            namespaced: Mapping[tuple[str, str], bool]) -> list[Document]:
    """Copies ready to apply: namespace filled in, tenant label set, sorted in apply order.

    ``namespaced`` tells which (apiVersion, kind) live in namespaces (from discovery); kinds
    it does not know are assumed namespaced, as most custom resources are.
    """
    prepared = []
    for doc in documents:
        obj = copy.deepcopy(doc.obj)
        meta = obj.setdefault("metadata", {})
        if namespaced.get((doc.api_version, doc.kind), True):
            meta["namespace"] = meta.get("namespace") or default_namespace
        else:
            meta.pop("namespace", None)
        if tenant:
            labels = meta.get("labels") or {}
            if not any(labels.get(k) for k in TENANT_LABELS):
                meta["labels"] = {**labels, TENANT_LABEL: tenant}
            template = _dig(obj, POD_TEMPLATES.get(doc.kind, ()))
            if template is not None:
                tmeta = template.setdefault("metadata", {}) if isinstance(template, dict) else None
                if isinstance(tmeta, dict):
                    tlabels = tmeta.get("labels") or {}
                    if not any(tlabels.get(k) for k in TENANT_LABELS):
                        tmeta["labels"] = {**tlabels, TENANT_LABEL: tenant}
        prepared.append(Document(obj, doc.index, doc.file))
    return sorted(prepared, key=lambda d: (RANK.get(d.kind, len(RANK)), d.index))


def _dig(obj: Any, path: tuple[str, ...]) -> Any:
    if not path:
        return None
    for key in path:
        if not isinstance(obj, dict) or not isinstance(obj.get(key), dict):
            return None
        obj = obj[key]
    return obj

