"""Real traffic replayed: both file formats, the curve between and beyond its points, and every bad input named."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from k8sim import model, traffic

HEADER = "timestamp,namespace,service,rps\n"
T0 = 1_764_324_000  # 2025-11-28T10:00:00Z


def csv_text(*rows: tuple[Any, str, str, Any]) -> str:
    return HEADER + "".join(f"{t},{ns},{svc},{rps}\n" for t, ns, svc, rps in rows)


def matrix(*series: tuple[dict[str, str], list[list[Any]]]) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": labels, "values": values} for labels, values in series]}}


def problems(text: str, fmt: str = "csv", **options: Any) -> list[str]:
    with pytest.raises(traffic.TrafficError) as caught:
        traffic.parse(text, fmt, **options)
    assert caught.value.status == 422
    return [str(p) for p in caught.value.problems]


# --------------------------------------------------------------------------- parsing


def test_a_csv_with_rfc3339_and_epoch_timestamps_gives_one_curve_per_service() -> None:
    text = csv_text(("2025-11-28T10:00:00Z", "t1", "callbot", 10), (T0 + 60, "t1", "callbot", 20),
                    ("2025-11-28T10:02:00+00:00", "t1", "callbot", 40),
                    (T0, "t10", "callbot", 5), (T0 + 120, "t10", "callbot", "7.5"))
    replay = traffic.parse(text, "csv")
    assert [(s.key, s.times, s.values) for s in replay.series] == [
        ("t1/callbot", (T0, T0 + 60, T0 + 120), (10.0, 20.0, 40.0)),
        ("t10/callbot", (T0, T0 + 120), (5.0, 7.5))]
    assert (replay.start, replay.duration, replay.points) == (T0, 120, 5)


def test_csv_rows_in_any_order_extra_columns_and_renamed_labels() -> None:
    text = "rps,ts_unused,timestamp,kubernetes_namespace,app\n3,x,120,ns,web\n1,x,0,ns,web\n"
    replay = traffic.parse(text, "csv", namespace_label="kubernetes_namespace", service_label="app")
    assert [(s.key, s.times, s.values) for s in replay.series] == [("ns/web", (0.0, 120.0), (1.0, 3.0))]


@pytest.mark.parametrize("shape", ["whole", "data", "result"])
def test_a_prometheus_query_range_result_in_any_of_its_three_shapes(shape: str) -> None:
    answer = matrix(({"namespace": "shop", "service": "web", "job": "x"}, [[T0, "1.5"], [T0 + 30, "4"]]),
                    ({"namespace": "shop", "service": "db"}, [[T0 + 15.5, "0"], [T0 + 45.5, "2e1"]]))
    document = {"whole": answer, "data": answer["data"], "result": answer["data"]["result"]}[shape]
    replay = traffic.parse(json.dumps(document), "prometheus")
    assert [(s.key, s.times, s.values) for s in replay.series] == [
        ("shop/db", (T0 + 15.5, T0 + 45.5), (0.0, 20.0)), ("shop/web", (T0, T0 + 30.0), (1.5, 4.0))]
    assert replay.format == "prometheus" and replay.duration == 45.5


def test_the_stored_form_gives_back_the_same_replay() -> None:
    replay = traffic.parse(csv_text((0, "a", "b", 1), (60, "a", "b", 2.25)), "csv", loop=False, scale=2.5,
                           shift=30, set_at=1234.5)
    assert traffic.Replay.stored(replay.stored_value()) == replay
    with pytest.raises(ValueError, match="unreadable"):
        traffic.Replay.stored('{"series": {}}')


# --------------------------------------------------------------------------- playing


def replay_of(points: list[tuple[float, float]], **options: Any) -> traffic.Replay:
    return traffic.parse(csv_text(*[(T0 + t, "ns", "web", v) for t, v in points]), "csv", **options)


def test_linear_between_points_and_exact_on_them() -> None:
    replay = replay_of([(0, 10), (60, 20), (120, 80)])
    assert [replay.rps(p)["ns/web"] for p in (0, 30, 60, 90, 120)] == [10, 15, 20, 50, 80]


def test_looped_it_wraps_from_its_last_point_to_its_first_over_one_spacing() -> None:
    replay = replay_of([(0, 10), (60, 20), (120, 80)])
    assert (replay.spacing, replay.period) == (60, 180)
    assert [replay.rps(p)["ns/web"] for p in (150, 180, 210, 360 + 90)] == [45, 10, 15, 50]
    assert not replay.finished(10_000)


def test_once_it_plays_to_its_last_point_then_the_service_is_left_to_its_synthetic_curve() -> None:
    replay = replay_of([(0, 10), (60, 20)], loop=False)
    assert replay.rps(60) == {"ns/web": 20} and not replay.finished(60)
    assert replay.rps(61) == {} and replay.finished(61)
    assert replay.view(61)["state"] == "finished" and replay.view(30)["state"] == "playing"
    assert replay.view(None)["state"] == "pending"


def test_scale_multiplies_every_point_and_shift_starts_later_in_the_file() -> None:
    replay = replay_of([(0, 10), (60, 20), (120, 80)], scale=2, shift=60)
    assert replay.rps(replay.position(0)) == {"ns/web": 40}
    assert replay.rps(replay.position(30)) == {"ns/web": 100}
    assert replay.view(30)["position_seconds"] == 90 and replay.view(30)["services"][0]["rps"] == 100


def test_a_series_shorter_than_the_file_plays_only_over_its_own_points_when_once() -> None:
    text = csv_text((0, "ns", "a", 1), (60, "ns", "a", 1), (120, "ns", "a", 1), (60, "ns", "b", 4), (120, "ns", "b", 8))
    once = traffic.parse(text, "csv", loop=False)
    assert once.rps(30) == {"ns/a": 1} and once.rps(90) == {"ns/a": 1, "ns/b": 6}
    looped = traffic.parse(text, "csv")  # period 180: b runs from 8 at 120 back to 4 at 60 + 180
    assert looped.rps(30)["ns/b"] == pytest.approx(8 + (4 - 8) * (30 + 180 - 120) / 120)


def test_series_match_services_exactly_never_by_prefix() -> None:
    replay = traffic.parse(csv_text((0, "t1", "callbot", 1), (60, "t1", "callbot", 2)), "csv")
    assert traffic.matched(replay, {"t10/callbot", "t1/callbot-2"}) == []
    assert traffic.matched(replay, {"t10/callbot", "t1/callbot"}) == ["t1/callbot"]
    assert replay.view(0, {"t10/callbot"})["services"][0]["matched"] is False


def test_the_engines_anchor_is_read_only_for_its_own_replay() -> None:
    stored = traffic.anchor_value("abc", 1000.0)
    assert traffic.anchor_of(stored, "abc") == 1000.0
    assert traffic.anchor_of(stored, "other") is None and traffic.anchor_of(None, "abc") is None
    assert traffic.anchor_of(b"not json", "abc") is None


# --------------------------------------------------------------------------- the model follows


def spec(uid: str, service: str) -> model.PodSpec:
    return model.PodSpec(uid=uid, namespace=service.split("/")[0], name=uid, service=service, container="c",
                         image="i", node="n1", tenant=None, cpu_request=0.5, cpu_limit=2.0,
                         memory_request=512 * model.MIB, memory_limit=model.GIB, gpus=0, accelerator=None,
                         ready=True, started=dt.datetime(2026, 11, 23, tzinfo=dt.UTC))


def test_the_model_follows_a_replayed_curve_exactly_and_leaves_other_services_synthetic() -> None:
    replay = replay_of([(0, 10), (60, 20), (120, 80), (180, 5)], scale=2)
    m = model.Model(7, noise=False)
    start = dt.datetime(2026, 11, 23, 10, 30, tzinfo=dt.UTC)  # the weekday peak: the synthetic cycle is 1
    specs = [spec("a", "ns/web"), spec("b", "ns/other")]
    seen = []
    for i in range(9):
        position = replay.position(i * 30.0)
        samples = {s.key: s for s in m.tick(specs, start + dt.timedelta(seconds=30 * i), 30,
                                            labels={k: ({model.PROFILE_LABEL: "web"}, {}) for k in ("ns/web",
                                                                                                   "ns/other")},
                                            factors={"ns/web": 1.5}, replayed=replay.rps(position))}
        seen.append(samples["ns/web"].rps)
        assert samples["ns/other"].rps == model.PROFILES["web"].peak_rps * model.diurnal(
            start + dt.timedelta(seconds=30 * i))
    # The curve, times the scale (2), times the load override's factor (1.5).
    assert seen == pytest.approx([30, 45, 60, 150, 240, 127.5, 15, 22.5, 30])


def test_noise_and_bursts_do_not_touch_a_replayed_service_and_its_random_stream_goes_on() -> None:
    now = dt.datetime(2026, 11, 23, 10, 30, tzinfo=dt.UTC)
    replayed = model.Service("ns/web", model.PROFILES["web"], seed=3)
    plain = model.Service("ns/web", model.PROFILES["web"], seed=3)
    for i in range(50):
        assert replayed.step(now + dt.timedelta(minutes=i), 60, 1.0, None, replayed=12.5).rps == 12.5
        plain.step(now + dt.timedelta(minutes=i), 60)
    later = now + dt.timedelta(minutes=50)
    assert replayed.step(later, 60).rps == plain.step(later, 60).rps


def test_a_scenarios_effect_still_applies_to_a_replayed_service() -> None:
    service = model.Service("ns/web", model.PROFILES["web"], seed=3, noise=False)
    load = service.step(dt.datetime(2026, 11, 23, tzinfo=dt.UTC), 60, 2.0, model.Effect(factor=0.5), replayed=10)
    assert load.rps == 10


# --------------------------------------------------------------------------- bad input, each problem named


def test_not_csv_names_what_it_looks_like() -> None:
    assert problems('{"status": "success"}') == ['this looks like JSON: is it a Prometheus result '
                                                 '(format "prometheus")?']
    assert problems("") == ["no header line: expected timestamp,namespace,service,rps"]


def test_missing_columns_are_each_named() -> None:
    found = problems("time,namespace,value\n1,a,2\n")
    assert found == ["line 1: no column 'timestamp' in the header 'time,namespace,value'",
                     "line 1: no column 'service' in the header 'time,namespace,value'",
                     "line 1: no column 'rps' in the header 'time,namespace,value'"]


def test_every_bad_row_is_named_with_its_line_and_series() -> None:
    text = csv_text((0, "a", "web", 1), ("yesterday", "a", "web", 2), (120, "a", "web", "lots"),
                    (180, "a", "web", -3), (240, "a", "web", "NaN"), (0, "", "web", 1), (60, "a", "web", 1e12))
    assert problems(text) == [
        "series a/web, line 3: timestamp 'yesterday' is neither RFC 3339 nor epoch seconds",
        "series a/web, line 4: rps 'lots' is not a finite number",
        "series a/web, line 5: rps -3.0 is negative",
        "series a/web, line 6: rps 'NaN' is not a finite number",
        "line 7: '', 'web' are not a namespace and a Deployment's or StatefulSet's name",
        "series a/web, line 8: rps 1000000000000.0 is over 1e+09"]


def test_a_series_of_one_point_and_a_repeated_timestamp_are_named() -> None:
    text = csv_text((0, "a", "one", 1), (0, "a", "twice", 1), (0, "a", "twice", 2), (60, "a", "ok", 1),
                    (120, "a", "ok", 1))
    assert problems(text) == ["series a/one: 1 point(s): a curve needs at least 2",
                              "series a/twice: timestamp 1970-01-01T00:00:00Z given more than once"]


def test_prometheus_problems_are_named_per_series() -> None:
    assert problems("not json", "prometheus") == ["line 1: not JSON: Expecting value"]
    assert problems(json.dumps({"status": "error", "error": "bad_data: parse error"}), "prometheus") == [
        "the query failed: bad_data: parse error"]
    assert problems(json.dumps({"resultType": "vector", "result": []}), "prometheus") == [
        "resultType 'vector': a range query's matrix is needed (/api/v1/query_range, not /api/v1/query)"]
    answer = matrix(({"namespace": "a"}, [[0, "1"], [60, "2"]]),
                    ({"namespace": "a", "service": "web"}, [[0, "1"], ["x", "2"], [120, "-1"], [180]]),
                    ({"namespace": "a", "service": "db"}, [[0, "1"]]))
    assert problems(json.dumps(answer), "prometheus") == [
        'series #0: no label \'service\' among {"namespace": "a"}',
        "series a/web, point 1: timestamp 'x' is not epoch seconds",
        "series a/web, point 2: rps -1.0 is negative",
        "series a/web, point 3: not a [timestamp, \"value\"] pair",
        "series a/db: 1 point(s): a curve needs at least 2"]
    twice = matrix(({"namespace": "a", "service": "web", "pod": "1"}, [[0, "1"], [60, "1"]]),
                   ({"namespace": "a", "service": "web", "pod": "2"}, [[0, "1"], [60, "1"]]))
    assert problems(json.dumps(twice), "prometheus") == [
        "series #1 a/web: a second series for a/web: aggregate them (sum by (namespace, service))"]
    assert problems("[1, 2]", "prometheus") == [
        'series #0: not a series: expected {"metric": {...}, "values": [[ts, "rps"], ...]}',
        'series #1: not a series: expected {"metric": {...}, "values": [[ts, "rps"], ...]}']
    assert problems("[]", "prometheus") == ["no series in it"]


def test_names_that_are_not_kubernetes_names_are_refused_and_shown_escaped() -> None:
    text = csv_text((0, "Shop", "web", 1), (60, "shop", "web/x", 1), (0, "shop", "\ud800", 1))
    assert problems(text) == ["line 2: 'Shop', 'web' are not a namespace and a Deployment's or StatefulSet's name",
                              "line 3: 'shop', 'web/x' are not a namespace and a Deployment's or StatefulSet's name",
                              "line 4: 'shop', '\\ud800' are not a namespace and a Deployment's or StatefulSet's "
                              "name"]
    assert problems('{"result": [{"metric": {}, "values": [[1' + "0" * 5000 + ', "1"]]}]}', "prometheus")[0] \
        .startswith("not JSON: Exceeds the limit")


def test_too_large_files_are_413() -> None:
    text = csv_text(*[(t, "a", "web", 1) for t in range(20)])
    for limits in (traffic.Limits(max_points=10), traffic.Limits(max_bytes=100), traffic.Limits(max_series=0)):
        with pytest.raises(traffic.TrafficError) as caught:
            traffic.parse(text, "csv", limits=limits)
        assert caught.value.status == 413, limits


# --------------------------------------------------------------------------- the engine's clock


class FakeRedis:
    """The three hash calls the engine makes, over a dict (the engine's own logic is what is tested)."""

    def __init__(self) -> None:
        self.hash: dict[str, bytes] = {}

    async def hmget(self, _: str, fields: list[str]) -> list[bytes | None]:
        return [self.hash.get(f) for f in fields]

    async def hget(self, _: str, field: str) -> bytes | None:
        return self.hash.get(field)

    async def hset(self, _: str, field: str, value: str) -> None:
        self.hash[field] = value.encode()


def engine_on(redis: FakeRedis) -> Any:
    from k8sim_engine.runner import Engine
    from k8sim_engine.settings import EngineSettings

    engine = Engine.__new__(Engine)  # no cluster client, no pool: only the replay's clock is exercised
    engine.settings, engine.redis, engine._recent = EngineSettings(tick_seconds=1), redis, {}
    engine.replay, engine._anchor = None, None
    return engine


def post(redis: FakeRedis, replay: traffic.Replay) -> None:
    redis.hash = {traffic.ID_FIELD: replay.id.encode(), traffic.REPLAY_FIELD: replay.stored_value().encode()}


async def test_the_engine_plays_a_replay_from_its_first_tick_and_a_restart_carries_on() -> None:
    redis = FakeRedis()
    engine = engine_on(redis)
    t = dt.datetime(2026, 11, 23, 10, 30, tzinfo=dt.UTC)
    assert await engine.replayed(t) == {}
    replay = replay_of([(0, 10), (60, 20), (120, 80)])
    post(redis, replay)
    assert await engine.replayed(t + dt.timedelta(seconds=5)) == {"ns/web": 10}
    assert await engine.replayed(t + dt.timedelta(seconds=35)) == {"ns/web": 15}
    assert traffic.anchor_of(redis.hash[traffic.ANCHOR_FIELD], replay.id) == (t + dt.timedelta(seconds=5)).timestamp()
    # A restarted engine on the same clock reads the anchor and carries on.
    assert await engine_on(redis).replayed(t + dt.timedelta(seconds=65)) == {"ns/web": 20}
    # One whose clock starts before the anchor (a new simulated start) plays it from its own first tick.
    assert await engine_on(redis).replayed(t) == {"ns/web": 10}
    # A new replay starts over; a removed one leaves the synthetic curve.
    again = replay_of([(0, 1), (60, 3)], scale=3)
    post(redis, again)
    assert await engine.replayed(t + dt.timedelta(seconds=100)) == {"ns/web": 3}
    redis.hash = {}
    assert await engine.replayed(t + dt.timedelta(seconds=101)) == {}
