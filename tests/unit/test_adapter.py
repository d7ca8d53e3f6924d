"""prometheus-adapter played: config loading, discovery, query building and answers over a promql.Store."""

from __future__ import annotations

from pathlib import Path

import pytest

from k8sim import adapter
from k8sim.adapter import Adapter, AdapterConfigError, GroupResource, MetricNotFound, load
from k8sim.promql import Store

DATA = Path(__file__).parent / "data" / "adapter"
T0 = 10_000.0
NOW = T0 + 600


def config(name: str) -> str:
    return (DATA / name).read_text()


@pytest.fixture
def store() -> Store:
    """Ten minutes of 15-second scrapes of what the engine exports for two namespaces and one node."""
    s = Store()
    for k in range(41):
        t = T0 + 15 * k
        for pod, app_cores in (("t1", 0.5), ("t10", 0.25)):
            for container, cores in (("app", app_cores), ("istio-proxy", 0.1)):
                labels = {"namespace": "shop", "pod": pod, "container": container, "job": "kubelet",
                          "node": "node-a", "id": f"/kubepods/{pod}/{container}"}
                s.add("container_cpu_usage_seconds_total", labels, t, cores * 15 * k)
                s.add("container_memory_working_set_bytes", labels, t, 200e6 if container == "app" else 50e6)
            # the pause container cAdvisor reports too; the queries filter it out with container!=""
            s.add("container_cpu_usage_seconds_total", {"namespace": "shop", "pod": pod, "node": "node-a"}, t,
                  100.0 * k)
        for pod, rps in (("t1", 5.0), ("t10", 15.0)):
            s.add("http_requests_total", {"namespace": "shop", "pod": pod, "deployment": "web", "service": "web",
                                          "job": "web"}, t, rps * 15 * k)
        s.add("vllm:num_requests_waiting", {"namespace": "llm", "pod": "vllm-0", "model_name": "llama"}, t, 3 + k % 2)
        s.add("vllm:num_requests_running", {"namespace": "llm", "pod": "vllm-0", "model_name": "llama"}, t, 8)
        s.add("vllm:generation_tokens_total", {"namespace": "llm", "pod": "vllm-0", "model_name": "llama"}, t,
              400.0 * 15 * k)
        s.add("gpu_utilization_percent", {"namespace": "llm", "pod": "vllm-0", "gpu": "0"}, t, 60.0 + k % 3 * 10)
        s.add("queue_depth", {"namespace": "jobs", "topic": "orders"}, t, 42)
        # node-exporter on node-a (two CPUs) and kube-state-metrics' node/pod join, as kube-prometheus records it
        for cpu, idle in (("0", 0.75), ("1", 0.5)):
            s.add("node_cpu_seconds_total", {"namespace": "monitoring", "pod": "node-exporter-x", "cpu": cpu,
                                             "mode": "idle", "job": "node-exporter", "instance": "node-a"},
                  t, idle * 15 * k)
        s.add("node_namespace_pod:kube_pod_info:", {"namespace": "monitoring", "pod": "node-exporter-x",
                                                   "node": "node-a"}, t, 1)
        s.add("node_memory_MemTotal_bytes", {"job": "node-exporter", "instance": "node-a"}, t, 16e9)
        s.add("node_memory_MemAvailable_bytes", {"job": "node-exporter", "instance": "node-a"}, t, 10e9)
    return s


# ---------------------------------------------------------------------------------------------- kube-prometheus


def test_kube_prometheus_config_loads_fully() -> None:
    cfg = load(config("kube-prometheus.yaml"))
    assert cfg.rules == () and cfg.external_rules == ()
    assert cfg.resource_rules is not None
    assert cfg.resource_rules.window == 300.0
    assert cfg.resource_rules.cpu.container_label == "container"
    assert cfg.resource_rules.memory.resources.overrides["instance"] == GroupResource("node")
    assert "group_left(node)" in cfg.resource_rules.cpu.node_query


def test_kube_prometheus_pod_cpu_per_container(store: Store) -> None:
    kp = Adapter(load(config("kube-prometheus.yaml")))
    query = kp.resource_query("cpu", "pods", "shop", ["t1", "t10"])
    assert 'container_cpu_usage_seconds_total{namespace="shop",pod=~"t1|t10",container!="",pod!=""}[120s]' in query
    assert "sum by (pod,container)" in query
    got = kp.query_resource(store, NOW, "pods", "shop", ["t1", "t10", "gone"])
    assert set(got) == {"t1", "t10"}
    assert got["t1"] == [("app", pytest.approx(0.5), 200e6), ("istio-proxy", pytest.approx(0.1), 50e6)]
    assert got["t10"][0] == ("app", pytest.approx(0.25), 200e6)
    assert kp.window == 300.0


