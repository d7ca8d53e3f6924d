"""The PromQL subset: parsing, Prometheus' rate/irate/increase arithmetic, selectors, aggregations, matching."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from k8sim import promql
from k8sim.promql import PromQLError, Store, evaluate, metric_names, parse

CPU = "container_cpu_usage_seconds_total"
GOLDEN = Path(__file__).parent / "data" / "adapter" / "promql-golden.test"


def values(result: list[tuple[dict[str, str], float]]) -> list[float]:
    return [v for _, v in result]


def counter(store: Store, name: str, labels: dict[str, str], points: list[tuple[float, float]]) -> None:
    for t, v in points:
        store.add(name, labels, t, v)


# ---------------------------------------------------------------------------------------------- rate & co


def test_rate_over_a_fully_covered_window_is_the_slope() -> None:
    store = Store()
    counter(store, CPU, {"namespace": "shop", "pod": "web-1", "container": "app"},
            [(1000 + 15 * k, 3.0 * k) for k in range(21)])
    # (1240, 1300] holds t=1255..1300 (51..60): increase 9 over 45 s, extrapolated 15 s back to the boundary.
    assert values(evaluate(f"rate({CPU}[60s])", store, 1300)) == [pytest.approx(0.2)]
    assert values(evaluate(f"increase({CPU}[1m])", store, 1300)) == [pytest.approx(12.0)]


def test_rate_of_a_series_starting_inside_the_window_extrapolates_half_an_interval() -> None:
    store = Store()
    counter(store, "c_total", {"pod": "a"}, [(1260, 5.0), (1275, 8.0), (1290, 11.0)])
    # First sample 20 s after the window start (>= 1.1 * 15 s): only 7.5 s of extrapolation; 10 s at the end.
    # increase = 6 * (30 + 7.5 + 10) / 30 = 9.5
    assert values(evaluate("increase(c_total[60s])", store, 1300)) == [pytest.approx(9.5)]
    assert values(evaluate("rate(c_total[60s])", store, 1300)) == [pytest.approx(9.5 / 60)]


def test_counter_extrapolation_stops_at_the_zero_point() -> None:
    store = Store()
    counter(store, "c_total", {"pod": "a"}, [(1260, 1.0), (1275, 4.0), (1290, 7.0)])
    # The counter would be zero 5 s before its first sample (< 7.5 s): 6 * (30 + 5 + 10) / 30 = 9
    assert values(evaluate("increase(c_total[60s])", store, 1300)) == [pytest.approx(9.0)]
    # delta is not a counter function: no zero-point limit, 6 * (30 + 7.5 + 10) / 30
    assert values(evaluate("delta(c_total[60s])", store, 1300)) == [pytest.approx(9.5)]


def test_counter_reset_adds_the_value_before_the_reset() -> None:
    store = Store()
    counter(store, "c_total", {"pod": "a"}, [(1255, 10.0), (1270, 20.0), (1285, 5.0), (1300, 15.0)])
    # 15 - 10 + 20 (the reset) = 25 over 45 s, 15 s extrapolated to the start: 25 * 60 / 45
    assert values(evaluate("increase(c_total[60s])", store, 1300)) == [pytest.approx(25 * 60 / 45)]
    assert values(evaluate("rate(c_total[60s])", store, 1300)) == [pytest.approx(25 / 45)]
    # delta treats it as a gauge: 5 * 60 / 45
    assert values(evaluate("delta(c_total[60s])", store, 1300)) == [pytest.approx(5 * 60 / 45)]


def test_irate_uses_the_last_two_samples_and_handles_a_reset() -> None:
    store = Store()
    counter(store, "c_total", {"pod": "a"}, [(1255, 10.0), (1270, 20.0), (1285, 26.0)])
    assert values(evaluate("irate(c_total[1m])", store, 1290)) == [pytest.approx(6 / 15)]
    store.add("c_total", {"pod": "a"}, 1300, 3.0)
    assert values(evaluate("irate(c_total[1m])", store, 1300)) == [pytest.approx(3 / 15)]


def test_rate_needs_two_samples_in_the_left_open_window() -> None:
    store = Store()
    counter(store, "c_total", {"pod": "a"}, [(1240, 1.0), (1270, 4.0)])
    # 1240 is exactly at_time - range: outside (Prometheus 3 ranges are left-open).
    assert evaluate("rate(c_total[60s])", store, 1300) == []
    assert values(evaluate("count_over_time(c_total[61s])", store, 1300)) == [2.0]


def test_over_time_functions() -> None:
    store = Store()
    counter(store, "g", {"pod": "a"}, [(1250, 2.0), (1260, 8.0), (1270, 5.0)])
    at = 1280
    assert values(evaluate("avg_over_time(g[1m])", store, at)) == [pytest.approx(5.0)]
    assert values(evaluate("max_over_time(g[1m])", store, at)) == [8.0]
    assert values(evaluate("min_over_time(g[1m])", store, at)) == [2.0]
    assert values(evaluate("sum_over_time(g[1m])", store, at)) == [15.0]
    # functions drop the metric name
    assert evaluate("max_over_time(g[1m])", store, at)[0][0] == {"pod": "a"}


# ---------------------------------------------------------------------------------------------- selectors


def test_instant_selector_looks_back_five_minutes() -> None:
    store = Store()
    store.add("vllm:num_requests_waiting", {"namespace": "llm", "pod": "vllm-0"}, 1000, 4)
    assert evaluate("vllm:num_requests_waiting", store, 1299.999) == [
        ({"__name__": "vllm:num_requests_waiting", "namespace": "llm", "pod": "vllm-0"}, 4.0)]
    assert evaluate("vllm:num_requests_waiting", store, 1300) == []
    assert evaluate("vllm:num_requests_waiting", store, 999) == []  # nothing yet


def test_regex_matchers_are_fully_anchored() -> None:
    store = Store()
    for pod in ("t1", "t10", "xt1"):
        store.add("up", {"pod": pod}, 100, 1)
    assert [lb["pod"] for lb, _ in evaluate('up{pod=~"t1"}', store, 100)] == ["t1"]
    assert [lb["pod"] for lb, _ in evaluate('up{pod=~"t1|t2"}', store, 100)] == ["t1"]
    assert [lb["pod"] for lb, _ in evaluate('up{pod=~"t1.*"}', store, 100)] == ["t1", "t10"]
    assert [lb["pod"] for lb, _ in evaluate('up{pod!~"t1"}', store, 100)] == ["t10", "xt1"]
    assert [lb["pod"] for lb, _ in evaluate('up{pod!="t1"}', store, 100)] == ["t10", "xt1"]
    store.add("up", {"pod": "t\u0661"}, 100, 1)  # an Arabic-Indic digit: RE2's \d is ASCII-only
    assert [lb["pod"] for lb, _ in evaluate(r'up{pod=~"t\\d+"}', store, 100)] == ["t1", "t10"]


def test_missing_label_matches_empty_and_name_regex_selects_across_metrics() -> None:
    store = Store()
    store.add("container_a", {"pod": "p", "container": "c"}, 100, 1)
    store.add("container_b", {"pod": "p"}, 100, 2)
    store.add("other", {"pod": "p", "container": "c"}, 100, 3)
    got = evaluate('{__name__=~"container_.*",container!=""}', store, 100)
    assert [lb["__name__"] for lb, _ in got] == ["container_a"]
    assert values(evaluate('container_b{container=""}', store, 100)) == [2.0]


def test_single_quoted_and_backtick_strings() -> None:
    store = Store()
    store.add("m", {"id": "/"}, 100, 1)
    store.add("m", {"id": "/kubepods"}, 100, 2)
    assert values(evaluate("sum(m{id='/'})", store, 100)) == [1.0]
    assert values(evaluate("sum(m{id=~`/kube.*`})", store, 100)) == [2.0]


def test_evaluation_touches_only_the_selected_metric_and_matching_postings(monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store()
    for i in range(25_000):
        labels = {"namespace": f"ns-{i % 50}", "pod": f"p{i}", "container": "app"}
        store.add("x", labels, 1000, 0.0)
        store.add("x", labels, 1060, 60.0 * (i % 3))
        store.add("other", labels, 1060, 1.0)
    calls = 0
    original = promql.Matcher.matches

    def counting(self: promql.Matcher, v: str) -> bool:
        nonlocal calls
        calls += 1
        return original(self, v)

    monkeypatch.setattr(promql.Matcher, "matches", counting)
    got = evaluate('sum(rate(x{namespace="ns-1",pod=~"p1|p2|p51"}[2m])) by (pod)', store, 1080)
    # p1: 0 -> 60 over 60 s, no extrapolation below zero, 20 s after the last sample: 60 * 80 / 60 / 120
    assert [lb for lb, _ in got] == [{"pod": "p1"}, {"pod": "p51"}]
    assert values(got) == [pytest.approx(2 / 3), pytest.approx(0.0)]
    assert calls <= 10  # two candidate series checked against two matchers, not 50 000 series


# ---------------------------------------------------------------------------------------------- aggregation & functions


@pytest.fixture
def pods() -> Store:
    store = Store()
    rows = [("shop", "web-1", "app", 2.0), ("shop", "web-1", "sidecar", 1.0), ("shop", "web-2", "app", 4.0),
            ("infra", "dns-1", "app", 8.0)]
    for ns, pod, container, v in rows:
        store.add("mem", {"namespace": ns, "pod": pod, "container": container}, 100, v)
    return store


def test_aggregations_by_and_without_either_side(pods: Store) -> None:
    assert evaluate("sum by (pod) (mem)", pods, 100) == evaluate("sum(mem) by (pod)", pods, 100) == [
        ({"pod": "dns-1"}, 8.0), ({"pod": "web-1"}, 3.0), ({"pod": "web-2"}, 4.0)]
    assert evaluate("max without (container, pod) (mem)", pods, 100) == [
        ({"namespace": "infra"}, 8.0), ({"namespace": "shop"}, 4.0)]
    assert evaluate("count(mem)", pods, 100) == [({}, 4.0)]
    assert evaluate("avg(mem) by (namespace)", pods, 100) == [
        ({"namespace": "infra"}, 8.0), ({"namespace": "shop"}, pytest.approx(7 / 3))]
    assert evaluate("min by (namespace, nope) (mem)", pods, 100)[1] == ({"namespace": "shop"}, 1.0)


def test_label_replace_keeps_the_name_and_uses_go_expansion(pods: Store) -> None:
    got = evaluate('label_replace(mem{namespace="shop"}, "workload", "$1", "pod", "(.*)-[0-9]+")', pods, 100)
    assert {lb["workload"] for lb, _ in got} == {"web"}
    assert all(lb["__name__"] == "mem" for lb, _ in got)
    # "$1x" names the (missing) group 1x, as Go's Expand reads it: the result is empty, the label removed.
    got = evaluate('label_replace(mem{pod="dns-1"}, "pod", "$1x", "pod", "(.*)")', pods, 100)
    assert got == [({"__name__": "mem", "namespace": "infra", "container": "app"}, 8.0)]
    # A regex that does not match the whole value leaves the sample alone.
    got = evaluate('label_replace(mem{pod="dns-1"}, "x", "y", "pod", "dns")', pods, 100)
    assert "x" not in got[0][0]


def test_scalar_functions_and_clamps(pods: Store) -> None:
    assert evaluate("time()", pods, 123.5) == [({}, 123.5)]
    assert evaluate("vector(2) * 3", pods, 100) == [({}, 6.0)]
    assert evaluate('scalar(mem{pod="dns-1"}) / 2', pods, 100) == [({}, 4.0)]
    assert math.isnan(evaluate("scalar(mem)", pods, 100)[0][1])
    # results come sorted by label set: web-1/app, web-2/app, then web-1/sidecar ("container" sorts first)
    assert values(evaluate('clamp_max(mem{namespace="shop"}, 2.5)', pods, 100)) == [2.0, 2.5, 1.0]
    assert values(evaluate('clamp_min(-mem{pod="web-2"}, -1)', pods, 100)) == [-1.0]
    assert values(evaluate('abs(-mem{pod="web-2"})', pods, 100)) == [4.0]


# ---------------------------------------------------------------------------------------------- binary operators


def test_vector_scalar_arithmetic_drops_the_name_and_comparisons_filter(pods: Store) -> None:
    assert evaluate('mem{pod="web-2"} * 100', pods, 100) == [
        ({"namespace": "shop", "pod": "web-2", "container": "app"}, 400.0)]
    assert values(evaluate("mem > 3", pods, 100)) == [8.0, 4.0]
    assert [lb.get("__name__") for lb, _ in evaluate("mem > 3", pods, 100)] == ["mem", "mem"]
    assert values(evaluate("3 < mem", pods, 100)) == [8.0, 4.0]  # the vector's value, not the scalar's
    assert values(evaluate("mem > bool 3", pods, 100)) == [1.0, 0.0, 1.0, 0.0]
    assert all("__name__" not in lb for lb, _ in evaluate("mem > bool 3", pods, 100))
    assert evaluate("1 + 2 * 3 ^ 2 ^ 0.5", pods, 100)[0][1] == pytest.approx(1 + 2 * 3 ** (2 ** 0.5))
    assert evaluate("2 > bool 1", pods, 100) == [({}, 1.0)]
    assert math.isinf(evaluate("1 / 0", pods, 100)[0][1])


def test_one_to_one_matching_on_all_labels_but_the_name() -> None:
    store = Store()
    for node, total, avail in (("n1", 16e9, 10e9), ("n2", 8e9, 2e9)):
        store.add("node_memory_MemTotal_bytes", {"instance": node, "job": "node-exporter"}, 100, total)
        store.add("node_memory_MemAvailable_bytes", {"instance": node, "job": "node-exporter"}, 100, avail)
    got = evaluate("node_memory_MemTotal_bytes - node_memory_MemAvailable_bytes", store, 100)
    assert got == [({"instance": "n1", "job": "node-exporter"}, 6e9), ({"instance": "n2", "job": "node-exporter"}, 6e9)]
    store.add("other", {"instance": "n1"}, 100, 2)
    assert evaluate("node_memory_MemTotal_bytes / on(instance) other", store, 100) == [({"instance": "n1"}, 8e9)]
    assert evaluate("node_memory_MemTotal_bytes / ignoring(job) other", store, 100) == [({"instance": "n1"}, 8e9)]
    assert evaluate("node_memory_MemTotal_bytes / other", store, 100) == []


def test_group_left_copies_labels_from_the_one_side_and_many_to_one_must_be_explicit() -> None:
    store = Store()
    for cpu in ("0", "1"):
        store.add("busy", {"namespace": "mon", "pod": "ne-1", "cpu": cpu}, 100, 0.5)
    store.add("info", {"namespace": "mon", "pod": "ne-1", "node": "n1"}, 100, 1)
    got = evaluate("busy * on(namespace, pod) group_left(node) info", store, 100)
    assert got == [({"namespace": "mon", "pod": "ne-1", "cpu": "0", "node": "n1"}, 0.5),
                   ({"namespace": "mon", "pod": "ne-1", "cpu": "1", "node": "n1"}, 0.5)]
    with pytest.raises(promql.EvaluationError, match="many-to-one matching must be explicit"):
        evaluate("busy * on(namespace, pod) info", store, 100)
    got = evaluate("info * on(namespace, pod) group_right(node) busy", store, 100)
    assert [lb["cpu"] for lb, _ in got] == ["0", "1"]


def test_set_operators() -> None:
    store = Store()
    store.add("a", {"node": "n1"}, 100, 1)
    store.add("a", {"node": "n2"}, 100, 2)
    store.add("b", {"node": "n2"}, 100, 20)
    store.add("b", {"node": "n3"}, 100, 30)
    assert values(evaluate("a or b", store, 100)) == [1.0, 2.0, 30.0]
    assert values(evaluate("a and b", store, 100)) == [2.0]
    assert values(evaluate("a unless b", store, 100)) == [1.0]
    assert values(evaluate("sum by (node) (a) or sum by (node) (missing)", store, 100)) == [1.0, 2.0]


# ---------------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(("query", "message"), [
    ("sum(rate(x[5m]) by (pod)", r'^1:17: parse error: unexpected keyword "by" in aggregation, expected "\)"'),
    ("sum(rate(x[5m]))) by (pod)", r'^1:17: parse error: unexpected "\)"'),
    ('x{pod="a",container}', r'^1:20: parse error: unexpected "}" in label matching, expected label matching'),
    ('x{pod=a}', r"^1:7: parse error: unexpected identifier \"a\" in label matching, expected string"),
    ("rate(x)", r'expected type range vector in call to function "rate", got instant vector'),
    ("sum(x[5m])", r"expected type instant vector in aggregation expression, got range vector"),
    ("histogram_quantile(0.9, x)", r'unsupported function "histogram_quantile"'),
    ("nosuch(x)", r'unknown function with name "nosuch"'),
    ("quantile(0.9, x)", r'unsupported aggregation "quantile"'),
    ("x[5m:1m]", r"unsupported subquery"),
    ("x offset 5m", r"unsupported offset modifier"),
    ("x @ 100", r"unsupported @ modifier"),
    ('{pod=~".*"}', r"vector selector must contain at least one non-empty matcher"),
    ("1 > 2", r"comparisons between scalars must use BOOL modifier"),
    ("1 and x", r'set operator "and" not allowed in binary scalar expression'),
    ("(x)[5m]", r"ranges only allowed for vector selectors"),
    ('x{pod=~"("}', r"error parsing regexp"),
    ("", r"no expression found in input"),
    ("x\n  + ]", r"^2:5: parse error"),
])
def test_parse_errors_name_the_position_and_the_construct(query: str, message: str) -> None:
    with pytest.raises(PromQLError, match=message):
        parse(query)


def test_parse_accepts_what_adapter_configs_write() -> None:
    parse("sum by (pod,container) (\n  irate (\n    container_cpu_usage_seconds_total{a=\"b\",}[4m]\n  )\n)\n")
    parse("sum(rate(x[1h30m])) without (instance) # a comment")
    parse("1 - irate(x[60s]) * on(namespace, pod) group_left(node) (node_namespace_pod:kube_pod_info:{node=\"n\"})")
    assert isinstance(parse("-1"), promql.NumberLiteral)


def test_metric_names() -> None:
    assert metric_names('sum(rate(a{x="y"}[1m])) / on() group_left b') == {"a", "b"}
    assert metric_names('{__name__="a", pod!=""} + 1') == {"a"}
    assert metric_names('{__name__=~"a|b"}') is None
    assert metric_names("time()") == set()


def test_stale_series_vanish_from_instant_queries_at_once() -> None:
    store = Store()
    counter(store, "up", {"pod": "gone"}, [(0, 1.0), (15, 2.0)])
    counter(store, "up", {"pod": "stays"}, [(0, 1.0), (15, 2.0), (30, 3.0)])
    store.mark_stale("up", {"pod": "gone"}, 30)
    assert [lb["pod"] for lb, _ in evaluate("up", store, 29)] == ["gone", "stays"]
    assert [lb["pod"] for lb, _ in evaluate("up", store, 30)] == ["stays"]  # not five more minutes
    assert values(evaluate('count_over_time(up{pod="gone"}[1m])', store, 40)) == [2.0]  # ranges keep samples
    store.add("up", {"pod": "gone"}, 45, 5.0)  # a series can come back
    assert [lb["pod"] for lb, _ in evaluate("up", store, 45)] == ["gone", "stays"]
    assert [lb["pod"] for lb, _ in evaluate("up", store, 35)] == ["stays"]


def test_store_prunes_old_samples_and_empty_series() -> None:
    store = Store(retention=60)
    store.add("g", {"pod": "a", "empty": ""}, 100, 1)
    store.add("g", {"pod": "b"}, 150, 2)
    store.add("g", {"pod": "b"}, 140, 3)  # out of order: ignored like the TSDB does
    assert sorted((n, sorted(lb.items())) for n, lb in store.series()) == [
        ("g", [("pod", "a")]), ("g", [("pod", "b")])]
    store.prune(170)
    assert [dict(lb) for _, lb in store.series()] == [{"pod": "b"}]
    assert values(evaluate("g", store, 170)) == [2.0]
    store.prune(300)
    assert list(store.series()) == []
    assert evaluate('g{pod="b"}', store, 300) == []


def test_expand_template_follows_go() -> None:
    m = promql.go_regex("^(.*)_total$").search("http_requests_total")
    assert m is not None
    assert promql.expand_template("${1}_per_second", m) == "http_requests_per_second"
    assert promql.expand_template("$1_per_second", m) == ""
    assert promql.expand_template("$0 costs $$1", m) == "http_requests_total costs $1"


# ---------------------------------------------------------------------------------------------- Prometheus' answers


def _labels(text: str) -> dict[str, str]:
    if text == "{}":
        return {}
    selector = parse(text)
    assert isinstance(selector, promql.VectorSelector)
    labels = {m.name: m.value for m in selector.matchers}
    if selector.name:
        labels["__name__"] = selector.name
    return labels


def _golden() -> list[tuple[Store, float, str, list[tuple[dict[str, str], float]] | None]]:
    """The promqltest script Prometheus' engine passed: load blocks, then instant evals and expected samples."""
    cases: list[tuple[Store, float, str, list[tuple[dict[str, str], float]] | None]] = []
    store, step, mode = Store(retention=1e9), 0.0, ""
    expected: list[tuple[dict[str, str], float]] = []
    for raw in GOLDEN.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line == "clear":
            store, mode = Store(retention=1e9), ""
        elif line.startswith("load "):
            step, mode = float(line.split()[1].rstrip("s")), "load"
        elif line.startswith(("eval instant at ", "eval_fail instant at ")):
            words = line.split(" ", 4)
            at, query = float(words[3].rstrip("s")), words[4]
            expected = []
            cases.append((store, at, query, None if words[0] == "eval_fail" else expected))
            mode = "eval"
        elif mode == "load":
            selector, _, samples = line.rpartition("} ")
            labels = _labels(selector + "}")
            name = labels.pop("__name__")
            for i, v in enumerate(samples.split()):
                if v == "stale":
                    store.mark_stale(name, labels, i * step)
                elif v != "_":
                    store.add(name, labels, i * step, float(v))
        elif "}" in line:
            selector, _, value = line.rpartition(" ")
            expected.append((_labels(selector), float(value)))
        else:
            expected.append(({}, float(line)))
    return cases


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def test_answers_match_prometheus_engine() -> None:
    """Every case in the golden file is what Prometheus 3's engine answered (checked with promqltest)."""
    cases = _golden()
    assert len(cases) > 400
    mismatches = []
    for store, at, query, want in cases:
        if want is None:
            with pytest.raises(promql.EvaluationError):
                evaluate(query, store, at)
            continue
        got = {tuple(sorted(lb.items())): v for lb, v in evaluate(query, store, at)}
        expected = {tuple(sorted(lb.items())): v for lb, v in want}
        if got.keys() != expected.keys() or not all(_same(got[k], expected[k]) for k in got):
            mismatches.append((at, query, got, expected))
    assert mismatches == []


