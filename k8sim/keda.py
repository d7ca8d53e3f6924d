"""KEDA v2.20.2 played as pure logic: ScaledObject checks, its HPA, activation and cooldown, status, metric values."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

#: The release whose code this module follows (github.com/kedacore/keda, tag v2.20.2, commit 68a5b50).
KEDA_VERSION = "2.20.2"
KEDA_API = "keda.sh/v1alpha1"

#: How the HPA's metric selector names its ScaledObject, and how KEDA's metrics server finds it.
SCALED_OBJECT_LABEL = "scaledobject.keda.sh/name"
EXCLUDED_LABELS_ANNOTATION = "scaledobject.keda.sh/hpa-excluded-labels"
PAUSED_ANNOTATION = "autoscaling.keda.sh/paused"
PAUSED_REPLICAS_ANNOTATION = "autoscaling.keda.sh/paused-replicas"
PAUSED_SCALE_IN_ANNOTATION = "autoscaling.keda.sh/paused-scale-in"
PAUSED_SCALE_OUT_ANNOTATION = "autoscaling.keda.sh/paused-scale-out"
FORCE_ACTIVATION_ANNOTATION = "autoscaling.keda.sh/force-activation"

DEFAULT_POLLING_INTERVAL = 30
DEFAULT_COOLDOWN_PERIOD = 300
DEFAULT_INITIAL_COOLDOWN_PERIOD = 0
DEFAULT_MIN_REPLICAS = 0
DEFAULT_MAX_REPLICAS = 100
#: What KEDA gives the HPA when minReplicaCount is 0 (it scales the target to zero itself).
DEFAULT_HPA_MIN_REPLICAS = 1

READY_REASON = "ScaledObjectReady"
READY_MESSAGE = "ScaledObject is defined correctly and is ready for scaling"
CHECK_FAILED_REASON = "ScaledObjectCheckFailed"
PAUSED_REASON = "ScaledObjectPaused"
PAUSED_MESSAGE = "ScaledObject is paused"
ACTIVE_MESSAGE = "Scaling is performed because triggers are active"
FORCED_ACTIVE_MESSAGE = "Scaling is performed because activation is being forced by annotation"
NOT_ACTIVE_MESSAGE = "Scaling is not performed because triggers are not active"
COOLDOWN_MESSAGE = "Scaler cooling down because triggers are not active"
TRIGGER_ERROR_MESSAGE = "Triggers defined in ScaledObject are not working correctly"
PARTIAL_ERROR_MESSAGE = "Some triggers defined in ScaledObject are not working correctly"
NO_FALLBACK_MESSAGE = "No fallbacks are active on this scaled object"
SCALE_TARGET_ERR = "ScaledObject doesn't have correct scaleTargetRef specification"
REPLICAS_ERR = "ScaledObject doesn't have correct Idle/Min/Max Replica Counts specification"
TRIGGERS_ERR = "ScaledObject doesn't have correct triggers specification"
HPA_ERR = "failed to ensure HPA is correctly created for ScaledObject"

SUPPORTED_TRIGGERS = ("prometheus", "cpu", "memory")
#: Every type KEDA's scaler builder knows (pkg/scaling/scalers_builder.go); one outside it gets KEDA's own
#: "no scaler found" message, one inside it that we do not play gets ours.
KEDA_TRIGGER_TYPES = frozenset((
    "activemq apache-kafka arangodb artemis-queue aws-cloudwatch aws-dynamodb aws-dynamodb-streams "
    "aws-kinesis-stream aws-sqs-queue azure-app-insights azure-blob azure-data-explorer azure-eventhub "
    "azure-log-analytics azure-monitor azure-pipelines azure-queue azure-servicebus beanstalkd cassandra couchdb "
    "cpu cron datadog dynatrace elastic-forecast elasticsearch etcd external external-mock external-push "
    "forgejo-runner gcp-cloudtasks gcp-pubsub gcp-stackdriver gcp-storage github-runner graphite huawei-cloudeye "
    "ibmmq influxdb kafka kubernetes-resource kubernetes-workload liiklus loki memory metrics-api mongodb mssql "
    "mysql nats-jetstream new-relic nsq opensearch openstack-metric openstack-swift postgresql predictkube "
    "prometheus pulsar rabbitmq redis redis-cluster redis-cluster-streams redis-sentinel redis-sentinel-streams "
    "redis-streams selenium-grid solace-direct-messaging solace-event-queue solarwinds solr splunk "
    "splunk-observability sumologic temporal"
).split())


class KedaError(ValueError):
    """What KEDA would report: ``str()`` is the message it writes (a condition message, an event, an API error).

    ``target`` and ``triggers_types`` say how far KEDA's reconcile got before failing, because it has
    already written those to the status by then.
    """

    def __init__(self, message: str, *, reason: str = CHECK_FAILED_REASON,
                 target: ScaleTarget | None = None, triggers_types: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.target = target
        self.triggers_types = triggers_types


@dataclass(frozen=True)
class ScaleTarget:
    """``spec.scaleTargetRef`` resolved as KEDA's ParseGVKR does (apps/v1 Deployment unless told)."""

    name: str
    group: str = "apps"
    version: str = "v1"
    kind: str = "Deployment"
    resource: str = "deployments"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def gvk_string(self) -> str:
        """KEDA's ``status.scaleTargetKind``: ``apps/v1.Deployment`` (a core kind gives ``/v1.Kind``)."""
        return f"{self.group}/{self.version}.{self.kind}"

    def gvkr(self) -> dict[str, str]:
        return {"group": self.group, "version": self.version, "kind": self.kind, "resource": self.resource}


