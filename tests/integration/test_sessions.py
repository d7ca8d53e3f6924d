"""A recorded session replayed through the real engine, API, operator and apiserver: ten simulated minutes (two
of wall time, the engine at speed 5) with a deploy, a load step an HPA scales out on and a PodCrash, exported, then
replayed ten times faster into a second, fresh simulator (its own cluster with timers ten times as fast, operator,
API and engine started with the settings the trace asks for): the same transitions in the same order, HPA decisions
included, and the same SLA. And every bad trace refused."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from k8sim import sessions
from k8sim.local import cluster, supervisor
from k8sim.local.cli import next_tick
from k8sim.local.processes import free_port
from k8sim.local.settings import ClusterSettings

from .conftest import Kubectl, eventually, process, started

pytestmark = pytest.mark.integration

#: A weekday's late-morning peak: the daily cycle is flat (exactly 1) there, as in the other closed-loop tests.
PEAK = "2026-11-23T10:30:00Z"
#: The recording: 10 s ticks at speed 5 (50 simulated seconds a tick, ten simulated minutes in two of wall time); the
#: window, and when (wall seconds after the deploy) the load step and the crash come.
TICK, RECORD_SPEED, WINDOW, LOAD_AT, CRASH_AT = 10.0, 5, 120.0, 30.0, 50.0
#: The replay's speed. At 10 the replay's ticks are 1 s: the engine re-reads load overrides every tick (under a
#: second it would read them once a real second, a tick or more late). The replay's cluster runs its timers ten
#: times as fast (HPA sync 0.5 s, scale-in stabilisation 1.5 s, pods Running in 30 to 150 ms), so the HPA sees the
#: load step for as many syncs, and pods start within the same ticks, as in the recording.
SPEED = 10
#: Twelve times a service's peak: more than two replicas' CPU, so requests fail while it lasts, the SLA says on
#: which ticks the step fell, and the HPA scales out to its maximum in one decision.
LOAD_FACTOR = 12


def manifest(namespace: str, tenant: str) -> str:
    # `web` takes the crash: a CPU limit well above its usual load, so one replica carries it alone while the other
    # crashes. `api` takes the load step and scales on it: apart, so which replica the crash hits never decides
    # which replica a scale-in removes. Its peak is half its replicas' requests (under the HPA's target); the step
    # is more than two replicas' limits (requests fail) and less than four's (the scale-out ends the failures).
    return f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {namespace}, labels: {{ecp.ai/tenant-id: {tenant}}}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {namespace}, labels: {{app: web}}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        resources: {{requests: {{cpu: 100m, memory: 64Mi}}, limits: {{cpu: "2", memory: 256Mi}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {namespace}}}
spec: {{selector: {{app: web}}, ports: [{{port: 80}}]}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: api, namespace: {namespace}, labels: {{app: api}}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: api}}}}
  template:
    metadata: {{labels: {{app: api, k8sim.io/profile: web}}}}
    spec:
      containers:
      - name: api
        image: nginx:1.27
        resources: {{requests: {{cpu: 200m, memory: 64Mi}}, limits: {{cpu: 1500m, memory: 256Mi}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: api, namespace: {namespace}}}
spec: {{selector: {{app: api}}, ports: [{{port: 80}}]}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {{name: api, namespace: {namespace}}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: api}}
  minReplicas: 2
  maxReplicas: 4
  metrics:
  - type: Resource
    resource: {{name: cpu, target: {{type: Utilization, averageUtilization: 150}}}}
"""


def keys() -> dict[str, str]:
    """Redis keys of one simulator's API and engine: no other engine's snapshots, overrides or replays reach it."""
    tag = uuid.uuid4().hex[:8]
    return {"K8SIM_REDIS_KEY": f"k8sim:test-sessions:{tag}:latest", "K8SIM_REDIS_CHANNEL": f"k8sim:test-sessions:{tag}",
            "K8SIM_LOAD_KEY": f"k8sim:test-sessions:{tag}:load",
            "K8SIM_TRAFFIC_KEY": f"k8sim:test-sessions:{tag}:traffic"}