def test_topk_and_bottomk_keep_each_groups_extremes_with_their_labels() -> None:
    """kube-prometheus' node_namespace_pod:kube_pod_info: rule (what its adapter's nodeQuery joins on)."""
    store = promql.Store()
    for node, pod, value in (("n1", "a", 1.0), ("n2", "b", 3.0), ("n3", "b", 2.0), ("n4", "c", float("nan"))):
        store.add("x", {"job": "j", "node": node, "pod": pod}, 100, value)
    top = promql.evaluate("topk by (pod) (1, x)", store, 100)
    assert sorted((labels["pod"], labels["node"], v) for labels, v in top if v == v) == [
        ("a", "n1", 1.0), ("b", "n2", 3.0)]
    assert all(labels["__name__"] == "x" for labels, _ in top)  # topk keeps the series as they are
    assert [labels["node"] for labels, _ in promql.evaluate("bottomk(2, x)", store, 100)] == ["n1", "n3"]
    assert promql.evaluate("topk(0, x)", store, 100) == []
    rule = ('topk by (cluster, namespace, pod) (1, max by (cluster, node, namespace, pod) (label_replace('
            'x{job="j",node!=""}, "pod", "$1", "pod", "(.*)")))')
    assert {labels["pod"]: labels["node"] for labels, _ in promql.evaluate(rule, store, 100)} == {
        "a": "n1", "b": "n2", "c": "n4"}
    with pytest.raises(promql.PromQLError, match="expected type scalar in aggregation parameter"):
        promql.parse("topk(x, x)")