@dataclass(frozen=True)
class PrometheusTrigger:
    """A ``prometheus`` trigger's metadata as KEDA's typed config parses it.

    ``server_address`` is kept for display only: the simulator evaluates ``query`` over its own series
    instead of dialing it; ``unsafe_ssl``, ``custom_headers``, ``query_parameters`` and the timeout are
    parsed (so a malformed one fails as in KEDA) and then have nothing to act on.
    """

    index: int
    server_address: str
    query: str
    threshold: float
    activation_threshold: float = 0.0
    metric_type: str = "AverageValue"
    ignore_null_values: bool = True
    unsafe_ssl: bool = False
    namespace: str = ""
    custom_headers: dict[str, str] = field(default_factory=dict)
    query_parameters: dict[str, str] = field(default_factory=dict)
    timeout: timedelta | None = None
    name: str = ""
    type: str = "prometheus"

    @property
    def metric_name(self) -> str:
        return f"s{self.index}-prometheus"


@dataclass(frozen=True)
class ResourceTrigger:
    """A ``cpu`` or ``memory`` trigger: KEDA hands it to the HPA as a Resource metric and calls it always active."""

    index: int
    type: str
    metric_type: str
    value: str
    container_name: str = ""
    name: str = ""


Trigger = PrometheusTrigger | ResourceTrigger


@dataclass(frozen=True)
class ScaledObject:
    """A ScaledObject KEDA accepted, with its defaults filled in."""

    name: str
    namespace: str
    uid: str
    target: ScaleTarget
    triggers: tuple[Trigger, ...]
    polling_interval: int = DEFAULT_POLLING_INTERVAL
    cooldown_period: int = DEFAULT_COOLDOWN_PERIOD
    initial_cooldown_period: int = DEFAULT_INITIAL_COOLDOWN_PERIOD
    #: None when unset: KEDA tells "unset" from 0 in its bounds check and with idleReplicaCount.
    min_replica_count: int | None = None
    max_replica_count: int = DEFAULT_MAX_REPLICAS
    idle_replica_count: int | None = None
    behavior: dict[str, Any] | None = None
    hpa_name_override: str = ""
    restore_to_original_replica_count: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    creation_timestamp: datetime | None = None

    @property
    def min_replicas(self) -> int:
        return self.min_replica_count if self.min_replica_count is not None else DEFAULT_MIN_REPLICAS

    @property
    def hpa_name(self) -> str:
        return self.hpa_name_override or f"keda-hpa-{self.name}"

    @property
    def hpa_min_replicas(self) -> int:
        if self.min_replica_count is not None and self.min_replica_count > 0:
            return self.min_replica_count
        return DEFAULT_HPA_MIN_REPLICAS

    @property
    def triggers_types(self) -> str:
        return ",".join(dict.fromkeys(t.type for t in self.triggers))

    def annotation_true(self, key: str) -> bool:
        """KEDA's getBoolAnnotation: present and not a Go boolean counts as true."""
        if key not in self.annotations:
            return False
        parsed = _go_parse_bool(self.annotations[key])
        return True if parsed is None else parsed

    @property
    def paused(self) -> bool:
        return PAUSED_REPLICAS_ANNOTATION in self.annotations or self.annotation_true(PAUSED_ANNOTATION)

    @property
    def paused_replicas(self) -> int | None:
        raw = self.annotations.get(PAUSED_REPLICAS_ANNOTATION)
        if raw is None:
            return None
        try:
            return int(raw)
        except ValueError:
            return None


# --- Go's formatting and parsing, where KEDA's messages and values depend on them -----------------


def _go_quote(value: str) -> str:
    """Go's ``%q`` for the text users write (JSON's escaping agrees on everything printable)."""
    return json.dumps(value, ensure_ascii=False)


def _go_parse_bool(value: str) -> bool | None:
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


def _go_char(c: str) -> str:
    return "'\\''" if c == "'" else "'" + json.dumps(c, ensure_ascii=False)[1:-1] + "'"


def _json_number_error(text: str) -> str | None:
    """Go's encoding/json scanner on a metadata value decoded into a float64 (KEDA's typed config does
    exactly that): None if it is a number, else the scanner's message."""
    state = "begin"
    for c in text:
        if state == "begin":
            if c == "-":
                state = "neg"
            elif c == "0":
                state = "zero"
            elif "1" <= c <= "9":
                state = "int"
            else:
                return f"invalid character {_go_char(c)} looking for beginning of value"
        elif state == "neg":
            if c == "0":
                state = "zero"
            elif "1" <= c <= "9":
                state = "int"
            else:
                return f"invalid character {_go_char(c)} in numeric literal"
        elif state in ("zero", "int", "frac", "exp", "end"):
            if c.isdigit() and c.isascii() and state not in ("zero", "end"):
                continue
            if c == "." and state in ("zero", "int"):
                state = "dot"
            elif c in "eE" and state in ("zero", "int", "frac"):
                state = "e"
            elif c in " \t\r\n":
                state = "end"  # whitespace may close a top-level value; anything after it may not
            else:
                return f"invalid character {_go_char(c)} after top-level value"
        elif state == "dot":
            if c.isdigit() and c.isascii():
                state = "frac"
            else:
                return f"invalid character {_go_char(c)} after decimal point in numeric literal"
        elif state in ("e", "esign"):
            if c.isdigit() and c.isascii():
                state = "exp"
            elif c in "+-" and state == "e":
                state = "esign"
            else:
                return f"invalid character {_go_char(c)} in exponent of numeric literal"
    if state in ("begin", "neg", "dot", "e", "esign"):
        return "unexpected end of JSON input"
    return None


