"""Recorded sessions (GET /sessions/export, ``python -m k8sim replay``): the trace format, what counts as an input,
how a trace is checked and played, and how a replay's lifecycle and SLA are compared with the recording's.

Pure: the API reads the rows and writes the trace; the command line sends the requests and reads the replay back.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from k8sim import scenarios

FORMAT = "k8sim-session/v1"
#: The model's daily cycle repeats weekly (weekends differ): a replay on a clock whole weeks away sees the same
#: cycle, so it can run beside the recording in one store without their samples meeting.
WEEK = dt.timedelta(days=7)
#: Event types a trace may hold, and the request each one replays as.
EVENT_TYPES = ("deploy", "import", "delete", "tenant_delete", "load", "load_clear", "traffic", "traffic_clear",
               "scenario", "scenario_delete")


class SessionError(ValueError):
    """A trace that cannot be replayed; ``problems`` names each thing wrong."""

    def __init__(self, message: str, problems: Sequence[str] = ()):
        super().__init__(message)
        self.problems = list(problems) or [message]


def parse_time(value: Any, what: str) -> dt.datetime:
    """An RFC 3339 time (``Z`` or an offset; a time without one is refused as ambiguous)."""
    if not isinstance(value, str):
        raise SessionError(f"{what} must be an RFC 3339 time, not {value!r}")
    try:
        when = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise SessionError(f"{what} is not an RFC 3339 time: {value!r}") from None
    if when.tzinfo is None:
        raise SessionError(f"{what} has no time zone (add Z or an offset): {value!r}")
    return when.astimezone(dt.UTC)


def stamp(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------- inputs the API accepted


def accepted_input(method: str, path: str, query: Mapping[str, str], body: Any) -> tuple[str, dict[str, Any]] | None:
    """(event type, payload) of a request the API answered with success, when it is an input a session replays
    that no other table keeps (deploys are in ``deployments``); None for everything else."""
    body = body if isinstance(body, dict) else {}
    if path == "/cluster/import":  # a dry run changed nothing
        return ("import", body) if method == "POST" and not body.get("dry_run") else None
    if path == "/monitoring/load":
        return ("load", body) if method == "POST" else ("load_clear", {}) if method == "DELETE" else None
    if path == "/monitoring/traffic":
        return ("traffic", body) if method == "POST" else ("traffic_clear", {}) if method == "DELETE" else None
    if path == "/scenarios":
        return ("scenario", body) if method == "POST" else None
    if method != "DELETE":
        return None
    if path.startswith("/scenarios/"):
        segments = path.removeprefix("/scenarios/").split("/")
        return ("scenario_delete", {"namespace": segments[0], "name": segments[1]}) if len(segments) == 2 else None
    if not path.startswith("/k8s/resources/"):
        return None
    segments = path.removeprefix("/k8s/resources/").split("/")
    if len(segments) == 2 and segments[0] == "tenant":
        return "tenant_delete", {"tenant_id": segments[1]}
    if len(segments) == 3:  # ECP-AI's form; an empty namespace for a cluster-scoped object
        return "delete", {"namespace": segments[0], "kind": segments[1], "name": segments[2]}
    if len(segments) == 1 and segments[0]:  # the guide's form, the rest in the query
        return "delete", {"namespace": query.get("namespace", "default"), "kind": query.get("kind", "Pod"),
                          "name": segments[0]}
    return None


@dataclasses.dataclass(frozen=True)
class Deploy:
    """A deploy request as the ``deployments`` table keeps it."""

    id: str
    created_at: dt.datetime
    manifest: str
    tenant: str | None
    namespace: str | None
    mode: str | None
    status: str
    #: (kind, namespace, name) of every object it applied
    objects: tuple[tuple[str, str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Input:
    """One row of ``session_inputs``."""

    accepted_at: dt.datetime
    kind: str
    body: dict[str, Any]
    #: The namespaces an import's objects are in (the API reads them from its manifest)
    namespaces: tuple[str, ...] = ()


def scope(deploys: Iterable[Deploy], inputs: Iterable[Input]) -> tuple[list[str], list[str]]:
    """(namespaces, tenants) a session touched: what its lifecycle and SLA are read for (a shared simulator runs
    other people's workloads too)."""
    namespaces: set[str] = set()
    tenants: set[str] = set()
    for d in deploys:
        tenants.update([d.tenant] if d.tenant else [])
        namespaces.update([d.namespace] if d.namespace else [])
        namespaces.update(name if kind == "Namespace" else ns for kind, ns, name in d.objects)
    for i in inputs:
        body = i.body
        if i.kind == "load":
            namespaces.update([body["namespace"]] if body.get("namespace") else [])
            tenants.update([body["tenant_id"]] if body.get("tenant_id") else [])
        elif i.kind == "scenario":
            meta, target = body.get("metadata") or {}, (body.get("spec") or {}).get("target") or {}
            namespaces.update(n for n in (meta.get("namespace"), target.get("namespace")) if isinstance(n, str) and n)
            tenants.update([target["tenant"]] if isinstance(target.get("tenant"), str) else [])
        elif i.kind in ("delete", "scenario_delete"):
            namespaces.update([body["namespace"]] if body.get("namespace") else [])
            if body.get("kind") == "Namespace":
                namespaces.add(body["name"])
        elif i.kind == "tenant_delete":
            tenants.add(body["tenant_id"])
        namespaces.update(i.namespaces)
    namespaces.discard("")
    return sorted(namespaces), sorted(tenants)


def events(start: dt.datetime, deploys: Iterable[Deploy], inputs: Iterable[Input]) -> list[dict[str, Any]]:
    """The session's inputs in the order they were accepted, each with its offset (wall seconds from ``start``)."""
    found: list[tuple[dt.datetime, int, dict[str, Any]]] = []
    for d in deploys:
        creates_namespace = bool(d.namespace) and ("Namespace", "", d.namespace) in d.objects
        found.append((d.created_at, 0, {"type": "deploy", "manifest": d.manifest, "tenant_id": d.tenant,
                                        "deployment_mode": d.mode, "namespace": d.namespace,
                                        "create_namespace": creates_namespace, "deployment_id": d.id,
                                        "status": d.status}))
    for n, i in enumerate(inputs, 1):
        found.append((i.accepted_at, n, {"type": i.kind, **({"body": i.body} if i.body else {})}))
    found.sort(key=lambda e: (e[0], e[1]))
    return [{"offset": round((at - start).total_seconds(), 3), "at": stamp(at), **event} for at, _, event in found]


# --------------------------------------------------------------------------- lifecycle transitions


@dataclasses.dataclass(frozen=True)
class Step:
    """One recorded transition with what its object's row says of its owner."""

    kind: str
    namespace: str
    name: str
    transition: str
    detail: Mapping[str, Any]
    uid: str
    owner_kind: str | None = None
    owner_name: str | None = None


_TEMPLATE_HASH = re.compile(r"-[a-z0-9]{5,10}$")


def _base(step: Step) -> str | None:
    """The name an object's controller gave it without its generated part (a ReplicaSet's template hash, a pod's
    random suffix); None for an object named by its manifest."""
    owner = step.owner_name
    if not owner or not step.name.startswith(owner + "-"):
        return None
    return _TEMPLATE_HASH.sub("", owner) if step.owner_kind == "ReplicaSet" else owner


def label(step: Step) -> str:
    """A transition as compared: its name, with what a scaling decision or a reason change was."""
    detail = step.detail
    if step.transition == "scaled":
        return f"scaled {detail.get('from')}->{detail.get('to')}"
    if step.transition == "reason" and detail.get("reason"):
        return f"reason {detail['reason']}"
    return step.transition


def transitions(steps: Iterable[Step]) -> dict[str, list[str]]:
    """``namespace/Kind/name`` → its ordered transitions. Objects a controller named (pods, ReplicaSets) differ in
    name between runs: they are ``namespace/Kind/<base>-*#i``, siblings numbered in the order of their sequences
    (which replica a Scenario hits is not part of the session). A transition repeated at once is kept once."""
    named: dict[str, list[str]] = {}
    generated: dict[str, dict[str, list[str]]] = {}

    def add(sequence: list[str], step: Step) -> None:
        # The same transition again at once counts once: how many writes a controller batches its changes into
        # (the endpoints controller's "updated" as two pods go) is its timing, not the session's.
        if not sequence or sequence[-1] != label(step):
            sequence.append(label(step))
    for step in steps:
        if step.transition == "event":
            continue
        base = _base(step)
        if base is None:
            add(named.setdefault(f"{step.namespace}/{step.kind}/{step.name}", []), step)
        else:
            add(generated.setdefault(f"{step.namespace}/{step.kind}/{base}-*", {}).setdefault(step.uid, []), step)
    for base, members in generated.items():
        for i, sequence in enumerate(sorted(members.values()), 1):
            named[f"{base}#{i}"] = sequence
    return dict(sorted(named.items()))


def diff_transitions(expected: Mapping[str, Sequence[str]], actual: Mapping[str, Sequence[str]]) -> list[str]:
    """What differs, one line per object: missing, unexpected, or where its sequence parts."""
    lines = []
    for key in sorted(set(expected) | set(actual)):
        want, got = list(expected.get(key, [])), list(actual.get(key, []))
        if key not in actual:
            lines.append(f"missing {key}: expected {' > '.join(want)}")
        elif key not in expected:
            lines.append(f"unexpected {key}: {' > '.join(got)}")
        elif want != got:
            at = next((i for i, (a, b) in enumerate(zip(want, got, strict=False)) if a != b), min(len(want), len(got)))
            lines.append(f"{key}: from step {at + 1} expected {' > '.join(want[at:]) or '(nothing)'}, "
                         f"got {' > '.join(got[at:]) or '(nothing)'}")
    return lines


# --------------------------------------------------------------------------- SLA


def sla_summary(rows: Iterable[tuple[str, float, float, int]]) -> dict[str, Any]:
    """The SLA of a session's services from (service, good, total, samples) sums: over them all and per service."""
    services = {}
    good = total = 0.0
    samples = 0
    for key, g, t, n in sorted(rows):
        services[key] = {"availability": availability(g, t), "good": round(g, 3), "total": round(t, 3),
                         "samples": n}
        good, total, samples = good + g, total + t, samples + n
    return {"availability": availability(good, total), "good": round(good, 3), "total": round(total, 3),
            "samples": samples, "services": services}


def availability(good: float, total: float) -> float:
    """Percent of good requests (100 when none were asked), to a millionth of a percent."""
    return 100.0 if total <= 0 else round(100.0 * good / total, 6)


def diff_sla(expected: Mapping[str, Any], actual: Mapping[str, Any], tolerance: float) -> list[str]:
    """Availability (overall and per service) further apart than ``tolerance`` percentage points."""
    lines = []
    pairs = [("overall", expected, actual)] + [
        (key, (expected.get("services") or {}).get(key, {}), (actual.get("services") or {}).get(key, {}))
        for key in sorted(set(expected.get("services") or {}) | set(actual.get("services") or {}))]
    for name, want, got in pairs:
        if not want or not got:
            lines.append(f"SLA {name}: {'no samples in the replay' if want else 'not in the recording'}")
            continue
        gap = abs(float(want["availability"]) - float(got["availability"]))
        if gap > tolerance:
            lines.append(f"SLA {name}: expected {want['availability']:.6f} %, got {got['availability']:.6f} % "
                         f"({gap:.6f} points apart, tolerance {tolerance:g})")
    return lines


# --------------------------------------------------------------------------- checking a trace


def check(trace: Any) -> dict[str, Any]:
    """The trace if it is one this version plays; else SessionError naming every problem found."""
    if not isinstance(trace, dict):
        raise SessionError("a trace is a JSON object")
    found = trace.get("format")
    if found != FORMAT:
        raise SessionError(f"trace format {found!r} is not {FORMAT!r} (this simulator replays {FORMAT} only)")
    problems = []
    window = trace.get("window")
    if not isinstance(window, dict):
        problems.append("window: missing")
    else:
        try:
            if parse_time(window.get("from"), "window.from") >= parse_time(window.get("to"), "window.to"):
                problems.append("window: from is not before to")
        except SessionError as exc:
            problems.append(str(exc))
    simulator = trace.get("simulator")
    if not isinstance(simulator, dict):
        problems.append("simulator: missing")
    else:
        for key in ("seed", "speed"):
            if not isinstance(simulator.get(key), int | float) or isinstance(simulator.get(key), bool):
                problems.append(f"simulator.{key}: a number is needed, not {simulator.get(key)!r}")
        found_speed = simulator.get("cluster_speed")
        if found_speed is not None and (not isinstance(found_speed, int | float) or isinstance(found_speed, bool)
                                        or not found_speed > 0 or not math.isfinite(found_speed)):
            problems.append(f"simulator.cluster_speed: a number above 0 or null is needed, not {found_speed!r}")
    listed = trace.get("events")
    if not isinstance(listed, list):
        problems.append("events: a list is needed")
        listed = []
    last = 0.0
    for n, event in enumerate(listed):
        where = f"events[{n}]"
        if not isinstance(event, dict):
            problems.append(f"{where}: an object is needed")
            continue
        offset = event.get("offset")
        if not isinstance(offset, int | float) or isinstance(offset, bool) or not math.isfinite(offset):
            problems.append(f"{where}.offset: a number is needed, not {offset!r}")
        elif offset < last:
            problems.append(f"{where}.offset: {offset} comes before the previous event's {last}")
        else:
            last = float(offset)
        kind = event.get("type")
        if kind not in EVENT_TYPES:
            problems.append(f"{where}.type: {kind!r} is not one of {', '.join(EVENT_TYPES)}")
        elif kind == "deploy" and not isinstance(event.get("manifest"), str):
            problems.append(f"{where}.manifest: the deploy's manifest text is missing")
        elif kind in ("import", "delete", "tenant_delete", "load", "traffic", "scenario", "scenario_delete") \
                and not isinstance(event.get("body"), dict):
            problems.append(f"{where}.body: a {kind} needs its body")
    expected = trace.get("expected")
    if not isinstance(expected, dict) or not isinstance(expected.get("transitions"), dict):
        problems.append("expected.transitions: missing")
    if problems:
        raise SessionError(f"{len(problems)} problem(s) in the trace: " + "; ".join(problems[:5]), problems)
    return trace


# --------------------------------------------------------------------------- replaying


@dataclasses.dataclass(frozen=True)
class Request:
    """One API call of a replay, ``offset`` wall seconds after it begins."""

    offset: float
    method: str
    path: str
    body: dict[str, Any] | None
    what: str


def _duration(seconds: float) -> str:
    return f"{max(seconds, 0.001):.3f}".rstrip("0").rstrip(".") + "s"


#: Scenario parameters that are wall seconds the cluster plays (a crash's run before it, a spot instance's notice).
CLUSTER_SECONDS = ("after", "notice")


def compress_scenario(body: Mapping[str, Any], at: dt.datetime, speed: float, timers: float = 1.0) -> dict[str, Any]:
    """A Scenario replayed ``speed`` times faster: when it starts and repeats comes ``speed`` times sooner (an absolute
    start, past by the replay, made relative to when it was created). A model Scenario's duration is on the engine's
    clock and shrinks too. A fault the cluster plays (a crash, a node down) shrinks as the cluster's timers do:
    ``timers`` is how many times faster the replaying cluster's run than the recording's (1: the same pace, the
    fault keeps its duration and delays, since a shorter fault against the same restart back-off and recovery would
    be another fault)."""
    spec = dict(body.get("spec") or {})
    if isinstance(spec.get("duration"), str):
        pace = speed if spec.get("type") in scenarios.MODEL_TYPES else timers
        spec["duration"] = _duration(scenarios.parse_duration(spec["duration"]) / pace)
    if timers != 1 and isinstance(spec.get("parameters"), dict):
        spec["parameters"] = {k: (round(v / timers, 3) if k in CLUSTER_SECONDS and isinstance(v, int | float)
                                  and not isinstance(v, bool) else v) for k, v in spec["parameters"].items()}
    start = spec.get("start")
    if isinstance(start, str):
        if start.strip().startswith("+"):
            spec["start"] = "+" + _duration(scenarios.parse_duration(start.strip()[1:]) / speed)
        else:
            ahead = (parse_time(start, "spec.start") - at).total_seconds()
            spec.pop("start")
            if ahead > 0:
                spec["start"] = "+" + _duration(ahead / speed)
    if isinstance(spec.get("repeat"), dict):
        repeat = dict(spec["repeat"])
        for key in ("every", "jitter"):
            if isinstance(repeat.get(key), str):
                repeat[key] = _duration(scenarios.parse_duration(repeat[key]) / speed)
        spec["repeat"] = repeat
    return {**body, "spec": spec}


def plan(trace: Mapping[str, Any], speed: float, timers: float = 1.0) -> list[Request]:
    """The API calls that replay a (checked) trace ``speed`` times faster than it was recorded, into a cluster whose
    timers run ``timers`` times faster than the recording's (:func:`compress_scenario`)."""
    found = []
    for event in trace["events"]:
        offset, kind, body = float(event["offset"]) / speed, event["type"], event.get("body") or {}
        if kind == "deploy":
            request = {"manifest": event["manifest"], "tenant_id": event.get("tenant_id"),
                       "deployment_mode": event.get("deployment_mode"), "namespace": event.get("namespace"),
                       "create_namespace": bool(event.get("create_namespace")), "wait": False}
            found.append(Request(offset, "POST", "/k8s/manifest/deploy",
                                 {k: v for k, v in request.items() if v is not None},
                                 f"deploy {event.get('namespace') or event.get('tenant_id') or ''}".rstrip()))
        elif kind == "import":
            found.append(Request(offset, "POST", "/cluster/import", dict(body), "import"))
        elif kind == "delete":
            path = "/".join(quote(str(body.get(k, "")), safe="") for k in ("namespace", "kind", "name"))
            found.append(Request(offset, "DELETE", f"/k8s/resources/{path}", None, f"delete {path}"))
        elif kind == "tenant_delete":
            tenant = quote(str(body.get("tenant_id", "")), safe="")
            found.append(Request(offset, "DELETE", f"/k8s/resources/tenant/{tenant}", None,
                                 f"delete tenant {body.get('tenant_id')}"))
        elif kind == "load":
            compressed = {**body}
            if isinstance(body.get("duration_seconds"), int | float):
                compressed["duration_seconds"] = max(0.001, round(body["duration_seconds"] / speed, 3))
            found.append(Request(offset, "POST", "/monitoring/load", compressed, f"load x{body.get('factor')}"))
        elif kind == "load_clear":
            found.append(Request(offset, "DELETE", "/monitoring/load", None, "load cleared"))
        elif kind == "traffic":
            # Traffic plays on the engine's simulated clock, which a replay at the same step per tick keeps.
            found.append(Request(offset, "POST", "/monitoring/traffic", dict(body), "traffic replay"))
        elif kind == "traffic_clear":
            found.append(Request(offset, "DELETE", "/monitoring/traffic", None, "traffic cleared"))
        elif kind == "scenario":
            at = parse_time(event.get("at"), "event.at") if event.get("at") else dt.datetime.now(dt.UTC)
            meta = body.get("metadata") or {}
            found.append(Request(offset, "POST", "/scenarios", compress_scenario(body, at, speed, timers),
                                 f"scenario {meta.get('namespace')}/{meta.get('name')} "
                                 f"{(body.get('spec') or {}).get('type')}"))
        elif kind == "scenario_delete":
            path = "/".join(quote(str(body.get(k, "")), safe="") for k in ("namespace", "name"))
            found.append(Request(offset, "DELETE", f"/scenarios/{path}", None, f"scenario {path} deleted"))
    return found


#: Wall seconds under which a fault the cluster plays is shorter than its own reactions (the operator labelling the
#: pods, KWOK's watch and stage queue): compressed that far, it may not be played at all.
SHORTEST_FAULT = 1.0


def _cluster_faults(trace: Mapping[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any], float]]:
    """(event, its Scenario's body, seconds it lasts) of each timed fault the cluster plays (not a model Scenario)."""
    for event in trace["events"]:
        body = event.get("body") or {}
        spec = body.get("spec") or {}
        if event["type"] == "scenario" and spec.get("type") not in scenarios.MODEL_TYPES \
                and isinstance(spec.get("duration"), str):
            yield event, body, scenarios.parse_duration(spec["duration"])


