"""Command line of the local simulator (``python -m k8sim``): build, start and stop its parts.

    python -m k8sim setup | run | up | down | status | cluster-up | cluster-down |
                     cluster-delete | services-up | services-down
    python -m k8sim import FILE|- [FILE …] [--scale 0.1] [--secrets keep] [--dry-run] [--json]
    python -m k8sim traffic FILE|- [--format prometheus|csv] [--scale 2] [--once] [--shift 3600] [--api URL]
    python -m k8sim replay FILE [--speed 10] [--api URL] [--engine URL] [--tolerance 0.01] [--lead 30]
                            [--real-timers] [--json]
    python -m k8sim egress --socket PATH --kubeconfig PATH   (the cluster's egress proxy; kwokctl runs it)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from k8sim import importer, sessions
from k8sim.kube import Kube, KubeError
from k8sim.local import build, cluster, egress, karpenter, services, supervisor
from k8sim.local.processes import ClusterError
from k8sim.local.settings import ClusterSettings
from k8sim.manifests import Limits, ManifestError
from k8sim.settings import ImportSettings, TrafficSettings
from k8sim.topology import TopologyError


def setup(settings: ClusterSettings) -> None:
    """The control plane's binaries and Karpenter's (helm is built only by the chart's test, when it needs it)."""
    build.ensure_binaries(settings)
    if settings.karpenter:
        build.ensure_karpenter(settings)


def up(settings: ClusterSettings) -> None:
    services.up(settings)
    cluster.up(settings)


def run(settings: ClusterSettings) -> None:
    """Everything, then the simulator's own processes in the foreground (Ctrl-C stops them)."""
    up(settings)
    supervisor.run(settings)


def down(settings: ClusterSettings) -> None:
    cluster.down(settings)
    services.down(settings)


def status(settings: ClusterSettings) -> None:
    if not settings.karpenter:
        autoscaler = "off"
    else:
        autoscaler = "ready" if karpenter.healthy(settings) else "down"
    print(f"cluster: {'ready' if cluster.is_ready(settings) else 'down'}  "
          f"postgres: {'up' if services.pg_running(settings) else 'down'}  "
          f"redis: {'up' if services.redis_running(settings) else 'down'}  karpenter: {autoscaler}")


COMMANDS: dict[str, Callable[[ClusterSettings], object]] = {
    "setup": setup,
    "run": run,
    "up": up,
    "down": down,
    "status": status,
    "cluster-up": cluster.up,
    "cluster-down": cluster.down,
    "cluster-delete": cluster.delete,
    "services-up": services.up,
    "services-down": services.down,
}


def import_command(argv: list[str]) -> int:
    """``python -m k8sim import``: a cluster's export into the running simulator, with progress."""
    parser = argparse.ArgumentParser(prog="k8sim import", description="Import a cluster's nodes and workloads from "
                                     "kubectl get -A -o yaml, kubectl cluster-info dump or a kwokctl k8s snapshot")
    parser.add_argument("files", nargs="+", help="export files, or - for standard input")
    parser.add_argument("--scale", type=float, default=1.0, help="share of each node pool's nodes (0 < s <= 1)")
    parser.add_argument("--secrets", choices=["placeholder", "keep"], default="placeholder")
    parser.add_argument("--dry-run", action="store_true", help="ask the apiserver without changing anything")
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON on stdout")
    args = parser.parse_args(argv)
    settings = ImportSettings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        sources = {("stdin" if f == "-" else f): (sys.stdin.read() if f == "-" else Path(f).read_text())
                   for f in args.files}
    except (OSError, UnicodeDecodeError) as exc:
        print(f"k8sim: {exc}", file=sys.stderr)
        return 1
    limits = Limits(max_bytes=settings.import_max_bytes, max_documents=settings.import_max_objects)
    last = [0.0]

    def progress(stage: str, done: int, total: int) -> None:
        # A line a second at most: a 10,000-object import would otherwise print 10,000.
        if done == total or time.monotonic() - last[0] >= 1.0:
            last[0] = time.monotonic()
            print(f"k8sim import: {done}/{total} applied ({stage})", file=sys.stderr)

    async def go() -> importer.Report:
        kube = Kube(settings.kubeconfig, agent="k8sim-import")
        try:
            return await importer.run(kube, sources, limits=limits, scale=args.scale,
                                      keep_secrets=args.secrets == "keep", dry_run=args.dry_run,
                                      ip_range=settings.node_ip_range, concurrency=settings.import_concurrency,
                                      on_progress=progress)
        finally:
            await kube.close()

    try:
        report = asyncio.run(go())
    except (ManifestError, KubeError) as exc:
        print(f"k8sim import: {exc}", file=sys.stderr)
        return 1
    for entry in (*report.nodes, *report.objects):
        if entry.action == "failed":
            print(f"k8sim import: failed {entry.id}: {entry.reason}", file=sys.stderr)
    counts = ", ".join(f"{n} {k}" for k, n in report.counts().items() if n)
    print(f"k8sim import ({report.format}): {counts} in {report.elapsed:.1f} s", file=sys.stderr)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    return 1 if report.failed_count else 0


def traffic_format(name: str, text: str) -> str:
    """A traffic file's format from its name, else from its first character (JSON is Prometheus')."""
    if name.lower().endswith(".csv"):
        return "csv"
    if name.lower().endswith(".json"):
        return "prometheus"
    return "prometheus" if text.lstrip()[:1] in ("{", "[") else "csv"


def traffic_command(argv: list[str]) -> int:
    """``python -m k8sim traffic``: replay a traffic file through the running simulator's API."""
    settings = TrafficSettings()
    parser = argparse.ArgumentParser(prog="k8sim traffic", description="Replay real traffic (a Prometheus "
                                     "query_range result or a CSV timestamp,namespace,service,rps) in place of "
                                     "those services' synthetic load")
    parser.add_argument("file", help="the traffic file, or - for standard input")
    parser.add_argument("--format", choices=["prometheus", "csv"], help="default: from the file's name or text")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every point (2: twice the traffic)")
    parser.add_argument("--once", action="store_true", help="play it once (default: loop)")
    parser.add_argument("--shift", type=float, default=0.0, help="start this many seconds into the file")
    parser.add_argument("--namespace-label", default="namespace", help="label (CSV column) of the namespace")
    parser.add_argument("--service-label", default="service", help="label (CSV column) of the service")
    parser.add_argument("--api", default=settings.api_url, help=f"the simulator's API (default {settings.api_url})")
    parser.add_argument("--json", action="store_true", help="print the API's answer as JSON on stdout")
    args = parser.parse_args(argv)
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        print(f"k8sim traffic: {exc}", file=sys.stderr)
        return 1
    body = {"format": args.format or traffic_format(args.file, text), "data": text, "loop": not args.once,
            "scale": args.scale, "shift_seconds": args.shift, "namespace_label": args.namespace_label,
            "service_label": args.service_label}
    headers = {"Authorization": f"Bearer {settings.api_token.get_secret_value()}"} if settings.api_token else {}
    try:
        answer = httpx.post(f"{args.api.rstrip('/')}/monitoring/traffic", json=body, headers=headers, timeout=60)
        document = answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        print(f"k8sim traffic: {args.api}: {exc}", file=sys.stderr)
        return 1
    if answer.status_code != 200:
        print(f"k8sim traffic: {answer.status_code} {document.get('message', answer.text)}", file=sys.stderr)
        for problem in document.get("errors") or []:
            where = ", ".join(f"{k} {v}" for k, v in problem.items() if k != "message")
            print(f"  {where + ': ' if where else ''}{problem.get('message', problem)}", file=sys.stderr)
        return 1
    series = document.get("services") or []
    unmatched = [s["service"] for s in series if s.get("matched") is False]
    print(f"k8sim traffic: replaying {len(series)} series, {document.get('points')} points over "
          f"{document.get('duration_seconds')} s ({'looped' if document.get('loop') else 'once'}, "
          f"x{document.get('scale')})", file=sys.stderr)
    for key in unmatched:
        print(f"k8sim traffic: no service {key} runs yet (it plays once one does)", file=sys.stderr)
    if args.json:
        print(json.dumps(document, indent=2))
    return 0


def egress_command(argv: list[str]) -> int:
    """The cluster's egress proxy (kwokctl starts it with kube-apiserver; see :mod:`k8sim.local.egress`)."""
    parser = argparse.ArgumentParser(prog="k8sim egress", description=egress.__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True, type=Path, help="the Unix socket kube-apiserver dials")
    parser.add_argument("--kubeconfig", required=True, type=Path, help="how the proxy reads Services")
    args = parser.parse_args(argv)
    logging.basicConfig(level=ClusterSettings().log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        asyncio.run(egress.serve(args.socket, args.kubeconfig))
    except KeyboardInterrupt:
        pass
    return 0


def engine_clock(engine: str, patience: float = 30.0) -> sessions.Clock:
    """The engine's clock from two of its /health answers a tick or more apart (the step is measured, not
    assumed); httpx.HTTPError or ValueError when it cannot be read."""
    first = httpx.get(f"{engine}/health", timeout=10).json()
    deadline = time.monotonic() + patience
    while True:
        time.sleep(0.05)
        second = httpx.get(f"{engine}/health", timeout=10).json()
        if second["ticks"] > first["ticks"]:
            break
        if time.monotonic() > deadline:
            raise ValueError(f"the engine did not tick in {patience:g} s")
    at = [sessions.parse_time(h["simulated_time"], "the engine's simulated_time") for h in (first, second)]
    step = (at[1] - at[0]).total_seconds() / (second["ticks"] - first["ticks"])
    return sessions.Clock(at[1], round(step, 6), float(second["speed"]), second.get("seed"), second.get("model_noise"))


def engine_time(engine: str) -> dt.datetime:
    return sessions.parse_time(httpx.get(f"{engine}/health", timeout=10).json()["simulated_time"], "the clock")


def next_tick(engine: str) -> dt.datetime:
    """Wait for the engine's next tick (an input sent then lands at the start of a tick); its simulated time."""
    before = httpx.get(f"{engine}/health", timeout=10).json()["ticks"]
    while (now := httpx.get(f"{engine}/health", timeout=10).json())["ticks"] == before:
        time.sleep(0.02)
    return sessions.parse_time(now["simulated_time"], "the engine's simulated_time")


def replay_command(argv: list[str]) -> int:
    """``python -m k8sim replay``: play a recorded session into a running simulator, then compare its lifecycle
    transitions and SLA with the recording's. 0: they match; 1: they differ (each difference printed); 2: nothing
    was compared (an unreadable trace, one the cluster refuses, or an engine that cannot reproduce it)."""
    settings = TrafficSettings()
    parser = argparse.ArgumentParser(prog="k8sim replay", description="Replay a session (GET /sessions/export) "
                                     "and compare the replay's lifecycle and SLA with the recording's")
    parser.add_argument("file", help="the trace, or - for standard input")
    parser.add_argument("--speed", type=float, default=1.0, help="times faster than recorded (default 1)")
    parser.add_argument("--api", default=settings.api_url, help=f"the simulator's API (default {settings.api_url})")
    parser.add_argument("--engine", default="http://127.0.0.1:6381", help="its monitoring engine (its clock)")
    parser.add_argument("--tolerance", type=float, default=0.01,
                        help="SLA availability difference allowed, percentage points (default 0.01)")
    parser.add_argument("--max-wait", type=float, default=120.0,
                        help="wall seconds to wait for the engine's clock to reach the trace's start")
    parser.add_argument("--lead", type=float, default=30.0,
                        help="wall seconds the engine start it prints comes before the trace's (default 30)")
    parser.add_argument("--real-timers", action="store_true",
                        help="replay into a cluster whose timers do not keep pace with --speed (faults keep their "
                             "durations; what the cluster's controllers decide may differ)")
    parser.add_argument("--json", action="store_true", help="print the comparison and the replay's trace as JSON")
    args = parser.parse_args(argv)
    say = functools.partial(print, file=sys.stderr)
    if not args.speed > 0:
        say("k8sim replay: --speed must be above 0")
        return 2
    try:
        trace = sessions.check(json.loads(sys.stdin.read() if args.file == "-" else Path(args.file).read_text()))
    except (OSError, UnicodeDecodeError) as exc:
        say(f"k8sim replay: {exc}")
        return 2
    except json.JSONDecodeError as exc:
        say(f"k8sim replay: {args.file} is not JSON: {exc}")
        return 2
    except sessions.SessionError as exc:
        say(f"k8sim replay: {args.file}: {exc}")
        for problem in exc.problems:
            say(f"  {problem}")
        return 2
    engine = args.engine.rstrip("/")
    client = httpx.Client(base_url=args.api.rstrip("/"), timeout=60, headers={
        "Authorization": f"Bearer {settings.api_token.get_secret_value()}"} if settings.api_token else {})
    env = " ".join(f"{k}={v}" for k, v in sessions.required_settings(trace, args.speed, args.lead).items())
    cluster_env = " ".join(f"{k}={v}" for k, v in sessions.cluster_settings(trace, args.speed).items())
    try:
        answer = client.post("/sessions/check", json=trace)
        if answer.status_code != 200:
            say(f"k8sim replay: the simulator refuses the trace ({answer.status_code}): "
                f"{answer.json().get('message', answer.text)}")
            for problem in answer.json().get("errors") or []:
                say(f"  {problem.get('message', problem)}")
            return 2
        live_timers = answer.json().get("cluster_speed")
        clock = engine_clock(engine)
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        say(f"k8sim replay: {exc}; the replay needs a simulator whose engine runs with {env}")
        return 2
    timers, cluster_problems = sessions.cluster_timers(trace, args.speed, live_timers)
    if cluster_problems and not args.real_timers:
        say("k8sim replay: this cluster cannot keep the trace's pace: " + "; ".join(cluster_problems))
        say(f"k8sim replay: make its cluster with {cluster_env} (`make cluster-delete`, then `{cluster_env} make "
            "up`), or pass --real-timers to replay anyway")
        return 2
    if cluster_problems:
        say(f"k8sim replay: --real-timers: {cluster_problems[0]}")
    for fault in sessions.short_faults(trace, args.speed, timers):
        say(f"k8sim replay: warning: {fault}")
    ahead, problems = sessions.wait_for_start(trace, args.speed, clock, args.max_wait)
    if problems:
        say("k8sim replay: this simulator cannot reproduce the trace: " + "; ".join(problems))
        say(f"k8sim replay: start its engine (and API) with: {env}")
        return 2
    simulator = trace["simulator"]
    window = sessions.parse_time(trace["window"]["to"], "to") - sessions.parse_time(trace["window"]["from"], "from")
    simulated = (sessions.parse_time(simulator["simulated_to"], "simulated_to")
                 - sessions.parse_time(simulator["simulated_from"], "simulated_from"))
    say(f"k8sim replay: {len(trace['events'])} events over {window.total_seconds():g} s, at x{args.speed:g} "
        f"{window.total_seconds() / args.speed:.1f} s; waiting {ahead:.1f} s for the engine's clock")
    time.sleep(max(0.0, ahead - 2 * clock.step / clock.speed))
    start = sessions.parse_time(simulator["simulated_from"], "simulated_from")
    deadline = time.monotonic() + 4 * clock.step / clock.speed + 5
    while True:  # to the tick: the replay begins when the engine's last tick is the trace's start (whole weeks on)
        began_sim = engine_time(engine)
        if abs(((began_sim - start + sessions.WEEK / 2) % sessions.WEEK - sessions.WEEK / 2).total_seconds()) \
                < sessions.SAME_TICK:
            break
        if time.monotonic() > deadline:
            say(f"k8sim replay: the engine's clock went past the trace's start ({began_sim}); start it with: {env}")
            return 2
        time.sleep(clock.step / clock.speed / 20)
    began, began_wall = time.monotonic(), dt.datetime.now(dt.UTC)
    failed = 0
    for request in sessions.plan(trace, args.speed, timers):
        time.sleep(max(0.0, began + request.offset - time.monotonic()))
        try:
            answer = client.request(request.method, request.path, json=request.body)
            code = answer.status_code
            # Already there (a second run of a replay that stopped half-way): what it asked for holds.
            fine = code < 300 or (code == 409 and request.path == "/scenarios")
            detail = "" if fine else f": {answer.json().get('message', answer.text)}"
        except (httpx.HTTPError, ValueError) as exc:
            fine, code, detail = False, 0, f": {exc}"
        failed += not fine
        say(f"k8sim replay: [{time.monotonic() - began:7.1f} s] {request.what} ({code or 'no answer'}){detail}")
    span = sessions.replay_span(trace, args.speed, timers)
    if span > window.total_seconds() / args.speed:
        say(f"k8sim replay: reading transitions for {span:.1f} s: the faults the cluster plays run until then")
    time.sleep(max(0.0, began + span - time.monotonic()))
    ended_sim = began_sim + simulated
    while (engine_time(engine) - ended_sim).total_seconds() < -sessions.SAME_TICK:
        time.sleep(clock.step / clock.speed / 4)
    time.sleep(3.0)  # the operator's last observations reach the store
    try:
        replayed = client.get("/sessions/export", params={
            "from": sessions.stamp(began_wall), "to": sessions.stamp(began_wall + dt.timedelta(seconds=span)),
            "simulated_from": sessions.stamp(began_sim), "simulated_to": sessions.stamp(ended_sim)})
        replayed.raise_for_status()
        outcome = replayed.json()
    except (httpx.HTTPError, ValueError) as exc:
        say(f"k8sim replay: the replay's record could not be read: {exc}")
        return 2
    expected, actual = trace["expected"], outcome["expected"]
    differences = sessions.diff_transitions(expected["transitions"], actual["transitions"])
    if expected.get("sla") and actual.get("sla"):
        differences += sessions.diff_sla(expected["sla"], actual["sla"], args.tolerance)
        gap = abs(expected["sla"]["availability"] - actual["sla"]["availability"])
        say(f"k8sim replay: SLA recorded {expected['sla']['availability']:.6f} %, replayed "
            f"{actual['sla']['availability']:.6f} % ({gap:.6f} points apart); requests "
            f"{expected['sla']['total']:.0f} recorded, {actual['sla']['total']:.0f} replayed")
    elif expected.get("sla") or actual.get("sla"):
        differences.append("SLA: only one of the recording and the replay has samples")
    if failed:
        differences.append(f"{failed} request(s) of the replay failed (above)")
    steps = sum(len(v) for v in expected["transitions"].values())
    for line in differences:
        say(f"  {line}")
    say(f"k8sim replay: {len(expected['transitions'])} objects, {steps} transitions: "
        + ("the replay matches" if not differences else f"{len(differences)} difference(s)"))
    if args.json:
        print(json.dumps({"match": not differences, "differences": differences, "replay": outcome}, indent=2))
    return 1 if differences else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["import"]:
        return import_command(argv[1:])
    if argv[:1] == ["traffic"]:
        return traffic_command(argv[1:])
    if argv[:1] == ["replay"]:
        return replay_command(argv[1:])
    if argv[:1] == ["egress"]:
        return egress_command(argv[1:])
    parser = argparse.ArgumentParser(prog="k8sim", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=sorted([*COMMANDS, "import", "traffic", "replay"]))
    args = parser.parse_args(argv)
    settings = ClusterSettings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        COMMANDS[args.command](settings)
    except (ClusterError, TopologyError) as exc:
        print(f"k8sim: {exc}", file=sys.stderr)
        return 1
    return 0

