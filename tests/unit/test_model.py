"""The workload model's statistics: reproducible, cyclic, autocorrelated, bounded, monotonic."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import math
import statistics

import pytest

from k8sim import contract, model, sla

MONDAY = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)


def spec(uid: str, service: str = "ns/callbot", *, ready: bool = True, gpus: int = 0, oom_after: float | None = None,
         cpu_limit: float | None = 2.0, memory_limit: float | None = 2 * model.GIB) -> model.PodSpec:
    return model.PodSpec(uid=uid, namespace="ns", name=uid, service=service, container="c", image="i", node="n1",
                         tenant="t1", cpu_request=0.25, cpu_limit=cpu_limit, memory_request=512 * model.MIB,
                         memory_limit=memory_limit, gpus=gpus, accelerator="t4" if gpus else None, ready=ready,
                         started=MONDAY, oom_after=oom_after, container_started=MONDAY)


def run(seed: int, specs: list[model.PodSpec], steps: int, dt_s: float = 60,
        start: dt.datetime = MONDAY) -> tuple[model.Model, list[list[model.ServiceSample]]]:
    m = model.Model(seed)
    series = [m.tick(specs, start + dt.timedelta(seconds=i * dt_s), dt_s) for i in range(steps)]
    return m, series


def rps(series: list[list[model.ServiceSample]], key: str = "ns/callbot") -> list[float]:
    return [next(s.rps for s in tick if s.key == key) for tick in series]


def test_same_seed_same_series_and_another_seed_differs() -> None:
    pods = [spec("a"), spec("b")]
    _, first = run(7, pods, 200)
    _, again = run(7, pods, 200)
    _, other = run(8, pods, 200)
    assert rps(first) == rps(again)
    assert [s.memory_mb for t in first for s in t] == [s.memory_mb for t in again for s in t]
    assert rps(first) != rps(other)


def test_weekday_has_a_daily_cycle_and_weekends_are_quieter() -> None:
    _, week = run(3, [spec("a")], 7 * 24 * 60)
    series = rps(week)
    minute = lambda day, hour: day * 1440 + hour * 60  # noqa: E731
    peak = statistics.mean(series[minute(d, 10):minute(d, 12)][i] for d in range(5) for i in range(120))
    trough = statistics.mean(series[minute(d, 2):minute(d, 4)][i] for d in range(5) for i in range(120))
    weekend_peak = statistics.mean(series[minute(d, 10):minute(d, 12)][i] for d in (5, 6) for i in range(120))
    assert peak / trough > 3, (peak, trough)
    assert weekend_peak < 0.6 * peak


def test_noise_is_autocorrelated_not_iid() -> None:
    _, day = run(11, [spec("a")], 24 * 60)
    series = rps(day)
    # Remove the deterministic cycle: what is left is the AR(1) noise (and rare bursts).
    peak = model.PROFILES["conversational"].peak_rps
    residual = [math.log(v / (peak * model.diurnal(MONDAY + dt.timedelta(minutes=i)))) for i, v in enumerate(series)]
    mean = statistics.mean(residual)
    num = sum((a - mean) * (b - mean) for a, b in itertools.pairwise(residual))
    den = sum((a - mean) ** 2 for a in residual)
    assert num / den >= 0.8


def test_counters_never_decrease_and_values_stay_physical() -> None:
    m = model.Model(5)
    pods = [spec("a"), spec("g", "ns/tts-server", gpus=1)]
    last: dict[str, tuple[float, float, float, float]] = {}
    for i in range(600):
        for sample in m.tick(pods, MONDAY + dt.timedelta(hours=9, seconds=30 * i), 30):
            assert 0 <= sample.error_rate <= 1
        for uid, pod in m.pods.items():
            counters = (pod.cpu_seconds, pod.rx_bytes, pod.tx_bytes, pod.requests)
            assert all(now >= before for now, before in zip(counters, last.get(uid, (0, 0, 0, 0)), strict=True))
            last[uid] = counters
            x = pod.last
            assert x is not None and 0 <= x.cpu_percent <= 100.0001
            assert x.memory_bytes <= pod.spec.memory_limit  # type: ignore[operator]
            if pod.spec.gpus:
                # A T4's framebuffer less the driver's share.
                assert 0 <= x.gpu_util <= 100 and x.gpu_fb_used_mib + x.gpu_fb_free_mib == 15360 - 225
                assert 10 <= x.gpu_power_w <= 70 and 25 < x.gpu_temp_c < 95


def test_an_oom_kill_leak_reaches_the_limit_when_the_container_is_killed() -> None:
    m = model.Model(1)
    pods = [spec("leaky", oom_after=30), spec("fine")]
    seen = []
    for second in range(0, 31, 5):
        m.tick(pods, MONDAY, 5, wall=MONDAY + dt.timedelta(seconds=second))
        seen.append(m.pods["leaky"].last.memory_bytes)  # type: ignore[union-attr]
    limit = pods[0].memory_limit
    assert seen == sorted(seen) and seen[0] < 0.8 * limit  # type: ignore[operator]
    assert seen[-1] == limit  # the kernel kills at the limit
    assert m.pods["fine"].last.memory_bytes <= 0.92 * limit  # type: ignore[union-attr,operator]


def test_scenario_effects_change_load_latency_and_errors() -> None:
    def run(effect: model.Effect | None) -> model.ServiceSample:
        m = model.Model(3)
        pods = [spec("a"), spec("b")]
        return m.tick(pods, MONDAY + dt.timedelta(hours=10), 5, effects={"ns/callbot": effect} if effect else None)[0]

    base = run(None)
    assert run(model.Effect(factor=3)).rps == pytest.approx(3 * base.rps)
    assert run(model.Effect(latency_ms=500)).latency_ms == pytest.approx(base.latency_ms + 500)
    burst = run(model.Effect(error_rate=0.2))
    assert burst.incident and burst.error_rate == pytest.approx(0.2)
    assert burst.good == pytest.approx(0.8 * burst.total)


def test_more_ready_replicas_share_the_load() -> None:
    def per_pod(n: int) -> float:
        m = model.Model(9)
        pods = [spec(f"p{i}") for i in range(n)]
        m.tick(pods, MONDAY + dt.timedelta(hours=11), 60)
        return statistics.mean(p.last.rps for p in m.pods.values())  # type: ignore[union-attr]
    assert per_pod(4) == per_pod(2) / 2
    m = model.Model(9)
    (sample,) = m.tick([spec("x", ready=False)], MONDAY, 60)
    assert sample.good == 0 and sample.total > 0 and contract.service_health(sample) == "unhealthy"


def test_profiles_follow_names_labels_and_gpus() -> None:
    assert model.pick_profile("tts-server", {}, {}, 0).name == "gpu-inference"
    assert model.pick_profile("stt-server", {}, {}, 0).name == "cpu-inference"
    assert model.pick_profile("anything", {}, {}, 1).name == "gpu-inference"
    assert model.pick_profile("callbot", {model.PROFILE_LABEL: "database"}, {}, 0).name == "database"
    assert model.pick_profile("frontend", {}, {}, 0).name == "web"


def test_sla_arithmetic() -> None:
    assert sla.availability(995, 1000) == 99.5
    assert math.isclose(sla.burn_rate(990, 1000, 99.5), 2.0)
    assert math.isclose(sla.budget_remaining(998, 1000, 99.5), 0.6)
    assert sla.status(99.9, 99.5, 0.8, False) == "meeting"
    assert sla.status(99.6, 99.5, 0.2, False) == "at_risk"
    assert sla.status(99.4, 99.5, -0.2, False) == "breached"
    alerts = sla.burn_alerts({"1h": (800, 1000), "5m": (80, 100)}, 99.5)
    assert alerts[0].firing and not alerts[1].firing


def test_load_overrides_cover_services_namespaces_and_tenants_exactly() -> None:
    overrides = [model.LoadOverride("service:ns/callbot", 5, 200), model.LoadOverride("tenant:t1", 2, 200),
                 model.LoadOverride("namespace:other", 3, 50)]
    factors = model.service_factors({"ns/callbot": "t1", "ns/chatbot": "t10", "other/x": None}, overrides, 100,
                                    {"ns/chatbot": 1.5})
    assert factors == {"ns/callbot": 10.0, "ns/chatbot": 1.5}, "t10 is not t1; the namespace one has expired"
    assert model.load_scope("ns", "callbot", None) == "service:ns/callbot"
    assert model.load_scope(None, None, "t1") == "tenant:t1"
    for bad in ((None, "callbot", None), ("ns", None, "t1"), (None, None, None)):
        try:
            model.load_scope(*bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad} must be refused")
    assert model.annotation_factor({model.LOAD_ANNOTATION: "3"}) == 3.0
    assert model.annotation_factor({model.LOAD_ANNOTATION: "lots"}) == 1.0


def test_a_load_factor_scales_the_service_and_new_pods_warm_up() -> None:
    pods = [spec("a"), spec("b")]
    _, plain = run(3, pods, 1)
    m = model.Model(3)
    scaled = m.tick(pods, MONDAY, 60, factors={"ns/callbot": 4.0})
    assert scaled[0].rps == pytest.approx(4 * plain[0][0].rps)
    warm = dataclasses.replace(spec("a"), started=MONDAY - dt.timedelta(hours=1))
    m = model.Model(3)
    m.tick([warm, spec("c")], MONDAY, 1)  # c starts now
    assert m.pods["c"].last.rps == pytest.approx(model.WARM_UP_FLOOR * m.pods["a"].last.rps)
    assert model.warm_up(120) == 1.0



def test_pods_age_on_the_cluster_clock_when_simulated_time_runs_elsewhere() -> None:
    wall = dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC)
    warm = dataclasses.replace(spec("a"), started=wall - dt.timedelta(hours=1))
    new = dataclasses.replace(spec("c"), started=wall - dt.timedelta(seconds=30))
    m = model.Model(3, noise=False)
    sample, = m.tick([warm, new], MONDAY, 1, wall=wall)  # simulated time two weeks behind the cluster's
    weight = model.WARM_UP_FLOOR + (1 - model.WARM_UP_FLOOR) * 0.5
    assert m.pods["c"].last.rps == pytest.approx(weight * m.pods["a"].last.rps)
    assert sample.uptime_s == 3600

def test_background_failures_take_replicas_out_reproducibly() -> None:
    bg = model.Background(pod_crashes_per_day=4, pod_crash_seconds=600, node_failures_per_day=0)

    def run(seed: int) -> list[int]:
        m = model.Model(seed, bg)
        pods = [spec(f"p{i}") for i in range(4)]
        return [m.tick(pods, MONDAY + dt.timedelta(minutes=5 * i), 300)[0].ready_pods for i in range(288)]

    day = run(5)
    assert day == run(5) and day != run(6)  # seeded
    assert min(day) < 4 and day.count(4) > 200  # crashes happen, and most of the day all four serve
    untouched = model.Model(5)
    assert all(untouched.tick([spec("p0")], MONDAY + dt.timedelta(minutes=i), 60)[0].ready_pods == 1 for i in range(99))


def test_a_node_failure_takes_out_every_pod_on_it() -> None:
    m = model.Model(1, model.Background(node_failures_per_day=1e9, node_failure_seconds=600))
    pods = [spec("a"), spec("b"), dataclasses.replace(spec("c"), node="n2")]
    sample = m.tick(pods, MONDAY, 60)[0]
    assert sample.ready_pods == 0 and sample.good == 0 and m.failures == 2  # nodes n1 and n2


def test_a_gpu_service_reports_its_gpus_in_the_health_document() -> None:
    m = model.Model(3)
    pods = [spec("a"), spec("g1", "ns/tts-server", gpus=1), spec("g2", "ns/tts-server", gpus=2)]
    samples = {s.key: s for s in m.tick(pods, MONDAY + dt.timedelta(hours=10), 30)}
    tts, cpu_only = samples["ns/tts-server"], samples["ns/callbot"]
    by_pod = {uid: p.last for uid, p in m.pods.items()}
    assert tts.gpus == 3 and cpu_only.gpus == 0
    expected = (by_pod["g1"].gpu_util * 1 + by_pod["g2"].gpu_util * 2) / 3  # type: ignore[union-attr]
    assert tts.gpu_util == pytest.approx(expected) and tts.gpu_util > 0
    assert tts.gpu_memory_mib == pytest.approx(by_pod["g1"].gpu_fb_used_mib + by_pod["g2"].gpu_fb_used_mib)  # type: ignore[union-attr]
    entry = contract.service_entry(tts)
    assert entry["gpu"] == {"count": 3, "utilization_percent": round(expected, 1),
                            "memory_used_mb": round(tts.gpu_memory_mib, 1)}
    assert "gpu" not in contract.service_entry(cpu_only)


def test_without_noise_the_load_is_the_cycle_times_the_factor_exactly() -> None:
    """What the closed-loop tests rely on: at the weekday peak a web service serves exactly its
    peak_rps times the load factor, every tick, with no bursts or incidents; memory does not drift."""
    web = model.PROFILES["web"]
    peak = MONDAY.replace(hour=10, minute=30)
    assert model.diurnal(peak) == model.diurnal(peak + dt.timedelta(minutes=50)) == 1.0
    m = model.Model(7, noise=False)
    specs = [spec(f"p{i}", "ns/web") for i in range(3)]
    samples = [m.tick(specs, peak + dt.timedelta(seconds=i), 1.0, factors={"ns/web": 4.3})[0] for i in range(3000)]
    assert {s.rps for s in samples} == {web.peak_rps * 4.3}
    cores = 3 * web.cpu_idle + web.peak_rps * 4.3 * web.cpu_per_request
    assert all(s.cpu_cores == pytest.approx(cores, rel=1e-12) for s in samples)
    assert {round(s.memory_mb, 9) for s in samples} == {round(samples[0].memory_mb, 9)}
    assert not any(s.incident for s in samples)
    noisy = model.Model(7)
    assert len({noisy.tick(specs, peak + dt.timedelta(seconds=i), 1.0)[0].rps for i in range(60)}) > 1


def test_a_pods_age_is_on_the_clusters_clock_in_whole_ticks() -> None:
    started = MONDAY + dt.timedelta(seconds=0.77)
    # Recorded: 10 s ticks at Kubernetes' pace; replayed five times faster: 2 s ticks on a cluster of speed 5. A
    # pod that started during a tick is as old at each later tick in both, whichever instant it started at.
    recorded = [model.pod_age(MONDAY + dt.timedelta(seconds=10 * k), started, 10) for k in range(1, 4)]
    replayed_start = MONDAY + dt.timedelta(seconds=0.23)
    replayed = [model.pod_age(MONDAY + dt.timedelta(seconds=2 * k), replayed_start, 2, 5) for k in range(1, 4)]
    assert recorded == replayed == [0.0, 10.0, 20.0]
    assert model.pod_age(MONDAY + dt.timedelta(seconds=9.5), MONDAY) == 9.5  # no grid: the wall age
    assert model.pod_age(MONDAY, None, 10) is None
    assert model.pod_age(MONDAY, MONDAY + dt.timedelta(seconds=3)) == 0.0  # a clock a hair behind the pod's
    # Warm-up follows the age: a fifth of a warm pod's share at start, all of it after a minute.
    assert [model.warm_up(a) for a in (0, 30, 60, 600)] == [0.2, 0.6000000000000001, 1.0, 1.0]