@pytest.fixture(scope="module")
def recording_keys() -> dict[str, str]:
    return keys()


@contextmanager
def engine(env: dict[str, str], folder: Path, name: str = "engine") -> Iterator[str]:
    """An engine of ours, serving its cluster's metrics APIs (the HPA reads them) unless ``env`` says otherwise."""
    port = free_port()
    env = {"K8SIM_ENGINE_PORT": str(port), "K8SIM_METRICS_API_PORT": str(free_port()),
           "K8SIM_MODEL_NOISE": "false", **env}
    with process([sys.executable, "-m", "k8sim_engine"], env, folder / f"{name}.log") as proc:
        url = f"http://127.0.0.1:{port}"
        started(f"{url}/health", proc, folder / f"{name}.log")
        yield url


@contextmanager
def api_process(env: dict[str, str], folder: Path) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with process([sys.executable, "-m", "k8sim_api"], {**env, "K8SIM_API_PORT": str(port)}, folder / "api.log") as proc:
        started(f"{url}/health", proc, folder / "api.log")
        yield url


@pytest.fixture(scope="module")
def api(live_services: ClusterSettings, live_cluster: ClusterSettings, operator_process: Any,
        recording_keys: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # The API shares the recording engine's speed, as `python -m k8sim run` starts them from one environment.
    with api_process({**recording_keys, "K8SIM_SPEED": str(RECORD_SPEED)}, tmp_path_factory.mktemp("sessions-api")) \
            as url:
        yield url


@contextmanager
def second_simulator(live_cluster: ClusterSettings, folder: Path, engine_env: dict[str, str],
                     cluster_speed: float) -> Iterator[tuple[str, str, ClusterSettings]]:
    """A fresh simulator beside the shared one: its own cluster (timers ``cluster_speed`` times as fast, no
    Karpenter), operator, API and engine (the last two with ``engine_env``), on the shared PostgreSQL and Redis (its
    own keys). (API, engine URLs.)"""
    other = live_cluster.model_copy(update={
        "cluster_name": "k8sim-replay", "apiserver_port": free_port(), "state_dir": folder / "state",
        "kubeconfig": folder / "state" / "kubeconfig", "cluster_speed": cluster_speed, "karpenter": False})
    own = {"K8SIM_KUBECONFIG": str(other.kubeconfig), **keys()}
    try:
        cluster.up(other)
        with ExitStack() as stack:
            stack.enter_context(process([sys.executable, "-m", "kopf", *supervisor.KOPF_ARGS],
                                        {**own, "K8SIM_SPOOL": str(folder / "spool.jsonl")}, folder / "operator.log"))
            api_url = stack.enter_context(api_process({**own, **engine_env}, folder))
            engine_url = stack.enter_context(engine({**own, **engine_env}, folder, "replay-engine"))
            yield api_url, engine_url, other
    finally:
        cluster.delete(other)


def wait_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def replay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "k8sim", "replay", *args], capture_output=True, text=True,
                          timeout=400)


def gone(kubectl: Kubectl, namespace: str) -> None:
    kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    eventually(lambda: not kubectl("get", "namespace", namespace, "--ignore-not-found", "-o", "name"), 90,
               what=f"namespace {namespace} gone")