def short_faults(trace: Mapping[str, Any], speed: float, timers: float = 1.0) -> list[str]:
    """The faults the cluster plays that a replay ``speed`` times faster into a cluster ``timers`` times as fast
    compresses under :data:`SHORTEST_FAULT`, each named with the highest speed that keeps it."""
    found = []
    for _, body, seconds in _cluster_faults(trace):
        if seconds / timers < SHORTEST_FAULT:
            meta = body.get("metadata") or {}
            found.append(f"{body['spec'].get('type')} {meta.get('namespace')}/{meta.get('name')} lasts {seconds:g} s, "
                         f"{seconds / timers:.2g} s replayed: under {SHORTEST_FAULT:g} s the cluster may not play "
                         f"it (at most x{max(1.0, seconds / SHORTEST_FAULT):g} keeps it)")
    return found


#: Wall seconds the cluster may take to give back what a fault hit once it ends (KWOK's recovery stage waits up to
#: four seconds, the operator's watch adds its own).
RECOVERY_SECONDS = 10.0


def replay_span(trace: Mapping[str, Any], speed: float, timers: float = 1.0) -> float:
    """Wall seconds a replay's transitions are read over: the compressed window, or longer while a fault the cluster
    plays (which keeps its real duration unless the cluster's timers run faster) is still running or recovering."""
    window = (parse_time(trace["window"]["to"], "window.to")
              - parse_time(trace["window"]["from"], "window.from")).total_seconds()
    span = window / speed
    for event, _, seconds in _cluster_faults(trace):
        span = max(span, float(event["offset"]) / speed + (seconds + RECOVERY_SECONDS) / timers)
    return span


