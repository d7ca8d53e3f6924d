"""The lifecycle recorder: its watches and its writer, which batches observations into
PostgreSQL and never drops one.

One list-then-watch stream per kind (with bookmarks) only enqueues: Kopf is not in this path,
because its per-event machinery (a deep-copied diff base of every object, per-object workers)
cost more CPU than the control plane's own work at thousands of pods. One writer task turns
observations into history rows in order. Each stream also enqueues where it is (a :class:`Mark`
after the observations it covers); the writer commits a kind's last mark in the transaction of its
batch, so a restart, even after a kill -9, watches each kind on from where its recorded history
ends, and the apiserver replays every change since (a relisting would see current states only).
While PostgreSQL is unavailable the writer spools observations and marks to a local file (so an
operator restart does not lose them either) and retries with backoff; when the database returns,
the spool is written first, then the live queue. A sweep finds objects
that vanished while nobody watched (after a kind is relisted, and now and then as a safety
net) and records their deletion; never one its kind's stream has shown and not yet seen go,
whose deletion that stream delivers after every earlier change, and none while another cluster's
recorder writes into the same database (its objects are not in this cluster's listings).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import asyncpg

from k8sim import lifecycle, store
from k8sim.kube import Kube, KubeError, UnknownKind

from .settings import OperatorSettings

log = logging.getLogger(__name__)

#: (group, plural) of kinds not recorded: heartbeats, duplicates and our own machinery.
NOT_RECORDED = {
    ("coordination.k8s.io", "leases"),
    ("events.k8s.io", "events"),  # the same objects as core v1 events, which are recorded
    ("kopf.dev", "clusterkopfpeerings"),
    ("kopf.dev", "kopfpeerings"),
    ("kwok.x-k8s.io", "stages"),
}

#: Errors after which the database counts as unavailable (connection lost, server down).
DB_DOWN = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
           asyncpg.exceptions.CannotConnectNowError, asyncpg.exceptions.AdminShutdownError,
           asyncpg.exceptions.CrashShutdownError, asyncpg.exceptions.TooManyConnectionsError,
           asyncio.TimeoutError, ConnectionError)

#: Seconds between discoveries while an established CustomResourceDefinition's kind is not served
#: yet, and for how long after it was established (the apiserver serves it a moment later).
CRD_POLL, CRD_PATIENCE = 0.25, 60.0


class Shown(set[str]):
    """The uids a kind's stream has shown to exist and not yet seen deleted; ``listed`` once its
    first listing is in (before that the stream has not said what exists; a stream resumed from a
    committed position never has: its replay delivers every change, deletions included).

    ``version`` is the last position the stream consumed. ``unswept`` is the number of the stream's
    listing (``listings`` counts them) from that listing until a sweep has recorded what went
    before it, 0 after: until then the stream's position is not committed (a restart must not
    resume past a listing whose sweep was lost). ``listed_at`` is how many items the recorder had
    queued before that listing (the sweep reads the store once they are written)."""

    listed = False
    version: str | None = None
    listings = unswept = listed_at = 0


@dataclasses.dataclass(slots=True)
class Mark:
    """A kind's stream has queued everything up to ``version`` (each kind's stream is a watch of its
    own, ordered only within itself: one position per kind)."""

    cluster: str
    api_version: str
    kind: str
    version: str

    def to_json(self) -> dict[str, Any]:
        return {"mark": [self.cluster, self.api_version, self.kind, self.version]}


Item = store.Observation | Mark


def _item(data: dict[str, Any]) -> Item:
    return Mark(*data["mark"]) if "mark" in data else store.Observation.from_json(data)


def _number(version: str | None) -> int | None:
    """An etcd revision as a number (how the apiserver's resourceVersions compare); None if not one."""
    return int(version) if version and version.isdigit() else None


def _fresh(observations: list[store.Observation], versions: dict[str, int]) -> list[store.Observation]:
    """The observations that are news: not a version of an object at or below the one its row holds
    (``versions``, updated as they pass). A resumed watch replays from its kind's committed position,
    which may be behind a batch that was committed while its mark was not (it came in the next
    batch), and a batch held at a stop is written again: an older version after a newer would be
    recorded as steps back. A deletion always passes (the sweep's carries the row's own version;
    a second one is no news to the history anyway)."""
    kept = []
    for obs in observations:
        if obs.note is None and (number := _number(obs.resource_version)) is not None:
            known = versions.get(obs.uid)
            if known is not None and number <= known and obs.state is not None:
                continue
            versions[obs.uid] = number if known is None else max(known, number)
        kept.append(obs)
    return kept


def _too_large(exc: KubeError) -> bool:
    """A resume point ahead of the apiserver (a store restored from a backup): listing is the way on."""
    return exc.status == 504 and "too large resource version" in exc.message.lower()



class Recorder:
    """Owns the queue, the spool, the pool and the cache of last-known states."""

    def __init__(self, settings: OperatorSettings, kube: Kube):
        self.settings = settings
        self.kube = kube
        self.queue: asyncio.Queue[Item] = asyncio.Queue()
        self.prior: dict[str, lifecycle.State | None] = {}
        self.written: dict[str, store.RowFacts] = {}  # each live object's row as last committed
        self.versions: dict[str, int] = {}  # each object's resourceVersion as last committed
        #: The cluster's identity (its kube-system namespace's uid): positions are per cluster, a
        #: recreated cluster's revisions start again. None: nothing is marked (no resuming).
        self.cluster: str | None = None
        #: Items queued, items taken by the writer, and how many of those are in PostgreSQL.
        self.enqueued = self.taken = self.settled = 0
        self._caught_up = asyncio.Event()  # connected, and the spool written: the store is whole
        self._deferred: set[tuple[str, str]] = set()  # swept before their listing's predecessors were in
        self.pool: asyncpg.Pool | None = None
        self.spool = Path(settings.spool)
        self._idle = asyncio.Event()
        self._sweep_kinds: set[tuple[str, str]] = set()
        self._sweep_wanted = asyncio.Event()
        #: Each streamed kind's Shown uids: the sweep leaves them to their stream.
        self.streamed: dict[tuple[str, str], Shown] = {}
        #: The batch the writer holds (taken from the queue, not yet committed): spooled if the
        #: writer is stopped while holding it.
        self._held: list[Item] = []
        self.foreign: list[str] = []  # the other clusters the last sweep found recording here

    # ------------------------------------------------------------------ input

    def observe(self, obs: Item) -> None:
        self._idle.clear()
        self.enqueued += 1
        self.queue.put_nowait(obs)

    def mark(self, key: tuple[str, str], version: str) -> None:
        """The stream of ``key`` has queued everything up to ``version``."""
        if self.cluster is not None:
            self.observe(Mark(self.cluster, key[0], key[1], version))

    async def resume_points(self, cluster: str, wait: float) -> dict[tuple[str, str], str]:
        """Where each kind's committed history ends: read from PostgreSQL once the spool is written
        (a spooled mark is ahead of the database's); if PostgreSQL stays away ``wait`` seconds, the
        spool's own marks (what they cover is in the spool), and the other kinds list."""
        try:
            await asyncio.wait_for(self._caught_up.wait(), wait)
            if (pool := self.pool) is not None:
                async with pool.acquire() as conn:
                    return await store.watch_positions(conn, cluster)
        except DB_DOWN as exc:
            log.warning("resume points not read from PostgreSQL (%s); using the spool's", str(exc) or "timed out")
        found: dict[tuple[str, str], str] = {}
        if self._spooled():
            with self.spool.open() as handle:
                for line in handle:
                    if line.startswith('{"mark"'):
                        mark = Mark(*json.loads(line)["mark"])
                        if mark.cluster == cluster:
                            found[(mark.api_version, mark.kind)] = mark.version
        return found

    async def drained(self, timeout: float = 30.0) -> bool:
        """Wait until everything observed so far is committed (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.queue.empty() and not self._spooled() and self._idle.is_set():
                return True
            await asyncio.sleep(0.05)
        return False

    # ------------------------------------------------------------------ writer

    async def run(self) -> None:
        backoff = 0.2
        while True:
            if self.pool is None:
                try:
                    self.pool = await store.connect(self.settings.database_url, timeout=5)
                    await store.migrate(self.pool)
                    backoff = 0.2
                    log.info("recorder connected to PostgreSQL")
                except DB_DOWN as exc:
                    await self._close_pool()
                    self._spool_queue()
                    log.warning("PostgreSQL unavailable (%s); retrying in %.1f s, %d observations spooled",
                                exc, backoff, self._spooled_count())
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.settings.retry_max)
                    continue
            try:
                if self._spooled():
                    await self._replay_spool()
                    self.settled = self.taken  # everything taken was committed or spooled, and now is in
                    continue
                self._caught_up.set()
                batch = await self._next_batch()
                if not batch:
                    self._idle.set()
                    continue
                try:
                    await self._write(batch)
                except DB_DOWN:
                    self._append_spool(batch)
                    self._held = []
                    raise
                except Exception:
                    # A bug, not an outage: keep the batch where a human can see and replay it.
                    dead = self.spool.with_suffix(".failed.jsonl")
                    log.exception("could not record %d observations; kept in %s", len(batch), dead)
                    with dead.open("a") as handle:
                        handle.writelines(json.dumps(o.to_json()) + "\n" for o in batch)
                self._held = []  # (a stop while writing leaves it held, for close to spool)
                self.settled = self.taken
            except DB_DOWN as exc:
                log.warning("lost PostgreSQL (%s); spooling until it returns", exc)
                await self._close_pool()

    async def _next_batch(self) -> list[Item]:
        """The next batch, also kept as ``_held`` from its first observation on: a stop while the
        batch is gathered or written must not lose what was taken from the queue."""
        try:
            first = await asyncio.wait_for(self.queue.get(), timeout=1.0)
        except TimeoutError:
            return []
        batch = self._held = [first]
        self.taken += 1
        size = 1 if isinstance(first, store.Observation) else 0  # marks ride along: observations fill a batch
        deadline = time.monotonic() + self.settings.flush_interval
        while size < self.settings.batch_size:
            try:
                item = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self.queue.get(), timeout=left)
                except TimeoutError:
                    break
            batch.append(item)
            self.taken += 1
            size += 1 if isinstance(item, store.Observation) else 0
        return batch

    async def _write(self, batch: list[Item]) -> None:
        """One transaction: the batch's observations and, per kind, its last mark (never ahead of
        what is stored: a mark follows the observations it covers in the queue)."""
        assert self.pool is not None
        observations = [o for o in batch if isinstance(o, store.Observation)]
        positions = {(m.cluster, m.api_version, m.kind): m.version for m in batch if isinstance(m, Mark)}
        async with self.pool.acquire() as conn, conn.transaction():
            unknown = list({o.uid for o in observations if o.uid not in self.prior and o.note is None})
            prior = {o.uid: self.prior[o.uid] for o in observations if o.uid in self.prior}
            versions = {o.uid: self.versions[o.uid] for o in observations if o.uid in self.versions}
            if unknown:
                for uid, (state, version) in (await store.load_versions(conn, unknown)).items():
                    prior[uid] = state
                    if (number := _number(version)) is not None:
                        versions[uid] = number
            fresh = _fresh(observations, versions)
            written = {o.uid: self.written[o.uid] for o in fresh if o.uid in self.written}
            await store.record(conn, fresh, prior, written)
            if positions:
                await store.save_watch_positions(conn, positions)
        # Only a committed batch moves the caches forward.
        self.prior.update(prior)
        self.versions.update(versions)
        for uid in {o.uid for o in fresh if o.note is None}:
            if uid in written:
                self.written[uid] = written[uid]
            else:
                self.written.pop(uid, None)

    async def close(self) -> None:
        """On shutdown (the writer stopped): whatever could not be written goes to the spool, to
        survive the restart, the held batch first (a committed one is written again: its steps are
        not repeated, the history's unique indexes see to that)."""
        held, self._held = self._held, []
        if held:
            self._append_spool(held)
        self._spool_queue()
        await self._close_pool()

    async def _close_pool(self) -> None:
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.terminate()

    # ------------------------------------------------------------------ spool

    def _spooled(self) -> bool:
        return self.spool.exists() and self.spool.stat().st_size > 0

    def _spooled_count(self) -> int:
        if not self._spooled():
            return 0
        with self.spool.open() as handle:
            return sum(1 for _ in handle)

    def _append_spool(self, batch: list[Item]) -> None:
        self.spool.parent.mkdir(parents=True, exist_ok=True)
        with self.spool.open("a") as handle:
            for obs in batch:
                handle.write(json.dumps(obs.to_json()) + "\n")
            handle.flush()

    def _spool_queue(self) -> None:
        batch = []
        while not self.queue.empty():
            batch.append(self.queue.get_nowait())
        self.taken += len(batch)
        if batch:
            self._append_spool(batch)

    async def _replay_spool(self) -> None:
        """Write the spool in order; after each committed chunk, keep only the rest."""
        lines = self.spool.read_text().splitlines()
        size = self.settings.batch_size
        for start in range(0, len(lines), size):
            chunk = [_item(json.loads(line)) for line in lines[start:start + size] if line]
            await self._write(chunk)
            rest = lines[start + size:]
            tmp = self.spool.with_suffix(".tmp")
            tmp.write_text("".join(line + "\n" for line in rest))
            tmp.replace(self.spool)
        log.info("wrote %d spooled observations", len(lines))

    # ------------------------------------------------------------------ sweep

    async def sweep(self, kinds: set[tuple[str, str]] | None = None) -> int:
        """Record the deletion of objects that exist in the store but no longer in the cluster
        (of the given (apiVersion, kind)s, or of every recorded kind)."""
        if self.pool is None:
            raise ConnectionError("no PostgreSQL connection yet")
        # Taken before the rows are read: the listings this sweep answers, and what was in by then.
        settled = self.settled
        listings = {key: (shown.unswept, shown.listed_at) for key, shown in self.streamed.items() if shown.unswept}
        # The rows are read before the listing: an object created in between is in neither.
        async with self.pool.acquire() as conn:
            if await self._shared(conn):
                return 0
            rows = await store.live_resources(conn)
        by_kind: dict[tuple[str, str], list[Any]] = {}
        for row in rows:
            key = (row["api_version"], row["kind"])
            if kinds is None or key in kinds:
                by_kind.setdefault(key, []).append(row)
        found = 0
        for (api_version, kind), recorded in by_kind.items():
            if (shown := self.streamed.get((api_version, kind))) is not None and not shown.listed:
                continue  # not listed yet (its listing asks for a sweep), or resumed: the stream sees every deletion
            try:
                present = {i["metadata"]["uid"] for i in await self.kube.list(api_version, kind, metadata_only=True)}
            except UnknownKind:
                if api_version in self.kube.unreachable:
                    continue  # discovery could not tell: unknown is not gone
                present = set()  # its CRD is gone, and with it every object
            except KubeError as exc:
                log.debug("sweep skipped %s %s: %s", api_version, kind, exc)
                continue
            # Read after the listing, in the step that enqueues: an object its stream has shown and
            # not yet seen go is the stream's to end, in order. A stream behind the listing (a burst,
            # a reconnect) still has that object's earlier changes to deliver; a deletion enqueued
            # first would have the writer drop them (a late change cannot resurrect a deleted row).
            shown = self.streamed.get((api_version, kind)) or Shown()
            for row in recorded:
                if row["uid"] not in present and row["uid"] not in shown:
                    found += 1
                    self.observe(store.Observation(
                        uid=row["uid"], api_version=api_version, kind=kind, namespace=row["namespace"],
                        name=row["name"], resource_version=row["resource_version"], observed_at=lifecycle.now(),
                        state=None, deleted_at=lifecycle.now(), reconciled=True))
            self._swept((api_version, kind), listings, settled)
        for key in listings.keys() - {(row["api_version"], row["kind"]) for row in rows}:
            self._swept(key, listings, settled)  # nothing of its kind recorded: nothing went unseen
        if found:
            log.info("sweep found %d objects deleted while unobserved", found)
        return found

    async def _shared(self, conn: asyncpg.Connection) -> bool:
        """Whether another cluster's recorder writes into this database now. The rows do not say
        which cluster holds an object, so a sweep would take that cluster's objects, absent from
        this one's listings, for deleted; and a deleted row stays deleted: every later change of
        the object is dropped (two simulators on one PostgreSQL lost each other's node steps so).
        Its leftovers, once it stopped (a cluster recreated on the same database), are swept."""
        if self.cluster is None:
            return False  # no identity of our own to tell another's by
        found = await conn.fetch("SELECT DISTINCT cluster FROM watch_positions WHERE cluster <> $1 "
                                 "AND updated_at > now() - make_interval(secs => $2) ORDER BY cluster",
                                 self.cluster, self.settings.foreign_window)
        others = [str(r["cluster"]) for r in found]
        if others and others != self.foreign:
            log.error("cluster(s) %s record into this database too (K8SIM_DATABASE_URL shared by two simulators?): "
                      "no deletion is swept while they do, or this cluster's sweep would end their objects' "
                      "histories", ", ".join(others))
        self.foreign = others
        return bool(others)

    def _swept(self, key: tuple[str, str], listings: dict[tuple[str, str], tuple[int, int]], settled: int) -> None:
        """A kind was swept after its stream's listing: its position may be committed again (from
        the stream's current one, queued after the sweep's deletions), unless the rows read did not
        yet hold everything queued before that listing (an object added then, gone by the listing,
        would have been missed): then it is swept again."""
        shown = self.streamed.get(key)
        if shown is None or key not in listings or shown.unswept != listings[key][0]:
            return  # no stream, or it listed again since: that listing's sweep is requested
        if listings[key][1] > settled:
            self._deferred.add(key)
            return
        shown.unswept = 0
        if shown.version:
            self.mark(key, shown.version)

    def request_sweep(self, key: tuple[str, str]) -> None:
        """A kind was (re)listed or went away: what vanished while nobody watched is found by a sweep."""
        self._sweep_kinds.add(key)
        self._sweep_wanted.set()

    async def sweep_forever(self) -> None:
        """Sweep the kinds that relisted (a watch only misses deletions across a gap), and every kind
        now and then as a safety net."""
        while True:
            try:
                await asyncio.wait_for(self._sweep_wanted.wait(), timeout=self.settings.sweep_interval)
                await asyncio.sleep(self.settings.sweep_delay)  # kinds relisted together, swept together
                kinds: set[tuple[str, str]] | None = set(self._sweep_kinds)
            except TimeoutError:
                kinds = None
            self._sweep_wanted.clear()
            try:
                await self.sweep(kinds)
            except Exception as exc:  # a bug too must not end the safety net for good
                if isinstance(exc, DB_DOWN):
                    log.info("sweep postponed: %s", exc)
                else:
                    log.exception("sweep failed; retrying")
                self._sweep_wanted.set()  # kept pending until a sweep succeeds
                await asyncio.sleep(self.settings.retry_max)
                continue
            if kinds is not None:
                self._sweep_kinds -= kinds
            deferred, self._deferred = self._deferred, set()
            for key in deferred:
                self.request_sweep(key)


class Watches:
    """Every kind the cluster serves (its preferred version, listable and watchable) streamed into
    the recorder: a listing first (observations marked reconciled: changes made while nobody
    watched, and a sweep for what went meanwhile), then a watch from that version with bookmarks,
    relisting only when the version is too old. New kinds are picked up when a
    CustomResourceDefinition changes (or is listed), and by a periodic rescan.

    A relist sees current states only, so a stream is never stopped on a discovery that could not
    read its group version: only a kind positively gone (its group version read without it) ends.

    With ``resume``, a kind whose recorded history has a committed position (see :class:`Mark`)
    is not listed at start but watched on from there: the apiserver replays each change since, and
    changes made before the start (while the operator was down) are recorded as reconciled (seen
    late). Only a position too old for the apiserver (410 Gone) falls back to a listing and a sweep."""

    def __init__(self, kube: Kube, recorder: Recorder, rescan: float = 30.0, resume: bool = False):
        self.kube, self.recorder, self.rescan, self.resume = kube, recorder, rescan, resume
        #: (apiVersion, kind) → the position its first stream watches on from, instead of listing.
        self.positions: dict[tuple[str, str], str] = {}
        #: The cluster's resourceVersion at start: a replayed change up to it happened while we were down.
        self.since: int | None = None
        self.streams: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._changed = asyncio.Event()
        #: (group, kind) of each established CustomResourceDefinition → until when (monotonic) its
        #: kind is looked for in discovery again and again rather than at the next rescan.
        self._awaited: dict[tuple[str, str], float] = {}

    async def kinds(self) -> tuple[set[tuple[str, str]], set[str]]:
        """(apiVersion, kind) of everything to record (each group's preferred version, listable and
        watchable), and the group versions that could not be read; refreshes the client's discovery."""
        served = await self.kube.discover(refresh=True)
        for key in [k for k in self._awaited if k in {(info.group, info.kind) for info in served.values()}]:
            del self._awaited[key]
        found = {key for key, info in served.items()
                 if info.api_version in self.kube.preferred and {"list", "watch"} <= info.verbs
                 and (info.group, info.plural) not in NOT_RECORDED}
        return found, set(self.kube.unreachable)

    async def prepare(self) -> None:
        """Which cluster this is, where its history is now, and where each kind's recorded history
        ends (waiting for the apiserver as long as it takes: no stream runs without it)."""
        backoff = 0.5
        while True:
            try:
                found = await self.kube.request("GET", "/api/v1/namespaces",
                                                params={"fieldSelector": "metadata.name=kube-system"})
                break
            except KubeError as exc:
                log.warning("cluster identity not read (%s); retrying in %.1f s", exc.message, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
        items = found.get("items") or []
        if not items:
            log.warning("no kube-system namespace to identify the cluster by: every kind is listed at start")
            return
        self.since = _number(str((found.get("metadata") or {}).get("resourceVersion", "")))
        cluster = self.recorder.cluster = str(items[0]["metadata"]["uid"])
        self.positions = await self.recorder.resume_points(cluster, self.recorder.settings.resume_wait)
        log.info("cluster %s at %s: %d kinds resume where their history ends", cluster, self.since,
                 len(self.positions))

    async def run(self) -> None:
        if self.resume:
            await self.prepare()
        try:
            while True:
                # Cleared before discovery: a CRD that changes while it runs asks for another pass.
                self._changed.clear()
                try:
                    wanted, unreachable = await self.kinds()
                except KubeError as exc:
                    log.warning("discovery failed (%s); retrying", exc.message)
                    wanted, unreachable = set(self.streams), set()
                for key in [k for k, task in self.streams.items() if task.done()]:
                    del self.streams[key]  # its kind went away; it may come back
                for key in wanted - set(self.streams):
                    self.streams[key] = asyncio.create_task(self.stream(*key), name=f"record {key[1]}")
                for key in set(self.streams) - wanted:
                    if key[0] in unreachable:
                        continue  # unknown is not gone: keep watching
                    self.streams.pop(key).cancel()
                    self.recorder.request_sweep(key)  # its CRD went, and with it every object
                now = time.monotonic()
                self._awaited = {k: until for k, until in self._awaited.items() if until > now}
                try:
                    # An established CRD whose kind discovery does not serve yet: look again soon.
                    await asyncio.wait_for(self._changed.wait(), timeout=CRD_POLL if self._awaited else self.rescan)
                except TimeoutError:
                    pass
        finally:
            for task in self.streams.values():
                task.cancel()
            await asyncio.gather(*self.streams.values(), return_exceptions=True)

    def _observe(self, obj: dict[str, Any], *, observed_at: Any, gone: bool = False, reconciled: bool = False) -> None:
        if not (obj.get("metadata") or {}).get("uid"):
            return
        if obj.get("kind") == "Event" and obj.get("apiVersion") == "v1":
            # An Event is a step of its object's history; its expiry (an hour later) is not news.
            note = None if gone else store.Observation.of_event(obj, observed_at=observed_at, reconciled=reconciled)
            if note is not None:
                self.recorder.observe(note)
            return
        self.recorder.observe(store.Observation.of(obj, observed_at=observed_at, gone=gone, reconciled=reconciled))

    def _crd(self, crd: dict[str, Any], gone: bool) -> None:
        spec = crd.get("spec") or {}
        key = (str(spec.get("group", "")), str((spec.get("names") or {}).get("kind", "")))
        if not gone and lifecycle.conditions(crd).get("Established", {}).get("status") == "True":
            self._awaited.setdefault(key, time.monotonic() + CRD_PATIENCE)
        else:
            self._awaited.pop(key, None)
        self._changed.set()

    def consume(self, key: tuple[str, str], shown: Shown, change: str, payload: Any,
                version: str | None = None) -> None:
        """One item of a kind's stream (at position ``version``, if known): observations for the
        writer, in order, then a mark of the position; and what the stream has shown to exist
        (which the sweep leaves to it)."""
        api_version, kind = key
        notes = kind == "Event" and api_version == "v1"  # steps of other objects, no rows of their own
        if change == "LISTED":
            listed_at = self.recorder.enqueued if version else 0
            now = lifecycle.now()
            for obj in payload:
                self._observe(obj, observed_at=now, reconciled=True)
            shown.clear()
            if not notes:
                shown.update(uid for obj in payload if (uid := (obj.get("metadata") or {}).get("uid")))
            if not notes and version:
                # Not resumable past this listing until a sweep has recorded what went before it.
                shown.listings += 1
                shown.unswept, shown.listed_at = shown.listings, listed_at
            shown.listed = True
            self.recorder.request_sweep(key)  # what went while nobody watched
            if kind == "CustomResourceDefinition":
                for crd in payload:
                    self._crd(crd, gone=False)
                self._changed.set()  # one created between discovery and this listing
        elif change != "BOOKMARK":
            gone = change == "DELETED"
            number = _number(version)
            replayed = number is not None and self.since is not None and number <= self.since
            self._observe(payload, observed_at=lifecycle.now(), gone=gone, reconciled=replayed)
            if not notes and (uid := (payload.get("metadata") or {}).get("uid")):
                if gone:
                    shown.discard(uid)
                else:
                    shown.add(uid)
            if kind == "CustomResourceDefinition":
                self._crd(payload, gone)
        if version:
            shown.version = version
            if not shown.unswept:
                self.recorder.mark(key, version)

    async def stream(self, api_version: str, kind: str) -> None:
        def keep_going(exc: KubeError) -> bool:
            # A kind discovery could not read is unknown, not gone: retry from the same version.
            # Gone for good (its group version read without it) ends the stream; the rescan sweeps.
            return exc.status != 404 or (isinstance(exc, UnknownKind) and api_version in self.kube.unreachable)

        key = (api_version, kind)
        shown = self.recorder.streamed[key] = Shown()
        # Kube.list_then_watch's loop, but starting from a committed position and passing bookmarks on.
        version = resumed = self.positions.pop(key, None)
        backoff = 0.5
        try:
            while True:
                try:
                    if version is None:
                        items, version = await self.kube.list_versioned(api_version, kind)
                        self.consume(key, shown, "LISTED", items, version)
                    async for event in self.kube.watch(api_version, kind, version):
                        change, obj = event.get("type"), event.get("object") or {}
                        if change == "ERROR":
                            raise KubeError(int(obj.get("code") or 500), str(obj.get("reason", "")),
                                            str(obj.get("message", "")))
                        version = (obj.get("metadata") or {}).get("resourceVersion") or version
                        obj.setdefault("apiVersion", api_version)
                        obj.setdefault("kind", kind)
                        self.consume(key, shown, str(change), obj, version)
                        resumed, backoff = None, 0.5
                except KubeError as exc:
                    if exc.status == 410 or (resumed is not None and _too_large(exc)):
                        log.info("%s %s: resourceVersion %s is gone (%s); listing", api_version, kind, version,
                                 exc.message)
                        version = resumed = None
                        continue
                    if not keep_going(exc):
                        return
                    log.info("watch of %s %s interrupted (%s); retrying in %.1f s", api_version, kind, exc.message,
                             backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 10.0)
        finally:
            if self.recorder.streamed.get(key) is shown:
                del self.recorder.streamed[key]  # no stream: the sweep decides alone again