def test_kube_prometheus_node_usage(store: Store) -> None:
    kp = Adapter(load(config("kube-prometheus.yaml")))
    assert 'node_memory_MemTotal_bytes{job="node-exporter",instance="node-a"}' in kp.resource_query(
        "memory", "nodes", None, ["node-a"])
    got = kp.query_resource(store, NOW, "nodes", None, ["node-a", "node-b"])
    # busy cores = (1 - 0.75) + (1 - 0.5); memory = MemTotal - MemAvailable
    assert got == {"node-a": (pytest.approx(0.75), pytest.approx(6e9))}


def test_deploy_manifest_config_loads_and_answers_pods(store: Store) -> None:
    a = Adapter(load(config("prometheus-adapter-deploy.yaml")))
    got = a.query_resource(store, NOW, "pods", "shop", ["t1"])
    assert got == {"t1": [("app", pytest.approx(0.5), 200e6), ("istio-proxy", pytest.approx(0.1), 50e6)]}


# ---------------------------------------------------------------------------------------------- discovery


def test_default_rules_discovery_matches_the_adapters_naming(store: Store) -> None:
    a = Adapter(load(config("prometheus-adapter-default.yaml")))
    names = {(m.name, m.namespaced) for m in a.custom_metrics(store)}
    # cAdvisor: _seconds_total -> rate named without the suffix; gauges keep their name minus container_
    assert ("pods/cpu_usage", True) in names
    assert ("pods/memory_working_set_bytes", True) in names
    assert ("namespaces/cpu_usage", False) in names
    # template "<<.Resource>>": every label naming a resource associates it, the job label included
    assert ("pods/http_requests", True) in names
    assert ("deployments.apps/http_requests", True) in names
    assert ("services/http_requests", True) in names
    assert ("jobs.batch/http_requests", True) in names
    assert ("pods/vllm:num_requests_waiting", True) in names
    # node-exporter's memory series have no namespace label: the seriesQuery (namespace!="") leaves them out;
    # the recorded kube_pod_info join has one and a node label, so nodes get it (root-scoped)
    assert not any("node_memory" in n for n, _ in names)
    assert ("nodes/node_namespace_pod:kube_pod_info:", False) in names
    assert ("pods/node_namespace_pod:kube_pod_info:", True) in names


def test_name_as_with_a_capture_group(store: Store) -> None:
    a = Adapter(load(config("vllm.yaml")))
    metrics = {m.name for m in a.custom_metrics(store)}
    assert {"pods/http_requests_per_second", "deployments.apps/http_requests_per_second",
            "pods/vllm_num_requests_waiting", "pods/vllm_num_requests_running",
            "pods/vllm_generation_tokens_per_second", "pods/gpu_utilization"} <= metrics
    assert "namespaces/gpu_utilization" in metrics and "pods/gpu_utilization_percent" not in metrics
    assert a.external_metrics(store) == ["llm_num_requests_waiting", "queue_depth"]


def test_name_as_defaults_and_go_expansion() -> None:
    base = "rules:\n- seriesQuery: 'x_total{namespace!=\"\"}'\n  resources: {template: '<<.Resource>>'}\n"
    s = Store()
    s.add("x_total", {"namespace": "a", "pod": "p"}, 100, 1)
    q = "  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)\n"
    one_group = Adapter(load(base + "  name: {matches: '^(.*)_total$'}\n" + q))
    assert {m.metric for m in one_group.custom_metrics(s)} == {"x"}
    no_group = Adapter(load(base + "  name: {matches: '_total$'}\n" + q))
    assert {m.metric for m in no_group.custom_metrics(s)} == {"_total"}  # $0: the match, not the name
    dollar = Adapter(load(base + "  name: {matches: '^(.*)_total$', as: '$1_per_second'}\n" + q))
    assert {m.metric for m in dollar.custom_metrics(s)} == {""}  # Go reads $1_per_second as one group name
    with pytest.raises(AdapterConfigError, match=r"rules\[0\].name: must specify an 'as' value"):
        load(base + "  name: {matches: '^(.)(.*)_total$'}\n" + q)


