"""prometheus-adapter played by the simulator: its rules config, discovery and query answering over a promql.Store.

Mirrors kubernetes-sigs/prometheus-adapter: config (``pkg/config``), naming and query building
(``pkg/naming``), custom metrics (``pkg/custom-provider``), external metrics (``pkg/external-provider``) and
resource metrics (``pkg/resourceprovider``). The engine serves the APIs; this module only decides what the
adapter would list and answer given the series the engine keeps.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from k8sim import promql

log = logging.getLogger(__name__)

__all__ = [
    "Adapter",
    "AdapterConfigError",
    "AdapterQueryError",
    "Config",
    "CustomMetric",
    "DiscoveryRule",
    "GroupResource",
    "MetricNotFound",
    "ResourceMapper",
    "ResourceRule",
    "ResourceRules",
    "load",
    "milli_value",
    "parse_duration",
    "parse_label_selector",
]

_PREFIX = "unable to load metrics discovery config: "


class AdapterConfigError(ValueError):
    """A config the adapter would refuse at start-up, or one the simulator cannot evaluate."""


class MetricNotFound(LookupError):
    """The metric is not (or no longer) discovered: the adapter answers 404 NotFound."""


class AdapterQueryError(RuntimeError):
    """The query could not be built or run: the adapter answers 500 ``unable to fetch metrics``."""


# ------------------------------------------------------------------------------------------ Go text/template


class TemplateError(ValueError):
    """A metrics query or label template Go's text/template would refuse to parse or execute."""


@dataclass(frozen=True)
class _Struct:
    """A Go struct passed to a template: unknown fields are an execution error, as in Go."""

    type_name: str
    fields: Mapping[str, Any]


_ACTION_RE = re.compile(r"<<(-[ \t\r\n])?(.*?)([ \t\r\n]-)?>>", re.S)
_TOKEN_RE = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`|:=|,|\(|\)|[^\s,()]+')
_FUNCS = frozenset(("index", "len", "not", "eq", "ne", "print", "and", "or"))


class _GoTemplate:
    """The part of Go's text/template (delimiters ``<<``/``>>``) adapter configs use: fields, ``index``,
    ``range``/``if``/``else``/``end``, variables, trim markers."""

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text
        self.tree = self._parse(text)

    def _parse(self, text: str) -> list[Any]:
        root: list[Any] = []
        stack: list[tuple[list[Any], list[Any] | None, list[Any]]] = []  # (node, else-branch, outer body)
        body = root
        pos = 0
        pending_trim = False
        for m in _ACTION_RE.finditer(text):
            segment = text[pos:m.start()]
            if pending_trim:
                segment = segment.lstrip(" \t\r\n")
            if m.group(1):
                segment = segment.rstrip(" \t\r\n")
            if segment:
                body.append(("text", segment))
            pending_trim = bool(m.group(3))
            pos = m.end()
            action = m.group(2).strip()
            if action.startswith("/*"):
                if not action.endswith("*/"):
                    raise TemplateError(f"template: {self.name}: unclosed comment")
                continue
            words = action.split(None, 1)
            keyword = words[0] if words else ""
            rest = words[1] if len(words) > 1 else ""
            if keyword in ("if", "range"):
                node: list[Any] = [keyword, rest, [], None]
                body.append(node)
                stack.append((node, None, body))
                body = node[2]
            elif keyword == "else":
                if not stack or stack[-1][0][3] is not None:
                    raise TemplateError(f"template: {self.name}: unexpected {{{{else}}}}")
                node = stack[-1][0]
                node[3] = []
                body = node[3]
            elif keyword == "end":
                if not stack:
                    raise TemplateError(f"template: {self.name}: unexpected {{{{end}}}}")
                _, _, body = stack.pop()
            elif keyword in ("with", "define", "template", "block", "break", "continue"):
                raise TemplateError(f"template: {self.name}: {keyword!r} actions are not supported by the simulator")
            elif not action:
                raise TemplateError(f"template: {self.name}: missing value for command")
            else:
                self._check_pipeline(action)
                body.append(("action", action))
        if stack:
            raise TemplateError(f"template: {self.name}: unexpected EOF")
        tail = text[pos:]
        if pending_trim:
            tail = tail.lstrip(" \t\r\n")
        if tail:
            body.append(("text", tail))
        return root

    def _check_pipeline(self, action: str) -> None:
        tokens = _TOKEN_RE.findall(action)
        for tok in tokens:
            if tok[0].isalpha() and tok not in _FUNCS and tok not in ("true", "false", "nil"):
                raise TemplateError(f'template: {self.name}: function "{tok}" not defined')

    def execute(self, data: _Struct) -> str:
        out: list[str] = []
        self._run(self.tree, data, {"$": data}, out)
        return "".join(out)

    def _run(self, nodes: list[Any], dot: Any, scope: dict[str, Any], out: list[str]) -> None:
        for node in nodes:
            if node[0] == "text":
                out.append(node[1])
            elif node[0] == "action":
                decl, expr = self._split_decl(node[1])
                value = self._eval(expr, dot, scope)
                if decl:
                    scope[decl[0]] = value
                else:
                    out.append(_go_print(value))
            elif node[0] == "if":
                if _truth(self._eval(node[1], dot, scope)):
                    self._run(node[2], dot, dict(scope), out)
                elif node[3] is not None:
                    self._run(node[3], dot, dict(scope), out)
            else:  # range
                decl, expr = self._split_decl(node[1])
                value = self._eval(expr, dot, scope)
                items: list[tuple[Any, Any]]
                if isinstance(value, dict):
                    items = [(k, value[k]) for k in sorted(value)]
                elif isinstance(value, (list, tuple)):
                    items = list(enumerate(value))
                elif value is None:
                    items = []
                else:
                    raise TemplateError(f"template: {self.name}: range can't iterate over {_go_print(value)}")
                if not items and node[3] is not None:
                    self._run(node[3], dot, dict(scope), out)
                for key, item in items:
                    inner = dict(scope)
                    if len(decl) == 1:
                        inner[decl[0]] = item
                    elif len(decl) == 2:
                        inner[decl[0]], inner[decl[1]] = key, item
                    self._run(node[2], item, inner, out)

    @staticmethod
    def _split_decl(action: str) -> tuple[list[str], str]:
        if ":=" not in action:
            return [], action
        left, _, right = action.partition(":=")
        names = [n.strip() for n in left.split(",") if n.strip()]
        return names, right.strip()

    def _eval(self, expr: str, dot: Any, scope: dict[str, Any]) -> Any:
        tokens = [t for t in _TOKEN_RE.findall(expr) if t != ","]
        if not tokens:
            raise TemplateError(f"template: {self.name}: missing value for command")
        if "|" in tokens:
            raise TemplateError(f"template: {self.name}: pipelines are not supported by the simulator")
        head, args = tokens[0], tokens[1:]
        if head in _FUNCS:
            values = [self._operand(a, dot, scope) for a in args]
            return self._call(head, values)
        if args:
            raise TemplateError(f"template: {self.name}: can't give argument to non-function {head}")
        return self._operand(head, dot, scope)

    def _call(self, func: str, values: list[Any]) -> Any:
        if func == "index":
            if not values:
                raise TemplateError(f"template: {self.name}: wrong number of args for index")
            item = values[0]
            for key in values[1:]:
                if isinstance(item, dict):
                    item = item.get(key, "")
                elif isinstance(item, (list, tuple)) and isinstance(key, int) and 0 <= key < len(item):
                    item = item[key]
                else:
                    raise TemplateError(f"template: {self.name}: error calling index: cannot index {item!r}")
            return item
        if func == "len":
            return len(values[0]) if values and values[0] is not None else 0
        if func == "not":
            return not _truth(values[0])
        if func == "eq":
            return any(values[0] == v for v in values[1:])
        if func == "ne":
            return values[0] != values[1]
        if func == "and":
            return next((v for v in values if not _truth(v)), values[-1])
        if func == "or":
            return next((v for v in values if _truth(v)), values[-1])
        return "".join(_go_print(v) for v in values)

    def _operand(self, tok: str, dot: Any, scope: dict[str, Any]) -> Any:
        if tok[0] in "\"`":
            if tok[0] == "`":
                return tok[1:-1]
            try:
                return promql.unquote(tok)
            except promql.PromQLError as exc:
                raise TemplateError(f"template: {self.name}: {exc}") from exc
        if tok in ("true", "false"):
            return tok == "true"
        if re.fullmatch(r"-?[0-9]+", tok):
            return int(tok)
        if tok.startswith("$"):
            name, _, path = tok.partition(".")
            if name not in scope:
                raise TemplateError(f'template: {self.name}: undefined variable "{name}"')
            return self._fields(scope[name], path)
        if tok.startswith("."):
            return self._fields(dot, tok[1:])
        raise TemplateError(f"template: {self.name}: unexpected {tok!r} in operand")

    def _fields(self, value: Any, path: str) -> Any:
        for part in [p for p in path.split(".") if p]:
            if isinstance(value, _Struct):
                if part not in value.fields:
                    raise TemplateError(
                        f'template: {self.name}: executing "{self.name}" at <.{part}>: can\'t evaluate field '
                        f"{part} in type {value.type_name}")
                value = value.fields[part]
            elif isinstance(value, dict):
                value = value.get(part)
            else:
                raise TemplateError(f"template: {self.name}: can't evaluate field {part} in type {type(value)}")
        return value


