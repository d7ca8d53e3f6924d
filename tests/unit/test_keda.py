"""k8sim.keda against KEDA v2.20.2's own behaviour; "KEDA test" marks a case taken from its tests."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from k8sim import keda
from k8sim.keda import KedaError

NOW = datetime(2026, 12, 7, 18, 0, 0, tzinfo=UTC)
PROM = {"serverAddress": "http://prometheus.monitoring:9090", "query": "sum(vllm:num_requests_waiting)",
        "threshold": "5"}


def scaled_object(name: str = "llm", *, spec: dict[str, Any] | None = None, metadata: dict[str, str] | None = None,
                  annotations: dict[str, str] | None = None, labels: dict[str, str] | None = None,
                  status: dict[str, Any] | None = None) -> dict[str, Any]:
    base: dict[str, Any] = {"scaleTargetRef": {"name": "vllm"},
                            "triggers": [{"type": "prometheus", "metadata": dict(metadata or PROM)}]}
    base.update(spec or {})
    obj: dict[str, Any] = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
                           "metadata": {"name": name, "namespace": "ai", "uid": f"uid-{name}"}, "spec": base}
    if annotations:
        obj["metadata"]["annotations"] = annotations
    if labels:
        obj["metadata"]["labels"] = labels
    if status:
        obj["status"] = status
    return obj


def parse(**kwargs: Any) -> keda.ScaledObject:
    return keda.parse_scaled_object(scaled_object(**kwargs))


def error_of(obj: dict[str, Any]) -> str:
    with pytest.raises(KedaError) as caught:
        keda.parse_scaled_object(obj)
    return str(caught.value)


def prometheus(**metadata: str) -> keda.PrometheusTrigger:
    return keda.parse_prometheus_trigger(0, {"type": "prometheus", "metadata": {**PROM, **metadata}})


# --- parsing --------------------------------------------------------------------------------------------


def test_defaults_are_kedas() -> None:
    so = parse()
    assert (so.polling_interval, so.cooldown_period, so.min_replicas, so.max_replica_count) == (30, 300, 0, 100)
    assert so.min_replica_count is None and so.idle_replica_count is None
    assert so.target == keda.ScaleTarget(name="vllm")
    assert so.target.gvk_string == "apps/v1.Deployment"
    trigger = so.triggers[0]
    assert isinstance(trigger, keda.PrometheusTrigger)
    assert (trigger.threshold, trigger.activation_threshold, trigger.metric_type) == (5.0, 0.0, "AverageValue")
    assert trigger.ignore_null_values is True
    # Kept for display only: the simulator evaluates the query over its own series.
    assert trigger.server_address == "http://prometheus.monitoring:9090"


def test_a_statefulset_or_a_core_kind_target() -> None:
    so = parse(spec={"scaleTargetRef": {"name": "db", "apiVersion": "apps/v1", "kind": "StatefulSet"}})
    assert so.target.gvkr() == {"group": "apps", "version": "v1", "kind": "StatefulSet", "resource": "statefulsets"}
    core = parse(spec={"scaleTargetRef": {"name": "rc", "apiVersion": "v1", "kind": "ReplicationController"}})
    assert core.target.gvk_string == "/v1.ReplicationController"
    assert core.target.api_version == "v1"


# KEDA test: pkg/scalers/prometheus_scaler_test.go, testPromMetadata (the cases without auth).
@pytest.mark.parametrize(("metadata", "is_error"), [
    ({}, True),
    ({"serverAddress": "http://localhost:9090", "metricName": "http_requests_total", "threshold": "100",
      "query": "up"}, False),
    ({"serverAddress": "http://localhost:9090", "threshold": "100", "query": "up", "namespace": "foo"}, False),
    ({"serverAddress": "http://localhost:9090", "threshold": "100", "query": "up", "ignoreNullValues": "false"}, False),
    ({"serverAddress": "http://localhost:9090", "threshold": "100", "query": "up", "activationThreshold": "50"}, False),
    ({"serverAddress": "", "threshold": "100", "query": "up"}, True),
    ({"serverAddress": "http://localhost:9090", "query": "up"}, True),
    ({"serverAddress": "http://localhost:9090", "threshold": "one", "query": "up"}, True),
    ({"serverAddress": "http://localhost:9090", "threshold": "100", "activationThreshold": "one", "query": "up"}, True),
    ({"serverAddress": "http://localhost:9090", "threshold": "100", "query": ""}, True),
    ({"serverAddress": "http://localhost:9090", "threshold": "100", "query": "up", "ignoreNullValues": "xxxx"}, True),
    ({"serverAddress": "https://localhost:9090", "threshold": "100", "query": "up", "unsafeSsl": "true"}, False),
    ({"serverAddress": "http://localhost:9090", "threshold": "100", "query": "up",
      "customHeaders": "key1=value1,key2=value2"}, False),
    ({"serverAddress": "http://localhost:9090", "threshold": "100", "query": "up",
      "customHeaders": "key1=value1,key2"}, True),
    ({"serverAddress": "http://localhost:9090", "threshold": "100", "query": "up",
      "queryParameters": "key1=value1,key2=value2"}, False),
    ({"serverAddress": "http://localhost:9090", "threshold": "100", "query": "up",
      "queryParameters": "key1=value1,key2"}, True),
    ({"serverAddress": "http://localhost:9090", "threshold": "100", "query": "up", "timeout": "1000"}, False),
    ({"serverAddress": "http://localhost:9090", "threshold": "100", "query": "up", "timeout": "-1"}, True),
    ({"serverAddress": "http://localhost:9090", "threshold": "100", "query": "up", "timeout": "a"}, True),
])
def test_kedas_prometheus_metadata_table(metadata: dict[str, str], is_error: bool) -> None:
    trigger = {"type": "prometheus", "metadata": metadata}
    if is_error:
        with pytest.raises(ValueError, match=r"^error parsing prometheus metadata: error parsing prometheus metadata"):
            keda.parse_prometheus_trigger(0, trigger)
    else:
        parsed = keda.parse_prometheus_trigger(0, trigger)
        assert parsed.threshold == 100.0 and parsed.query == "up"


def test_metadata_values_parse_as_kedas_typed_config_does() -> None:
    assert prometheus(threshold="1e3", activationThreshold="0.5").threshold == 1000.0
    assert prometheus(activationThreshold="0.5").activation_threshold == 0.5
    assert prometheus(threshold=" 7 ").threshold == 7.0  # values are trimmed
    assert prometheus(ignoreNullValues="F").ignore_null_values is False
    assert prometheus(timeout="1000").timeout == timedelta(seconds=1)
    assert prometheus(timeout="1m30s").timeout == timedelta(seconds=90)
    assert prometheus(customHeaders="a=1, b=2").custom_headers == {"a": "1", "b": "2"}


@pytest.mark.parametrize(("raw", "why"), [
    ("one", "invalid character 'o' looking for beginning of value"),
    ("+1", "invalid character '+' looking for beginning of value"),
    (".5", "invalid character '.' looking for beginning of value"),
    ("1.", "unexpected end of JSON input"),
    ("01", "invalid character '1' after top-level value"),
    ("5m", "invalid character 'm' after top-level value"),
    ("1 2", "invalid character '2' after top-level value"),
    ("1.x", "invalid character 'x' after decimal point in numeric literal"),
    ("1ex", "invalid character 'x' in exponent of numeric literal"),
    ("-x", "invalid character 'x' in numeric literal"),
    ("true", "json: cannot unmarshal bool into Go value of type float64"),
    ('"5"', "json: cannot unmarshal string into Go value of type float64"),
    ("1e400", "json: cannot unmarshal number 1e400 into Go value of type float64"),
])
def test_a_malformed_threshold_gets_gos_json_message(raw: str, why: str) -> None:
    with pytest.raises(ValueError) as caught:
        prometheus(threshold=raw)
    assert str(caught.value) == (
        "error parsing prometheus metadata: error parsing prometheus metadata: unable to set param \"threshold\" "
        f"value {keda._go_quote(raw)}: unable to unmarshal to field type float64: {why}")


def test_every_missing_parameter_is_reported_in_field_order() -> None:
    with pytest.raises(ValueError) as caught:
        keda.parse_prometheus_trigger(0, {"type": "prometheus", "metadata": {"ignoreNullValues": "xxxx"}})
    assert str(caught.value).split(": ", 2)[2].split("\n") == [
        'missing required parameter "serverAddress" in [triggerMetadata]',
        'missing required parameter "query" in [triggerMetadata]',
        'missing required parameter "threshold" in [triggerMetadata]',
        'unable to set param "ignoreNullValues" value "xxxx": unable to parse boolean value "xxxx": '
        'strconv.ParseBool: parsing "xxxx": invalid syntax',
    ]


def test_utilization_is_refused_for_an_external_metric() -> None:
    obj = scaled_object(spec={"triggers": [{"type": "prometheus", "metricType": "Utilization", "metadata": PROM}]})
    assert error_of(obj) == (
        "failed to ensure HPA is correctly created for ScaledObject: error getting scaler metric type: 'Utilization' "
        "metric type is unsupported for external metrics, allowed values are 'Value' or 'AverageValue'")


def test_a_scaler_error_is_the_ready_message_kedas_reconcile_writes() -> None:
    obj = scaled_object(metadata={"serverAddress": "http://p:9090", "query": "up"})
    with pytest.raises(KedaError) as caught:
        keda.parse_scaled_object(obj)
    assert str(caught.value) == (
        "failed to ensure HPA is correctly created for ScaledObject: error parsing prometheus metadata: "
        'error parsing prometheus metadata: missing required parameter "threshold" in [triggerMetadata]')
    assert caught.value.reason == "ScaledObjectCheckFailed"
    # KEDA has already recorded the target and the trigger types when its scalers fail to build.
    assert caught.value.target == keda.ScaleTarget(name="vllm")
    assert caught.value.triggers_types == "prometheus"


def test_no_triggers() -> None:
    assert error_of(scaled_object(spec={"triggers": []})) == (
        "ScaledObject doesn't have correct triggers specification: no triggers defined in the ScaledObject/ScaledJob")


def test_duplicate_trigger_names_and_cached_metrics_on_cpu() -> None:
    twice = [{"type": "prometheus", "name": "q", "metadata": PROM}] * 2
    assert error_of(scaled_object(spec={"triggers": twice})) == (
        "ScaledObject doesn't have correct triggers specification: triggerName \"q\" is defined multiple times in "
        "the ScaledObject/ScaledJob, but it must be unique")
    cached = [{"type": "cpu", "useCachedMetrics": True, "metricType": "Utilization", "metadata": {"value": "50"}}]
    assert error_of(scaled_object(spec={"triggers": cached})) == (
        "ScaledObject doesn't have correct triggers specification: property \"useCachedMetrics\" is not supported "
        "for \"cpu\" scaler")


def test_min_above_max() -> None:
    assert error_of(scaled_object(spec={"minReplicaCount": 5, "maxReplicaCount": 3})) == (
        "ScaledObject doesn't have correct Idle/Min/Max Replica Counts specification: "
        "MinReplicaCount=5 must be less than MaxReplicaCount=3")


def test_idle_must_be_below_min_and_a_min_of_zero_counts_as_one() -> None:
    assert error_of(scaled_object(spec={"minReplicaCount": 2, "idleReplicaCount": 2})).endswith(
        "IdleReplicaCount=2 must be less than MinReplicaCount=2")
    # minReplicaCount unset is 0 and idle 0 is not below it; set to 0 it is the HPA's 1, and idle 0 is fine.
    assert error_of(scaled_object(spec={"idleReplicaCount": 0})).endswith(
        "IdleReplicaCount=0 must be less than MinReplicaCount=0")
    assert parse(spec={"minReplicaCount": 0, "idleReplicaCount": 0}).idle_replica_count == 0


def test_missing_target_name() -> None:
    obj = scaled_object(spec={"scaleTargetRef": {}})
    assert error_of(obj) == ("ScaledObject doesn't have correct scaleTargetRef specification: "
                             "ScaledObject.spec.scaleTargetRef.name is missing")


def test_a_scaler_the_simulator_does_not_play_is_named() -> None:
    kafka = scaled_object(spec={"triggers": [{"type": "kafka", "metadata": {"topic": "t"}}]})
    message = error_of(kafka)
    assert message.startswith("failed to ensure HPA is correctly created for ScaledObject: ")
    assert 'trigger 0 has type "kafka"' in message
    unknown = scaled_object(spec={"triggers": [{"type": "nosuch", "metadata": {}}]})
    assert error_of(unknown) == ("failed to ensure HPA is correctly created for ScaledObject: "
                                 "no scaler found for type: nosuch")


def test_cpu_and_memory_need_a_metric_type() -> None:
    obj = scaled_object(spec={"triggers": [{"type": "cpu", "metadata": {"value": "50"}}]})
    assert error_of(obj) == ("failed to ensure HPA is correctly created for ScaledObject: error parsing cpu metadata: "
                             "unknown metric type: , allowed values are 'Utilization' or 'AverageValue'")
    bad = scaled_object(spec={"triggers": [{"type": "memory", "metricType": "Utilization",
                                             "metadata": {"value": "half"}}]})
    assert error_of(bad).endswith('error parsing memory metadata: strconv.ParseInt: parsing "half": invalid syntax')


# --- the HPA ------------------------------------------------------------------------------------------------


def test_the_hpa_keda_creates() -> None:
    so = parse(labels={"team": "ml"}, annotations={"note": "x"})
    hpa = keda.hpa_for(so, so.triggers)
    assert hpa["apiVersion"] == "autoscaling/v2" and hpa["kind"] == "HorizontalPodAutoscaler"
    assert hpa["metadata"]["name"] == "keda-hpa-llm" and hpa["metadata"]["namespace"] == "ai"
    assert hpa["metadata"]["labels"] == {
        "app.kubernetes.io/name": "keda-hpa-llm", "app.kubernetes.io/version": "2.20.2",
        "app.kubernetes.io/part-of": "llm", "app.kubernetes.io/managed-by": "keda-operator",
        "team": "ml", "scaledobject.keda.sh/name": "llm"}
    assert hpa["metadata"]["annotations"] == {"note": "x"}
    assert hpa["metadata"]["ownerReferences"] == [{
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": "llm", "uid": "uid-llm",
        "controller": True, "blockOwnerDeletion": True}]
    assert hpa["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vllm"},
        "minReplicas": 1, "maxReplicas": 100,
        "metrics": [{"type": "External", "external": {
            "metric": {"name": "s0-prometheus", "selector": {"matchLabels": {"scaledobject.keda.sh/name": "llm"}}},
            "target": {"type": "AverageValue", "averageValue": "5"}}}]}


def test_value_target_min_and_max_and_behavior() -> None:
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 30}}
    so = parse(spec={"minReplicaCount": 2, "maxReplicaCount": 8,
                     "advanced": {"horizontalPodAutoscalerConfig": {"name": "mine", "behavior": behavior}},
                     "triggers": [{"type": "prometheus", "metricType": "Value",
                                   "metadata": {**PROM, "threshold": "0.25"}}]})
    hpa = keda.hpa_for(so, so.triggers)
    assert hpa["metadata"]["name"] == "mine" == so.hpa_name
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 8)
    assert hpa["spec"]["metrics"][0]["external"]["target"] == {"type": "Value", "value": "250m"}
    assert hpa["spec"]["behavior"] == behavior
    paused_in = parse(annotations={keda.PAUSED_SCALE_IN_ANNOTATION: "true"}, spec={
        "advanced": {"horizontalPodAutoscalerConfig": {"behavior": behavior}}})
    assert keda.hpa_for(paused_in)["spec"]["behavior"]["scaleDown"] == {
        "stabilizationWindowSeconds": 30, "selectPolicy": "Disabled"}
    assert behavior == {"scaleDown": {"stabilizationWindowSeconds": 30}}, "the ScaledObject's own is left alone"


def test_metric_names_count_every_trigger_and_external_sorts_before_resource() -> None:
    so = parse(spec={"triggers": [
        {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "60"}},
        {"type": "prometheus", "metadata": PROM},
        {"type": "prometheus", "metadata": {**PROM, "query": "sum(up)"}}]})
    assert keda.external_metric_names(so) == ["s1-prometheus", "s2-prometheus"]
    metrics = keda.hpa_for(so)["spec"]["metrics"]
    assert [m["type"] for m in metrics] == ["External", "External", "Resource"]
    assert [m["external"]["metric"]["name"] for m in metrics[:2]] == ["s1-prometheus", "s2-prometheus"]
    assert metrics[2] == {"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}


def test_excluded_labels_and_the_63_character_name_label() -> None:
    # keda-hpa- and 53 letters make 62 characters; the cut at 63 ends on the dash, which KEDA trims too.
    so = parse(name="a" * 53 + "-ccc", labels={"drop": "1", "keep": "2"},
               annotations={keda.EXCLUDED_LABELS_ANNOTATION: "drop"})
    labels = keda.hpa_for(so)["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "keda-hpa-" + "a" * 53
    assert keda.hpa_for(so)["metadata"]["name"] == "keda-hpa-" + "a" * 53 + "-ccc", "only the label is cut"
    assert "drop" not in labels and labels["keep"] == "2"


# KEDA test: pkg/scalers/scaler_test.go, TestGenerateMetricInMili and TestGetMetricTargetMili.
# The texts follow apimachinery's ParseQuantity and CanonicalizeBytes (vendored in KEDA v2.20.2).
@pytest.mark.parametrize(("value", "text"), [
    (42.5, "42.500"), (100.5, "100.500"), (1e18, "1E"), (9.3e15, "9300T"), (math.nan, "0"), (math.inf, "0"),
    (-1, "0"), (-9.3e15, "0"), (1000, "1k"), (1500, "1500"), (2, "2"), (0.0004, "0"), (1234.5678, "1234.568"),
    (0.25, "250m"), (0.5, "500m"), (1.05, "1.050"), (1e21, "1"),
])
def test_quantities_in_milli_as_keda_writes_them(value: float, text: str) -> None:
    assert keda.quantity(value) == text


# --- the prometheus scaler's reading of a result ------------------------------------------------------------


# KEDA test: pkg/scalers/prometheus_scaler_test.go, testPromQueryResult.
@pytest.mark.parametrize(("results", "ignore", "expected"), [
    ([], True, 0.0),
    ([], False, "prometheus metrics 'prometheus' target may be lost, the result is empty"),
    ([({}, 2.0)], True, 2.0),
    ([({"a": "1"}, 1.0), ({"a": "2"}, 1.0)], True, "prometheus query up returned multiple elements"),
    ([({}, math.inf)], True, 0.0),
    ([({}, math.inf)], False, "prometheus query returns +Inf"),
    ([({}, -math.inf)], True, 0.0),
    ([({}, -math.inf)], False, "prometheus query returns -Inf"),
    ([({}, math.nan)], True, 0.0),
    ([({}, math.nan)], False, "prometheus query returns NaN"),
])
def test_trigger_value(results: list[tuple[dict[str, str], float]], ignore: bool, expected: float | str) -> None:
    trigger = prometheus(query="up", ignoreNullValues=str(ignore).lower())
    if isinstance(expected, str):
        with pytest.raises(KedaError) as caught:
            keda.trigger_value(results, trigger)
        assert str(caught.value) == expected
    else:
        assert keda.trigger_value(results, trigger) == expected


def test_a_query_prometheus_refuses() -> None:
    assert str(keda.query_failed()) == "prometheus query api returned error. status: 400"
    assert str(keda.query_failed(422)) == "prometheus query api returned error. status: 422"


def test_activation_is_strictly_above_the_activation_threshold() -> None:
    trigger = prometheus(activationThreshold="3")
    assert not keda.trigger_active(3.0, trigger)
    assert keda.trigger_active(3.001, trigger)
    assert not keda.trigger_active(0.0, prometheus())


def test_activity_over_a_poll() -> None:
    so = parse(spec={"triggers": [{"type": "prometheus", "metadata": PROM},
                                  {"type": "prometheus", "metadata": {**PROM, "activationThreshold": "10"}}]})
    assert keda.activity(so, {0: 1.0, 1: 5.0}) == (True, False, ["s0-prometheus"])
    assert keda.activity(so, {0: 0.0, 1: KedaError("boom")}) == (False, True, [])
    only_cpu = parse(spec={"triggers": [{"type": "cpu", "metricType": "Utilization", "metadata": {"value": "50"}}]})
    assert keda.activity(only_cpu, {}) == (True, False, [])


# --- the external metrics API ------------------------------------------------------------------------------


def test_external_metric_value_as_kedas_metrics_server_returns_it() -> None:
    at = datetime(2026, 12, 7, 18, 0, 1, 750000, tzinfo=UTC)
    item = keda.external_metric_value("s0-prometheus", 1.5, at)
    assert item == {"metricName": "s0-prometheus", "metricLabels": None, "timestamp": "2026-12-07T18:00:01Z",
                    "value": "1.500"}
    listing = keda.external_metric_list([item])
    assert listing["kind"] == "ExternalMetricValueList" and listing["items"] == [item]
    assert keda.metric_error_message("s0-prometheus") == "metric:s0-prometheus encountered error"


def test_colliding_names_select_only_their_own_metric() -> None:
    t1 = parse(name="t1")
    t10 = parse(name="t10", metadata={**PROM, "query": "sum(other)"})
    objects = [t10, t1]
    so, trigger = keda.select_metric(objects, "ai", "s0-prometheus", "scaledobject.keda.sh/name=t1")
    assert so is t1 and trigger.query == PROM["query"]
    so, trigger = keda.select_metric(objects, "ai", "s0-prometheus", {"scaledobject.keda.sh/name": "t10"})
    assert so is t10 and trigger.query == "sum(other)"
    # Labels in the HPA's selector are exact: t1's HPA never reads t10's metric, nor the reverse.
    assert keda.hpa_for(t1)["spec"]["metrics"][0]["external"]["metric"]["selector"] == {
        "matchLabels": {"scaledobject.keda.sh/name": "t1"}}
    with pytest.raises(KedaError, match=r'^error getting scalers scaledobjects.keda.sh "t" not found$'):
        keda.select_metric(objects, "ai", "s0-prometheus", "scaledobject.keda.sh/name=t")
    with pytest.raises(KedaError, match=r"^scaledObject name is not specified$"):
        keda.select_metric(objects, "ai", "s0-prometheus", "")
    with pytest.raises(KedaError, match=r"^no matching metrics found for s1-prometheus$"):
        keda.select_metric(objects, "ai", "s1-prometheus", "scaledobject.keda.sh/name=t1")
    with pytest.raises(KedaError, match="not found"):
        keda.select_metric(objects, "other", "s0-prometheus", "scaledobject.keda.sh/name=t1")


# --- the scale executor ------------------------------------------------------------------------------------


def active_condition(decision: keda.Decision) -> dict[str, str]:
    return next(c for c in decision.conditions if c["type"] == "Active")


# KEDA test: pkg/scaling/executor/scale_scaledobjects_test.go, TestScaleToMinReplicasWhenNotActive.
def test_scale_to_zero_when_not_active_without_a_last_active_time() -> None:
    so = parse(spec={"minReplicaCount": 0})
    decision = keda.decide(so, NOW, False, 10, None)
    assert decision.scale_to == 0
    assert active_condition(decision) == {"type": "Active", "status": "False", "reason": "ScalerNotActive",
                                          "message": "Scaling is not performed because triggers are not active"}
    assert decision.event == ("Normal", "KEDAScaleTargetDeactivated",
                              "Deactivated apps/v1.Deployment ai/vllm from 10 to 0")


# KEDA test: TestScaleToMinReplicasFromLowerInitialReplicaCount.
def test_scale_up_to_min_when_not_active_and_below_it() -> None:
    decision = keda.decide(parse(spec={"minReplicaCount": 5}), NOW, False, 1, None)
    assert decision.scale_to == 5 and active_condition(decision)["status"] == "False"


# KEDA test: TestScaleFromMinReplicasWhenActive.
def test_activation_from_zero() -> None:
    decision = keda.decide(parse(spec={"minReplicaCount": 0}), NOW, True, 0, None)
    assert decision.scale_to == 1
    assert active_condition(decision) == {"type": "Active", "status": "True", "reason": "ScalerActive",
                                          "message": "Scaling is performed because triggers are active"}
    assert decision.last_active == NOW
    assert decision.event == ("Normal", "KEDAScaleTargetActivated",
                              "Scaled apps/v1.Deployment ai/vllm from 0 to 1, triggered by s0-prometheus")
    assert decision.triggers_activity == {"s0-prometheus": True}


# KEDA tests: TestScaleToIdleReplicasWhenNotActive, TestScaleFromIdleToMinReplicasWhenActive, TestEventWitTriggerInfo.
def test_idle_replicas() -> None:
    so = parse(spec={"idleReplicaCount": 0, "minReplicaCount": 5})
    assert keda.decide(so, NOW, False, 10, None).scale_to == 0
    assert keda.decide(so, NOW, True, 0, None).scale_to == 5
    decision = keda.decide(so, NOW, True, 2, None, active_triggers=["testTrigger"])
    assert decision.scale_to == 5
    assert decision.event is not None
    assert decision.event[2] == "Scaled apps/v1.Deployment ai/vllm from 2 to 5, triggered by testTrigger"


def test_active_above_zero_renews_last_active_and_leaves_the_rest_to_the_hpa() -> None:
    decision = keda.decide(parse(), NOW, True, 3, NOW - timedelta(minutes=10))
    assert decision.scale_to is None and decision.last_active == NOW and decision.event is None


def test_cooldown_counts_from_last_active_and_must_be_exceeded() -> None:
    so = parse(spec={"cooldownPeriod": 120})
    last = NOW - timedelta(seconds=120)
    waiting = keda.decide(so, NOW, False, 4, last)
    assert waiting.scale_to is None and waiting.last_active == last
    assert active_condition(waiting) == {"type": "Active", "status": "False", "reason": "ScalerCooldown",
                                         "message": "Scaler cooling down because triggers are not active"}
    assert keda.decide(so, NOW + timedelta(seconds=1), False, 4, last).scale_to == 0


def test_initial_cooldown_counts_from_creation_when_never_active() -> None:
    obj = scaled_object(spec={"initialCooldownPeriod": 60})
    obj["metadata"]["creationTimestamp"] = "2026-12-07T17:59:30Z"
    so = keda.parse_scaled_object(obj)
    assert keda.decide(so, NOW, False, 1, None).scale_to is None
    assert keda.decide(so, NOW + timedelta(seconds=31), False, 1, None).scale_to == 0


def test_a_failing_trigger_never_scales_to_zero_and_marks_ready_false() -> None:
    decision = keda.decide(parse(), NOW, False, 3, None, error=True)
    assert decision.scale_to is None
    assert decision.conditions[0] == {"type": "Ready", "status": "False", "reason": "TriggerError",
                                      "message": "Triggers defined in ScaledObject are not working correctly"}
    partial = keda.decide(parse(), NOW, True, 3, None, error=True)
    assert partial.conditions[0]["reason"] == "PartialTriggerError" and partial.conditions[0]["status"] == "Unknown"
    assert partial.last_active is None


# KEDA tests: TestNoScaleToMinReplicasWhenNotActiveAndPauseScaleInAnnotationSet,
# TestNoScaleFromMinReplicasWhenActiveAndPausedScaleOutAnnotationSet, TestScaleFromMinReplicasWhenActivationForced.
def test_pause_annotations_and_forced_activation() -> None:
    paused_in = parse(annotations={keda.PAUSED_SCALE_IN_ANNOTATION: "true"})
    assert keda.decide(paused_in, NOW, False, 3, None).scale_to is None
    paused_out = parse(annotations={keda.PAUSED_SCALE_OUT_ANNOTATION: "true"})
    assert keda.decide(paused_out, NOW, True, 0, None).scale_to is None
    forced = parse(annotations={keda.FORCE_ACTIVATION_ANNOTATION: "yes"})  # not a Go bool: counts as true
    decision = keda.decide(forced, NOW, False, 0, None)
    assert decision.scale_to == 1
    assert active_condition(decision)["message"] == (
        "Scaling is performed because activation is being forced by annotation")


# KEDA test: TestScaleToPausedReplicasCount.
def test_paused_replicas() -> None:
    so = parse(annotations={keda.PAUSED_REPLICAS_ANNOTATION: "2"})
    decision = keda.decide(so, NOW, True, 7, None)
    assert decision.scale_to == 2
    assert {"type": "Paused", "status": "True", "reason": "ScaledObjectPaused",
            "message": "ScaledObject is paused"} in decision.conditions
    assert keda.decide(so, NOW, True, 2, None).scale_to is None


# KEDA tests: TestGetHPAHealth_ScalingActiveTrue / _ScalingDisabled / _EmptyReasonFallback.
def test_hpa_active_mirrors_the_hpas_scaling_active_condition() -> None:
    def hpa_active(condition: dict[str, str]) -> dict[str, str]:
        decision = keda.decide(parse(), NOW, True, 2, None, hpa_scaling_active=condition)
        return next(c for c in decision.conditions if c["type"] == "HPAActive")

    assert hpa_active({"status": "True"})["reason"] == "HPAActive"
    assert hpa_active({"status": "False", "reason": "ScalingDisabled", "message": "m"}) == {
        "type": "HPAActive", "status": "True", "reason": "ScalingDisabled", "message": "m"}
    assert hpa_active({"status": "False", "message": "no metrics"}) == {
        "type": "HPAActive", "status": "False", "reason": "HPAMetricsUnavailable",
        "message": "HPA is not actively scaling: no metrics"}


# --- status ------------------------------------------------------------------------------------------------


def test_status_of_a_ready_scaled_object() -> None:
    obj = scaled_object()
    so = keda.parse_scaled_object(obj)
    decision = keda.decide(so, NOW, True, 0, None)
    status = keda.status_for(obj, so=so, decision=decision, original_replica_count=1)
    assert status["conditions"] == [
        {"type": "Ready", "status": "True", "reason": "ScaledObjectReady",
         "message": "ScaledObject is defined correctly and is ready for scaling"},
        {"type": "Active", "status": "True", "reason": "ScalerActive",
         "message": "Scaling is performed because triggers are active"},
        {"type": "Fallback", "status": "False", "reason": "NoFallbackFound",
         "message": "No fallbacks are active on this scaled object"},
        {"type": "Paused", "status": "False"},
    ]
    assert status["externalMetricNames"] == ["s0-prometheus"]
    assert status["hpaName"] == "keda-hpa-llm"
    assert status["scaleTargetKind"] == "apps/v1.Deployment"
    assert status["scaleTargetGVKR"] == {"group": "apps", "version": "v1", "kind": "Deployment",
                                         "resource": "deployments"}
    assert status["originalReplicaCount"] == 1
    assert status["lastActiveTime"] == "2026-12-07T18:00:00Z"
    assert status["triggersTypes"] == "prometheus" and status["authenticationsTypes"] == ""
    assert status["triggersActivity"] == {"s0-prometheus": {"isActive": True}}


def test_status_keeps_the_original_replica_count_and_last_active_time() -> None:
    obj = scaled_object(status={"originalReplicaCount": 3, "lastActiveTime": "2026-12-07T17:00:00Z"})
    so = keda.parse_scaled_object(obj)
    status = keda.status_for(obj, so=so, original_replica_count=9)
    assert status["originalReplicaCount"] == 3
    assert status["lastActiveTime"] == "2026-12-07T17:00:00Z"


def test_status_when_the_check_fails() -> None:
    obj = scaled_object(metadata={"serverAddress": "http://p:9090", "query": "up", "threshold": "x"})
    with pytest.raises(KedaError) as caught:
        keda.parse_scaled_object(obj)
    status = keda.status_for(obj, error=caught.value, original_replica_count=1)
    ready, active = status["conditions"][0], status["conditions"][1]
    assert ready == {"type": "Ready", "status": "False", "reason": "ScaledObjectCheckFailed",
                     "message": str(caught.value)}
    assert active == {"type": "Active", "status": "Unknown", "reason": "UnknownState",
                      "message": "ScaledObject check failed"}
    assert status["scaleTargetKind"] == "apps/v1.Deployment" and status["triggersTypes"] == "prometheus"
    assert "externalMetricNames" not in status and "hpaName" not in status


def test_status_of_a_trigger_that_returns_several_series() -> None:
    obj = scaled_object()
    so = keda.parse_scaled_object(obj)
    with pytest.raises(KedaError) as caught:
        keda.trigger_value([({"pod": "a"}, 1.0), ({"pod": "b"}, 2.0)], so.triggers[0])  # type: ignore[arg-type]
    assert str(caught.value) == "prometheus query sum(vllm:num_requests_waiting) returned multiple elements"
    active, error, _ = keda.activity(so, {0: caught.value})
    status = keda.status_for(obj, so=so, decision=keda.decide(so, NOW, active, 2, None, error=error))
    assert status["conditions"][0] == {"type": "Ready", "status": "False", "reason": "TriggerError",
                                       "message": "Triggers defined in ScaledObject are not working correctly"}


def test_paused_then_unpaused() -> None:
    obj = scaled_object(annotations={keda.PAUSED_REPLICAS_ANNOTATION: "0"})
    so = keda.parse_scaled_object(obj)
    paused = keda.status_for(obj, so=so)
    assert {"type": "Paused", "status": "True", "reason": "ScaledObjectPaused",
            "message": "ScaledObject is paused"} in paused["conditions"]
    assert paused["conditions"][0]["message"] == "ScaledObject is paused"
    assert paused["pausedReplicaCount"] == 0
    resumed = scaled_object(status=paused)
    status = keda.status_for(resumed, so=keda.parse_scaled_object(resumed))
    assert {"type": "Paused", "status": "False", "reason": "ScaledObjectUnpaused",
            "message": "pause annotation removed for ScaledObject"} in status["conditions"]
    assert "pausedReplicaCount" not in status


def test_label_patch() -> None:
    assert keda.label_patch(parse()) == {"metadata": {"labels": {"scaledobject.keda.sh/name": "llm"}}}
    assert keda.label_patch(parse(labels={"scaledobject.keda.sh/name": "llm"})) is None