# --------------------------------------------------------------------------- the replaying simulator's settings


@dataclasses.dataclass(frozen=True)
class Clock:
    """What a running engine says of its clock (its /health): the simulated time of its last tick, simulated seconds
    per tick (measured between two ticks), its speed, and its seed and noise when it reports them."""

    simulated: dt.datetime
    step: float
    speed: float
    seed: int | None = None
    model_noise: bool | None = None


#: How far apart two simulated times may be and still be the same tick (float rounding of the engine's clock).
SAME_TICK = 0.001


def _exact(value: float) -> str:
    """A number as the shortest text that reads back as the same float (``5``, ``0.2``, ``0.3333333333333333``)."""
    return str(int(value)) if value.is_integer() else repr(value)


def cluster_settings(trace: Mapping[str, Any], speed: float) -> dict[str, str]:
    """The cluster setting that replays ``trace`` ``speed`` times faster with the cluster's own timers (the HPA's
    sync and stabilisation, KWOK's pod delays) keeping pace: ``speed`` times those of the recording's cluster. Empty
    when the trace does not say how fast the recording's ran (a cluster the local tooling did not make)."""
    recorded = trace["simulator"].get("cluster_speed")
    return {} if recorded is None else {"K8SIM_CLUSTER_SPEED": _exact(float(recorded) * speed)}


