"""GET /sessions/export (a window of the simulator's life as one versioned trace), POST /sessions/check (would
a trace replay here), and the middleware that records the inputs no other table keeps.

The queries are here rather than in k8sim.store: they read the store's tables for this one document only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, overload
from urllib.parse import parse_qsl

import asyncpg
import orjson
from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from k8sim import importer, scenarios, sessions, topology
from k8sim.manifests import Limits, ManifestError
from k8sim_api.deps import BroadcasterDep, KubeDep, PoolDep, SettingsDep
from k8sim_api.errors import error
from k8sim_api.routes.imports import import_limits
from k8sim_api.routes.manifests import checked
from k8sim_api.schemas import (
    ErrorResponse,
    ImportRequest,
    LoadRequest,
    ScenarioRequest,
    SessionCheck,
    SessionTrace,
    TrafficRequest,
)

log = logging.getLogger(__name__)
router = APIRouter(prefix="/sessions", tags=["sessions"])

#: The longest window one export covers.
MAX_WINDOW = dt.timedelta(days=7)
#: Sample times read to find the engine's step and tick grid (a few are enough).
GRID_SAMPLES = 2000
INVALID: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorResponse, "description": "A time that is not RFC 3339, or from not before to (named)"}}
REFUSED: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorResponse, "description": "Not JSON, another trace format, a malformed event, or objects "
                                                 "the cluster refuses (each problem named in `errors`)"}}


class Refused(Exception):
    """A request parameter or trace that cannot be used, with each problem."""

    def __init__(self, message: str, problems: Sequence[dict[str, Any]] = ()):
        super().__init__(message)
        self.problems = list(problems)

    def response(self) -> JSONResponse:
        return error(422, str(self), errors=self.problems)


@overload
def _when(value: str, name: str) -> dt.datetime: ...


@overload
def _when(value: None, name: str) -> None: ...


@overload
def _when(value: str | None, name: str) -> dt.datetime | None: ...


def _when(value: str | None, name: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return sessions.parse_time(value, name)
    except sessions.SessionError as exc:
        raise Refused(str(exc), [{"field": name, "message": str(exc)}]) from None


@router.get("/export", response_model=SessionTrace, responses=INVALID,
            summary="A window of the simulator's life as one versioned trace (k8sim-session/v1)")
async def export(pool: PoolDep, settings: SettingsDep, broadcaster: BroadcasterDep, kube: KubeDep,
                 start: Annotated[str, Query(alias="from", max_length=64, description="RFC 3339 (wall clock)",
                                             examples=["2026-12-07T10:00:00Z"])],
                 end: Annotated[str, Query(alias="to", max_length=64, description="RFC 3339 (wall clock)",
                                           examples=["2026-12-07T10:10:00Z"])],
                 simulated_from: Annotated[str | None, Query(max_length=64, description=(
                     "The engine's simulated time at `from`, when known (a replay knows it); default: worked out "
                     "from the engine's latest snapshot and speed"))] = None,
                 simulated_to: Annotated[str | None, Query(max_length=64, description=(
                     "The engine's simulated time at `to`; default: `simulated_from` plus the window at the speed"))]
                 = None) -> SessionTrace | JSONResponse:
    """The deploys, deletions, load overrides, traffic replays and Scenarios accepted in the window with their
    offsets; the settings that determine the model (seed, speed, simulated seconds per tick, simulated time at
    `from`); and what they came to: every lifecycle transition of the session's namespaces (HPA and workload
    scaling included) and the SLA of their services over the window's simulated time."""
    try:
        since, until = _when(start, "from"), _when(end, "to")
        sim_from, sim_to = _when(simulated_from, "simulated_from"), _when(simulated_to, "simulated_to")
        if since >= until:
            raise Refused("from must be before to", [{"field": "from", "message": f"{start} is not before {end}"}])
        if until - since > MAX_WINDOW:
            raise Refused(f"a window is at most {MAX_WINDOW.days} days",
                          [{"field": "to", "message": f"{end} is more than {MAX_WINDOW.days} days after {start}"}])
        if sim_from is not None and sim_to is not None and sim_from >= sim_to:
            raise Refused("simulated_from must be before simulated_to", [{"field": "simulated_from",
                                                                           "message": "not before simulated_to"}])
    except Refused as exc:
        return exc.response()
    update = await broadcaster.snapshot()
    anchor = None if update is None else _snapshot_time(update.payload)
    async with pool.acquire() as conn:
        deploys, inputs = await _deploys(conn, since, until), await _inputs(conn, since, until,
                                                                             import_limits(settings))
        namespaces, tenants = sessions.scope(deploys, inputs)
        steps = await _steps(conn, since, until, namespaces)
        speed = settings.speed
        now = dt.datetime.now(dt.UTC)
        if sim_from is None and anchor is not None:
            sim_from = anchor - dt.timedelta(seconds=(now - since).total_seconds() * speed)
        if sim_to is None and sim_from is not None:
            sim_to = sim_from + dt.timedelta(seconds=(until - since).total_seconds() * speed)
        step = None
        if sim_from is not None and sim_to is not None:
            step, sim_from, sim_to = await _grid(conn, sim_from, sim_to, namespaces, tenants, exact=simulated_from
                                                 is not None)
        sla = None
        if sim_from is not None and sim_to is not None and (namespaces or tenants):
            sla = sessions.sla_summary(await _sla(conn, sim_from, sim_to, namespaces, tenants))
    trace = {
        "format": sessions.FORMAT,
        "exported_at": sessions.stamp(dt.datetime.now(dt.UTC)),
        "window": {"from": sessions.stamp(since), "to": sessions.stamp(until)},
        "simulator": {"seed": settings.seed, "speed": speed, "step_seconds": step,
                      "tick_seconds": round(step / speed, 9) if step else None,
                      "simulated_from": sessions.stamp(sim_from) if sim_from else None,
                      "simulated_to": sessions.stamp(sim_to) if sim_to else None,
                      # The engine does not report its noise setting: a replay cannot check it (docs/sessions.md).
                      "model_noise": None, "profile": settings.profile, "background": settings.background,
                      "cluster_speed": await topology.cluster_speed(kube)},
        "scope": {"namespaces": namespaces, "tenants": tenants},
        "events": sessions.events(since, deploys, inputs),
        "expected": {"transitions": sessions.transitions(steps), "sla": sla},
    }
    return SessionTrace.model_validate(trace)


