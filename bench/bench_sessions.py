"""Replaying a recorded session (issue 29 §3): the speed-up a replay achieves against the wall-clock of a recorded hour.

An hour of simulated activity is recorded without waiting an hour: an engine at --record-speed (20: the hour in three
minutes) with ticks of --record-tick real seconds (10: 200 simulated seconds a tick, so a replay at x10 still ticks
once a second, as docs/sessions.md asks), a weekday's flat late-morning peak, the model's noise off. Over the hour,
through the API as a user would: two tenants' deploys (three Deployments, one with a CPU HPA), a load step that makes
the HPA scale out and back, a model Scenario (LoadSpike), a PodCrash and a second load step. The window is exported
(GET /sessions/export) and the trace replayed with ``python -m k8sim replay --speed N`` for each --speeds N (relative
to the recording, as the command defines it) into an engine started with the settings the command asks for
(sessions.required_settings, the ones it prints, with a --lead of 10 s), whole weeks earlier on the simulated clock so
that each replay's samples stay apart from the others', and into namespaces of its own (the trace's names suffixed, its
expectations with them): no replay waits for another's namespaces to be deleted, which on a busy cluster takes
minutes. Each replay goes into a fresh simulator (a second cluster made with K8SIM_CLUSTER_SPEED=N, the recording's
timers N times as fast, with its own operator and API; made before the replay is timed, deleted after), or with
--real-timers into the recording's own cluster (``python -m k8sim replay --real-timers``).

Per N: the recorded duration (simulated and wall), the replay command's wall duration, the achieved speed-up
(recorded wall / replay wall), where the replay's time went (starting and checking, waiting for the engine's clock to
reach the trace's start, playing the events at offset / N, waiting for the cluster's own timers (with --real-timers
a fault keeps its real duration), then the engine's last tick, the operator's settling, the export and the
comparison; the export is timed again alone), and whether it matched (exit code, differences in transitions and SLA).

The cluster, PostgreSQL and Redis must be up (``python -m k8sim up``); the benchmark starts its own operator, API and
engines (its own Redis keys; each engine serves the cluster's metrics APIs while it runs, so the HPA follows it) and
deletes the namespaces it made (without waiting). Run it alone, under the integration lock: about five minutes with
the defaults (three of recording, under a minute per replay with its fresh simulator), which is why `make bench` does
not run it.

    flock /tmp/k8sim-itest.lock .venv/bin/python bench/bench_sessions.py [--speeds 10 30 60]
                                  [--record-speed 20] [--record-tick 10] [--trace FILE] [--real-timers] [--lead 10]

Writes bench/results/bench_sessions-<UTC time>.json (K8SIM_BENCH_RESULTS: another folder, or '' for none).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import simulator, write_results

from k8sim import sessions
from k8sim.local import cluster, supervisor
from k8sim.local.cli import next_tick
from k8sim.local.processes import free_port
from k8sim.local.settings import ClusterSettings

#: A weekday's late-morning peak: the daily cycle is flat there, so the load follows from the session's inputs.
PEAK = "2026-11-23T10:30:00Z"
#: Simulated minutes into the hour of each of the session's inputs.
DEPLOY_B_AT, LOAD_A_AT, SPIKE_AT, CRASH_AT, LOAD_B_AT = 2, 10, 30, 40, 48
OUTPUT: list[str] = []


def say(line: str) -> None:
    OUTPUT.append(line)
    print(line, flush=True)


def deployment(name: str, namespace: str, cpu: str) -> str:
    # A CPU limit well above what the load steps ask: requests do not fail for want of CPU, the HPA still sees it.
    return f"""
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {namespace}, labels: {{app: {name}}}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: {name}
        image: registry.example/{name}:1
        resources: {{requests: {{cpu: {cpu}, memory: 64Mi}}, limits: {{cpu: "2", memory: 256Mi}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec: {{selector: {{app: {name}}}, ports: [{{port: 80}}]}}
"""


def namespace_doc(namespace: str, tenant: str) -> str:
    return (f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {namespace}, labels: {{ecp.ai/tenant-id: {tenant}}}}}"
            "\n")


def manifest_a(namespace: str, tenant: str) -> str:
    """A web service whose HPA (70 % of a 500m request) holds two replicas at the peak (about 38 %) and scales out
    under three times the load (about 110 %)."""
    return namespace_doc(namespace, tenant) + deployment("web", namespace, "500m") + f"""
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {{name: web, namespace: {namespace}}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}
  minReplicas: 2
  maxReplicas: 4
  metrics: [{{type: Resource, resource: {{name: cpu, target: {{type: Utilization, averageUtilization: 70}}}}}}]
  behavior:
    scaleDown: {{stabilizationWindowSeconds: 0, policies: [{{type: Percent, value: 100, periodSeconds: 15}}]}}
"""


def manifest_b(namespace: str, tenant: str) -> str:
    return namespace_doc(namespace, tenant) + deployment("api", namespace, "250m") + deployment("worker", namespace,
                                                                                                "250m")


# --------------------------------------------------------------------------- processes


@contextmanager
def engine(env: dict[str, str], log: Path) -> Iterator[str]:
    """An engine of ours on free ports, serving the cluster's metrics APIs while it runs (a clean stop removes
    them)."""
    port = free_port()
    full = {**os.environ, "K8SIM_ENGINE_PORT": str(port), "K8SIM_METRICS_API_PORT": str(free_port()),
            "K8SIM_MODEL_NOISE": "false", **env}
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "k8sim_engine"], env=full, stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        supervisor.wait_healthy(f"{url}/health", proc=proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


# --------------------------------------------------------------------------- recording


def record(api: str, keys: dict[str, str], speed: float, tick: float, namespaces: tuple[str, str],
           folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """An hour of simulated activity at ``speed``: (the exported trace, what the recording measured)."""
    per_minute = 60.0 / speed  # wall seconds per simulated minute
    ns_a, ns_b = namespaces
    tenant_a, tenant_b = ns_a, ns_b
    window = 3600.0 / speed
    env = {**keys, "K8SIM_SPEED": f"{speed:g}", "K8SIM_TICK_SECONDS": f"{tick:g}", "K8SIM_SIM_START": PEAK}

    def post(path: str, body: dict[str, Any], expect: int = 200) -> None:
        answer = httpx.post(f"{api}{path}", json=body, timeout=60)
        if answer.status_code != expect and not (expect == 200 and answer.status_code < 300):
            raise RuntimeError(f"POST {path}: {answer.status_code} {answer.text[:500]}")

    with engine(env, folder / "engine-record.log") as url:
        simulated_from = next_tick(url)
        began, start = time.monotonic(), dt.datetime.now(dt.UTC)

        def at(minute: float) -> None:
            # Each input a little after a tick, as the integration test places them: which tick it lands on is
            # then the same in the recording and the replay.
            time.sleep(max(0.0, began + minute * per_minute - tick / 2 - time.monotonic()))
            next_tick(url)

        # Without waiting for the rollout, as a replay deploys: the next input keeps to its time.
        post("/k8s/manifest/deploy", {"manifest": manifest_a(ns_a, tenant_a), "tenant_id": tenant_a, "wait": False})
        say(f"record: [{time.monotonic() - began:6.1f} s] deploy {ns_a} (web + HPA)")
        at(DEPLOY_B_AT)
        post("/k8s/manifest/deploy", {"manifest": manifest_b(ns_b, tenant_b), "tenant_id": tenant_b, "wait": False})
        say(f"record: [{time.monotonic() - began:6.1f} s] deploy {ns_b} (api, worker)")
        at(LOAD_A_AT)
        post("/monitoring/load", {"namespace": ns_a, "service": "web", "factor": 3,
                                  "duration_seconds": round(15 * per_minute, 3)})
        say(f"record: [{time.monotonic() - began:6.1f} s] load x3 on {ns_a}/web for 15 simulated minutes")
        at(SPIKE_AT)
        post("/scenarios", {"metadata": {"name": "spike", "namespace": ns_b},
                            "spec": {"type": "LoadSpike", "duration": f"{10 * per_minute:g}s",
                                     "parameters": {"factor": 3},
                                     "target": {"namespace": ns_b, "selector": {"matchLabels": {"app": "api"}}}}},
             expect=201)
        say(f"record: [{time.monotonic() - began:6.1f} s] LoadSpike x3 on {ns_b}/api for 10 simulated minutes")
        at(CRASH_AT)
        post("/scenarios", {"metadata": {"name": "crash", "namespace": ns_b},
                            "spec": {"type": "PodCrash", "duration": "6s", "parameters": {"after": 2, "pods": 1},
                                     "target": {"namespace": ns_b, "selector": {"matchLabels": {"app": "worker"}}}}},
             expect=201)
        say(f"record: [{time.monotonic() - began:6.1f} s] PodCrash of one {ns_b}/worker pod")
        at(LOAD_B_AT)
        post("/monitoring/load", {"namespace": ns_b, "service": "api", "factor": 2,
                                  "duration_seconds": round(5 * per_minute, 3)})
        say(f"record: [{time.monotonic() - began:6.1f} s] load x2 on {ns_b}/api for 5 simulated minutes")
        time.sleep(max(0.0, began + window + 3 - time.monotonic()))  # the operator's last observations
        end = start + dt.timedelta(seconds=window)
        exported = time.monotonic()
        answer = httpx.get(f"{api}/sessions/export", timeout=120, params={
            "from": sessions.stamp(start), "to": sessions.stamp(end),
            "simulated_from": sessions.stamp(simulated_from)})
        answer.raise_for_status()
        export_s = time.monotonic() - exported
    trace = answer.json()
    figures = described(trace, tick, export_s, len(answer.content))
    say(f"recorded {figures['simulated_s'] / 60:.0f} simulated minutes in {window:.0f} s wall (speed {speed:g}, "
        f"{tick:g} s ticks of {figures['step_s']} simulated s): {len(trace['events'])} events, "
        f"{figures['transitions']} transitions of {figures['objects']} objects, HPA {figures['scaled']}, "
        f"SLA {figures['sla']} %; export {export_s:.2f} s, {figures['trace_kib']} KiB")
    return trace, figures


def described(trace: dict[str, Any], tick: float, export_s: float | None, size: int) -> dict[str, Any]:
    """What a recorded trace holds: its durations, events, transitions and SLA."""
    sim = trace["simulator"]
    window = (sessions.parse_time(trace["window"]["to"], "to")
              - sessions.parse_time(trace["window"]["from"], "from")).total_seconds()
    speed = float(sim["speed"])
    simulated = (sessions.parse_time(sim["simulated_to"], "to")
                 - sessions.parse_time(sim["simulated_from"], "from")).total_seconds()
    expected = trace["expected"]
    figures = {"wall_s": window, "simulated_s": simulated, "speed": speed, "tick_s": tick,
               "step_s": sim["step_seconds"], "events": [e["type"] for e in trace["events"]],
               "objects": len(expected["transitions"]),
               "transitions": sum(len(v) for v in expected["transitions"].values()),
               "scaled": sorted({s for v in expected["transitions"].values() for s in v if s.startswith("scaled")}),
               "sla": (expected.get("sla") or {}).get("availability"),
               "export_s": None if export_s is None else round(export_s, 2), "trace_kib": round(size / 1024, 1)}
    return figures


# --------------------------------------------------------------------------- replaying


@dataclasses.dataclass
class Stamped:
    """The replay command's stderr, each line with when it arrived (seconds since the command started)."""

    lines: list[tuple[float, str]] = dataclasses.field(default_factory=list)

    def first(self, pattern: str) -> tuple[float, re.Match[str]] | None:
        for at, line in self.lines:
            if found := re.search(pattern, line):
                return at, found
        return None


WAITING = r"waiting ([\d.]+) s for the engine's clock"
PLAYED = r"k8sim replay: \[\s*([\d.]+) s\] "
READING = r"reading transitions for ([\d.]+) s"
COMPARED = r"k8sim replay: SLA recorded"


def phases(stamped: Stamped, total: float, window: float, speed: float, export_s: float) -> dict[str, float]:
    """Where a replay's wall seconds went, from its progress lines: they add up to ``total``."""
    waiting = stamped.first(WAITING)
    played = stamped.first(PLAYED)
    if waiting is None or played is None:
        return {"total_s": round(total, 2)}
    began = played[0] - float(played[1].group(1))  # the bracket is seconds since the first event's moment
    reading = stamped.first(READING)
    paced = window / speed
    span = float(reading[1].group(1)) if reading else paced
    tail = max(0.0, total - began - span)
    return {"start_and_check_s": round(waiting[0], 2), "engine_clock_wait_s": round(began - waiting[0], 2),
            "events_paced_s": round(paced, 2), "cluster_timers_s": round(span - paced, 2),
            "end_tick_settle_s": round(max(0.0, tail - export_s), 2), "export_and_compare_s": round(min(tail, export_s),
                                                                                                       2),
            "total_s": round(total, 2)}


def run_replay(path: Path, speed: float, api: str, url: str,
               real_timers: bool) -> tuple[int, Stamped, float, dict[str, Any] | None]:
    """``python -m k8sim replay`` as a user runs it: (exit code, its stderr lines stamped, wall seconds, its --json)."""
    started = time.monotonic()
    # --real-timers: a replay into the recording's own cluster, whose timers run at Kubernetes' pace.
    proc = subprocess.Popen([sys.executable, "-m", "k8sim", "replay", str(path), "--speed", f"{speed:g}", "--api",
                             api, "--engine", url, "--json", *(["--real-timers"] if real_timers else [])],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    stamped = Stamped()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            stamped.lines.append((time.monotonic() - started, line.rstrip("\n")))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert proc.stdout is not None
    out = proc.stdout.read()  # not communicate(): it would read stderr too, away from the stamping thread
    proc.wait(timeout=900)
    wall = time.monotonic() - started
    reader.join(timeout=10)
    try:
        document = json.loads(out) if out.strip() else None
    except ValueError:
        document = None
    return proc.returncode, stamped, wall, document


def renamed_trace(trace: dict[str, Any], namespaces: tuple[str, ...], run: str) -> tuple[list[str], str]:
    """The trace with its namespaces (and tenants, named alike) suffixed by the run: each replay plays into
    namespaces of its own, so none has to wait for the previous one's to be deleted (on a busy cluster that takes
    minutes). Its expected transitions and SLA are renamed with them, so the comparison is unchanged."""
    text = json.dumps(trace)
    for name in namespaces:
        text = text.replace(name, f"{name}{run}")
    return [f"{name}{run}" for name in namespaces], text


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` in this process's environment (which the processes it starts inherit), restored after."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def fresh_simulator(settings: ClusterSettings, timers: float, env: dict[str, str], folder: Path) -> Iterator[str]:
    """A second cluster made with K8SIM_CLUSTER_SPEED=``timers`` (no Karpenter), its operator and API started with
    the replay's engine settings ``env``, as a user replaying into a fresh simulator has them; the API's URL. The
    engine started inside this block follows the same cluster (K8SIM_KUBECONFIG); the cluster is deleted after."""
    other = settings.model_copy(update={
        "cluster_name": "k8sim-bench-replay", "apiserver_port": free_port(), "state_dir": folder,
        "kubeconfig": folder / "kubeconfig", "cluster_speed": timers, "karpenter": False})
    try:
        with environment({**env, "K8SIM_KUBECONFIG": str(other.kubeconfig)}), \
                simulator(other, "operator", "api", services_up=False) as urls:
            yield urls["api"]
    finally:
        cluster.delete(other)


def replay(trace: dict[str, Any], path: Path, speed: float, weeks: int, api: str, keys: dict[str, str],
           recorded_wall: float, folder: Path, settings: ClusterSettings, real_timers: bool,
           lead: float) -> dict[str, Any]:
    env = sessions.required_settings(trace, speed, lead)
    # Whole weeks earlier on the simulated clock: the same daily cycle, samples apart from the other runs', and none
    # ahead of the shared simulator's own (its latest snapshot and SLA stay its own).
    env["K8SIM_SIM_START"] = sessions.stamp(sessions.parse_time(env["K8SIM_SIM_START"], "start")
                                            - weeks * sessions.WEEK)
    step = float(trace["simulator"]["step_seconds"])
    pace = float(trace["simulator"]["speed"]) * speed
    if not math.isclose(float(env["K8SIM_TICK_SECONDS"]) * pace, step, rel_tol=1e-7):
        # The printed tick is rounded to six digits: at x30 of a 200 s step the engine then advances 199.9998 s a
        # tick and the command refuses it by its own check. The exact tick, so the benchmark measures the replay.
        say(f"replay x{speed:g}: the printed K8SIM_TICK_SECONDS={env['K8SIM_TICK_SECONDS']} gives "
            f"{float(env['K8SIM_TICK_SECONDS']) * pace:.6f} simulated s a tick, not {step:g}: using {step / pace!r}")
        env["K8SIM_TICK_SECONDS"] = repr(step / pace)
    timers = float(sessions.cluster_settings(trace, speed).get("K8SIM_CLUSTER_SPEED", 1))
    say(f"replay x{speed:g}: engine with {' '.join(f'{k}={v}' for k, v in env.items())}"
        + ("; into the recording's cluster (--real-timers)" if real_timers else
           f"; into a fresh simulator made with K8SIM_CLUSTER_SPEED={timers:g}"))
    made = time.monotonic()
    export_s = 0.0
    with (nullcontext(api) if real_timers else
          fresh_simulator(settings, timers, {**keys, **env}, folder / f"cluster-x{speed:g}")) as target:
        cluster_start = time.monotonic() - made
        started = time.monotonic()
        with engine({**keys, **env}, folder / f"engine-replay-{speed:g}.log") as url:
            engine_start = time.monotonic() - started
            code, stamped, wall, document = run_replay(path, speed, target, url, real_timers)
        if document:
            # The command's own export, again and alone: how much of its tail it is.
            window, sim = document["replay"]["window"], document["replay"]["simulator"]
            timed = time.monotonic()
            httpx.get(f"{target}/sessions/export", timeout=120, params={
                "from": window["from"], "to": window["to"], "simulated_from": sim["simulated_from"],
                "simulated_to": sim["simulated_to"]}).raise_for_status()
            export_s = time.monotonic() - timed
    window_s = float(recorded_wall)
    expected = trace["expected"]
    actual = (document or {}).get("replay", {}).get("expected") or {}
    differences = (document or {}).get("differences")
    gap = None
    if expected.get("sla") and actual.get("sla"):
        gap = round(abs(expected["sla"]["availability"] - actual["sla"]["availability"]), 6)
    listed: list[str] = differences if differences is not None else [ln for _, ln in stamped.lines[-15:]]
    spent = phases(stamped, wall, window_s, speed, export_s)
    waited = spent.get("start_and_check_s", 0.0) + spent.get("engine_clock_wait_s", 0.0)
    figures: dict[str, Any] = {"speed": speed, "exit_code": code, "replay_wall_s": round(wall, 2),
               "speedup": round(recorded_wall / wall, 2),
               "speedup_after_clock": round(recorded_wall / max(wall - waited, 1e-9), 2),
               "engine_start_s": round(engine_start, 2), "phases": spent, "real_timers": real_timers,
               "cluster_speed": None if real_timers else timers,
               "fresh_cluster_start_s": None if real_timers else round(cluster_start, 1),
               "match": (document or {}).get("match"),
               "transitions_equal": actual.get("transitions") == expected["transitions"] if actual else None,
               "transitions": sum(len(v) for v in (actual.get("transitions") or {}).values()),
               "sla_recorded": (expected.get("sla") or {}).get("availability"),
               "sla_replayed": (actual.get("sla") or {}).get("availability"), "sla_gap_points": gap,
               "differences": listed}
    p = spent
    say(f"replay x{speed:g}: exit {code}, {wall:.1f} s wall for {recorded_wall:.0f} s recorded: speed-up "
        f"{figures['speedup']:.1f} ({figures['speedup_after_clock']:.1f} once the engine's clock is there); "
        f"start+check {p.get('start_and_check_s')} s, engine clock {p.get('engine_clock_wait_s')} s, events "
        f"{p.get('events_paced_s')} s, cluster timers {p.get('cluster_timers_s')} s, end tick + settle "
        f"{p.get('end_tick_settle_s')} s, export + compare {p.get('export_and_compare_s')} s "
        f"(engine started in {engine_start:.1f} s beforehand"
        + ("" if real_timers else f", the fresh simulator in {cluster_start:.1f} s") + ")")
    say(f"replay x{speed:g}: {'matches' if figures['match'] else 'differs'}: {figures['transitions']} transitions "
        f"(recorded {sum(len(v) for v in expected['transitions'].values())}), SLA recorded "
        f"{figures['sla_recorded']} %, replayed {figures['sla_replayed']} % ({gap} points apart)")
    for line in listed[:12]:
        say(f"    {line}")
    return figures


def main() -> int:
    # A stop (timeout, Ctrl-C) still removes what the run made: other tests share the cluster.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speeds", type=float, nargs="+", default=[10.0, 30.0, 60.0])
    parser.add_argument("--record-speed", type=float, default=20.0)
    parser.add_argument("--record-tick", type=float, default=10.0)
    parser.add_argument("--trace", type=Path, help="replay this trace of an earlier run instead of recording one")
    parser.add_argument("--real-timers", action="store_true", help="replay into the recording's own cluster (its "
                        "timers at Kubernetes' pace) instead of a fresh simulator per N whose timers keep pace")
    parser.add_argument("--lead", type=float, default=10.0,
                        help="wall seconds the replay engine's clock starts before the trace's (default 10)")
    args = parser.parse_args()
    started = dt.datetime.now(dt.UTC)
    settings = ClusterSettings()
    tag = uuid.uuid4().hex[:6]
    namespaces = (f"bsess-{tag}-a", f"bsess-{tag}-b")
    keys = {"K8SIM_REDIS_KEY": f"k8sim:bench-sessions:{tag}:latest",
            "K8SIM_REDIS_CHANNEL": f"k8sim:bench-sessions:{tag}",
            "K8SIM_LOAD_KEY": f"k8sim:bench-sessions:{tag}:load",
            "K8SIM_TRAFFIC_KEY": f"k8sim:bench-sessions:{tag}:traffic"}
    made = list(namespaces)
    folder = settings.state_dir / "logs" / f"bench-sessions-{tag}"
    folder.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {}
    try:
        # The operator and API read these too: the same keys as the engines, and the recording's speed (an operator
        # at speed 1 would play the profile's background failures in the cluster; the API stamps the trace).
        with environment({**keys, "K8SIM_SPEED": f"{args.record_speed:g}"}), \
                simulator(settings, "operator", "api") as urls:
            api = urls["api"]
            try:
                if args.trace:
                    trace = json.loads(args.trace.read_text())
                    figures["recording"] = described(trace, float(trace["simulator"]["tick_seconds"]), None,
                                                     len(args.trace.read_bytes()))
                    namespaces = tuple(trace["scope"]["namespaces"])
                    say(f"replaying {args.trace}: {figures['recording']}")
                else:
                    trace, figures["recording"] = record(api, keys, args.record_speed, args.record_tick,
                                                         namespaces, folder)
                (folder / "trace.json").write_text(json.dumps(trace))
                figures["replays"] = []
                for weeks, speed in enumerate(args.speeds, 1):
                    renamed, text = renamed_trace(trace, namespaces, f"{'r' + tag if args.trace else ''}{weeks}")
                    made.extend(renamed)
                    path = folder / f"trace-x{speed:g}.json"
                    path.write_text(text)
                    figures["replays"].append(replay(json.loads(text), path, speed, weeks, api, keys,
                                                     figures["recording"]["wall_s"], folder, settings,
                                                     args.real_timers, args.lead))
            finally:
                cluster.kubectl(settings, "delete", "namespace", *made, "--wait=false", "--ignore-not-found",
                                check=False)
    finally:
        client = redis.Redis.from_url(ClusterSettings().redis_url)
        client.delete(*[v for k, v in keys.items() if k != "K8SIM_REDIS_CHANNEL"])
        client.close()
    figures["output"] = OUTPUT  # what the results page shows
    write_results("bench_sessions", vars(args), figures, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