def test_series_filters(store: Store) -> None:
    text = """
rules:
- seriesQuery: '{__name__=~"^vllm:.*",namespace!=""}'
  seriesFilters:
  - isNot: "_total$"
  - is: "waiting"
  resources: {overrides: {pod: {resource: pod}, namespace: {resource: namespace}}}
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)
"""
    a = Adapter(load(text))
    assert {m.metric for m in a.custom_metrics(store)} == {"vllm:num_requests_waiting"}


# ---------------------------------------------------------------------------------------------- custom metrics


def test_custom_query_label_matchers_and_colliding_pod_names(store: Store) -> None:
    a = Adapter(load(config("vllm.yaml")))
    a.custom_metrics(store)
    one = a.custom_query("pods", "shop", ["t1"], "http_requests_per_second")
    assert 'http_requests_total{\n      namespace="shop",pod="t1",\n      namespace="shop"\n    }[2m]' in one
    assert one.rstrip().endswith("by (pod\n)")
    assert a.query_custom(store, NOW, "pods", "shop", ["t1"], "http_requests_per_second") == {
        "t1": pytest.approx(5.0)}
    two = a.custom_query("pods", "shop", ["t1", "t2"], "http_requests_per_second")
    assert 'pod=~"t1|t2"' in two
    # t10 must not answer for t1 (regexes are anchored), and t2 has no series
    assert a.query_custom(store, NOW, "pods", "shop", ["t1", "t2"], "http_requests_per_second") == {
        "t1": pytest.approx(5.0)}
    assert a.query_custom(store, NOW, "pods", "shop", ["t1", "t10"], "http_requests_per_second") == {
        "t1": pytest.approx(5.0), "t10": pytest.approx(15.0)}


def test_custom_metric_on_deployments_and_namespaces(store: Store) -> None:
    a = Adapter(load(config("vllm.yaml")))
    a.custom_metrics(store)
    assert a.query_custom(store, NOW, "deployments.apps", "shop", ["web"], "http_requests_per_second") == {
        "web": pytest.approx(20.0)}
    assert a.query_custom(store, NOW, "deployment", "shop", ["web"], "http_requests_per_second") == {
        "web": pytest.approx(20.0)}
    # a namespace metric is root-scoped: the namespace is the object, not a scope
    assert a.custom_query("namespaces", None, ["llm"], "gpu_utilization").startswith(
        'avg(avg_over_time(gpu_utilization_percent{namespace="llm"}[2m])) by (namespace)')
    util = a.query_custom(store, NOW, "namespaces", None, ["llm"], "gpu_utilization")
    # the eight samples in (now-2m, now] cycle 60/70/80: 60,70,80,60,70,80,60,70
    assert util == {"llm": pytest.approx(68.75)}
    assert a.query_custom(store, NOW, "pods", "llm", ["vllm-0"], "vllm_num_requests_running") == {"vllm-0": 8.0}
    rate = a.query_custom(store, NOW, "pods", "llm", ["vllm-0"], "vllm_generation_tokens_per_second")
    assert rate == {"vllm-0": pytest.approx(400.0)}


def test_metric_selector_becomes_matchers_before_the_namespace(store: Store) -> None:
    a = Adapter(load(config("vllm.yaml")))
    a.custom_metrics(store)
    q = a.custom_query("pods", "llm", ["vllm-0"], "vllm_num_requests_waiting", "model_name in (llama,mistral),!x")
    assert q == 'sum(vllm:num_requests_waiting{model_name=~"llama|mistral",x="",namespace="llm",pod="vllm-0"}) by (pod)'
    assert a.query_custom(store, NOW, "pods", "llm", ["vllm-0"], "vllm_num_requests_waiting",
                          {"model_name": "other"}) == {}


def test_unknown_metric_or_scope_is_not_found(store: Store) -> None:
    a = Adapter(load(config("vllm.yaml")))
    a.custom_metrics(store)
    with pytest.raises(MetricNotFound):
        a.query_custom(store, NOW, "pods", "shop", ["t1"], "nope")
    with pytest.raises(MetricNotFound):
        a.query_custom(store, NOW, "namespaces", "shop", ["llm"], "gpu_utilization")  # namespaces are root
    with pytest.raises(MetricNotFound):
        a.query_custom(store, NOW, "widgets", "shop", ["x"], "http_requests_per_second")
    with pytest.raises(MetricNotFound):
        a.query_external(store, NOW, "default", "nope")
    with pytest.raises(MetricNotFound):
        Adapter(load(config("kube-prometheus.yaml"))).query_custom(store, NOW, "pods", "shop", ["t1"], "cpu")