def _snapshot_time(document: dict[str, Any]) -> dt.datetime | None:
    try:
        return sessions.parse_time(document.get("timestamp"), "the snapshot's timestamp")
    except sessions.SessionError:
        return None


async def _deploys(conn: asyncpg.Connection, since: dt.datetime, until: dt.datetime) -> list[sessions.Deploy]:
    found = await conn.fetch("SELECT id, created_at, manifest, tenant, namespace, mode, status FROM deployments "
                             "WHERE created_at >= $1 AND created_at <= $2 ORDER BY created_at", since, until)
    objects: dict[uuid.UUID, list[tuple[str, str, str]]] = {}
    if found:
        for row in await conn.fetch("SELECT deployment_id, kind, namespace, name FROM deployment_objects "
                                    "WHERE deployment_id = ANY($1::uuid[])", [r["id"] for r in found]):
            objects.setdefault(row["deployment_id"], []).append((row["kind"], row["namespace"], row["name"]))
    return [sessions.Deploy(str(r["id"]), r["created_at"], r["manifest"], r["tenant"], r["namespace"], r["mode"],
                            r["status"], tuple(sorted(objects.get(r["id"], [])))) for r in found]


async def _inputs(conn: asyncpg.Connection, since: dt.datetime, until: dt.datetime,
                  limits: Limits) -> list[sessions.Input]:
    found = await conn.fetch("SELECT accepted_at, kind, body FROM session_inputs WHERE accepted_at >= $1 "
                             "AND accepted_at <= $2 ORDER BY accepted_at, id", since, until)
    return [sessions.Input(r["accepted_at"], r["kind"], r["body"],
                           await asyncio.to_thread(_imported_namespaces, r["body"], limits) if r["kind"] == "import"
                           else ()) for r in found]


