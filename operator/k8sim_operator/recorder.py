"""The lifecycle recorder: its watches and its writer, which batches observations into
PostgreSQL and never drops one.

One list-then-watch stream per kind (with bookmarks) only enqueues: Kopf is not in this path,
because its per-event machinery (a deep-copied diff base of every object, per-object workers)
cost more CPU than the control plane's own work at thousands of pods. One writer task turns
observations into history rows in order. While PostgreSQL is unavailable the writer spools observations to a local file
(so an operator restart does not lose them either) and retries with backoff; when the
database returns, the spool is written first, then the live queue. A sweep finds objects
that vanished while nobody watched (after a kind is relisted, and now and then as a safety
net) and records their deletion; never one its kind's stream has shown and not yet seen go,
whose deletion that stream delivers after every earlier change.
"""

from __future__ import annotations

import asyncio
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
    first listing is in (before that the stream has not said what exists)."""

    listed = False



class Recorder:
    """Owns the queue, the spool, the pool and the cache of last-known states."""

    def __init__(self, settings: OperatorSettings, kube: Kube):
        self.settings = settings
        self.kube = kube
        self.queue: asyncio.Queue[store.Observation] = asyncio.Queue()
        self.prior: dict[str, lifecycle.State | None] = {}
        self.written: dict[str, store.RowFacts] = {}  # each live object's row as last committed
        self.pool: asyncpg.Pool | None = None
        self.spool = Path(settings.spool)
        self._idle = asyncio.Event()
        self._sweep_kinds: set[tuple[str, str]] = set()
        self._sweep_wanted = asyncio.Event()
        #: Each streamed kind's Shown uids: the sweep leaves them to their stream.
        self.streamed: dict[tuple[str, str], Shown] = {}
        #: The batch the writer holds (taken from the queue, not yet committed): spooled if the
        #: writer is stopped while holding it.
        self._held: list[store.Observation] = []

    # ------------------------------------------------------------------ input

    def observe(self, obs: store.Observation) -> None:
        self._idle.clear()
        self.queue.put_nowait(obs)

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
                    continue
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
            except DB_DOWN as exc:
                log.warning("lost PostgreSQL (%s); spooling until it returns", exc)
                await self._close_pool()

    async def _next_batch(self) -> list[store.Observation]:
        """The next batch, also kept as ``_held`` from its first observation on: a stop while the
        batch is gathered or written must not lose what was taken from the queue."""
        try:
            first = await asyncio.wait_for(self.queue.get(), timeout=1.0)
        except TimeoutError:
            return []
        batch = self._held = [first]
        deadline = time.monotonic() + self.settings.flush_interval
        while len(batch) < self.settings.batch_size:
            try:
                batch.append(self.queue.get_nowait())
            except asyncio.QueueEmpty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), timeout=left))
                except TimeoutError:
                    break
        return batch

    async def _write(self, batch: list[store.Observation]) -> None:
        assert self.pool is not None
        async with self.pool.acquire() as conn, conn.transaction():
            unknown = list({o.uid for o in batch if o.uid not in self.prior and o.note is None})
            prior = {o.uid: self.prior[o.uid] for o in batch if o.uid in self.prior}
            if unknown:
                prior.update(await store.load_states(conn, unknown))
            written = {o.uid: self.written[o.uid] for o in batch if o.uid in self.written}
            await store.record(conn, batch, prior, written)
        # Only a committed batch moves the caches forward.
        self.prior.update(prior)
        for uid in {o.uid for o in batch if o.note is None}:
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

    def _append_spool(self, batch: list[store.Observation]) -> None:
        self.spool.parent.mkdir(parents=True, exist_ok=True)
        with self.spool.open("a") as handle:
            for obs in batch:
                handle.write(json.dumps(obs.to_json()) + "\n")
            handle.flush()

    def _spool_queue(self) -> None:
        batch = []
        while not self.queue.empty():
            batch.append(self.queue.get_nowait())
        if batch:
            self._append_spool(batch)

    async def _replay_spool(self) -> None:
        """Write the spool in order; after each committed chunk, keep only the rest."""
        lines = self.spool.read_text().splitlines()
        size = self.settings.batch_size
        for start in range(0, len(lines), size):
            chunk = [store.Observation.from_json(json.loads(line)) for line in lines[start:start + size] if line]
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
        # The rows are read before the listing: an object created in between is in neither.
        async with self.pool.acquire() as conn:
            rows = await store.live_resources(conn)
        by_kind: dict[tuple[str, str], list[Any]] = {}
        for row in rows:
            key = (row["api_version"], row["kind"])
            if kinds is None or key in kinds:
                by_kind.setdefault(key, []).append(row)
        found = 0
        for (api_version, kind), recorded in by_kind.items():
            if (shown := self.streamed.get((api_version, kind))) is not None and not shown.listed:
                continue  # its stream has not listed yet; its listing asks for a sweep
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
        if found:
            log.info("sweep found %d objects deleted while unobserved", found)
        return found

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


class Watches:
    """Every kind the cluster serves (its preferred version, listable and watchable) streamed into
    the recorder: a listing first (observations marked reconciled: changes made while nobody
    watched, and a sweep for what went meanwhile), then a watch from that version with bookmarks,
    relisting only when the version is too old. New kinds are picked up when a
    CustomResourceDefinition changes (or is listed), and by a periodic rescan.

    A relist sees current states only, so a stream is never stopped on a discovery that could not
    read its group version: only a kind positively gone (its group version read without it) ends."""

    def __init__(self, kube: Kube, recorder: Recorder, rescan: float = 30.0):
        self.kube, self.recorder, self.rescan = kube, recorder, rescan
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

    async def run(self) -> None:
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

    def consume(self, key: tuple[str, str], shown: Shown, change: str, payload: Any) -> None:
        """One item of a kind's stream: observations for the writer, in order, and what the stream
        has shown to exist (which the sweep leaves to it)."""
        api_version, kind = key
        notes = kind == "Event" and api_version == "v1"  # steps of other objects, no rows of their own
        if change == "LISTED":
            now = lifecycle.now()
            for obj in payload:
                self._observe(obj, observed_at=now, reconciled=True)
            shown.clear()
            if not notes:
                shown.update(uid for obj in payload if (uid := (obj.get("metadata") or {}).get("uid")))
            shown.listed = True
            self.recorder.request_sweep(key)  # what went while nobody watched
            if kind == "CustomResourceDefinition":
                for crd in payload:
                    self._crd(crd, gone=False)
                self._changed.set()  # one created between discovery and this listing
            return
        gone = change == "DELETED"
        self._observe(payload, observed_at=lifecycle.now(), gone=gone)
        if not notes and (uid := (payload.get("metadata") or {}).get("uid")):
            if gone:
                shown.discard(uid)
            else:
                shown.add(uid)
        if kind == "CustomResourceDefinition":
            self._crd(payload, gone)

    async def stream(self, api_version: str, kind: str) -> None:
        def keep_going(exc: KubeError) -> bool:
            # A kind discovery could not read is unknown, not gone: retry from the same version.
            # Gone for good (its group version read without it) ends the stream; the rescan sweeps.
            return exc.status != 404 or (isinstance(exc, UnknownKind) and api_version in self.kube.unreachable)

        key = (api_version, kind)
        shown = self.recorder.streamed[key] = Shown()
        try:
            async for change, payload in self.kube.list_then_watch(api_version, kind, keep_going=keep_going):
                self.consume(key, shown, change, payload)
        finally:
            if self.recorder.streamed.get(key) is shown:
                del self.recorder.streamed[key]  # no stream: the sweep decides alone again
