"""Recorded sessions: which requests are inputs, the trace built from rows, its checks, the compressed replay, the
transitions and SLA compared, and the engine settings a replay needs."""

from __future__ import annotations

import datetime as dt
from collections.abc import MutableMapping
from types import SimpleNamespace
from typing import Any

import pytest
from k8sim_api.routes.sessions import Recorder

from k8sim import model, sessions

T0 = dt.datetime(2026, 12, 7, 10, 0, tzinfo=dt.UTC)
SIM0 = dt.datetime(2026, 11, 23, 10, 30, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def trace(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "format": sessions.FORMAT,
        "window": {"from": "2026-12-07T10:00:00Z", "to": "2026-12-07T10:02:00Z"},
        "simulator": {"seed": 42, "speed": 1.0, "step_seconds": 1.0, "tick_seconds": 1.0,
                      "simulated_from": "2026-11-23T10:30:00Z", "simulated_to": "2026-11-23T10:32:00Z",
                      "model_noise": None, "profile": "demo"},
        "events": [
            {"offset": 1.0, "type": "deploy", "manifest": "kind: Namespace", "namespace": "shop",
             "tenant_id": "t1", "deployment_mode": "demo", "create_namespace": True},
            {"offset": 20.0, "type": "load", "body": {"namespace": "shop", "service": "web", "factor": 3,
                                                      "duration_seconds": 40}},
            {"offset": 50.0, "at": "2026-12-07T10:00:50Z", "type": "scenario", "body": {
                "metadata": {"namespace": "shop", "name": "crash"},
                "spec": {"type": "PodCrash", "target": {"namespace": "shop"}, "duration": "30s",
                         "start": "2026-12-07T10:01:00Z", "parameters": {"after": 2, "exitCode": 3}}}},
            {"offset": 90.0, "type": "scenario_delete", "body": {"namespace": "shop", "name": "crash"}},
            {"offset": 100.0, "type": "delete", "body": {"namespace": "", "kind": "Namespace", "name": "shop"}},
        ],
        "expected": {"transitions": {}, "sla": None},
    }
    base.update(changes)
    return base


# --------------------------------------------------------------------------- inputs


@pytest.mark.parametrize(("method", "path", "query", "body", "expected"), [
    ("POST", "/monitoring/load", {}, {"namespace": "a", "factor": 2}, ("load", {"namespace": "a", "factor": 2})),
    ("DELETE", "/monitoring/load", {}, None, ("load_clear", {})),
    ("GET", "/monitoring/load", {}, None, None),
    ("POST", "/monitoring/traffic", {}, {"format": "csv"}, ("traffic", {"format": "csv"})),
    ("DELETE", "/monitoring/traffic", {}, None, ("traffic_clear", {})),
    ("POST", "/scenarios", {}, {"metadata": {}}, ("scenario", {"metadata": {}})),
    ("DELETE", "/scenarios/shop/crash", {}, None, ("scenario_delete", {"namespace": "shop", "name": "crash"})),
    ("DELETE", "/k8s/resources/shop/Deployment/web", {}, None,
     ("delete", {"namespace": "shop", "kind": "Deployment", "name": "web"})),
    ("DELETE", "/k8s/resources//Namespace/shop", {}, None,
     ("delete", {"namespace": "", "kind": "Namespace", "name": "shop"})),
    ("DELETE", "/k8s/resources/web-pod", {"namespace": "shop"}, None,
     ("delete", {"namespace": "shop", "kind": "Pod", "name": "web-pod"})),
    ("DELETE", "/k8s/resources/tenant/t1", {}, None, ("tenant_delete", {"tenant_id": "t1"})),
    ("POST", "/k8s/manifest/deploy", {}, {"manifest": ""}, None),  # deploys are in the deployments table
    ("POST", "/cluster/import", {}, {"manifest": "x", "scale": 0.5}, ("import", {"manifest": "x", "scale": 0.5})),
    ("POST", "/cluster/import", {}, {"manifest": "x", "dry_run": True}, None),  # a dry run changed nothing
    ("DELETE", "/sla/alerts/rules/1", {}, None, None),
])
def test_only_the_inputs_a_session_replays_are_recorded(method: str, path: str, query: dict[str, str], body: Any,
                                                        expected: tuple[str, dict[str, Any]] | None) -> None:
    assert sessions.accepted_input(method, path, query, body) == expected


def test_a_session_is_scoped_to_the_namespaces_and_tenants_it_touched() -> None:
    deploys = [sessions.Deploy("d1", at(1), "m", "t1", "shop", "demo", "completed",
                               (("Namespace", "", "shop"), ("Service", "shop", "web"), ("ConfigMap", "cfg", "c")))]
    inputs = [sessions.Input(at(2), "load", {"namespace": "other", "factor": 2}),
              sessions.Input(at(3), "scenario", {"metadata": {"namespace": "third"},
                                                 "spec": {"target": {"tenant": "t2"}}}),
              sessions.Input(at(4), "delete", {"namespace": "", "kind": "Namespace", "name": "gone"}),
              sessions.Input(at(5), "tenant_delete", {"tenant_id": "t3"}),
              sessions.Input(at(6), "import", {"manifest": "…"}, ("imported", "shop"))]
    assert sessions.scope(deploys, inputs) == (["cfg", "gone", "imported", "other", "shop", "third"],
                                               ["t1", "t2", "t3"])
    # An import is replayed as it was posted.
    trace_of = trace(events=[{"offset": 4.0, "type": "import", "body": {"manifest": "kind: List", "scale": 0.5}}])
    assert [(r.offset, r.method, r.path, r.body) for r in sessions.plan(trace_of, 2)] == [
        (2.0, "POST", "/cluster/import", {"manifest": "kind: List", "scale": 0.5})]


def test_events_are_in_arrival_order_with_offsets_from_the_window_start() -> None:
    deploys = [sessions.Deploy("d1", at(5.25), "text", "t1", "shop", "demo", "completed",
                               (("Namespace", "", "shop"), ("Deployment", "shop", "web")))]
    inputs = [sessions.Input(at(2), "load", {"namespace": "shop", "factor": 2}),
              sessions.Input(at(9), "load_clear", {})]
    found = sessions.events(T0, deploys, inputs)
    assert [(e["offset"], e["type"]) for e in found] == [(2.0, "load"), (5.25, "deploy"), (9.0, "load_clear")]
    assert found[1]["create_namespace"] is True and found[1]["manifest"] == "text"
    assert found[0]["body"] == {"namespace": "shop", "factor": 2} and "body" not in found[2]
    assert found[0]["at"] == "2026-12-07T10:00:02Z"


# --------------------------------------------------------------------------- transitions


def step(kind: str, name: str, transition: str, uid: str, owner: tuple[str, str] | None = None,
         detail: dict[str, Any] | None = None) -> sessions.Step:
    return sessions.Step(kind, "shop", name, transition, detail or {}, uid, *(owner or (None, None)))


def test_controller_named_objects_are_matched_by_base_name_and_sequence() -> None:
    rs = ("ReplicaSet", "web-5d8f7b9c4")
    first = [step("Deployment", "web", "created", "d"), step("ReplicaSet", "web-5d8f7b9c4", "created", "r",
                                                             ("Deployment", "web")),
             step("Pod", "web-5d8f7b9c4-abcde", "created", "p1", rs),
             step("Pod", "web-5d8f7b9c4-zzzzz", "created", "p2", rs),
             step("Pod", "web-5d8f7b9c4-abcde", "ready", "p1", rs),
             step("Pod", "web-5d8f7b9c4-zzzzz", "ready", "p2", rs),
             step("Pod", "web-5d8f7b9c4-zzzzz", "not_ready", "p2", rs, {"reason": "Error"}),
             step("Deployment", "web", "scaled", "d", None, {"from": 2, "to": 3}),
             step("Pod", "web-5d8f7b9c4-zzzzz", "event", "p2", rs)]
    # Another run: other pod names, the crash on the other replica, the steps interleaved differently.
    second = [step("Deployment", "web", "created", "d2"),
              step("ReplicaSet", "web-5d8f7b9c4", "created", "r2", ("Deployment", "web")),
              step("Pod", "web-5d8f7b9c4-qqqqq", "created", "q1", rs),
              step("Pod", "web-5d8f7b9c4-qqqqq", "ready", "q1", rs),
              step("Pod", "web-5d8f7b9c4-qqqqq", "not_ready", "q1", rs, {"reason": "Error"}),
              step("Pod", "web-5d8f7b9c4-rrrrr", "created", "q2", rs),
              step("Pod", "web-5d8f7b9c4-rrrrr", "ready", "q2", rs),
              step("Deployment", "web", "scaled", "d2", None, {"from": 2, "to": 3})]
    expected = sessions.transitions(first)
    assert expected == {
        "shop/Deployment/web": ["created", "scaled 2->3"],
        "shop/Pod/web-*#1": ["created", "ready"],
        "shop/Pod/web-*#2": ["created", "ready", "not_ready"],
        "shop/ReplicaSet/web-*#1": ["created"],
    }
    assert sessions.transitions(second) == expected
    assert sessions.diff_transitions(expected, sessions.transitions(second)) == []


def test_a_transition_repeated_at_once_counts_once() -> None:
    # The endpoints controller writes a slice once or twice as two pods go, as its batching falls.
    updated = step("EndpointSlice", "web-abcde", "updated", "e")
    one = [step("EndpointSlice", "web-abcde", "created", "e"), *[updated] * 4,
           step("Deployment", "web", "scaled", "d", None, {"from": 4, "to": 2}),
           step("Deployment", "web", "scaled", "d", None, {"from": 2, "to": 4})]
    other = [step("EndpointSlice", "web-abcde", "created", "e"), *[updated] * 3,
             step("Deployment", "web", "scaled", "d", None, {"from": 4, "to": 2}),
             step("Deployment", "web", "scaled", "d", None, {"from": 2, "to": 4})]
    assert sessions.transitions(one) == sessions.transitions(other) == {
        "shop/Deployment/web": ["scaled 4->2", "scaled 2->4"], "shop/EndpointSlice/web-abcde": ["created", "updated"]}


def test_the_diff_names_missing_unexpected_and_diverging_objects() -> None:
    expected = {"shop/Deployment/web": ["created", "ready", "scaled 1->3"], "shop/Service/web": ["created"]}
    actual = {"shop/Deployment/web": ["created", "ready", "scaled 1->2", "scaled 2->3"], "shop/Pod/x": ["created"]}
    assert sessions.diff_transitions(expected, actual) == [
        "shop/Deployment/web: from step 3 expected scaled 1->3, got scaled 1->2 > scaled 2->3",
        "unexpected shop/Pod/x: created",
        "missing shop/Service/web: expected created",
    ]
    shorter = sessions.diff_transitions({"a": ["created", "ready"]}, {"a": ["created"]})
    assert shorter == ["a: from step 2 expected ready, got (nothing)"]


# --------------------------------------------------------------------------- SLA


def test_the_sla_sums_the_session_services_and_the_diff_holds_to_the_tolerance() -> None:
    recorded = sessions.sla_summary([("shop/web", 9990.0, 10000.0, 120), ("shop/db", 990.0, 1000.0, 120)])
    assert recorded["availability"] == pytest.approx(100 * 10980 / 11000, abs=1e-6)
    assert recorded["services"]["shop/web"]["availability"] == 99.9 and recorded["samples"] == 240
    replayed = sessions.sla_summary([("shop/web", 9989.5, 10000.0, 120), ("shop/db", 990.0, 1000.0, 120)])
    assert sessions.diff_sla(recorded, replayed, 0.01) == []
    worse = sessions.sla_summary([("shop/web", 9900.0, 10000.0, 120), ("shop/db", 990.0, 1000.0, 120)])
    lines = sessions.diff_sla(recorded, worse, 0.01)
    assert len(lines) == 2 and lines[0].startswith("SLA overall: expected 99.818182 %, got 99.000000 %")
    assert lines[1].startswith("SLA shop/web: expected 99.900000 %, got 99.000000 %")
    gone = sessions.sla_summary([("shop/web", 9990.0, 10000.0, 120)])
    assert sessions.diff_sla(recorded, gone, 1.0)[-1] == "SLA shop/db: no samples in the replay"
    assert sessions.availability(0, 0) == 100.0


# --------------------------------------------------------------------------- checks


def test_a_trace_of_another_format_is_refused_by_name() -> None:
    with pytest.raises(sessions.SessionError, match="'k8sim-session/v2' is not 'k8sim-session/v1'"):
        sessions.check(trace(format="k8sim-session/v2"))
    with pytest.raises(sessions.SessionError, match="a trace is a JSON object"):
        sessions.check([])


def test_every_problem_of_a_malformed_trace_is_named() -> None:
    bad = trace(window={"from": "2026-12-07T10:02:00Z", "to": "yesterday"},
                simulator={"seed": "42", "speed": 1},
                events=[{"offset": 5, "type": "deploy"}, {"offset": 1, "type": "load", "body": {}},
                        {"offset": 6, "type": "reboot"}, "x"])
    with pytest.raises(sessions.SessionError) as caught:
        sessions.check(bad)
    assert caught.value.problems == [
        "window.to is not an RFC 3339 time: 'yesterday'",
        "simulator.seed: a number is needed, not '42'",
        "events[0].manifest: the deploy's manifest text is missing",
        "events[1].offset: 1 comes before the previous event's 5.0",
        "events[2].type: 'reboot' is not one of " + ", ".join(sessions.EVENT_TYPES),
        "events[3]: an object is needed",
    ]
    assert sessions.check(trace())["format"] == sessions.FORMAT


def test_times_need_a_zone() -> None:
    assert sessions.parse_time("2026-12-07T10:00:00+01:00", "from") == dt.datetime(2026, 12, 7, 9, tzinfo=dt.UTC)
    with pytest.raises(sessions.SessionError, match="from has no time zone"):
        sessions.parse_time("2026-12-07T10:00:00", "from")


# --------------------------------------------------------------------------- replaying


def test_a_replay_at_speed_n_compresses_the_timeline_but_not_the_cluster_s_faults() -> None:
    requests = sessions.plan(trace(), 5)
    assert [(r.offset, r.method, r.path) for r in requests] == [
        (0.2, "POST", "/k8s/manifest/deploy"), (4.0, "POST", "/monitoring/load"), (10.0, "POST", "/scenarios"),
        (18.0, "DELETE", "/scenarios/shop/crash"), (20.0, "DELETE", "/k8s/resources//Namespace/shop")]
    deploy, load, scenario = requests[0].body, requests[1].body, requests[2].body
    assert deploy == {"manifest": "kind: Namespace", "tenant_id": "t1", "deployment_mode": "demo",
                      "namespace": "shop", "create_namespace": True, "wait": False}
    assert load is not None and load["duration_seconds"] == 8.0 and load["factor"] == 3
    assert scenario is not None
    # The absolute start (10 s after the Scenario was made) is relative now, and five times nearer; the crash
    # keeps its duration and delay (the kubelet's back-off does not run faster).
    assert scenario["spec"] == {"type": "PodCrash", "target": {"namespace": "shop"}, "duration": "30s",
                                "start": "+2s", "parameters": {"after": 2, "exitCode": 3}}


def test_into_a_cluster_whose_timers_keep_pace_the_cluster_s_faults_are_compressed_too() -> None:
    requests = sessions.plan(trace(), 5, timers=5)
    scenario = requests[2].body
    assert scenario is not None and scenario["spec"] == {
        "type": "PodCrash", "target": {"namespace": "shop"}, "duration": "6s", "start": "+2s",
        "parameters": {"after": 0.4, "exitCode": 3}}
    spot = {"metadata": {}, "spec": {"type": "SpotInterruption", "target": {}, "parameters": {"notice": 120}}}
    assert sessions.compress_scenario(spot, T0, 10, 10)["spec"]["parameters"] == {"notice": 12.0}
    # 120 s at x5 is 24 s; the crash (made at 10 s) lasts 6 s and recovers within 2 s more.
    assert sessions.replay_span(trace(), 5, timers=5) == 24.0


def test_a_cluster_fault_compressed_under_a_second_is_named() -> None:
    # The crash lasts 30 s: at x5 into a cluster five times as fast 6 s, at x60 half a second.
    assert sessions.short_faults(trace(), 5, 5) == []
    assert sessions.short_faults(trace(), 60, 1) == []  # at Kubernetes' pace it keeps its duration
    assert sessions.short_faults(trace(), 60, 60) == [
        "PodCrash shop/crash lasts 30 s, 0.5 s replayed: under 1 s the cluster may not play it (at most x30 keeps it)"]


def test_the_cluster_a_replay_needs_runs_its_timers_n_times_the_recording_s() -> None:
    recorded = trace(simulator={**trace()["simulator"], "cluster_speed": 2})
    assert sessions.cluster_settings(recorded, 5) == {"K8SIM_CLUSTER_SPEED": "10"}
    assert sessions.cluster_timers(recorded, 5, 10.0) == (5.0, [])
    ratio, problems = sessions.cluster_timers(recorded, 5, 2.0)
    assert ratio == 1.0 and len(problems) == 1 and "run at speed 2, the replay needs 10" in problems[0]
    # Either side unknown (a cluster the local tooling did not make): the same pace, nothing to say.
    assert sessions.cluster_settings(trace(), 5) == {}
    assert sessions.cluster_timers(trace(), 5, 5.0) == (1.0, [])
    assert sessions.cluster_timers(recorded, 5, None) == (1.0, [])
    with pytest.raises(sessions.SessionError, match="cluster_speed: a number above 0"):
        sessions.check(trace(simulator={**trace()["simulator"], "cluster_speed": 0}))


def test_the_replay_reads_transitions_until_a_cluster_fault_has_recovered() -> None:
    # 120 s at x5 is 24 s, but the crash made at 10 s lasts its 30 s, and its recovery up to 10 s more.
    assert sessions.replay_span(trace(), 5) == 50.0
    assert sessions.replay_span(trace(), 1) == 120.0
    assert sessions.replay_span(trace(events=[]), 4) == 30.0


def test_a_model_scenario_is_compressed_whole() -> None:
    body = {"metadata": {}, "spec": {"type": "LoadSpike", "start": "+1m", "duration": "5m",
                                     "repeat": {"every": "10m", "jitter": "30s"}, "parameters": {"factor": 3}}}
    spec = sessions.compress_scenario(body, T0, 10)["spec"]
    assert spec == {"type": "LoadSpike", "start": "+6s", "duration": "30s", "repeat": {"every": "60s", "jitter": "3s"},
                    "parameters": {"factor": 3}}
    past = {"metadata": {}, "spec": {"type": "ErrorBurst", "start": "2026-12-07T09:00:00Z"}}
    assert "start" not in sessions.compress_scenario(past, T0, 10)["spec"]


# --------------------------------------------------------------------------- the engine's settings


def test_the_settings_a_replay_needs_keep_the_step_per_tick_and_land_on_the_trace_grid() -> None:
    env = sessions.required_settings(trace(), 5, lead_seconds=30)
    assert env == {"K8SIM_SEED": "42", "K8SIM_SPEED": "5", "K8SIM_TICK_SECONDS": "0.2",
                   "K8SIM_SIM_START": "2026-11-23T10:27:30Z", "K8SIM_PROFILE": "demo"}
    noisy = trace(simulator={**trace()["simulator"], "model_noise": False})
    assert sessions.required_settings(noisy, 1)["K8SIM_MODEL_NOISE"] == "false"
    # A tick that is no short decimal is printed whole: rounded, the engine's step would be a hair off the trace's.
    hour = trace(simulator={**trace()["simulator"], "speed": 20, "step_seconds": 200})
    env = sessions.required_settings(hour, 30)
    # The engine's step is tick_seconds times speed (EngineSettings read from these very strings).
    assert (env["K8SIM_SPEED"], env["K8SIM_TICK_SECONDS"]) == ("600", "0.3333333333333333")
    assert float(env["K8SIM_TICK_SECONDS"]) * float(env["K8SIM_SPEED"]) == 200


def test_an_engine_on_the_right_clock_is_waited_for_and_any_other_refused() -> None:
    ready = sessions.Clock(SIM0 - dt.timedelta(seconds=10), 1.0, 5.0)
    assert sessions.wait_for_start(trace(), 5, ready, 120) == (2.0, [])
    weeks_later = sessions.Clock(SIM0 + 2 * sessions.WEEK - dt.timedelta(seconds=25), 1.0, 5.0)
    assert sessions.wait_for_start(trace(), 5, weeks_later, 120) == (5.0, [])
    _, problems = sessions.wait_for_start(trace(), 5, sessions.Clock(SIM0 + dt.timedelta(seconds=3), 1.0, 5.0), 120)
    assert len(problems) == 1 and "reaches the trace's simulated start" in problems[0]
    _, problems = sessions.wait_for_start(trace(), 5, sessions.Clock(SIM0 - dt.timedelta(seconds=9.5), 1.0, 5.0),
                                          120)
    assert problems == ["the engine's ticks fall 0.5 simulated s off the trace's (its clock started elsewhere than "
                        "the trace's start, in whole ticks)"]
    _, problems = sessions.wait_for_start(trace(), 5, sessions.Clock(SIM0, 5.0, 1.0, seed=7), 120)
    assert problems == ["the engine runs at speed 1, the replay needs 5",
                        "the engine advances 5 simulated s per tick, the trace 1",
                        "the engine's seed is 7, the trace's 42"]


def test_whole_weeks_later_the_model_gives_the_same_samples() -> None:
    """Why a replay may run on a clock whole weeks after the recording's: the daily cycle repeats weekly and the
    noise follows from the seed and the number of ticks, not the date."""
    spec = model.PodSpec(uid="u1", namespace="shop", name="web-1", service="shop/web", container="web",
                         image="web:1", node="n1", tenant="t1", cpu_request=0.5, cpu_limit=1.0,
                         memory_request=256 * model.MIB, memory_limit=512 * model.MIB, gpus=0, accelerator=None,
                         ready=True, started=SIM0 - dt.timedelta(hours=1))

    def run(start: dt.datetime) -> list[tuple[float, float]]:
        engine = model.Model(seed=42)
        samples = []
        for i in range(30):
            when = start + dt.timedelta(seconds=5 * i)
            wall = SIM0 + dt.timedelta(seconds=5 * i)  # the cluster's clock is the same in both runs
            (sample,) = engine.tick([spec], when, 5.0, wall=wall)
            samples.append((sample.good, sample.total))
        return samples

    assert run(SIM0) == run(SIM0 + 3 * sessions.WEEK)
    assert run(SIM0) != run(SIM0 + dt.timedelta(days=1, hours=3))


# --------------------------------------------------------------------------- the API's recorder


class FakePool:
    """Collects the rows the recorder writes."""

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []

    def acquire(self) -> FakePool:
        return self

    async def __aenter__(self) -> FakePool:
        return self

    async def __aexit__(self, *_: object) -> None:
        return None

    async def execute(self, _: str, *args: Any) -> None:
        self.rows.append(args)


async def call(recorder: Recorder, pool: FakePool, method: str, path: str, body: bytes, query: bytes = b"") -> int:
    sent: list[dict[str, Any]] = []
    chunks = [{"type": "http.request", "body": body[:5], "more_body": True},
              {"type": "http.request", "body": body[5:], "more_body": False}]

    async def receive() -> dict[str, Any]:
        return chunks.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = {"type": "http", "method": method, "path": path, "query_string": query,
             "app": SimpleNamespace(state=SimpleNamespace(pool=pool))}
    await recorder(scope, receive, send)
    return int(sent[0]["status"])


async def test_the_recorder_keeps_accepted_inputs_with_their_arrival_time_and_nothing_else() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:  # the route reads the body in chunks, as Starlette does
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status = 422 if b"refuse" in body else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    pool, recorder = FakePool(), Recorder(app)
    before = dt.datetime.now(dt.UTC)
    assert await call(recorder, pool, "POST", "/monitoring/load", b'{"namespace": "shop", "factor": 2}') == 200
    assert await call(recorder, pool, "POST", "/monitoring/load", b'{"refuse": true}') == 422
    assert await call(recorder, pool, "GET", "/monitoring/load", b"") == 200
    assert await call(recorder, pool, "POST", "/k8s/manifest/parse", b'{"manifest": ""}') == 200
    assert await call(recorder, pool, "DELETE", "/k8s/resources/web-pod", b"", b"namespace=shop&kind=Pod") == 200
    assert [(kind, body) for _, kind, body in pool.rows] == [
        ("load", {"namespace": "shop", "factor": 2}),
        ("delete", {"namespace": "shop", "kind": "Pod", "name": "web-pod"})]
    assert all(before <= arrived <= dt.datetime.now(dt.UTC) for arrived, _, _ in pool.rows)