def _truth(value: Any) -> bool:
    return bool(value)


def _go_print(value: Any) -> str:
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(_go_print(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go_print(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, _Struct):
        return "{" + " ".join(_go_print(v) for v in value.fields.values()) + "}"
    return str(value)


# ------------------------------------------------------------------------------------------ resources


@dataclass(frozen=True, order=True)
class GroupResource:
    resource: str
    group: str = ""

    def __str__(self) -> str:
        """``deployments.apps`` — how the custom metrics API names it (``<resource>/<metric>`` in discovery)."""
        return f"{self.resource}.{self.group}" if self.group else self.resource

    @classmethod
    def parse(cls, text: str) -> GroupResource:
        resource, _, group = text.partition(".")
        return cls(resource=resource, group=group)


NAMESPACES = GroupResource("namespaces")
NODES = GroupResource("nodes")
PODS = GroupResource("pods")
PERSISTENT_VOLUMES = GroupResource("persistentvolumes")
_ROOT_SCOPED_FOR_ADAPTER = frozenset((NAMESPACES, NODES, PERSISTENT_VOLUMES))

# (group, plural, singular) in discovery priority order: the core group first, as the RESTMapper has it.
_BUILTIN_RESOURCES: tuple[tuple[str, str, str], ...] = (
    ("", "pods", "pod"), ("", "namespaces", "namespace"), ("", "nodes", "node"), ("", "services", "service"),
    ("", "endpoints", "endpoints"), ("", "persistentvolumeclaims", "persistentvolumeclaim"),
    ("", "persistentvolumes", "persistentvolume"), ("", "configmaps", "configmap"), ("", "secrets", "secret"),
    ("", "serviceaccounts", "serviceaccount"), ("", "replicationcontrollers", "replicationcontroller"),
    ("", "resourcequotas", "resourcequota"), ("", "limitranges", "limitrange"), ("", "events", "event"),
    ("", "podtemplates", "podtemplate"),
    ("apps", "deployments", "deployment"), ("apps", "replicasets", "replicaset"),
    ("apps", "statefulsets", "statefulset"), ("apps", "daemonsets", "daemonset"),
    ("apps", "controllerrevisions", "controllerrevision"),
    ("batch", "jobs", "job"), ("batch", "cronjobs", "cronjob"),
    ("autoscaling", "horizontalpodautoscalers", "horizontalpodautoscaler"),
    ("networking.k8s.io", "ingresses", "ingress"), ("networking.k8s.io", "networkpolicies", "networkpolicy"),
    ("networking.k8s.io", "ingressclasses", "ingressclass"),
    ("policy", "poddisruptionbudgets", "poddisruptionbudget"),
    ("storage.k8s.io", "storageclasses", "storageclass"),
    ("discovery.k8s.io", "endpointslices", "endpointslice"),
    ("coordination.k8s.io", "leases", "lease"),
    ("scheduling.k8s.io", "priorityclasses", "priorityclass"),
    ("events.k8s.io", "events", "event"),
)


class ResourceMapper:
    """The RESTMapper's ``ResourceFor``/``ResourceSingularizer`` over the built-in kinds plus any CRDs given."""

    def __init__(self, extra: Iterable[tuple[str, str, str]] = ()) -> None:
        self._entries = list(_BUILTIN_RESOURCES) + [(g, p.lower(), s.lower()) for g, p, s in extra]

    def resource_for(self, group: str, resource: str) -> GroupResource | None:
        res = resource.lower()
        for g, plural, singular in self._entries:
            if res in (plural, singular) and (not group or group == g):
                return GroupResource(plural, g)
        return None

    def singular(self, plural: str) -> str:
        for _, p, s in self._entries:
            if p == plural:
                return s
        raise LookupError(f"no singular of resource {plural!r} has been defined")


_GROUP_SANITIZER = str.maketrans({".": "_", "-": "_"})


class _ResourceConverter:
    """naming/resource_converter.go + lbl_res.go: labels <-> group-resources by template and overrides."""

    def __init__(self, template: str, overrides: Mapping[str, GroupResource], mapper: ResourceMapper,
                 where: str) -> None:
        self.mapper = mapper
        self.label_to_resource: dict[str, GroupResource] = {}
        self.resource_to_label: dict[GroupResource, str] = {}
        self.template: _GoTemplate | None = None
        self.extractor: re.Pattern[str] | None = None
        if template:
            try:
                self.template = _GoTemplate("resource-label", template)
                rendered = self.template.execute(_Struct("schema.GroupResource", {
                    "Group": "(?P<group>.+?)", "Resource": "(?P<resource>.+?)"}))
            except TemplateError as exc:
                msg = f"unable to parse label template {template!r}: {exc}"
                raise AdapterConfigError(f"{_PREFIX}{where}: {msg}") from exc
            if not rendered:
                raise AdapterConfigError(f"{_PREFIX}{where}: unable to generate label format from template "
                                         f"{template!r}: unable to convert label template to matcher: empty template")
            try:
                self.extractor = promql.go_regex("^" + rendered + "$")
            except re.error as exc:
                msg = f"unable to convert label template to matcher: {exc}"
                raise AdapterConfigError(f"{_PREFIX}{where}: {msg}") from exc
            if "resource" not in self.extractor.groupindex:
                raise AdapterConfigError(
                    f"{_PREFIX}{where}: unable to generate label format from template {template!r}: must include at "
                    "least `{{.Resource}}` in the label template")
        for label, gr in overrides.items():
            normalized = mapper.resource_for(gr.group, gr.resource)
            if normalized is None:
                raise AdapterConfigError(
                    f"{_PREFIX}{where}: unable to normalize group-resource {{{gr.group} {gr.resource}}}: no matches "
                    f"for {gr.group}/, Resource={gr.resource}")
            self.label_to_resource[label] = normalized
            self.resource_to_label[normalized] = label

    def label_for(self, gr: GroupResource) -> str:
        label = self.resource_to_label.get(gr)
        if label is not None:
            return label
        if self.template is None:
            raise AdapterQueryError(f"unable to convert resource {gr} into label: no generic resource label form "
                                    "specified for this metric")
        try:
            singular = self.mapper.singular(gr.resource)
        except LookupError as exc:
            raise AdapterQueryError(f"unable to convert resource {gr} into label: unable to singularize resource "
                                    f"{gr}: {exc}") from exc
        label = self.template.execute(_Struct("schema.GroupResource", {
            "Group": gr.group.translate(_GROUP_SANITIZER), "Resource": singular}))
        if not label:
            raise AdapterQueryError("empty label produced by label template")
        self.resource_to_label[gr] = label
        return label

    def resources_for(self, label_names: Iterable[str]) -> list[GroupResource]:
        out: list[GroupResource] = []
        for label in label_names:
            gr = self.label_to_resource.get(label)
            if gr is None and self.extractor is not None:
                m = self.extractor.match(label)
                if m is not None:
                    group = m.group("group") if "group" in self.extractor.groupindex else ""
                    gr = self.mapper.resource_for(group or "", m.group("resource"))
            if gr is not None and gr not in out:
                out.append(gr)
        return out


# ------------------------------------------------------------------------------------------ config


@dataclass(frozen=True)
class RegexFilter:
    is_: str = ""
    is_not: str = ""


@dataclass(frozen=True)
class ResourceMapping:
    template: str = ""
    overrides: Mapping[str, GroupResource] = field(default_factory=dict)
    namespaced: bool | None = None


@dataclass(frozen=True)
class NameMapping:
    matches: str = ""
    as_: str = ""


@dataclass(frozen=True)
class DiscoveryRule:
    series_query: str = ""
    series_filters: tuple[RegexFilter, ...] = ()
    resources: ResourceMapping = field(default_factory=ResourceMapping)
    name: NameMapping = field(default_factory=NameMapping)
    metrics_query: str = ""


@dataclass(frozen=True)
class ResourceRule:
    container_query: str = ""
    node_query: str = ""
    resources: ResourceMapping = field(default_factory=ResourceMapping)
    container_label: str = ""


@dataclass(frozen=True)
class ResourceRules:
    cpu: ResourceRule = field(default_factory=ResourceRule)
    memory: ResourceRule = field(default_factory=ResourceRule)
    window: float = 0.0  # seconds; reported as the resource metrics' window, never put into the queries


@dataclass(frozen=True)
class Config:
    rules: tuple[DiscoveryRule, ...] = ()
    resource_rules: ResourceRules | None = None
    external_rules: tuple[DiscoveryRule, ...] = ()


class _StrictLoader(yaml.SafeLoader):
    """Refuses duplicate keys, as sigs.k8s.io/yaml's strict unmarshal does."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            line = key_node.start_mark.line + 1
            raise AdapterConfigError(f"{_PREFIX}unable to parse metrics discovery config: error converting YAML to "
                                     f'JSON: yaml: key "{key}" already set in map (line {line})')
        out[key] = loader.construct_object(value_node, deep=True)
    return out


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


class _Reader:
    """sigs.k8s.io/yaml UnmarshalStrict into pkg/config's structs: field names match case-insensitively
    (encoding/json), unknown fields and wrong types are errors naming where they are."""

    def fail(self, path: str, message: str) -> AdapterConfigError:
        return AdapterConfigError(f"{_PREFIX}unable to parse metrics discovery config: {path}: {message}")

    def fields(self, value: Any, path: str, struct: str, known: Sequence[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(path, f"json: cannot unmarshal {_json_kind(value)} into Go value of type config.{struct}")
        by_lower = {k.lower(): k for k in known}
        out: dict[str, Any] = {}
        for key, item in value.items():
            canonical = by_lower.get(str(key).lower())
            if canonical is None:
                raise self.fail(path, f'error unmarshaling JSON: while decoding JSON: json: unknown field "{key}"')
            out[canonical] = item
        return out

    def string(self, value: Any, path: str) -> str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self.fail(path, f"json: cannot unmarshal {_json_kind(value)} into Go struct field of type string")
        return value

    def array(self, value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(path, f"json: cannot unmarshal {_json_kind(value)} into Go struct field of type array")
        return value

    def mapping(self, value: Any, path: str) -> ResourceMapping:
        f = self.fields(value, path, "ResourceMapping", ("template", "overrides", "namespaced"))
        overrides: dict[str, GroupResource] = {}
        raw = f.get("overrides")
        if raw is not None and not isinstance(raw, dict):
            raise self.fail(f"{path}.overrides", f"json: cannot unmarshal {_json_kind(raw)} into Go struct field "
                            "ResourceMapping.overrides of type map[string]config.GroupResource")
        for label, gr in (raw or {}).items():
            where = f"{path}.overrides.{label}"
            g = self.fields(gr, where, "GroupResource", ("group", "resource"))
            overrides[str(label)] = GroupResource(resource=self.string(g.get("resource"), f"{where}.resource"),
                                                  group=self.string(g.get("group"), f"{where}.group"))
        namespaced = f.get("namespaced")
        if namespaced is not None and not isinstance(namespaced, bool):
            raise self.fail(f"{path}.namespaced", f"json: cannot unmarshal {_json_kind(namespaced)} into Go struct "
                            "field ResourceMapping.namespaced of type bool")
        return ResourceMapping(template=self.string(f.get("template"), f"{path}.template"), overrides=overrides,
                               namespaced=namespaced)

    def rule(self, value: Any, path: str) -> DiscoveryRule:
        f = self.fields(value, path, "DiscoveryRule",
                        ("seriesQuery", "seriesFilters", "resources", "name", "metricsQuery"))
        filters = []
        for i, raw in enumerate(self.array(f.get("seriesFilters"), f"{path}.seriesFilters")):
            where = f"{path}.seriesFilters[{i}]"
            ff = self.fields(raw, where, "RegexFilter", ("is", "isNot"))
            filters.append(RegexFilter(is_=self.string(ff.get("is"), f"{where}.is"),
                                       is_not=self.string(ff.get("isNot"), f"{where}.isNot")))
        nf = self.fields(f.get("name"), f"{path}.name", "NameMapping", ("matches", "as"))
        return DiscoveryRule(
            series_query=self.string(f.get("seriesQuery"), f"{path}.seriesQuery"),
            series_filters=tuple(filters),
            resources=self.mapping(f.get("resources"), f"{path}.resources"),
            name=NameMapping(matches=self.string(nf.get("matches"), f"{path}.name.matches"),
                             as_=self.string(nf.get("as"), f"{path}.name.as")),
            metrics_query=self.string(f.get("metricsQuery"), f"{path}.metricsQuery"),
        )

    def resource_rule(self, value: Any, path: str) -> ResourceRule:
        f = self.fields(value, path, "ResourceRule", ("containerQuery", "nodeQuery", "resources", "containerLabel"))
        return ResourceRule(
            container_query=self.string(f.get("containerQuery"), f"{path}.containerQuery"),
            node_query=self.string(f.get("nodeQuery"), f"{path}.nodeQuery"),
            resources=self.mapping(f.get("resources"), f"{path}.resources"),
            container_label=self.string(f.get("containerLabel"), f"{path}.containerLabel"),
        )


_MODEL_DURATION = re.compile(
    r"(?:([0-9]+)y)?(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?(?:([0-9]+)ms)?")


def parse_duration(text: str) -> float:
    """prometheus/common model.ParseDuration, in seconds."""
    if text == "0":
        return 0.0
    m = _MODEL_DURATION.fullmatch(text)
    if not text or m is None:
        raise ValueError(f'not a valid duration string: "{text}"')
    units = (31_536_000, 604_800, 86_400, 3_600, 60, 1, 0.001)
    return float(sum(int(g) * u for g, u in zip(m.groups(), units, strict=True) if g))


def load(text: str) -> Config:
    """Parse an adapter config (``config.yaml`` of its ConfigMap) and check what the adapter checks at start-up,
    plus that every query is in the simulator's PromQL subset."""
    try:
        doc = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise AdapterConfigError(f"{_PREFIX}unable to parse metrics discovery config: error converting YAML to "
                                 f"JSON: {exc}") from exc
    r = _Reader()
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise AdapterConfigError(f"{_PREFIX}unable to parse metrics discovery config: error unmarshaling JSON: "
                                 f"json: cannot unmarshal {_json_kind(doc)} into Go value of type "
                                 "config.MetricsDiscoveryConfig")
    top = r.fields(doc, "config", "MetricsDiscoveryConfig", ("rules", "resourceRules", "externalRules"))
    rules = tuple(r.rule(v, f"rules[{i}]") for i, v in enumerate(r.array(top.get("rules"), "rules")))
    external = tuple(r.rule(v, f"externalRules[{i}]")
                     for i, v in enumerate(r.array(top.get("externalRules"), "externalRules")))
    resource_rules: ResourceRules | None = None
    if top.get("resourceRules") is not None:
        rr = r.fields(top["resourceRules"], "resourceRules", "ResourceRules", ("cpu", "memory", "window"))
        window_raw = rr.get("window")
        window = 0.0
        if window_raw is not None:
            if not isinstance(window_raw, str):
                raise r.fail("resourceRules.window", f"json: cannot unmarshal {_json_kind(window_raw)} into Go "
                             "struct field ResourceRules.resourceRules.window of type string")
            try:
                window = parse_duration(window_raw)
            except ValueError as exc:
                raise r.fail("resourceRules.window", str(exc)) from exc
        resource_rules = ResourceRules(cpu=r.resource_rule(rr.get("cpu"), "resourceRules.cpu"),
                                       memory=r.resource_rule(rr.get("memory"), "resourceRules.memory"),
                                       window=window)
    config = Config(rules=rules, resource_rules=resource_rules, external_rules=external)
    _validate(config)
    return config


_SAMPLE_ARGS = {
    "LabelMatchers": 'namespace="default",pod=~"sample-a|sample-b"',
    "LabelValuesByName": {"namespace": "default", "pod": "sample-a|sample-b"},
    "GroupBy": "pod",
    "GroupBySlice": ["pod"],
}


def _query_args(series: str, matchers: str, values: dict[str, str], group_by: Sequence[str],
                group_by_text: str | None = None) -> _Struct:
    return _Struct("naming.queryTemplateArgs", {
        "Series": series, "LabelMatchers": matchers, "LabelValuesByName": values,
        "GroupBy": ",".join(group_by) if group_by_text is None else group_by_text, "GroupBySlice": list(group_by)})


def _check_query(template_text: str, where: str, series: str) -> None:
    try:
        template = _GoTemplate("metrics-query", template_text)
    except TemplateError as exc:
        raise AdapterConfigError(f"{_PREFIX}{where}: unable to parse metrics query template {template_text!r}: "
                                 f"{exc}") from exc
    args = _Struct("naming.queryTemplateArgs", {"Series": series, **_SAMPLE_ARGS})
    try:
        query = template.execute(args)
    except TemplateError as exc:
        raise AdapterConfigError(f"{_PREFIX}{where}: the simulator cannot render this query ({exc}); the real "
                                 "adapter starts but fails every query with it") from exc
    if not query:
        raise AdapterConfigError(f"{_PREFIX}{where}: empty query produced by metrics query template; the real "
                                 "adapter starts but fails every query with it")
    try:
        promql.parse(query)
    except promql.PromQLError as exc:
        raise AdapterConfigError(f"{_PREFIX}{where}: the simulator cannot evaluate this query ({exc}) — rendered "
                                 f"as {query!r}; the real adapter would only fail when Prometheus runs it") from exc


def _validate(config: Config) -> None:
    for kind, rules in (("rules", config.rules), ("externalRules", config.external_rules)):
        for i, rule in enumerate(rules):
            where = f"{kind}[{i}]"
            _compile_rule(rule, where)
            try:
                promql.parse_selector(rule.series_query)
            except promql.PromQLError as exc:
                raise AdapterConfigError(f"{_PREFIX}{where}.seriesQuery: unable to fetch metrics for query "
                                         f"{rule.series_query!r}: {exc}") from exc
            # the template's syntax now; overrides need the cluster's kinds and are checked by Adapter()
            _ResourceConverter(rule.resources.template, {}, ResourceMapper(), f"{where}.resources")
            _check_query(rule.metrics_query, f"{where}.metricsQuery", "sample_metric")
    if config.resource_rules is not None:
        for res in ("cpu", "memory"):
            rule_r: ResourceRule = getattr(config.resource_rules, res)
            _ResourceConverter(rule_r.resources.template, {}, ResourceMapper(), f"resourceRules.{res}.resources")
            _check_query(rule_r.container_query, f"resourceRules.{res}.containerQuery", "")
            _check_query(rule_r.node_query, f"resourceRules.{res}.nodeQuery", "")


def _compile_rule(rule: DiscoveryRule, where: str) -> tuple[list[tuple[re.Pattern[str], bool]], re.Pattern[str], str]:
    """naming/metric_namer.go NamersFromConfig: series filters (plus name.matches as one), name pattern, ``as``."""
    q = rule.series_query
    filters: list[tuple[re.Pattern[str], bool]] = []
    for f in rule.series_filters:
        if f.is_ and f.is_not:
            raise AdapterConfigError(f"{_PREFIX}{where}: unable to generate series name filter associated with "
                                     f"series query {q!r}: cannot have both an `is` ({f.is_!r}) and `isNot` "
                                     f"({f.is_not!r}) expression in a single filter")
        if not f.is_ and not f.is_not:
            raise AdapterConfigError(f"{_PREFIX}{where}: unable to generate series name filter associated with "
                                     f"series query {q!r}: must have either an `is` or `isNot` expression in a filter")
        raw = f.is_ or f.is_not
        try:
            filters.append((promql.go_regex(raw), bool(f.is_)))
        except re.error as exc:
            raise AdapterConfigError(f"{_PREFIX}{where}: unable to generate series name filter associated with "
                                     f"series query {q!r}: unable to compile series filter {raw!r}: {exc}") from exc
    try:
        name_re = promql.go_regex(rule.name.matches or ".*")
    except re.error as exc:
        raise AdapterConfigError(f"{_PREFIX}{where}.name.matches: unable to compile series name match expression "
                                 f"{rule.name.matches!r} associated with series query {q!r}: {exc}") from exc
    if rule.name.matches:
        filters.append((name_re, True))
    name_as = rule.name.as_
    if not name_as:
        if name_re.groups == 0:
            name_as = "$0"
        elif name_re.groups == 1:
            name_as = "$1"
        else:
            raise AdapterConfigError(f"{_PREFIX}{where}.name: must specify an 'as' value for name matcher "
                                     f"{rule.name.matches!r} associated with series query {q!r}")
    return filters, name_re, name_as


# ------------------------------------------------------------------------------------------ label selectors

_OPS = {"=": "=", "==": "==", "!=": "!=", "in": "in", "notin": "notin", "exists": "exists", "!": "!",
        "In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!", ">": "gt", "<": "lt",
        "gt": "gt", "lt": "lt"}
Requirement = tuple[str, str, tuple[str, ...]]
_SELECTOR_PART = re.compile(
    r"\s*(?:(?P<not>!)\s*(?P<nkey>[^\s,!=<>()]+)"
    r"|(?P<key>[^\s,!=<>()]+)\s*(?:(?P<op>==|!=|=|>|<)\s*(?P<value>[^\s,()]*)"
    r"|\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?)\s*(?:,|$)")


def parse_label_selector(selector: str | Mapping[str, str] | Iterable[Any] | None) -> list[Requirement]:
    """A label selector (the API's ``labelSelector``/``metricLabelSelector`` string, a ``{key: value}`` map, or
    ``(key, op, values)`` requirements) as apimachinery's requirements: sorted by key, values sorted."""
    reqs: list[Requirement] = []
    if selector is None:
        return reqs
    if isinstance(selector, str):
        pos = 0
        text = selector.strip()
        while pos < len(text):
            m = _SELECTOR_PART.match(text, pos)
            if m is None or m.end() == pos:
                raise AdapterQueryError(f"unable to parse label selector {selector!r} at {pos}")
            pos = m.end()
            if m.group("not"):
                reqs.append((m.group("nkey"), "!", ()))
            elif m.group("op"):
                reqs.append((m.group("key"), _OPS[m.group("op")], (m.group("value"),)))
            elif m.group("setop"):
                listed = tuple(v.strip() for v in m.group("values").split(",") if v.strip())
                reqs.append((m.group("key"), m.group("setop"), listed))
            else:
                reqs.append((m.group("key"), "exists", ()))
    elif isinstance(selector, Mapping):
        reqs = [(str(k), "=", (str(v),)) for k, v in selector.items()]
    else:
        items: Iterable[Any] = selector
        for item in items:
            raw: Any
            if isinstance(item, Mapping):  # a LabelSelectorRequirement
                key, op, raw = item["key"], item["operator"], item.get("values") or ()
            else:
                key, op, raw = item
            if op not in _OPS:
                raise AdapterQueryError(f"unknown label selector operator {op!r}")
            reqs.append((str(key), _OPS[op], (raw,) if isinstance(raw, str) else tuple(str(v) for v in raw)))
    return sorted(((k, op, tuple(sorted(set(v)))) for k, op, v in reqs), key=lambda r: r[0])


def _label_matchers(reqs: Sequence[Requirement]) -> tuple[list[str], dict[str, str]]:
    """metrics_query.go processQueryParts: each requirement as a PromQL matcher, multiple values as a regex."""
    exprs: list[str] = []
    values_by_name: dict[str, str] = {}
    for key, op, values in reqs:
        if not key:
            raise AdapterQueryError("label not specified")
        if op in ("gt", "lt"):
            raise AdapterQueryError("operator not supported by prometheus")
        if not values:
            if op == "exists":
                matcher, target = "!=", ""
            elif op == "!":
                matcher, target = "=", ""
            else:
                raise AdapterQueryError("operator requires values")
        elif op in ("exists", "!"):
            raise AdapterQueryError("operator does not support values")
        elif len(values) == 1:
            matcher = {"=": "=", "==": "=", "!=": "!=", "in": "=~", "notin": "!~"}[op]
            target = values[0]
        else:
            matcher = "=~" if op in ("=", "==", "in") else "!~"
            target = "|".join(values)
        exprs.append(f"{key}{matcher}{promql.go_quote(target)}")
        values_by_name[key] = "|".join(values)
    return exprs, values_by_name


# ------------------------------------------------------------------------------------------ the adapter


@dataclass(frozen=True, order=True)
class CustomMetric:
    """One entry of ``/apis/custom.metrics.k8s.io/v1beta2``: ``name`` is ``<resource>/<metric>``."""

    group_resource: GroupResource
    metric: str
    namespaced: bool

    @property
    def name(self) -> str:
        return f"{self.group_resource}/{self.metric}"


class _Namer:
    def __init__(self, rule: DiscoveryRule, where: str, mapper: ResourceMapper, external: bool) -> None:
        self.rule = rule
        self.where = where
        self.filters, self.name_re, self.name_as = _compile_rule(rule, where)
        self.converter = _ResourceConverter(rule.resources.template, rule.resources.overrides, mapper,
                                            f"{where}.resources")
        self.selector = promql.parse_selector(rule.series_query)
        self.query = _GoTemplate("metrics-query", rule.metrics_query)
        self.namespaced = True if rule.resources.namespaced is None else rule.resources.namespaced
        self.external = external
        self._name_cache: dict[str, str | None] = {}

    def accepts(self, series_name: str) -> bool:
        return all((rx.search(series_name) is not None) == positive for rx, positive in self.filters)

    def metric_name(self, series_name: str) -> str | None:
        """metric_namer.go MetricNameForSeries: ``name.matches`` then ``as`` expanded like Go's ExpandString."""
        if series_name not in self._name_cache:
            m = self.name_re.search(series_name)
            self._name_cache[series_name] = promql.expand_template(self.name_as, m) if m is not None else None
        return self._name_cache[series_name]

    def build(self, series: str, resource: GroupResource | None, namespace: str, extra_group_by: Sequence[str],
              reqs: Sequence[Requirement], names: Sequence[str], external: bool = False) -> str:
        """metrics_query.go Build (custom and resource metrics) and BuildExternal."""
        return _build(self.query, self.converter, series, resource, namespace, extra_group_by, reqs, names,
                      external=external, namespaced=self.namespaced)


def _build(template: _GoTemplate, converter: _ResourceConverter, series: str, resource: GroupResource | None,
           namespace: str, extra_group_by: Sequence[str], reqs: Sequence[Requirement], names: Sequence[str],
           external: bool = False, namespaced: bool = True) -> str:
    parts = list(reqs)
    if namespace and (not external or namespaced):
        parts.append((converter.label_for(NAMESPACES), "=", (namespace,)))
    # processQueryParts keeps the caller's order; requirements come sorted, the namespace after them.
    exprs, values_by_name = _label_matchers(parts)
    group_by: list[str] = []
    if resource is not None:
        label = converter.label_for(resource)
        target = "|".join(names)
        exprs.append(f"{label}{'=~' if len(names) > 1 else '='}{promql.go_quote(target)}")
        values_by_name[label] = target
        group_by = [label, *extra_group_by]
    args = _query_args(series, ",".join(exprs), values_by_name, group_by)
    try:
        query = template.execute(args)
    except TemplateError as exc:
        raise AdapterQueryError(str(exc)) from exc
    if not query:
        raise AdapterQueryError("empty query produced by metrics query template")
    return query


class Adapter:
    """prometheus-adapter with one config: discovery and answers over the engine's series.

    ``mapper`` plays the cluster's RESTMapper (the built-in kinds; pass CRDs as extra entries). Custom and
    external answers use the metrics found by the last :meth:`custom_metrics`/:meth:`external_metrics` call,
    as the adapter answers from the list it refreshes every ``--metrics-relist-interval``.
    """

    def __init__(self, config: Config, mapper: ResourceMapper | None = None) -> None:
        self.config = config
        self.mapper = mapper or ResourceMapper()
        self._rules = [_Namer(r, f"rules[{i}]", self.mapper, False) for i, r in enumerate(config.rules)]
        self._external = [_Namer(r, f"externalRules[{i}]", self.mapper, True)
                          for i, r in enumerate(config.external_rules)]
        self._resource: dict[str, tuple[_ResourceConverter, _GoTemplate, _GoTemplate, str]] = {}
        if config.resource_rules is not None:
            for res in ("cpu", "memory"):
                rule: ResourceRule = getattr(config.resource_rules, res)
                where = f"resourceRules.{res}"
                converter = _ResourceConverter(rule.resources.template, rule.resources.overrides, self.mapper,
                                               f"{where}.resources")
                self._resource[res] = (converter, _GoTemplate("metrics-query", rule.container_query),
                                       _GoTemplate("metrics-query", rule.node_query), rule.container_label)
        self._custom_info: dict[tuple[GroupResource, bool, str], tuple[str, _Namer]] = {}
        self._external_info: dict[str, tuple[str, _Namer]] = {}

    @classmethod
    def from_yaml(cls, text: str, mapper: ResourceMapper | None = None) -> Adapter:
        return cls(load(text), mapper)

    @property
    def window(self) -> float:
        """The resource metrics' reported window in seconds (``resourceRules.window``)."""
        return self.config.resource_rules.window if self.config.resource_rules else 0.0

    # discovery ---------------------------------------------------------------------------------------------

    @staticmethod
    def _series_by_query(store: promql.Store, namers: Sequence[_Namer]) -> dict[str, list[tuple[str, LabelItems]]]:
        # Rules sharing a seriesQuery make one series call (custom-provider/provider.go updateMetrics).
        out: dict[str, list[tuple[str, LabelItems]]] = {}
        for n in namers:
            if n.rule.series_query not in out:
                found = promql.select_series(store, n.selector)
                out[n.rule.series_query] = sorted((name, tuple(sorted(labels))) for name, labels in found)
        return out

    def custom_metrics(self, store: promql.Store) -> list[CustomMetric]:
        """Relist (custom-provider/series_registry.go SetSeries): every (resource, metric) a rule names.

        A metric on namespaces, nodes or persistentvolumes is root-scoped; on any other resource it is
        namespaced (ResourcesForSeries counts every label that is not one of those three).
        """
        info: dict[tuple[GroupResource, bool, str], tuple[str, _Namer]] = {}
        by_query = self._series_by_query(store, self._rules)
        for namer in self._rules:
            resources_cache: dict[LabelItems, list[GroupResource]] = {}
            for series_name, label_names in by_query[namer.rule.series_query]:
                if not namer.accepts(series_name):
                    continue
                metric = namer.metric_name(series_name)
                if metric is None:
                    continue
                resources = resources_cache.get(label_names)
                if resources is None:
                    resources = resources_cache[label_names] = namer.converter.resources_for(label_names)
                for gr in resources:
                    namespaced = gr not in _ROOT_SCOPED_FOR_ADAPTER
                    info[(gr, namespaced, metric)] = (series_name, namer)
        self._custom_info = info
        return sorted(CustomMetric(gr, metric, namespaced) for gr, namespaced, metric in info)

    def external_metrics(self, store: promql.Store) -> list[str]:
        """Relist (external-provider/external_series_registry.go): metric names, the last rule naming one wins."""
        info: dict[str, tuple[str, _Namer]] = {}
        by_query = self._series_by_query(store, self._external)
        for namer in self._external:
            for series_name, _ in by_query[namer.rule.series_query]:
                if not namer.accepts(series_name):
                    continue
                metric = namer.metric_name(series_name)
                if metric is not None:
                    info[metric] = (series_name, namer)
        self._external_info = info
        return sorted(info)

    # custom metrics ----------------------------------------------------------------------------------------

    def _custom_lookup(self, resource: str, namespace: str | None, metric: str) -> tuple[GroupResource, str, _Namer]:
        parsed = GroupResource.parse(resource)
        gr = self.mapper.resource_for(parsed.group, parsed.resource)
        if gr is None:
            raise MetricNotFound(f'the server could not find the metric {metric} for {resource}')
        found = self._custom_info.get((gr, namespace is not None, metric))
        if found is None:
            raise MetricNotFound(f'the server could not find the metric {metric} for {gr}')
        return gr, found[0], found[1]

    def custom_query(self, resource: str, namespace: str | None, names: Sequence[str], metric: str,
                     selector_matchers: Any = None) -> str:
        """The PromQL the adapter sends for a custom metric (series_registry.go QueryForMetric)."""
        gr, series_name, namer = self._custom_lookup(resource, namespace, metric)
        if not names:
            raise MetricNotFound(f"the server could not find the metric {metric} for {gr}")
        try:
            return namer.build(series_name, gr, namespace or "", (), parse_label_selector(selector_matchers), names)
        except AdapterQueryError as exc:
            # QueryForMetric logs the failure and reports the metric as not found.
            log.warning("unable to construct query for metric %s/%s: %s", gr, metric, exc)
            raise MetricNotFound(f"the server could not find the metric {metric} for {gr}") from exc

    def query_custom(self, store: promql.Store, at: float, resource: str, namespace: str | None,
                     names: Sequence[str], metric: str, selector_matchers: Any = None) -> dict[str, float]:
        """Object name -> value for the requested objects the query returned (custom-provider/provider.go
        metricsFor: results matched back on the resource label; objects without a value are left out)."""
        query = self.custom_query(resource, namespace, names, metric, selector_matchers)
        gr, _, namer = self._custom_lookup(resource, namespace, metric)
        label = namer.converter.label_for(gr)
        values: dict[str, float] = {}
        for labels, value in _run(store, at, query):
            values[labels.get(label, "")] = value
        return {name: values[name] for name in names if name in values}

    # external metrics --------------------------------------------------------------------------------------

    def external_query(self, namespace: str | None, metric: str, label_selector: Any = None) -> str:
        found = self._external_info.get(metric)
        if found is None:
            raise MetricNotFound(f"the server could not find the metric {metric} for "
                                 f"{'namespaces' if namespace == 'default' else ''}")
        series_name, namer = found
        return namer.build(series_name, None, namespace or "", (), parse_label_selector(label_selector), (),
                           external=True)

    def query_external(self, store: promql.Store, at: float, namespace: str | None, metric: str,
                       label_selector: Any = None) -> list[tuple[dict[str, str], float]]:
        """external-provider/provider.go GetExternalMetric: every sample the query returns, labels and value."""
        query = self.external_query(namespace, metric, label_selector)
        return [(dict(labels), value) for labels, value in _run(store, at, query)]

    # resource metrics --------------------------------------------------------------------------------------

    def resource_query(self, res: str, kind: str, namespace: str | None, names: Sequence[str]) -> str:
        """resourceprovider/provider.go runQuery: the container query grouped by the pod and container
        labels, or the node query grouped by the node label; the window is never substituted."""
        converter, container_q, node_q, container_label = self._resource[res]
        if kind == "nodes":
            return _build(node_q, converter, "", NODES, "", (), (), names)
        return _build(container_q, converter, "", PODS, namespace or "", (container_label,), (), names)

    def _resource_results(self, store: promql.Store, at: float, res: str, kind: str, namespace: str | None,
                          names: Sequence[str]) -> dict[str, list[tuple[dict[str, str], float]]]:
        converter = self._resource[res][0]
        query = self.resource_query(res, kind, namespace, names)
        label = converter.label_for(NODES if kind == "nodes" else PODS)
        out: dict[str, list[tuple[dict[str, str], float]]] = {}
        for labels, value in _run(store, at, query):
            if math.isnan(value) or value < 0:
                value = 0.0
            out.setdefault(labels.get(label, ""), []).append((labels, value))
        return out

    def query_resource(self, store: promql.Store, at: float, kind: str, namespace: str | None,
                       names: Sequence[str]) -> dict[str, Any]:
        """metrics.k8s.io answers: for pods ``{pod: [(container, cpu_cores, memory_bytes)]}``, for nodes
        ``{node: (cpu_cores, memory_bytes)}``; objects missing either resource are left out, as the adapter does.
        """
        if not self._resource:
            raise MetricNotFound("no resourceRules configured")
        if kind not in ("pods", "nodes"):
            raise ValueError(f"kind must be pods or nodes, not {kind!r}")
        if not names:
            return {}
        try:
            cpu = self._resource_results(store, at, "cpu", kind, namespace, names)
            mem = self._resource_results(store, at, "memory", kind, namespace, names)
        except (AdapterQueryError, promql.PromQLError) as exc:
            # queryBoth fails for the whole namespace (or all nodes); the adapter logs it and returns nothing.
            log.warning("unable to fetch %s metrics in %r: %s", kind, namespace, exc)
            return {}
        result: dict[str, Any] = {}
        if kind == "nodes":
            for name in names:
                if name in cpu and name in mem:
                    result[name] = (cpu[name][0][1], mem[name][0][1])
            return result
        cpu_label, mem_label = self._resource["cpu"][3], self._resource["memory"][3]
        for name in names:
            if name not in cpu or name not in mem:
                continue
            containers: dict[str, list[float]] = {}
            for labels, value in cpu[name]:
                containers.setdefault(labels.get(cpu_label, ""), [0.0, 0.0])[0] = value
            for labels, value in mem[name]:
                containers.setdefault(labels.get(mem_label, ""), [0.0, 0.0])[1] = value
            result[name] = [(c, v[0], v[1]) for c, v in sorted(containers.items())]
        return result


LabelItems = tuple[str, ...]


def _run(store: promql.Store, at: float, query: str) -> list[tuple[dict[str, str], float]]:
    try:
        return promql.evaluate(query, store, at)
    except promql.EvaluationError as exc:
        raise AdapterQueryError(f"unable to fetch metrics: {exc}") from exc


def milli_value(value: float, nan_as_zero: bool = True) -> int:
    """The API's quantity as the adapter makes it: ``NewMilliQuantity(int64(value*1000))``.

    Custom and resource metrics turn NaN into zero first (custom-provider/provider.go metricFor,
    resourceprovider/provider.go runQuery); external metrics do not (``nan_as_zero=False``). Go's conversion
    of NaN, infinities and out-of-range values to int64 gives the minimum int64 on amd64.
    """
    if math.isnan(value) and nan_as_zero:
        return 0
    scaled = value * 1000.0
    if not math.isfinite(scaled) or not -(2**63) <= scaled < 2**63:
        return -(2**63)
    return int(scaled)