def _parse_go_float(name: str, raw: str) -> float:
    """A float64 trigger parameter as KEDA's typed config reads it: JSON, so ``1e3`` but not ``+1`` or ``.5``."""
    problem = _json_number_error(raw)
    if problem is None:
        value = float(raw)
        if math.isinf(value):
            problem = f"json: cannot unmarshal number {raw} into Go value of type float64"
        else:
            return value
    elif raw in ("true", "false"):
        problem = "json: cannot unmarshal bool into Go value of type float64"
    elif raw == "null":
        return 0.0  # Go leaves the zero value in place for a JSON null
    elif raw[:1] in ('"', "[", "{"):
        kind = {'"': "string", "[": "array", "{": "object"}[raw[0]]
        try:
            json.loads(raw)
            problem = f"json: cannot unmarshal {kind} into Go value of type float64"
        except ValueError:
            pass
    raise ValueError(f"unable to set param {_go_quote(name)} value {_go_quote(raw)}: "
                     f"unable to unmarshal to field type float64: {problem}")


_GO_DURATION = re.compile(r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _parse_go_duration(name: str, raw: str) -> timedelta:
    """``timeout``: a Go duration (``30s``) or else a number of milliseconds, as the typed config reads it."""
    def fail(why: str) -> ValueError:
        return ValueError(f"unable to set param {_go_quote(name)} value {_go_quote(raw)}: {why}")

    if raw in ("0", "+0", "-0") or _GO_DURATION.fullmatch(raw):
        seconds = 0.0
        for number, unit in re.findall(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)", raw):
            seconds += float(number) * _DURATION_UNITS[unit]
        if raw.startswith("-") and seconds > 0:
            raise fail(f"duration cannot be negative: {_go_quote(raw)}")
        return timedelta(seconds=seconds)
    if not re.fullmatch(r"[-+]?\d+", raw):
        raise fail(f"unable to parse duration value {_go_quote(raw)}: must be either a duration string "
                   "(e.g. '30s', '5m') or a number of milliseconds")
    millis = int(raw)
    if millis < 0:
        raise fail(f"duration cannot be negative: {millis} milliseconds")
    return timedelta(milliseconds=millis)


def _parse_go_map(name: str, raw: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in raw.split(","):
        part = part.strip()
        kv = part.split("=")
        if len(kv) != 2:
            raise ValueError(f"unable to set param {_go_quote(name)} value {_go_quote(raw)}: "
                             f"expected format key=value, got {_go_quote(part)}")
        out[kv[0].strip()] = kv[1].strip()
    return out


_SI_SUFFIXES = {-9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E"}


def quantity(value: float) -> str:
    """KEDA's quantityFromFloat64 as it reaches the wire: ``resource.MustParse(fmt.Sprintf("%.3f", v))``.

    apimachinery keeps the parsed text when it deems it canonical (an integer part not starting with 0,
    digits not ending in ``000``), so 1.5 stays ``1.500``; otherwise it writes the canonical form, with
    the exponent lowered to a multiple of three and its SI suffix (0.25 → ``250m``, 1000 → ``1k``).
    NaN, infinities and negatives become ``0``, as KEDA makes them.
    """
    if math.isnan(value) or math.isinf(value) or value < 0:
        return "0"
    text = f"{value:.3f}"
    whole, fraction = text.split(".")
    whole = whole.lstrip("0") or "0"
    shifted = whole + fraction
    if len(shifted) <= 18 and not shifted.endswith("000") and shifted[0] != "0":
        return text
    dec = Decimal(text)
    if dec == 0:
        return "0"
    _sign, digits, exponent = dec.normalize().as_tuple()
    assert isinstance(exponent, int)
    mantissa = int("".join(map(str, digits)))
    while exponent % 3:
        mantissa *= 10
        exponent -= 1
    # Past exa there is no SI suffix and apimachinery writes none at all (1e21 reads back as 1): KEDA's own
    # quirk, kept.
    return f"{mantissa}{_SI_SUFFIXES.get(exponent, '')}"


def _time(value: datetime) -> str:
    """metav1.Time on the wire: RFC 3339 in UTC, whole seconds."""
    return value.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None


# --- parsing and validation ------------------------------------------------------------------------


def _target(spec: Mapping[str, Any]) -> ScaleTarget:
    ref = spec.get("scaleTargetRef") or {}
    name = str(ref.get("name") or "")
    if not name:
        raise KedaError(f"{SCALE_TARGET_ERR}: ScaledObject.spec.scaleTargetRef.name is missing")
    api_version = str(ref.get("apiVersion") or "")
    kind = str(ref.get("kind") or "") or "Deployment"
    if not api_version:
        group, version = "apps", "v1"
    elif api_version.count("/") == 0:
        group, version = "", api_version
    elif api_version.count("/") == 1 and all(api_version.split("/")):
        group, version = api_version.split("/")
    else:
        raise KedaError(f"{SCALE_TARGET_ERR}: unexpected GroupVersion string: {api_version}")
    # KEDA hard-codes these two and asks the RESTMapper for the rest; the plural is what it would answer
    # for every scalable kind a simulator user targets.
    resource = {"Deployment": "deployments", "StatefulSet": "statefulsets"}.get(kind, kind.lower() + "s")
    return ScaleTarget(name=name, group=group, version=version, kind=kind, resource=resource)


def _replica_bounds(min_count: int | None, max_count: int, idle: int | None, target: ScaleTarget) -> None:
    """CheckReplicaCountBoundsAreValid, including its quirk that a set minReplicaCount of 0 counts as 1."""
    minimum = 0
    if min_count is not None:
        minimum = min_count if min_count > 0 else DEFAULT_HPA_MIN_REPLICAS
    if minimum > max_count:
        raise KedaError(f"{REPLICAS_ERR}: MinReplicaCount={minimum} must be less than MaxReplicaCount={max_count}",
                        target=target)
    if idle is not None and idle >= minimum:
        raise KedaError(f"{REPLICAS_ERR}: IdleReplicaCount={idle} must be less than MinReplicaCount={minimum}",
                        target=target)


def _validate_triggers(triggers: Sequence[Mapping[str, Any]], target: ScaleTarget) -> None:
    """ValidateTriggers (apis/keda/v1alpha1/scaletriggers_types.go)."""
    if not triggers:
        raise KedaError(f"{TRIGGERS_ERR}: no triggers defined in the ScaledObject/ScaledJob", target=target)
    names: set[str] = set()
    for trigger in triggers:
        kind = str(trigger.get("type") or "")
        if trigger.get("useCachedMetrics") and kind in ("cpu", "memory", "cron"):
            raise KedaError(f"{TRIGGERS_ERR}: property \"useCachedMetrics\" is not supported for "
                            f"{_go_quote(kind)} scaler", target=target)
        name = str(trigger.get("name") or "")
        if name:
            if name in names:
                raise KedaError(f"{TRIGGERS_ERR}: triggerName {_go_quote(name)} is defined multiple times in the "
                                "ScaledObject/ScaledJob, but it must be unique", target=target)
            names.add(name)


def _metadata(trigger: Mapping[str, Any]) -> dict[str, str]:
    # The typed config trims every value and treats an empty one as absent.
    raw = trigger.get("metadata") or {}
    return {str(k): str(v).strip() for k, v in raw.items() if str(v).strip()}


def parse_prometheus_trigger(index: int, trigger: Mapping[str, Any]) -> PrometheusTrigger:
    """NewPrometheusScaler's checks, with its messages (errors of several parameters joined by newlines)."""
    metric_type = str(trigger.get("metricType") or "")
    if metric_type == "Utilization":
        raise ValueError("error getting scaler metric type: 'Utilization' metric type is unsupported for external "
                         "metrics, allowed values are 'Value' or 'AverageValue'")
    meta = _metadata(trigger)
    errors: list[str] = []
    values: dict[str, Any] = {}

    def required(key: str) -> str | None:
        if key not in meta:
            errors.append(f"missing required parameter {_go_quote(key)} in [triggerMetadata]")
            return None
        return meta[key]

    def attempt(key: str, parse: Any) -> None:
        if key in meta:
            try:
                values[key] = parse(key, meta[key])
            except ValueError as exc:
                errors.append(str(exc))

    def parse_bool(key: str, raw: str) -> bool:
        parsed = _go_parse_bool(raw)
        if parsed is None:
            raise ValueError(f"unable to set param {_go_quote(key)} value {_go_quote(raw)}: unable to parse boolean "
                             f"value {_go_quote(raw)}: strconv.ParseBool: parsing {_go_quote(raw)}: invalid syntax")
        return parsed

    # The order of prometheusMetadata's fields, which is the order KEDA reports them in.
    server_address = required("serverAddress")
    query = required("query")
    attempt("queryParameters", _parse_go_map)
    if required("threshold") is not None:
        attempt("threshold", _parse_go_float)
    attempt("activationThreshold", _parse_go_float)
    attempt("customHeaders", _parse_go_map)
    attempt("ignoreNullValues", parse_bool)
    attempt("unsafeSsl", parse_bool)
    attempt("timeout", _parse_go_duration)
    if errors:
        detail = "\n".join(errors)
        raise ValueError(f"error parsing prometheus metadata: error parsing prometheus metadata: {detail}")
    assert server_address is not None and query is not None
    return PrometheusTrigger(
        index=index, server_address=server_address, query=query, threshold=values["threshold"],
        activation_threshold=values.get("activationThreshold", 0.0), metric_type=metric_type or "AverageValue",
        ignore_null_values=values.get("ignoreNullValues", True), unsafe_ssl=values.get("unsafeSsl", False),
        namespace=meta.get("namespace", ""), custom_headers=values.get("customHeaders", {}),
        query_parameters=values.get("queryParameters", {}), timeout=values.get("timeout"),
        name=str(trigger.get("name") or ""))


def _parse_resource_trigger(index: int, kind: str, trigger: Mapping[str, Any]) -> ResourceTrigger:
    meta = _metadata(trigger)
    prefix = f"error parsing {kind} metadata"
    if "type" in meta:
        raise ValueError(f"{prefix}: scaler {kind} info: The 'type' setting is DEPRECATED and is removed in v2.18 - "
                         "Use 'metricType' instead.")
    if "value" not in meta:
        raise ValueError(f"{prefix}: missing required parameter \"value\" in [triggerMetadata]")
    metric_type = str(trigger.get("metricType") or "")
    value = meta["value"]
    if metric_type == "Utilization":
        if not re.fullmatch(r"[-+]?\d+", value) or not -(2**31) <= int(value) < 2**31:
            why = "value out of range" if re.fullmatch(r"[-+]?\d+", value) else "invalid syntax"
            raise ValueError(f"{prefix}: strconv.ParseInt: parsing {_go_quote(value)}: {why}")
    elif metric_type != "AverageValue":
        raise ValueError(f"{prefix}: unknown metric type: {metric_type}, allowed values are 'Utilization' or "
                         "'AverageValue'")
    return ResourceTrigger(index=index, type=kind, metric_type=metric_type, value=value,
                           container_name=meta.get("containerName", ""), name=str(trigger.get("name") or ""))


def _build_trigger(index: int, trigger: Mapping[str, Any]) -> Trigger:
    kind = str(trigger.get("type") or "")
    if kind == "prometheus":
        return parse_prometheus_trigger(index, trigger)
    if kind in ("cpu", "memory"):
        return _parse_resource_trigger(index, kind, trigger)
    if kind in KEDA_TRIGGER_TYPES:
        raise ValueError(f"the simulator plays only the {', '.join(SUPPORTED_TRIGGERS)} scalers; trigger {index} "
                         f"has type {_go_quote(kind)}, which KEDA would query outside the cluster")
    raise ValueError(f"no scaler found for type: {kind}")


def _int(spec: Mapping[str, Any], key: str) -> int | None:
    value = spec.get(key)
    return None if value is None else int(value)


def parse_scaled_object(obj: Mapping[str, Any]) -> ScaledObject:
    """A ScaledObject as KEDA's reconcile checks it, in its order; :class:`KedaError` with its Ready message if not.

    The apiserver (with KEDA's CRD) already refuses some of these (no triggers, min > max); KEDA checks them
    again, and so do we, for objects that reach us another way.
    """
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    target = _target(spec)
    min_count = _int(spec, "minReplicaCount")
    max_count = _int(spec, "maxReplicaCount")
    idle = _int(spec, "idleReplicaCount")
    _replica_bounds(min_count, DEFAULT_MAX_REPLICAS if max_count is None else max_count, idle, target)
    raw_triggers = list(spec.get("triggers") or [])
    _validate_triggers(raw_triggers, target)
    triggers_types = ",".join(dict.fromkeys(str(t.get("type") or "") for t in raw_triggers))
    triggers: list[Trigger] = []
    for index, raw in enumerate(raw_triggers):
        try:
            triggers.append(_build_trigger(index, raw))
        except ValueError as exc:
            raise KedaError(f"{HPA_ERR}: {exc}", target=target, triggers_types=triggers_types) from exc
    advanced = spec.get("advanced") or {}
    hpa_config = advanced.get("horizontalPodAutoscalerConfig") or {}
    polling = _int(spec, "pollingInterval")
    cooldown = _int(spec, "cooldownPeriod")
    initial = _int(spec, "initialCooldownPeriod")
    return ScaledObject(
        name=str(meta.get("name") or ""), namespace=str(meta.get("namespace") or "default"),
        uid=str(meta.get("uid") or ""), target=target, triggers=tuple(triggers),
        polling_interval=DEFAULT_POLLING_INTERVAL if polling is None else polling,
        cooldown_period=DEFAULT_COOLDOWN_PERIOD if cooldown is None else cooldown,
        initial_cooldown_period=DEFAULT_INITIAL_COOLDOWN_PERIOD if initial is None else initial,
        min_replica_count=min_count, max_replica_count=DEFAULT_MAX_REPLICAS if max_count is None else max_count,
        idle_replica_count=idle, behavior=hpa_config.get("behavior"),
        hpa_name_override=str(hpa_config.get("name") or ""),
        restore_to_original_replica_count=bool(advanced.get("restoreToOriginalReplicaCount")),
        labels=dict(meta.get("labels") or {}), annotations=dict(meta.get("annotations") or {}),
        creation_timestamp=_parse_time(meta.get("creationTimestamp")))


# --- the HPA and the external metrics ----------------------------------------------------------------


def external_metric_names(so: ScaledObject) -> list[str]:
    """``status.externalMetricNames``: ``s{trigger index}-prometheus``, in trigger order."""
    return [t.metric_name for t in so.triggers if isinstance(t, PrometheusTrigger)]


def resource_metric_names(so: ScaledObject) -> list[str]:
    return [t.type for t in so.triggers if isinstance(t, ResourceTrigger)]


def _metric_spec(so: ScaledObject, trigger: Trigger) -> dict[str, Any]:
    if isinstance(trigger, PrometheusTrigger):
        key = "averageValue" if trigger.metric_type == "AverageValue" else "value"
        return {"type": "External", "external": {
            "metric": {"name": trigger.metric_name, "selector": {"matchLabels": {SCALED_OBJECT_LABEL: so.name}}},
            "target": {"type": trigger.metric_type, key: quantity(trigger.threshold)}}}
    target: dict[str, Any] = {"type": trigger.metric_type}
    if trigger.metric_type == "Utilization":
        target["averageUtilization"] = int(trigger.value)
    else:
        target["averageValue"] = trigger.value
    if trigger.container_name:
        return {"type": "ContainerResource", "containerResource": {
            "name": trigger.type, "container": trigger.container_name, "target": target}}
    return {"type": "Resource", "resource": {"name": trigger.type, "target": target}}


def _hpa_labels(so: ScaledObject, version: str) -> dict[str, str]:
    name = so.hpa_name
    if len(name) > 63:
        name = name[:63]
        while name and not name[-1].isalnum():
            name = name[:-1]
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/version": version,
              "app.kubernetes.io/part-of": so.name, "app.kubernetes.io/managed-by": "keda-operator"}
    excluded = set(so.annotations.get(EXCLUDED_LABELS_ANNOTATION, "").split(",")) - {""}
    # KEDA adds its selector label to the ScaledObject before it builds the HPA, so the HPA inherits it too.
    for key, value in {**so.labels, SCALED_OBJECT_LABEL: so.name}.items():
        if key not in excluded:
            labels[key] = value
    return labels


def hpa_for(so: ScaledObject, triggers: Sequence[Trigger] | None = None, *,
            keda_version: str = KEDA_VERSION) -> dict[str, Any]:
    """The autoscaling/v2 HorizontalPodAutoscaler KEDA's operator creates for ``so`` (controllers/keda/hpa.go).

    Metrics are sorted by type as KEDA sorts them (stable for equal types, as Go's sort is for so few).
    """
    chosen = so.triggers if triggers is None else tuple(triggers)
    metrics = sorted((_metric_spec(so, t) for t in chosen), key=lambda m: str(m["type"]))
    behavior = json.loads(json.dumps(so.behavior)) if so.behavior is not None else None
    for annotation, direction in ((PAUSED_SCALE_IN_ANNOTATION, "scaleDown"), (PAUSED_SCALE_OUT_ANNOTATION, "scaleUp")):
        if so.annotation_true(annotation):
            behavior = behavior or {}
            behavior.setdefault(direction, {})["selectPolicy"] = "Disabled"
    metadata: dict[str, Any] = {
        "name": so.hpa_name, "namespace": so.namespace, "labels": _hpa_labels(so, keda_version),
        "ownerReferences": [{"apiVersion": KEDA_API, "kind": "ScaledObject", "name": so.name, "uid": so.uid,
                             "controller": True, "blockOwnerDeletion": True}]}
    if so.annotations:
        metadata["annotations"] = dict(so.annotations)
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": so.target.api_version, "kind": so.target.kind, "name": so.target.name},
        "minReplicas": so.hpa_min_replicas, "maxReplicas": so.max_replica_count, "metrics": metrics}
    if behavior is not None:
        spec["behavior"] = behavior
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": metadata, "spec": spec}


def trigger_value(results: Sequence[tuple[Mapping[str, str], float]], trigger: PrometheusTrigger) -> float:
    """The value KEDA's prometheus scaler takes from an instant query's result (ExecutePromQuery).

    Several series are an error whatever ``ignoreNullValues`` says; an empty result and a NaN or infinite
    value are 0 when it is true (KEDA's default) and an error when it is false.
    """
    if not results:
        if trigger.ignore_null_values:
            return 0.0
        raise KedaError("prometheus metrics 'prometheus' target may be lost, the result is empty",
                        reason="KEDAScalerFailed")
    if len(results) > 1:
        raise KedaError(f"prometheus query {trigger.query} returned multiple elements", reason="KEDAScalerFailed")
    value = float(results[0][1])
    if math.isnan(value) or math.isinf(value):
        if trigger.ignore_null_values:
            return 0.0
        text = "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
        raise KedaError(f"prometheus query returns {text}", reason="KEDAScalerFailed")
    return value


def query_failed(status: int = 400) -> KedaError:
    """KEDA's error when Prometheus refuses the query (a PromQL it cannot parse or evaluate answers 400):
    KEDA reports only the HTTP status, and the trigger counts as failed."""
    return KedaError(f"prometheus query api returned error. status: {status}", reason="KEDAScalerFailed")


def trigger_active(value: float, trigger: PrometheusTrigger) -> bool:
    """KEDA's activation: strictly above ``activationThreshold`` (0 by default)."""
    return value > trigger.activation_threshold


def activity(so: ScaledObject, outcomes: Mapping[int, float | KedaError]) -> tuple[bool, bool, list[str]]:
    """(active, error, active metric names) over one poll, as getScaledObjectState folds its scalers.

    ``outcomes`` maps a prometheus trigger's index to its value or its error. cpu/memory triggers are
    active; if they are all the triggers there are, the object is active unless something failed.
    """
    active, error, names = False, False, []
    for trigger in so.triggers:
        if not isinstance(trigger, PrometheusTrigger):
            continue
        outcome = outcomes.get(trigger.index)
        if isinstance(outcome, KedaError) or outcome is None:
            error = True
        elif trigger_active(outcome, trigger):
            active = True
            names.append(trigger.metric_name)
    if not external_metric_names(so) and not error:
        active = True
    return active, error, names


def external_metric_value(metric_name: str, value: float, at: datetime) -> dict[str, Any]:
    """One item of the ExternalMetricValueList KEDA's metrics server answers the HPA with.

    The value goes through GenerateMetricInMili; the timestamp through KEDA's gRPC hop, which keeps
    whole seconds; KEDA sets no labels and no window.
    """
    return {"metricName": metric_name, "metricLabels": None, "timestamp": _time(at), "value": quantity(value)}


def external_metric_list(items: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    return {"kind": "ExternalMetricValueList", "apiVersion": "external.metrics.k8s.io/v1beta1",
            "metadata": {}, "items": list(items)}


def metric_error_message(metric_name: str) -> str:
    """What KEDA's metrics server answers the HPA when the trigger behind ``metric_name`` failed."""
    return f"metric:{metric_name} encountered error"


def _selector_map(selector: Mapping[str, str] | str | None) -> dict[str, str]:
    if selector is None:
        return {}
    if isinstance(selector, Mapping):
        return dict(selector)
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in selector.split(","))):
        key, _, value = part.partition("==" if "==" in part else "=")
        out[key.strip()] = value.strip()
    return out