def cluster_timers(trace: Mapping[str, Any], speed: float, live: float | None) -> tuple[float, list[str]]:
    """(how many times faster the replaying cluster's timers run than the recording's, the problem when that is not
    ``speed``). Either speed unknown: the same pace is assumed, and nothing said."""
    recorded = trace["simulator"].get("cluster_speed")
    if recorded is None or live is None:
        return 1.0, []
    ratio = live / float(recorded)
    if math.isclose(ratio, speed, rel_tol=1e-6):
        return ratio, []
    return ratio, [f"the cluster's timers run at speed {live:g}, the replay needs {float(recorded) * speed:g} "
                   f"({speed:g} times the recording's {float(recorded):g}): HPA syncs, stabilisation and pod "
                   "start-up would fall elsewhere on the replay's ticks"]


def required_settings(trace: Mapping[str, Any], speed: float, lead_seconds: float = 30.0) -> dict[str, str]:
    """The engine settings (environment variables) that replay ``trace`` ``speed`` times faster with the same model
    samples: the same seed and noise, the same simulated seconds per tick (``speed`` times the speed, ticks ``speed``
    times shorter), and a clock that starts ``lead_seconds`` (wall) before the trace's simulated start, on its tick
    grid."""
    sim = trace["simulator"]
    # Full precision (repr): a rounded tick makes the engine step a hair off the trace's, and the check refuses it.
    env = {"K8SIM_SEED": str(sim["seed"]), "K8SIM_SPEED": _exact(float(sim["speed"]) * speed)}
    step = sim.get("step_seconds")
    if step:
        tick = float(step) / (float(sim["speed"]) * speed)
        env["K8SIM_TICK_SECONDS"] = _exact(tick)
        if sim.get("simulated_from"):
            ticks = math.ceil(lead_seconds / tick)
            begin = parse_time(sim["simulated_from"], "simulator.simulated_from") - dt.timedelta(seconds=ticks * step)
            env["K8SIM_SIM_START"] = stamp(begin)
    if sim.get("model_noise") is not None:
        env["K8SIM_MODEL_NOISE"] = "true" if sim["model_noise"] else "false"
    if sim.get("profile"):
        env["K8SIM_PROFILE"] = str(sim["profile"])
    return env