def test_metrics_vanish_at_the_next_relist(store: Store) -> None:
    a = Adapter(load(config("vllm.yaml")))
    a.custom_metrics(store)
    store.prune(NOW + 10_000)
    assert a.custom_metrics(store) == []
    with pytest.raises(MetricNotFound):
        a.custom_query("pods", "shop", ["t1"], "http_requests_per_second")


# ---------------------------------------------------------------------------------------------- external metrics


def test_external_metrics(store: Store) -> None:
    a = Adapter(load(config("vllm.yaml")))
    a.external_metrics(store)
    # namespaced: false ignores the HPA's namespace
    assert a.external_query("default", "llm_num_requests_waiting", "model_name=llama") == (
        'sum(vllm:num_requests_waiting{model_name="llama"}) by (model_name)')
    got = a.query_external(store, NOW, "default", "llm_num_requests_waiting", {"model_name": "llama"})
    assert got == [({"model_name": "llama"}, 3.0)]
    # the default (namespaced) adds the namespace matcher: queue_depth lives in "jobs"
    assert a.external_query("jobs", "queue_depth") == 'sum(queue_depth{namespace="jobs"}) by (topic)'
    assert a.query_external(store, NOW, "jobs", "queue_depth") == [({"topic": "orders"}, 42.0)]
    assert a.query_external(store, NOW, "default", "queue_depth") == []
    reqs: list[object] = [{"key": "topic", "operator": "NotIn", "values": ["a", "b"]}, ("zone", "Exists", [])]
    assert a.external_query("jobs", "queue_depth", reqs) == (
        'sum(queue_depth{topic!~"a|b",zone!="",namespace="jobs"}) by (topic)')


def test_namespaced_external_rule_without_a_namespace_label_fails_like_the_adapter(store: Store) -> None:
    # kubernetes-sigs/prometheus-adapter#282: "unable to convert resource namespaces into label" -> 500
    text = "externalRules:\n- seriesQuery: 'queue_depth'\n  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>})\n"
    a = Adapter(load(text))
    assert a.external_metrics(store) == ["queue_depth"]
    with pytest.raises(adapter.AdapterQueryError, match="no generic resource label form specified"):
        a.query_external(store, NOW, "jobs", "queue_depth")


def test_label_selector_operators_the_adapter_refuses() -> None:
    with pytest.raises(adapter.AdapterQueryError, match="operator not supported by prometheus"):
        adapter._label_matchers(adapter.parse_label_selector("replicas>3"))
    assert adapter.parse_label_selector("b=1, a!=2") == [("a", "!=", ("2",)), ("b", "=", ("1",))]


# ---------------------------------------------------------------------------------------------- templates


def test_template_fields_follow_go_printing() -> None:
    text = """
rules:
- seriesQuery: 'x{namespace!=""}'
  resources: {template: "<<.Resource>>"}
  metricsQuery: >-
    sum(<<.Series>>{<<.LabelMatchers>>,q="<<.LabelValuesByName>>",s="<<.GroupBySlice>>"})
    by (<<.GroupBy>>)
"""
    s = Store()
    s.add("x", {"namespace": "a", "pod": "p"}, 100, 1)
    a = Adapter(load(text))
    a.custom_metrics(s)
    assert a.custom_query("pods", "a", ["p", "q"], "x") == (
        'sum(x{namespace="a",pod=~"p|q",q="map[namespace:a pod:p|q]",s="[pod]"}) by (pod)')