def select_metric(scaled_objects: Iterable[ScaledObject], namespace: str, metric_name: str,
                  selector: Mapping[str, str] | str | None) -> tuple[ScaledObject, PrometheusTrigger]:
    """The ScaledObject and trigger an external-metrics request is for, found as KEDA's provider finds them:
    by the exact value of the ``scaledobject.keda.sh/name`` selector label (never a prefix), then the name."""
    wanted = _selector_map(selector).get(SCALED_OBJECT_LABEL, "")
    if not wanted:
        raise KedaError("scaledObject name is not specified", reason="MetricsServerError")
    for so in scaled_objects:
        if so.namespace == namespace and so.name == wanted:
            for trigger in so.triggers:
                if isinstance(trigger, PrometheusTrigger) and trigger.metric_name == metric_name:
                    return so, trigger
            raise KedaError(f"no matching metrics found for {metric_name}", reason="MetricsServerError")
    raise KedaError(f"error getting scalers scaledobjects.keda.sh {_go_quote(wanted)} not found",
                    reason="MetricsServerError")


# --- the scale executor --------------------------------------------------------------------------------


def _condition(kind: str, status: str, reason: str = "", message: str = "") -> dict[str, str]:
    out = {"type": kind, "status": status}
    if reason:
        out["reason"] = reason
    if message:
        out["message"] = message
    return out