def _imported_namespaces(body: dict[str, Any], limits: Limits) -> tuple[str, ...]:
    """The namespaces of an import's objects (its Namespaces included): a session's scope. An export the API took
    once reads again; one that no longer does (other limits) adds none."""
    try:
        documents, _ = importer.read(body.get("manifest") or "", limits)
    except ManifestError:
        return ()
    found = {str(d.obj.get("metadata", {}).get("name" if d.kind == "Namespace" else "namespace") or "")
             for d in documents if isinstance(d.obj.get("metadata"), dict)}
    return tuple(sorted(found - {""}))


async def _steps(conn: asyncpg.Connection, since: dt.datetime, until: dt.datetime,
                 namespaces: list[str]) -> list[sessions.Step]:
    """The transitions observed in the window in the session's namespaces (and of those Namespaces), in the
    order recorded, with each object's owner."""
    if not namespaces:
        return []
    found = await conn.fetch(
        "SELECT e.kind, e.namespace, e.name, e.transition, e.detail, e.uid, r.owner_kind, r.owner_name"
        " FROM resource_events e LEFT JOIN resources r ON r.uid = e.uid"
        " WHERE e.observed_at >= $1 AND e.observed_at <= $2 AND e.transition <> 'event'"
        "  AND (e.namespace = ANY($3::text[])"
        "       OR (e.namespace = '' AND e.kind = 'Namespace' AND e.name = ANY($3::text[])))"
        " ORDER BY e.id", since, until, namespaces)
    return [sessions.Step(r["kind"], r["namespace"], r["name"], r["transition"], r["detail"] or {}, r["uid"],
                          r["owner_kind"], r["owner_name"]) for r in found]


_SCOPE = "(split_part(service, '/', 1) = ANY($3::text[]) OR tenant = ANY($4::text[]))"


async def _grid(conn: asyncpg.Connection, sim_from: dt.datetime, sim_to: dt.datetime, namespaces: list[str],
                tenants: list[str], *, exact: bool) -> tuple[float | None, dt.datetime, dt.datetime]:
    """(simulated seconds per tick, the window's edges on the engine's ticks): the step is the smallest gap
    between the session's sample times; an estimated edge moves to the nearest tick (a given one stays)."""
    margin = dt.timedelta(minutes=2)
    times: list[dt.datetime] = [r["taken_at"] for r in await conn.fetch(
        f"SELECT DISTINCT taken_at FROM sla_samples WHERE taken_at > $1 AND taken_at <= $2 AND {_SCOPE} "
        f"ORDER BY 1 LIMIT {GRID_SAMPLES}", sim_from - margin, sim_to + margin, namespaces, tenants)]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    gaps = [g for g in gaps if g > 0]
    if not gaps:
        return None, sim_from, sim_to
    step = round(min(gaps), 6)
    if exact:
        return step, sim_from, sim_to

    def snapped(at: dt.datetime) -> dt.datetime:
        # Half a step later: the anchor is the last tick's time, up to a tick before the real now.
        ticks = round(((at - times[0]).total_seconds() + step / 2) / step)
        return times[0] + dt.timedelta(seconds=ticks * step)
    return step, snapped(sim_from), snapped(sim_to)


async def _sla(conn: asyncpg.Connection, sim_from: dt.datetime, sim_to: dt.datetime, namespaces: list[str],
               tenants: list[str]) -> list[tuple[str, float, float, int]]:
    found = await conn.fetch(
        "SELECT service, sum(good) AS good, sum(total) AS total, count(*) AS samples FROM sla_samples"
        f" WHERE taken_at > $1 AND taken_at <= $2 AND {_SCOPE} GROUP BY service",
        sim_from, sim_to, namespaces, tenants)
    return [(r["service"], float(r["good"]), float(r["total"]), int(r["samples"])) for r in found]