def test_ten_recorded_minutes_replay_ten_times_faster_into_a_fresh_simulator_with_the_same_transitions_and_sla(
        api: str, recording_keys: dict[str, str], live_cluster: ClusterSettings, kubectl: Kubectl,
        tmp_path: Path) -> None:
    namespace, tenant = f"sess-{uuid.uuid4().hex[:8]}", f"sess-{uuid.uuid4().hex[:6]}"
    try:
        with engine({**recording_keys, "K8SIM_TICK_SECONDS": str(TICK), "K8SIM_SPEED": str(RECORD_SPEED),
                     "K8SIM_SIM_START": PEAK}, tmp_path) as recording:
            simulated_from = next_tick(recording)
            began, start = time.monotonic(), dt.datetime.now(dt.UTC)
            answer = httpx.post(f"{api}/k8s/manifest/deploy", json={"manifest": manifest(namespace, tenant),
                                                                    "tenant_id": tenant}, timeout=60)
            assert answer.status_code == 200, answer.text
            wait_until(began + LOAD_AT - 1)
            next_tick(recording)
            load = {"namespace": namespace, "service": "api", "factor": LOAD_FACTOR, "duration_seconds": 20}
            assert httpx.post(f"{api}/monitoring/load", json=load, timeout=10).status_code == 200
            wait_until(began + CRASH_AT - 1)
            next_tick(recording)
            answer = httpx.post(f"{api}/scenarios", timeout=10, json={
                "metadata": {"name": "crash", "namespace": namespace},
                "spec": {"type": "PodCrash", "target": {"namespace": namespace,
                                                        "selector": {"matchLabels": {"app": "web"}}},
                         "duration": "6s", "parameters": {"after": 2, "pods": 1}}})
            assert answer.status_code == 201, answer.text
            wait_until(began + WINDOW + 3)
            end = start + dt.timedelta(seconds=WINDOW)
            answer = httpx.get(f"{api}/sessions/export", timeout=60, params={
                "from": sessions.stamp(start), "to": sessions.stamp(end),
                "simulated_from": sessions.stamp(simulated_from)})
            assert answer.status_code == 200, answer.text
            trace = answer.json()
            # Without the engine's clock at `from`, the export places it from the latest snapshot: within a tick.
            answer = httpx.get(f"{api}/sessions/export", timeout=60, params={
                "from": sessions.stamp(start), "to": sessions.stamp(end)})
            placed = sessions.parse_time(answer.json()["simulator"]["simulated_from"], "simulated_from")
            assert abs((placed - simulated_from).total_seconds()) <= TICK * RECORD_SPEED, (placed, simulated_from)
            assert answer.json()["expected"]["transitions"] == trace["expected"]["transitions"]

            # This simulator cannot replay it ten times faster: its cluster's timers run at Kubernetes' pace (named
            # first), and its engine (at speed 5 with 10 s ticks) is on another clock.
            (tmp_path / "trace.json").write_text(json.dumps(trace))
            refused = replay(str(tmp_path / "trace.json"), "--speed", str(SPEED), "--api", api,
                             "--engine", recording)
            assert refused.returncode == 2, refused.stderr
            assert "the cluster's timers run at speed 1, the replay needs 10" in refused.stderr
            assert "K8SIM_CLUSTER_SPEED=10" in refused.stderr
            refused = replay(str(tmp_path / "trace.json"), "--speed", str(SPEED), "--api", api,
                             "--engine", recording, "--real-timers")
            assert refused.returncode == 2, refused.stderr
            assert "the engine runs at speed 5, the replay needs 50" in refused.stderr
            assert "K8SIM_SEED=42 K8SIM_SPEED=50 K8SIM_TICK_SECONDS=1 K8SIM_SIM_START=" in refused.stderr

        assert trace["format"] == sessions.FORMAT and trace["scope"]["namespaces"] == [namespace]
        assert [e["type"] for e in trace["events"]] == ["deploy", "load", "scenario"]
        assert trace["events"][0]["offset"] < 1 and trace["events"][0]["tenant_id"] == tenant
        simulator = trace["simulator"]
        assert simulator["step_seconds"] == TICK * RECORD_SPEED and simulator["tick_seconds"] == TICK
        assert simulator["simulated_from"] == sessions.stamp(simulated_from)
        assert simulator["cluster_speed"] == live_cluster.cluster_speed == 1
        expected = trace["expected"]
        print(json.dumps(expected["transitions"], indent=1))
        crashed = [k for k, steps in expected["transitions"].items() if "/Pod/web-*" in k and "not_ready" in steps]
        assert len(crashed) == 1, expected["transitions"]  # pods: 1 takes one replica down
        assert expected["transitions"][f"{namespace}/Deployment/web"][0] == "created"
        # The HPA scaled out on the load step, to its maximum at once, and back in after it.
        scaling = [t for t in expected["transitions"][f"{namespace}/Deployment/api"] if t.startswith("scaled")]
        assert scaling == ["scaled 2->4", "scaled 4->2"], expected["transitions"][f"{namespace}/Deployment/api"]
        assert expected["sla"]["services"].keys() == {f"{namespace}/web", f"{namespace}/api"}
        assert expected["sla"]["samples"] == 2 * WINDOW / TICK  # the pods ran from the first tick on
        assert expected["sla"]["availability"] < 99  # the load step's failed requests are in it

        gone(kubectl, namespace)  # the shared cluster cleaned of the session's objects
        env = sessions.required_settings(trace, SPEED, lead_seconds=10)
        # Whole weeks later on the simulated clock: the same daily cycle, samples apart from the recording's.
        env["K8SIM_SIM_START"] = sessions.stamp(sessions.parse_time(env["K8SIM_SIM_START"], "start") + sessions.WEEK)
        cluster_speed = float(sessions.cluster_settings(trace, SPEED)["K8SIM_CLUSTER_SPEED"])
        with second_simulator(live_cluster, tmp_path, env, cluster_speed) as (fresh_api, fresh_engine, _):
            done = replay(str(tmp_path / "trace.json"), "--speed", str(SPEED), "--api", fresh_api,
                          "--engine", fresh_engine, "--json")
        print(done.stderr)
        assert done.returncode == 0, done.stderr
        outcome = json.loads(done.stdout)
        assert outcome["match"] is True and outcome["differences"] == []
        replayed = outcome["replay"]["expected"]
        assert replayed["transitions"] == expected["transitions"]
        assert outcome["replay"]["simulator"]["cluster_speed"] == SPEED
        gap = abs(replayed["sla"]["availability"] - expected["sla"]["availability"])
        assert gap <= 0.01, (expected["sla"], replayed["sla"])
        # The same requests on the same ticks, not only the same share of them good.
        assert replayed["sla"]["total"] == pytest.approx(expected["sla"]["total"], rel=1e-9)
        assert replayed["sla"]["samples"] == expected["sla"]["samples"]
        print(f"SLA recorded {expected['sla']}, replayed {replayed['sla']}")
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_bad_windows_and_traces_are_refused_by_name_and_nothing_is_applied(api: str, kubectl: Kubectl,
                                                                           tmp_path: Path) -> None:
    answer = httpx.get(f"{api}/sessions/export", params={"from": "yesterday", "to": "2026-12-07T10:00:00Z"})
    assert answer.status_code == 422 and "from is not an RFC 3339 time" in answer.json()["message"]
    answer = httpx.get(f"{api}/sessions/export", params={"from": "2026-12-07T10:00:00", "to": "2026-12-07T11:00:00Z"})
    assert answer.status_code == 422 and "from has no time zone" in answer.json()["message"]
    answer = httpx.get(f"{api}/sessions/export", params={"from": "2026-12-07T11:00:00Z", "to": "2026-12-07T10:00:00Z"})
    assert answer.status_code == 422 and answer.json()["message"] == "from must be before to"
    assert httpx.get(f"{api}/sessions/export", params={"from": "2026-12-07T11:00:00Z"}).status_code == 422

    namespace = f"sess-bad-{uuid.uuid4().hex[:6]}"
    good = {"format": sessions.FORMAT, "window": {"from": "2026-12-07T10:00:00Z", "to": "2026-12-07T10:02:00Z"},
            "simulator": {"seed": 42, "speed": 1}, "expected": {"transitions": {}},
            "events": [{"offset": 0, "type": "deploy", "manifest": manifest(namespace, "t-bad"),
                        "namespace": namespace}]}
    checked = httpx.post(f"{api}/sessions/check", json=good, timeout=60).json()
    assert checked["objects"] == 6 and checked["cluster_speed"] == 1  # the namespace, two of each, the HPA

    answer = httpx.post(f"{api}/sessions/check", json={**good, "format": "k8sim-session/v0"}, timeout=30)
    assert answer.status_code == 422 and "'k8sim-session/v0' is not 'k8sim-session/v1'" in answer.json()["message"]
    answer = httpx.post(f"{api}/sessions/check", content=b'{"format": ', timeout=30,
                        headers={"Content-Type": "application/json"})
    assert answer.status_code == 422 and "JSON" in answer.json()["message"]

    refused = manifest(namespace, "t-bad").replace("replicas: 2", "replicas: two", 1)
    bad = {**good, "events": [*good["events"], {"offset": 5, "type": "deploy", "manifest": refused,
                                                 "namespace": namespace},
                              {"offset": 9, "type": "scenario", "body": {"metadata": {"name": "x", "namespace": "y"},
                                                                         "spec": {"type": "Meltdown"}}}]}
    answer = httpx.post(f"{api}/sessions/check", json=bad, timeout=60)
    assert answer.status_code == 422, answer.text
    problems = answer.json()["errors"]
    assert [(p["event"], p["type"]) for p in problems] == [(1, "deploy"), (2, "scenario")], problems
    assert "Deployment" in json.dumps(problems[0]) and "replicas" in json.dumps(problems[0])
    assert "Meltdown" in problems[1]["message"]

    # The command line asks first: a trace the cluster refuses part of is not played at all.
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    done = replay(str(tmp_path / "bad.json"), "--api", api, "--engine", "http://127.0.0.1:1")
    assert done.returncode == 2 and "the simulator refuses the trace (422)" in done.stderr, done.stderr
    assert not kubectl("get", "namespace", namespace, "--ignore-not-found", "-o", "name")
    (tmp_path / "broken.json").write_text('{"format": "k8sim-session/v1", ')
    done = replay(str(tmp_path / "broken.json"), "--api", api)
    assert done.returncode == 2 and "is not JSON" in done.stderr
    (tmp_path / "old.json").write_text(json.dumps({**good, "format": "k8sim-session/v0"}))
    done = replay(str(tmp_path / "old.json"), "--api", api)
    assert done.returncode == 2 and "'k8sim-session/v0' is not 'k8sim-session/v1'" in done.stderr