def wait_for_start(trace: Mapping[str, Any], speed: float, clock: Clock, max_wait: float) -> tuple[float, list[str]]:
    """(wall seconds until the engine's clock reaches the trace's simulated start, modulo whole weeks; the
    problems that keep this engine from reproducing the trace). A replay begins once the engine's last tick is
    the trace's start."""
    sim = trace["simulator"]
    problems = []
    want_speed = float(sim["speed"]) * speed
    if not math.isclose(clock.speed, want_speed, rel_tol=1e-9):
        problems.append(f"the engine runs at speed {clock.speed:g}, the replay needs {want_speed:g}")
    step = sim.get("step_seconds")
    if not step:
        problems.append("the trace has no simulated step (no SLA samples were recorded in its window)")
    elif not math.isclose(clock.step, float(step), rel_tol=1e-6):
        problems.append(f"the engine advances {clock.step:g} simulated s per tick, the trace {float(step):g}")
    if clock.seed is not None and clock.seed != sim["seed"]:
        problems.append(f"the engine's seed is {clock.seed}, the trace's {sim['seed']}")
    if clock.model_noise is not None and sim.get("model_noise") is not None and clock.model_noise != sim["model_noise"]:
        problems.append(f"the engine's model noise is {clock.model_noise}, the trace's {sim['model_noise']}")
    if not sim.get("simulated_from"):
        problems.append("the trace has no simulated start")
    if problems or not step:
        return 0.0, problems
    start = parse_time(sim["simulated_from"], "simulator.simulated_from")
    ahead = ((start - clock.simulated) % WEEK).total_seconds()
    if ahead > WEEK.total_seconds() - SAME_TICK:
        ahead = 0.0
    off_grid = ahead % float(step)
    if min(off_grid, float(step) - off_grid) > SAME_TICK:
        problems.append(f"the engine's ticks fall {off_grid:g} simulated s off the trace's (its clock started "
                        "elsewhere than the trace's start, in whole ticks)")
    wall = ahead / clock.speed
    if wall > max_wait:
        problems.append(f"the engine's clock ({stamp(clock.simulated)}) reaches the trace's simulated start "
                        f"({stamp(start)}, or that time whole weeks later) only in {wall:.0f} s")
    return wall, problems