@dataclass(frozen=True)
class Decision:
    """One poll of KEDA's scale executor (RequestScale) for one ScaledObject.

    ``scale_to`` is the replica count KEDA writes to the target's /scale subresource, or None when it
    leaves the target to the HPA. ``last_active`` is the lastActiveTime to store (the old one unless
    renewed). ``conditions`` are the ones RequestScale sets, in its order, to lay over the status's.
    ``event`` is (type, reason, message) of the Event KEDA records, if any.
    """

    scale_to: int | None
    last_active: datetime | None
    conditions: tuple[dict[str, str], ...]
    event: tuple[str, str, str] | None = None
    triggers_activity: dict[str, bool] = field(default_factory=dict)


def decide(so: ScaledObject, now: datetime, active: bool, current_replicas: int, last_active: datetime | None, *,
           error: bool = False, active_triggers: Sequence[str] | None = None,
           hpa_scaling_active: Mapping[str, Any] | None = None) -> Decision:
    """RequestScale (pkg/scaling/executor/scale_scaledobjects.go): activation from zero (or idle), scale to
    zero (or idle) once ``cooldownPeriod`` has passed since ``last_active``, and everything between left to
    the HPA. ``hpa_scaling_active`` is the HPA's ScalingActive condition, if it has one yet.

    KEDA's fallback is not played: a failing trigger without one gives Ready=False (TriggerError).
    """
    names = external_metric_names(so)
    fired = list(names if active_triggers is None and active else active_triggers or [])
    conditions = [_condition("Ready", "True", READY_REASON, READY_MESSAGE)]
    scale_to: int | None = None
    renewed = last_active
    event: tuple[str, str, str] | None = None
    kind = so.target.gvk_string
    where = f"{so.namespace}/{so.target.name}"

    def set_condition(new: dict[str, str]) -> None:
        for i, old in enumerate(conditions):
            if old["type"] == new["type"]:
                conditions[i] = new
                return
        conditions.append(new)

    activity_map = {name: name in fired for name in names}
    if so.paused:
        set_condition(_condition("Paused", "True", PAUSED_REASON, PAUSED_MESSAGE))
        paused = so.paused_replicas
        if paused is not None and paused != current_replicas:
            scale_to = paused
        return Decision(scale_to, last_active, tuple(conditions), None, activity_map)

    minimum = so.min_replicas
    forced = so.annotation_true(FORCE_ACTIVATION_ANNOTATION)
    if active or forced:
        set_condition(_condition("Active", "True", "ScalerActive", FORCED_ACTIVE_MESSAGE if forced else ACTIVE_MESSAGE))
        if (so.idle_replica_count is not None and current_replicas < minimum) or current_replicas == 0:
            if not so.annotation_true(PAUSED_SCALE_OUT_ANNOTATION):
                scale_to = minimum if minimum > 0 else 1
                cause = ("caused by forced activation annotation" if forced
                         else "triggered by " + ";".join(fired))
                event = ("Normal", "KEDAScaleTargetActivated",
                         f"Scaled {kind} {where} from {current_replicas} to {scale_to}, {cause}")
                renewed = now
        elif error:
            set_condition(_condition("Ready", "Unknown", "PartialTriggerError", PARTIAL_ERROR_MESSAGE))
        else:
            renewed = now
    else:
        set_condition(_condition("Active", "False", "ScalerNotActive", NOT_ACTIVE_MESSAGE))
        idle = so.idle_replica_count
        if error:
            set_condition(_condition("Ready", "False", "TriggerError", TRIGGER_ERROR_MESSAGE))
        elif (idle is not None and current_replicas > idle) or (current_replicas > 0 and minimum == 0):
            if not so.annotation_true(PAUSED_SCALE_IN_ANNOTATION):
                if last_active is None:
                    created = so.creation_timestamp
                    due = created is None or created + timedelta(seconds=so.initial_cooldown_period) < now
                else:
                    due = last_active + timedelta(seconds=so.cooldown_period) < now
                if due:
                    scale_to = idle if idle is not None else minimum
                    event = ("Normal", "KEDAScaleTargetDeactivated",
                             f"Deactivated {kind} {where} from {current_replicas} to {scale_to}")
                else:
                    set_condition(_condition("Active", "False", "ScalerCooldown", COOLDOWN_MESSAGE))
        elif idle is None and current_replicas < minimum:
            scale_to = minimum

    if hpa_scaling_active:
        status = str(hpa_scaling_active.get("status") or "")
        reason = str(hpa_scaling_active.get("reason") or "")
        message = str(hpa_scaling_active.get("message") or "")
        if status == "True":
            set_condition(_condition("HPAActive", "True", "HPAActive", "HPA is actively scaling"))
        elif reason == "ScalingDisabled":
            set_condition(_condition("HPAActive", "True", "ScalingDisabled", message))
        elif status:
            set_condition(_condition("HPAActive", "False", reason or "HPAMetricsUnavailable",
                                     f"HPA is not actively scaling: {message}"))
    return Decision(scale_to, renewed, tuple(conditions), event, activity_map)