# --------------------------------------------------------------------------- checking a trace

_LOAD: TypeAdapter[Any] = TypeAdapter(LoadRequest)


def _invalid(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:3])


@router.post("/check", response_model=SessionCheck, responses=REFUSED,
             summary="Would this trace replay here: its format, its events, and a dry run of its manifests")
async def check(kube: KubeDep, settings: SettingsDep, trace: Annotated[Any, Body(
        description="A trace as GET /sessions/export wrote it")]) -> SessionCheck | JSONResponse:
    """Nothing is applied. `python -m k8sim replay` asks this before it plays anything, so a trace the cluster
    would refuse part of is refused whole."""
    try:
        sessions.check(trace)
    except sessions.SessionError as exc:
        return Refused(str(exc), [{"message": p} for p in exc.problems]).response()
    problems: list[dict[str, Any]] = []
    objects = 0
    for n, event in enumerate(trace["events"]):
        where, kind, body = f"events[{n}]", event["type"], event.get("body") or {}
        try:
            if kind == "deploy":
                result = await checked(kube, settings, event["manifest"], event.get("tenant_id"),
                                       event.get("namespace"), bool(event.get("create_namespace")))
                objects += len(result.prepared)
                problems += [{"event": n, "type": kind, **p.as_dict(), "message": f"{where} (deploy): {p}"}
                             for p in result.problems]
            elif kind == "import":  # its objects are checked as the import applies them: each named, the rest go
                request = ImportRequest.model_validate(body)
                await asyncio.to_thread(importer.read, request.manifest, import_limits(settings))
            elif kind == "scenario":
                scenarios.validate(body.get("spec"))  # first: it names what it refuses
                ScenarioRequest.model_validate(body)
            elif kind == "load":
                _LOAD.validate_python(body)
            elif kind == "traffic":
                TrafficRequest.model_validate(body)
        except ManifestError as exc:
            problems.append({"event": n, "type": kind, "message": f"{where}: {exc}"})
        except ValidationError as exc:
            problems.append({"event": n, "type": kind, "message": f"{where}: {_invalid(exc)}"})
        except scenarios.ScenarioError as exc:
            problems.append({"event": n, "type": kind, "message": f"{where}: {exc}"})
    if problems:
        return Refused(f"{len(problems)} problem(s): " + "; ".join(str(p.get("message")) for p in problems[:3]),
                       problems).response()
    return SessionCheck(status="valid", format=sessions.FORMAT, events=len(trace["events"]),
                        deploys=sum(1 for e in trace["events"] if e["type"] == "deploy"), objects=objects,
                        cluster_speed=await topology.cluster_speed(kube))


# --------------------------------------------------------------------------- recording inputs

_WATCHED = ("/monitoring/load", "/monitoring/traffic", "/scenarios", "/k8s/resources/", "/cluster/import")


class Recorder:
    """Keeps each import, load override, traffic replay, Scenario and deletion the API accepted (answered 2xx) in
    ``session_inputs``, stamped with when its request arrived. Beside the routes, so that none of them changes;
    a row that cannot be written is logged and the answer stands."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or scope.get("method") not in ("POST", "DELETE") \
                or not path.startswith(_WATCHED):
            await self.app(scope, receive, send)
            return
        arrived = dt.datetime.now(dt.UTC)
        chunks: list[bytes] = []
        status = 0

        async def reading() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
            return message

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, reading, sending)
        if not 200 <= status < 300:
            return
        try:
            body = orjson.loads(b"".join(chunks)) if chunks and any(chunks) else {}
        except orjson.JSONDecodeError:
            body = {}
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        found = sessions.accepted_input(scope["method"], path, query, body)
        pool = getattr(scope["app"].state, "pool", None) if "app" in scope else None
        if found is None or pool is None:
            return
        try:
            async with pool.acquire() as conn:
                await conn.execute("INSERT INTO session_inputs (accepted_at, kind, body) VALUES ($1, $2, $3)",
                                   arrived, found[0], found[1])
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("session input %s not recorded: %s", found[0], exc)