# ---------------------------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(("text", "message"), [
    ("- a\n- b\n", r"cannot unmarshal array into Go value of type config.MetricsDiscoveryConfig"),
    ("rules: {}\n", r"rules: json: cannot unmarshal object"),
    ("rules:\n- seriesQuery: 5\n", r"rules\[0\].seriesQuery: json: cannot unmarshal number"),
    ("rules:\n- seriesQuery: 'x'\n  bogus: 1\n", r'rules\[0\]: .*unknown field "bogus"'),
    ("externalRules:\n- seriesQuery: 'x'\n  resources: {namespaced: 'no'}\n",
     r"externalRules\[0\].resources.namespaced: json: cannot unmarshal string"),
    ("rules: []\nrules: []\n", r'key "rules" already set in map'),
    ("resourceRules: {window: 5}\n", r"resourceRules.window: json: cannot unmarshal number"),
    ("resourceRules: {window: 5 minutes}\n", r'not a valid duration string: "5 minutes"'),
    ("rules:\n- seriesQuery: 'x'\n  seriesFilters: [{is: a, isNot: b}]\n  metricsQuery: x\n",
     r"rules\[0\]: .*cannot have both an `is` \('a'\) and `isNot` \('b'\)"),
    ("rules:\n- seriesQuery: 'x'\n  seriesFilters: [{}]\n  metricsQuery: x\n",
     r"must have either an `is` or `isNot` expression"),
    ("rules:\n- seriesQuery: 'x{'\n  metricsQuery: x\n", r"rules\[0\].seriesQuery: unable to fetch metrics for query"),
    ("rules:\n- seriesQuery: 'x'\n  metricsQuery: 'histogram_quantile(0.9, <<.Series>>)'\n",
     r'rules\[0\].metricsQuery: the simulator cannot evaluate this query .*unsupported function "histogram_quantile"'),
    ("rules:\n- seriesQuery: 'x'\n  metricsQuery: 'rate(<<.Series>>{<<.LabelMatchers>>}[<<.Window>>])'\n",
     r"rules\[0\].metricsQuery: the simulator cannot render this query .*can't evaluate field Window in type "
     r"naming.queryTemplateArgs.*real adapter starts but fails every query"),
    ("rules:\n- seriesQuery: 'x'\n  metricsQuery: '<<join .GroupBySlice>>'\n", r'function "join" not defined'),
    ("rules:\n- seriesQuery: 'x'\n", r"rules\[0\].metricsQuery: empty query produced by metrics query template"),
    ("rules:\n- seriesQuery: 'x'\n  resources: {template: 'kube_<<.Group>>'}\n  metricsQuery: x\n",
     r"rules\[0\].resources: unable to generate label format .*must include at least `\{\{.Resource\}\}`"),
    ("resourceRules:\n  cpu: {containerQuery: 'sum(x{<<.LabelMatchers>>}) by (<<.GroupBy>>)'}\n",
     r"resourceRules.cpu.nodeQuery: empty query"),
])
def test_config_errors_read_like_the_adapters(text: str, message: str) -> None:
    with pytest.raises(AdapterConfigError, match=message) as info:
        load(text)
    assert str(info.value).startswith("unable to load metrics discovery config: ")


def test_docs_sample_config_is_not_valid_yaml() -> None:
    # The adapter's own docs/sample-config.yaml nests double quotes in a double-quoted scalar; the real
    # adapter's YAML parser refuses it as well.
    with pytest.raises(AdapterConfigError, match="error converting YAML to JSON"):
        load(config("prometheus-adapter-sample.yaml"))


def test_unknown_override_resource_fails_like_the_adapter_unless_the_mapper_knows_it() -> None:
    text = """
rules:
- seriesQuery: 'cheddar{sharp="true"}'
  name: {as: "cheesy_goodness"}
  resources:
    overrides:
      brand: {group: "cheese.io", resource: "brand"}
  metricsQuery: 'count(cheddar{sharp="true"})'
"""
    with pytest.raises(AdapterConfigError, match=r"rules\[0\].resources: unable to normalize group-resource"):
        Adapter(load(text))
    a = Adapter(load(text), adapter.ResourceMapper(extra=[("cheese.io", "brands", "brand")]))
    s = Store()
    s.add("cheddar", {"sharp": "true", "brand": "acme"}, 100, 1)
    assert [m.name for m in a.custom_metrics(s)] == ["brands.cheese.io/cheesy_goodness"]
    assert a.custom_query("brands.cheese.io", "", ["acme"], "cheesy_goodness") == 'count(cheddar{sharp="true"})'
    # namespaced, but the rule maps no label to namespaces: the adapter cannot build the query -> not found
    with pytest.raises(MetricNotFound):
        a.query_custom(s, 100, "brands.cheese.io", "default", ["acme"], "cheesy_goodness")


def test_milli_value_truncates_like_int64() -> None:
    assert adapter.milli_value(0.0019) == 1
    assert adapter.milli_value(-0.0019) == -1
    assert adapter.milli_value(float("nan")) == 0
    assert adapter.milli_value(float("nan"), nan_as_zero=False) == -(2**63)  # external metrics: Go's int64(NaN)
    assert adapter.milli_value(float("inf")) == -(2**63)