# --- status ------------------------------------------------------------------------------------------------

INITIAL_CONDITIONS = (_condition("Ready", "Unknown"), _condition("Active", "Unknown"),
                      _condition("Fallback", "Unknown"), _condition("Paused", "False"))


def _conditions(previous: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    kinds = {str(c.get("type")) for c in previous}
    if not {"Ready", "Active", "Fallback", "Paused"} <= kinds:
        return [dict(c) for c in INITIAL_CONDITIONS]
    return [{str(k): str(v) for k, v in c.items()} for c in previous]


def _set(conditions: list[dict[str, str]], new: Mapping[str, str]) -> None:
    for i, old in enumerate(conditions):
        if old.get("type") == new["type"]:
            conditions[i] = dict(new)
            return
    conditions.append(dict(new))


def status_for(obj: Mapping[str, Any], *, so: ScaledObject | None = None, decision: Decision | None = None,
               error: KedaError | None = None, original_replica_count: int | None = None) -> dict[str, Any]:
    """The ScaledObject's ``.status`` after KEDA's reconcile (and, with ``decision``, a poll of its scale loop).

    ``obj`` is the ScaledObject as stored (its current status is the base); ``error`` is what
    :func:`parse_scaled_object` raised, or a scaler's error surfaced at reconcile. ``original_replica_count``
    is the target's replicas when KEDA first saw it (kept once written).
    """
    previous = obj.get("status") or {}
    status: dict[str, Any] = {}
    conditions = _conditions(previous.get("conditions") or [])
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    pausing = PAUSED_REPLICAS_ANNOTATION in annotations or (
        PAUSED_ANNOTATION in annotations and _go_parse_bool(str(annotations[PAUSED_ANNOTATION])) is not False)
    was_paused = any(c.get("type") == "Paused" and c.get("status") == "True" for c in conditions)
    target = so.target if so is not None else (error.target if error is not None else None)

    if pausing:
        _set(conditions, _condition("Paused", "True", PAUSED_REASON, PAUSED_MESSAGE))
        _set(conditions, _condition("Ready", "True", READY_REASON, PAUSED_MESSAGE))
        raw = annotations.get(PAUSED_REPLICAS_ANNOTATION)
        if raw is not None and re.fullmatch(r"[-+]?\d+", str(raw)):
            status["pausedReplicaCount"] = int(raw)
    else:
        if was_paused:
            _set(conditions, _condition("Paused", "False", "ScaledObjectUnpaused",
                                        "pause annotation removed for ScaledObject"))
        if error is not None:
            _set(conditions, _condition("Ready", "False", CHECK_FAILED_REASON, str(error)))
            _set(conditions, _condition("Active", "Unknown", "UnknownState", "ScaledObject check failed"))
        else:
            _set(conditions, _condition("Ready", "True", READY_REASON, READY_MESSAGE))
            for condition in decision.conditions if decision is not None else ():
                _set(conditions, condition)
    _set(conditions, _condition("Fallback", "False", "NoFallbackFound", NO_FALLBACK_MESSAGE))
    status["conditions"] = conditions

    if target is not None:
        status["scaleTargetKind"] = target.gvk_string
        status["scaleTargetGVKR"] = target.gvkr()
        original = previous.get("originalReplicaCount", original_replica_count)
        if original is not None:
            status["originalReplicaCount"] = int(original)
    triggers_types = so.triggers_types if so is not None else (error.triggers_types if error is not None else None)
    if triggers_types is not None:
        status["triggersTypes"] = triggers_types
        status["authenticationsTypes"] = ",".join(dict.fromkeys(
            str((t.get("authenticationRef") or {}).get("name"))
            for t in ((obj.get("spec") or {}).get("triggers") or []) if (t.get("authenticationRef") or {}).get("name")))
    if so is not None and error is None:
        if external_metric_names(so):
            status["externalMetricNames"] = external_metric_names(so)
        if resource_metric_names(so):
            status["resourceMetricNames"] = resource_metric_names(so)
        status["hpaName"] = so.hpa_name
    elif previous.get("hpaName"):
        status["hpaName"] = previous["hpaName"]
    last_active = decision.last_active if decision is not None else _parse_time(previous.get("lastActiveTime"))
    if last_active is not None:
        status["lastActiveTime"] = _time(last_active)
    if decision is not None and decision.triggers_activity:
        status["triggersActivity"] = {name: {"isActive": on} for name, on in decision.triggers_activity.items()}
    return status


def label_patch(so: ScaledObject) -> dict[str, Any] | None:
    """The label KEDA adds to the ScaledObject itself (its metrics server looks objects up by it), if missing."""
    if so.labels.get(SCALED_OBJECT_LABEL) == so.name:
        return None
    return {"metadata": {"labels": {SCALED_OBJECT_LABEL: so.name}}}