def test_an_import_is_part_of_a_session_and_a_dry_run_is_not(api: str, kubectl: Kubectl) -> None:
    namespace = f"sess-imp-{uuid.uuid4().hex[:6]}"
    export = json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "uid": "0a1b"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": namespace,
                                                               "resourceVersion": "42"}, "data": {"k": "v"}}]})
    start = dt.datetime.now(dt.UTC)
    try:
        dry = httpx.post(f"{api}/cluster/import", json={"manifest": export, "dry_run": True}, timeout=60)
        assert dry.status_code == 200, dry.text
        done = httpx.post(f"{api}/cluster/import", json={"manifest": export}, timeout=60)
        assert done.status_code == 200, done.text
        end = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)

        def exported() -> dict[str, Any]:
            answer = httpx.get(f"{api}/sessions/export", timeout=60, params={
                "from": sessions.stamp(start), "to": sessions.stamp(end)})
            assert answer.status_code == 200, answer.text
            trace = answer.json()
            assert trace["expected"]["transitions"].get(f"{namespace}/ConfigMap/cfg") == ["created"], trace
            return dict(trace)
        trace = eventually(exported, 30, "the import's objects in the session")
        # Only the import that changed the cluster, scoped to its objects' namespace, replayed as it was posted.
        assert [(e["type"], e["body"]) for e in trace["events"]] == [("import", {"manifest": export})]
        assert trace["scope"]["namespaces"] == [namespace]
        assert sessions.plan(trace, 1)[0].path == "/cluster/import"
        assert httpx.post(f"{api}/sessions/check", json=trace, timeout=60).status_code == 200
        broken = {**trace, "events": [{**trace["events"][0], "body": {"manifest": "kind: [", "scale": 2}}]}
        answer = httpx.post(f"{api}/sessions/check", json=broken, timeout=60)
        assert answer.status_code == 422 and answer.json()["errors"][0]["type"] == "import", answer.text
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)
