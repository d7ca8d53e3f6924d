"""PostgreSQL: the pool, versioned migrations, and every query of the shared tables.

The cluster is the truth of what exists; this store is the truth of what happened
(lifecycle history, deployments). All SQL lives here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources as importlib_resources
from typing import Any

import asyncpg
import orjson

from k8sim import lifecycle, rows

log = logging.getLogger(__name__)

#: pg_advisory_lock key that serialises concurrent migrators ("k8sim" in ASCII).
MIGRATION_LOCK = 0x6B3873696D


def _json_text(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


async def init_connection(conn: asyncpg.Connection) -> None:
    # orjson: every recorded row carries a state, labels and a detail as jsonb.
    for name in ("jsonb", "json"):
        await conn.set_type_codec(name, encoder=_json_text, decoder=orjson.loads, schema="pg_catalog")


async def connect(dsn: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 10.0) -> asyncpg.Pool:
    pool: asyncpg.Pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, timeout=timeout,
                                                   init=init_connection)
    return pool


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped in k8sim/migrations, in order."""
    found = []
    for entry in importlib_resources.files("k8sim.migrations").iterdir():
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if match:
            found.append((int(match[1]), match[2], entry.read_text()))
    return sorted(found)


async def migrate(pool: asyncpg.Pool) -> list[int]:
    """Apply pending migrations; safe when several processes start at once."""
    applied = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, name, sql in migrations():
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                                       version, name)
                applied.append(version)
                log.info("applied migration %04d_%s", version, name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    return applied


# --------------------------------------------------------------------------- lifecycle


@dataclasses.dataclass
class Observation:
    """One observed version of an object (``state`` None means it is gone)."""

    uid: str
    api_version: str
    kind: str
    namespace: str
    name: str
    resource_version: str
    observed_at: dt.datetime
    state: lifecycle.State | None
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    tenant: str | None = None
    owner: tuple[str | None, str | None, str | None] = (None, None, None)
    created_at: dt.datetime | None = None
    deleted_at: dt.datetime | None = None
    reconciled: bool = False
    #: A Kubernetes Event about this object: recorded as one ``event`` step of its history, the
    #: object's state untouched (an Event is a note about an object, not an object to track).
    note: dict[str, Any] | None = None

    @classmethod
    def of_event(cls, event: Mapping[str, Any], *, observed_at: dt.datetime,
                 reconciled: bool = False) -> Observation | None:
        """A core v1 Event as a step of its involved object's history; None if it names no object uid."""
        involved = event.get("involvedObject") or {}
        meta = event.get("metadata") or {}
        if not involved.get("uid"):
            return None
        when = (event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp")
                or meta.get("creationTimestamp"))
        source = event.get("source") or {}
        note = {"reason": event.get("reason"), "type": event.get("type"), "message": event.get("message"),
                "count": event.get("count") or 1, "source": source.get("component") or event.get("reportingComponent"),
                "event": meta.get("name")}
        return cls(uid=involved["uid"], api_version=involved.get("apiVersion") or "v1",
                   kind=involved.get("kind") or "", namespace=involved.get("namespace") or meta.get("namespace") or "",
                   name=involved.get("name") or "", resource_version=str(meta.get("resourceVersion", "")),
                   observed_at=observed_at, state=None, created_at=lifecycle.parse_time(when),
                   reconciled=reconciled, note={k: v for k, v in note.items() if v is not None})

    @classmethod
    def of(cls, obj: Mapping[str, Any], *, observed_at: dt.datetime, gone: bool = False,
           reconciled: bool = False) -> Observation:
        meta = obj.get("metadata") or {}
        return cls(
            uid=meta["uid"], api_version=obj.get("apiVersion", ""), kind=obj.get("kind", ""),
            namespace=meta.get("namespace") or "", name=meta.get("name", ""),
            resource_version=str(meta.get("resourceVersion", "")), observed_at=observed_at,
            state=None if gone else lifecycle.summarise(obj),
            labels=dict(meta.get("labels") or {}), tenant=lifecycle.tenant_of(obj), owner=lifecycle.owner_of(obj),
            created_at=lifecycle.parse_time(meta.get("creationTimestamp")),
            deleted_at=(lifecycle.parse_time(meta.get("deletionTimestamp")) or observed_at) if gone else None,
            reconciled=reconciled,
        )

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["state"] = None if self.state is None else self.state.as_dict()
        for key in ("observed_at", "created_at", "deleted_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Observation:
        fields = dict(data)
        fields["state"] = None if data.get("state") is None else lifecycle.State.from_dict(data["state"])
        fields["owner"] = tuple(data.get("owner") or (None, None, None))
        for key in ("observed_at", "created_at", "deleted_at"):
            fields[key] = dt.datetime.fromisoformat(data[key]) if data.get(key) else None
        return cls(**fields)


# Every batch goes out as a few statements, each over the batch's rows as one JSON document (an
# array per row, an element per column; the connection's jsonb codec encodes it), not one statement
# per row: one plan execution for the whole batch, and one encoding on each side (bench/bench_store.py
# measures the difference).
# An object's state is written with the tenant its labels name, if any; the tenant it inherits is
# resolved after (_RESOLVE), once the batch's rows are in, because it may come from them.
_UPSERT = """
INSERT INTO resources AS r (uid, api_version, kind, namespace, name, tenant, phase, ready, node,
                            owner_kind, owner_name, owner_uid, state, labels, resource_version,
                            created_at, updated_at, deleted_at)
SELECT u->>0, u->>1, u->>2, u->>3, u->>4, u->>5, u->>6, (u->>7)::boolean, u->>8, u->>9, u->>10, u->>11,
       u->12, u->13, u->>14, (u->>15)::timestamptz, (u->>16)::timestamptz, NULL
FROM jsonb_array_elements($1::jsonb) AS u
ON CONFLICT (uid) DO UPDATE SET
    tenant = COALESCE(EXCLUDED.tenant, r.tenant),
    phase = EXCLUDED.phase, ready = EXCLUDED.ready, node = COALESCE(EXCLUDED.node, r.node),
    owner_kind = EXCLUDED.owner_kind, owner_name = EXCLUDED.owner_name, owner_uid = EXCLUDED.owner_uid,
    state = EXCLUDED.state, labels = EXCLUDED.labels, resource_version = EXCLUDED.resource_version,
    updated_at = EXCLUDED.updated_at, deleted_at = EXCLUDED.deleted_at
WHERE r.deleted_at IS NULL
"""

#: A live object without a tenant of its own gets its namespace's, its owner's or its deploy
#: request's; repeated while a pass finds some, for an owner's owner written in the same batch.
_RESOLVE = """
UPDATE resources AS r SET tenant = t.tenant
FROM (SELECT uid, resolve_tenant(namespace, kind, name, owner_uid) AS tenant FROM resources
      WHERE uid = ANY($1::text[]) AND tenant IS NULL AND deleted_at IS NULL) AS t
WHERE r.uid = t.uid AND t.tenant IS NOT NULL
"""
RESOLVE_PASSES = 4

_DELETE = """
UPDATE resources AS r SET deleted_at = (d->>1)::timestamptz, phase = 'Deleted', ready = false,
                          updated_at = (d->>2)::timestamptz,
                          resource_version = CASE WHEN d->>3 = '' THEN r.resource_version ELSE d->>3 END
FROM jsonb_array_elements($1::jsonb) AS d
WHERE r.uid = d->>0 AND r.deleted_at IS NULL
"""

_EVENT = """
INSERT INTO resource_events (uid, api_version, kind, namespace, name, tenant, transition, detail,
                             resource_version, occurred_at, observed_at, reconciled)
SELECT e->>0, e->>1, e->>2, e->>3, e->>4,
       -- an Event's stream may deliver it before its object's own: then its namespace tells
       COALESCE(e->>5, (SELECT tenant FROM resources WHERE uid = e->>0), resolve_tenant(e->>3, e->>2, e->>4, NULL)),
       e->>6, e->7, e->>8, (e->>9)::timestamptz, (e->>10)::timestamptz, (e->>11)::boolean
FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS rows(e, turn)
ORDER BY turn  -- ids in the order observed
ON CONFLICT DO NOTHING
"""


async def live_resources(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every object recorded as existing (for the sweep that finds deletions the watch missed)."""
    found: list[asyncpg.Record] = await conn.fetch(
        "SELECT uid, api_version, kind, namespace, name, resource_version FROM resources WHERE deleted_at IS NULL")
    return found


async def load_versions(conn: asyncpg.Connection, uids: Sequence[str]
                        ) -> dict[str, tuple[lifecycle.State | None, str]]:
    """Each recorded uid's last state (None for a recorded deletion) and the resourceVersion its row
    holds, which tells a replayed version (a resumed watch, a batch written again) from a new one."""
    found = await conn.fetch("SELECT uid, state, deleted_at, resource_version FROM resources "
                             "WHERE uid = ANY($1::text[])", list(uids))
    return {r["uid"]: (None if r["deleted_at"] else lifecycle.State.from_dict(r["state"]), r["resource_version"])
            for r in found}


async def watch_positions(conn: asyncpg.Connection, cluster: str) -> dict[tuple[str, str], str]:
    """(apiVersion, kind) → the resourceVersion up to which that kind's observations are recorded."""
    found = await conn.fetch("SELECT api_version, kind, resource_version FROM watch_positions WHERE cluster = $1",
                             cluster)
    return {(r["api_version"], r["kind"]): r["resource_version"] for r in found}


async def save_watch_positions(conn: asyncpg.Connection, positions: Mapping[tuple[str, str, str], str]) -> None:
    """(cluster, apiVersion, kind) → resourceVersion; in the transaction of the observations it covers."""
    await conn.executemany(
        "INSERT INTO watch_positions (cluster, api_version, kind, resource_version) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (cluster, api_version, kind) DO UPDATE SET resource_version = EXCLUDED.resource_version, "
        "updated_at = now()", [(*key, version) for key, version in positions.items()])


async def history(conn: asyncpg.Connection, *, tenant: str | None = None, namespace: str | None = None,
                  kind: str | None = None, name: str | None = None, uid: str | None = None,
                  transition: str | None = None, since: dt.datetime | None = None, after_id: int = 0,
                  limit: int = 500) -> list[rows.Step]:
    """Recorded lifecycle steps in the order they were recorded (by id, so ``after_id`` pages and
    polls), each given filter matched exactly; ``since`` is on when the step happened."""
    args: list[Any] = [after_id, limit]
    where = ["id > $1"]
    for column, value in (("tenant", tenant), ("namespace", namespace), ("kind", kind), ("name", name),
                          ("uid", uid), ("transition", transition), ("occurred_at", since)):
        if value is not None:
            args.append(value)
            where.append(f"{column} {'>=' if column == 'occurred_at' else '='} ${len(args)}")
    return rows.Step.all(await conn.fetch(
        f"SELECT * FROM resource_events WHERE {' AND '.join(where)} ORDER BY id LIMIT $2", *args))


#: What an object's row holds besides its versions: a new version with the same needs no write.
RowFacts = tuple[lifecycle.State, dict[str, str], tuple[str | None, str | None, str | None], str | None]


async def record(conn: asyncpg.Connection, observations: Iterable[Observation],
                 prior: dict[str, lifecycle.State | None], written: dict[str, RowFacts] | None = None) -> int:
    """Write observations in order inside the caller's transaction; returns history rows written.

    ``prior`` maps uid to the last known state and is updated as observations are applied,
    so a batch may hold several versions of one object. Rows go out as one statement per table
    (states, inherited tenants, deletions, then history), not one per observation; an object's state is
    written once per batch, its last (a pod's creation and scheduling usually share a batch).
    ``written``, if given, maps uid to the facts of its row as last written and is updated too: a
    version whose facts are those is not written again (a pod's second deletion notice, a node's
    heartbeat), so the row keeps the version and time of its last change.
    """
    written = {} if written is None else written
    upserts: dict[str, tuple[Any, ...]] = {}
    deletes: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    for obs in observations:
        if obs.note is not None:
            occurred = min(obs.created_at, obs.observed_at) if obs.created_at else obs.observed_at
            events.append((obs.uid, obs.api_version, obs.kind, obs.namespace, obs.name, obs.tenant, "event",
                           obs.note, obs.resource_version, occurred, obs.observed_at, obs.reconciled))
            continue
        known = obs.uid in prior
        before = prior.get(obs.uid)
        if known and before is None:
            continue  # already recorded as deleted; a late event cannot resurrect it
        if obs.state is None and not known:
            continue  # created and deleted while we never saw it: nothing to say
        steps = lifecycle.transitions(before, obs.state)
        if obs.state is None:
            deletes.append((obs.uid, obs.deleted_at, obs.observed_at, obs.resource_version))
            written.pop(obs.uid, None)
        elif written.get(obs.uid) == (facts := (obs.state, obs.labels, obs.owner, obs.tenant)):
            pass  # nothing its row holds changed (and so no step either)
        else:
            written[obs.uid] = facts
            earlier = upserts.get(obs.uid)
            tenant = obs.tenant if obs.tenant or earlier is None else earlier[5]  # as if written in turn
            upserts[obs.uid] = ((
                obs.uid, obs.api_version, obs.kind, obs.namespace, obs.name, tenant, obs.state.phase,
                obs.state.ready, obs.state.node, obs.owner[0], obs.owner[1], obs.owner[2],
                obs.state.as_dict(), obs.labels, obs.resource_version, obs.created_at,
                obs.observed_at))
        prior[obs.uid] = obs.state
        for step in steps:
            occurred = obs.observed_at
            if step.name == "created" and obs.created_at:
                occurred = obs.created_at
            elif step.name == "deleted" and obs.deleted_at:
                occurred = min(obs.deleted_at, obs.observed_at)
            events.append((obs.uid, obs.api_version, obs.kind, obs.namespace, obs.name, obs.tenant,
                           step.name, step.detail, obs.resource_version, occurred, obs.observed_at,
                           obs.reconciled))
    if upserts:
        await conn.execute(_UPSERT, list(upserts.values()))
        heirs = [row[0] for row in upserts.values() if row[5] is None]  # (uid, …, tenant, …)
        for _ in range(RESOLVE_PASSES if heirs else 0):
            if await conn.execute(_RESOLVE, heirs) == "UPDATE 0":
                break
    if deletes:
        await conn.execute(_DELETE, deletes)
    if events:
        await conn.execute(_EVENT, events)
    return len(events)


async def create_deployment(conn: asyncpg.Connection, *, tenant: str | None, namespace: str | None,
                            mode: str | None, manifest: str,
                            objects: Iterable[tuple[str, str, str, str]]) -> uuid.UUID:
    """A pending deployment and the objects it will create (apiVersion, kind, namespace, name)."""
    deployment_id = uuid.uuid4()
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO deployments (id, tenant, namespace, mode, manifest, status) "
            "VALUES ($1, $2, $3, $4, $5, 'pending')", deployment_id, tenant, namespace, mode, manifest)
        await conn.executemany(
            "INSERT INTO deployment_objects (deployment_id, api_version, kind, namespace, name, tenant) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            [(deployment_id, av, kind, ns, name, tenant) for av, kind, ns, name in objects])
    return deployment_id


async def update_deployment(conn: asyncpg.Connection, deployment_id: uuid.UUID, *, status: str,
                            resources: list[dict[str, Any]] | None = None, deployed_count: int | None = None,
                            failed_count: int | None = None, message: str | None = None) -> None:
    await conn.execute(
        """UPDATE deployments SET status = $2,
               resources = COALESCE($3, resources),
               deployed_count = COALESCE($4, deployed_count),
               failed_count = COALESCE($5, failed_count),
               message = COALESCE($6, message),
               started_at = CASE WHEN $2 = 'deploying' THEN COALESCE(started_at, now()) ELSE started_at END,
               finished_at = CASE WHEN $2 IN ('completed', 'failed') THEN now() ELSE finished_at END,
               duration_seconds = CASE WHEN $2 IN ('completed', 'failed')
                   THEN EXTRACT(EPOCH FROM now() - COALESCE(started_at, created_at)) ELSE duration_seconds END
           WHERE id = $1""",
        deployment_id, status, resources, deployed_count, failed_count, message)


INTERRUPTED = "interrupted: the API stopped while this deploy was running; deploy again to converge"


async def fail_interrupted_deployments(conn: asyncpg.Connection) -> int:
    """Mark deploys left pending or deploying by an API that died as failed (reason
    ``interrupted``); called when an API starts, before it runs any deploy of its own."""
    result = await conn.execute(
        "UPDATE deployments SET status = 'failed', message = $1, finished_at = now() "
        "WHERE status IN ('pending', 'deploying')", INTERRUPTED)
    return int(result.split()[-1])


async def latest_deployment(conn: asyncpg.Connection, tenant: str) -> rows.Deployment | None:
    row = await conn.fetchrow(
        "SELECT id, tenant, namespace, status, deployed_count, failed_count, message, created_at FROM deployments "
        "WHERE tenant = $1 ORDER BY created_at DESC LIMIT 1", tenant)
    return None if row is None else rows.Deployment.of(row)


async def namespace_tenants(conn: asyncpg.Connection) -> dict[str, str]:
    """namespace → tenant of every Namespace a tenant's deploy created (the newest deploy wins)."""
    found = await conn.fetch(
        "SELECT DISTINCT ON (d.name) d.name, d.tenant FROM deployment_objects d "
        "JOIN deployments x ON x.id = d.deployment_id "
        "WHERE d.kind = 'Namespace' AND d.tenant IS NOT NULL ORDER BY d.name, x.created_at DESC")
    return {r["name"]: r["tenant"] for r in found}


async def deployment_objects(conn: asyncpg.Connection, tenant: str) -> list[rows.ObjectRef]:
    """Every object any deploy of this tenant created (for a tenant delete)."""
    return rows.ObjectRef.all(await conn.fetch(
        "SELECT DISTINCT api_version, kind, namespace, name FROM deployment_objects WHERE tenant = $1", tenant))


# --------------------------------------------------------------------------- monitoring


async def insert_samples(conn: asyncpg.Connection, samples: Sequence[tuple[Any, ...]]) -> None:
    """(taken_at, service, tenant, good, total, healthy) per service and tick, added to their minute's
    sums (of every service, and of the tenant's) in the same transaction."""
    minutes: dict[tuple[str, str, dt.datetime], list[float]] = {}
    for taken_at, _, tenant, good, total, _ in samples:
        minute = _minute(taken_at)
        for scope in (("all", ""), ("tenant", tenant)) if tenant else (("all", ""),):
            sums = minutes.setdefault((*scope, minute), [0.0, 0.0, 0])
            sums[0] += good
            sums[1] += total
            sums[2] += 1
    async with conn.transaction():
        await conn.executemany(
            "INSERT INTO sla_samples (taken_at, service, tenant, good, total, healthy) "
            "VALUES ($1, $2, $3, $4, $5, $6)", samples)
        await conn.executemany(
            "INSERT INTO sla_minutes (scope, tenant, minute, good, total, samples) VALUES ($1, $2, $3, $4, $5, $6) "
            "ON CONFLICT (scope, tenant, minute) DO UPDATE SET good = sla_minutes.good + EXCLUDED.good, "
            "total = sla_minutes.total + EXCLUDED.total, samples = sla_minutes.samples + EXCLUDED.samples",
            [(*key, good, total, int(count)) for key, (good, total, count) in minutes.items()])


async def save_snapshot(conn: asyncpg.Connection, taken_at: dt.datetime, document: dict[str, Any]) -> None:
    await conn.execute("INSERT INTO monitoring_snapshots (taken_at, document) VALUES ($1, $2) "
                       "ON CONFLICT (taken_at) DO UPDATE SET document = EXCLUDED.document", taken_at, document)


def _scope(tenant: str | None, service: str | None, args: list[Any]) -> str:
    clauses = []
    if tenant is not None:
        args.append(tenant)
        clauses.append(f"AND tenant = ${len(args)}")
    if service is not None:
        args.append(service)
        clauses.append(f"AND service = ${len(args)}")
    return " ".join(clauses)


MINUTE = dt.timedelta(minutes=1)


def _minute(at: dt.datetime) -> dt.datetime:
    return at.replace(second=0, microsecond=0)


def _whole_minutes(start: dt.datetime, end: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """[lo, hi): the whole minutes inside (start, end]; lo == hi == end when there are none. Samples in
    (start, lo) and [hi, end] are the window's partial minutes, read raw."""
    lo, hi = _minute(start) + MINUTE, _minute(end)
    return (lo, hi) if lo < hi else (end, end)


def _parts(tenant: str | None, start: dt.datetime, end: dt.datetime, args: list[Any]) -> tuple[str, str]:
    """The WHERE conditions of a window's whole minutes (on sla_minutes) and of its partial ones (on
    sla_samples), for every service or one tenant's. Appends their parameters to ``args``: scope,
    tenant key, lo, hi, start, end and (for a tenant) the tenant."""
    lo, hi = _whole_minutes(start, end)
    args += ["all" if tenant is None else "tenant", tenant or "", lo, hi, start, end]
    n = len(args)
    minutes = f"scope = ${n - 5} AND tenant = ${n - 4} AND minute >= ${n - 3} AND minute < ${n - 2}"
    edges = (f"((taken_at > ${n - 1} AND taken_at < ${n - 3}) OR (taken_at >= ${n - 2} AND taken_at <= ${n}))"
             f" {_scope(tenant, None, args)}")
    return minutes, edges


async def window_sums(conn: asyncpg.Connection, end: dt.datetime, seconds: float, *, tenant: str | None = None,
                      service: str | None = None) -> tuple[float, float]:
    """(good, total) requests in (end - seconds, end]: whole minutes from their sums, the rest raw
    (one service's: raw)."""
    args: list[Any] = []
    start = end - dt.timedelta(seconds=seconds)
    if service is not None:
        args += [start, end]
        row = await conn.fetchrow(
            "SELECT COALESCE(sum(good), 0) AS good, COALESCE(sum(total), 0) AS total FROM sla_samples "
            f"WHERE taken_at > $1 AND taken_at <= $2 {_scope(tenant, service, args)}", *args)
    else:
        minutes, edges = _parts(tenant, start, end, args)
        row = await conn.fetchrow(
            "SELECT COALESCE(sum(good), 0) AS good, COALESCE(sum(total), 0) AS total FROM ("
            f" SELECT good, total FROM sla_minutes WHERE {minutes}"
            f" UNION ALL SELECT good, total FROM sla_samples WHERE {edges}) AS parts", *args)
    return float(row["good"]), float(row["total"])


async def tenant_window_sums(conn: asyncpg.Connection, end: dt.datetime, seconds: float
                             ) -> dict[str, tuple[float, float]]:
    """tenant → (good, total) requests in (end - seconds, end], for every tenant with samples."""
    lo, hi = _whole_minutes(end - dt.timedelta(seconds=seconds), end)
    found = await conn.fetch(
        "SELECT tenant, COALESCE(sum(good), 0) AS good, COALESCE(sum(total), 0) AS total FROM ("
        " SELECT tenant, good, total FROM sla_minutes WHERE scope = 'tenant' AND minute >= $1 AND minute < $2"
        " UNION ALL SELECT tenant, good, total FROM sla_samples"
        "  WHERE ((taken_at > $3 AND taken_at < $1) OR (taken_at >= $2 AND taken_at <= $4)) AND tenant IS NOT NULL"
        ") AS parts GROUP BY tenant", lo, hi, end - dt.timedelta(seconds=seconds), end)
    return {r["tenant"]: (float(r["good"]), float(r["total"])) for r in found}


async def sla_points(conn: asyncpg.Connection, end: dt.datetime, seconds: float, target: float, *,
                     tenant: str | None = None) -> tuple[int, int]:
    """(data points, healthy points): one point per minute of the window that saw traffic."""
    args: list[Any] = [target]
    minutes, edges = _parts(tenant, end - dt.timedelta(seconds=seconds), end, args)
    row = await conn.fetchrow(
        "SELECT count(*) AS points, count(*) FILTER (WHERE total = 0 OR 100 * good / total >= $1) AS healthy FROM ("
        f" SELECT good, total FROM sla_minutes WHERE {minutes}"
        f" UNION ALL SELECT sum(good), sum(total) FROM sla_samples WHERE {edges}"
        "  GROUP BY date_trunc('minute', taken_at)) AS minutes", *args)
    return int(row["points"]), int(row["healthy"])


async def sla_report(conn: asyncpg.Connection, unit: str, since: dt.datetime, *,
                     tenant: str | None = None) -> list[rows.ReportRow]:
    """Per day/week/month since a time: good, total requests and minutes with samples."""
    if unit not in ("day", "week", "month"):
        raise ValueError(f"unit must be day, week or month, not {unit!r}")
    lo = since if _minute(since) == since else _minute(since) + MINUTE
    args: list[Any] = [unit, "all" if tenant is None else "tenant", tenant or "", lo, since]
    return rows.ReportRow.all(await conn.fetch(
        "SELECT date_trunc($1, m) AS period, sum(good) AS good, sum(total) AS total, count(*) AS minutes FROM ("
        " SELECT minute AS m, good, total FROM sla_minutes WHERE scope = $2 AND tenant = $3 AND minute >= $4"
        " UNION ALL SELECT date_trunc('minute', taken_at), sum(good), sum(total) FROM sla_samples"
        f"  WHERE taken_at >= $5 AND taken_at < $4 {_scope(tenant, None, args)} GROUP BY 1"
        ") AS minutes GROUP BY 1 ORDER BY 1", *args))


async def snapshot_history(conn: asyncpg.Connection, since: dt.datetime, until: dt.datetime,
                           max_points: int = 360) -> list[rows.Snapshot]:
    """Snapshots in a range, downsampled to at most max_points (the first of each bucket)."""
    bucket = max((until - since).total_seconds() / max_points, 1.0)
    return rows.Snapshot.all(await conn.fetch(
        "SELECT DISTINCT ON (date_bin($3::interval, taken_at, $1)) taken_at, document "
        "FROM monitoring_snapshots WHERE taken_at >= $1 AND taken_at <= $2 "
        "ORDER BY date_bin($3::interval, taken_at, $1), taken_at",
        since, until, dt.timedelta(seconds=bucket)))


async def latest_sample_time(conn: asyncpg.Connection, tenant: str | None = None) -> dt.datetime | None:
    """The newest SLA sample's (simulated) time, of one tenant or of all: SLA windows end there."""
    args: list[Any] = []
    value: dt.datetime | None = await conn.fetchval(
        f"SELECT max(taken_at) FROM sla_samples WHERE true {_scope(tenant, None, args)}", *args)
    return value


async def period_sums(conn: asyncpg.Connection, since: dt.datetime, until: dt.datetime, *,
                      tenant: str | None = None) -> rows.PeriodSums:
    """Over (since, until]: good and total requests, samples, and the minutes that have samples."""
    args: list[Any] = []
    minutes, edges = _parts(tenant, since, until, args)  # since is $5, until $6, the tenant $7
    of_tenant = "AND tenant = $7" if tenant is not None else ""
    row = await conn.fetchrow(
        "SELECT COALESCE(sum(good), 0) AS good, COALESCE(sum(total), 0) AS total, "
        "       COALESCE(sum(samples), 0)::bigint AS samples, count(*) AS minutes, "
        f"      (SELECT min(taken_at) FROM sla_samples WHERE taken_at > $5 AND taken_at <= $6 {of_tenant}) AS first"
        f" FROM (SELECT good, total, samples FROM sla_minutes WHERE {minutes}"
        f"       UNION ALL SELECT sum(good), sum(total), count(*) FROM sla_samples WHERE {edges}"
        "        GROUP BY date_trunc('minute', taken_at)) AS minutes", *args)
    return rows.PeriodSums(float(row["good"]), float(row["total"]), int(row["samples"]), int(row["minutes"]),
                           row["first"])


async def latest_snapshot_time(conn: asyncpg.Connection) -> dt.datetime | None:
    value: dt.datetime | None = await conn.fetchval("SELECT max(taken_at) FROM monitoring_snapshots")
    return value


async def prune_monitoring(conn: asyncpg.Connection, before: dt.datetime) -> None:
    await conn.execute("DELETE FROM monitoring_snapshots WHERE taken_at < $1", before)
    # Both at the same whole minute: a kept minute's sums never count a pruned sample.
    await conn.execute("DELETE FROM sla_samples WHERE taken_at < $1", _minute(before))
    await conn.execute("DELETE FROM sla_minutes WHERE minute < $1", _minute(before))


async def create_alert_rule(conn: asyncpg.Connection, rule: Mapping[str, Any]) -> rows.AlertRule:
    row = await conn.fetchrow(
        "INSERT INTO alert_rules (id, name, metric, operator, threshold, tenant, service, severity) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
        uuid.uuid4(), rule["name"], rule["metric"], rule["operator"], rule["threshold"], rule.get("tenant"),
        rule.get("service"), rule.get("severity", "warning"))
    return rows.AlertRule.of(row)


async def delete_alert_rule(conn: asyncpg.Connection, rule_id: uuid.UUID) -> bool:
    """Remove a rule and resolve what it left firing; False when there was no such rule."""
    async with conn.transaction():
        result = await conn.execute("DELETE FROM alert_rules WHERE id = $1", rule_id)
        await conn.execute("UPDATE alert_events SET resolved_at = now() WHERE rule_id = $1 AND resolved_at IS NULL",
                           str(rule_id))
    return bool(result.endswith(" 1"))


async def list_alert_rules(conn: asyncpg.Connection) -> list[rows.AlertRule]:
    """Every rule, oldest first."""
    return rows.AlertRule.all(await conn.fetch("SELECT * FROM alert_rules ORDER BY created_at"))


async def fire_alert(conn: asyncpg.Connection, *, rule_id: str, name: str, severity: str, service: str | None,
                     tenant: str | None, value: float, message: str, at: dt.datetime) -> bool:
    """Open an alert unless the same one is already firing; True when newly fired."""
    result = await conn.execute(
        "INSERT INTO alert_events (rule_id, name, severity, service, tenant, value, message, fired_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        rule_id, name, severity, service, tenant, value, message, at)
    return bool(result.endswith(" 1"))


async def resolve_alerts(conn: asyncpg.Connection, still_firing: set[tuple[str, str]], at: dt.datetime) -> int:
    """Resolve every open alert whose (rule_id, service) is no longer firing."""
    found = await conn.fetch("SELECT id, rule_id, COALESCE(service, '') AS service FROM alert_events "
                            "WHERE resolved_at IS NULL")
    done = [r["id"] for r in found if (r["rule_id"], r["service"]) not in still_firing]
    if done:
        await conn.execute("UPDATE alert_events SET resolved_at = $2 WHERE id = ANY($1::bigint[])", done, at)
    return len(done)


async def alert_history(conn: asyncpg.Connection, *, tenant: str | None = None, limit: int = 500,
                        name: str | None = None, firing: bool | None = None) -> list[rows.AlertEvent]:
    """Newest first; each given filter must hold (tenant and name exactly)."""
    args: list[Any] = [limit]
    where = []
    for column, value in (("tenant", tenant), ("name", name)):
        if value is not None:
            args.append(value)
            where.append(f"{column} = ${len(args)}")
    if firing is not None:
        where.append("resolved_at IS NULL" if firing else "resolved_at IS NOT NULL")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    return rows.AlertEvent.all(await conn.fetch(
        f"SELECT * FROM alert_events {clause} ORDER BY fired_at DESC, id DESC LIMIT $1", *args))


# --------------------------------------------------------------------------- cost


async def node_spans(conn: asyncpg.Connection, start: dt.datetime, end: dt.datetime) -> list[asyncpg.Record]:
    """Every recorded Node that existed at some time in [start, end): name, labels, created_at and
    deleted_at (None while it exists)."""
    found: list[asyncpg.Record] = await conn.fetch(
        "SELECT uid, name, labels, created_at, deleted_at FROM resources WHERE kind = 'Node' AND api_version = 'v1'"
        " AND (created_at IS NULL OR created_at < $2) AND (deleted_at IS NULL OR deleted_at > $1)"
        " ORDER BY name, created_at", start, end)
    return found


async def pod_spans(conn: asyncpg.Connection, start: dt.datetime, end: dt.datetime) -> list[asyncpg.Record]:
    """Every recorded Pod bound to a node at some time in [start, end): its namespace, name, tenant,
    owner, node, requests (cores, bytes, GPUs; None if recorded before they were), when it was bound
    (its ``scheduled`` step, else its creation) and when it stopped holding the node (it finished or
    was deleted; None while it runs)."""
    found: list[asyncpg.Record] = await conn.fetch(
        "SELECT * FROM ("
        " SELECT r.uid, r.namespace, r.name, r.tenant, r.owner_uid, r.node, r.state->'requests' AS requests,"
        "  COALESCE((SELECT min(e.occurred_at) FROM resource_events e"
        "            WHERE e.uid = r.uid AND e.transition = 'scheduled'), r.created_at) AS bound_at,"
        "  (SELECT min(e.occurred_at) FROM resource_events e"
        "    WHERE e.uid = r.uid AND e.transition IN ('succeeded', 'failed', 'deleted')) AS ended_at,"
        "  r.deleted_at"
        " FROM resources r WHERE r.kind = 'Pod' AND r.api_version = 'v1' AND r.node IS NOT NULL"
        "  AND (r.created_at IS NULL OR r.created_at < $2) AND (r.deleted_at IS NULL OR r.deleted_at > $1)"
        ") AS p WHERE COALESCE(p.ended_at, p.deleted_at) IS NULL OR COALESCE(p.ended_at, p.deleted_at) > $1"
        " ORDER BY namespace, name", start, end)
    return found
