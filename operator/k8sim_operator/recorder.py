"""The lifecycle recorder's writer: batches observations into PostgreSQL, never drops one.

Watch handlers only enqueue. One writer task turns observations into history rows in
order. While PostgreSQL is unavailable the writer spools observations to a local file
(so an operator restart does not lose them either) and retries with backoff; when the
database returns, the spool is written first, then the live queue. A periodic sweep
finds objects that vanished while nobody watched and records their deletion.
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

#: Errors after which the database counts as unavailable (connection lost, server down).
DB_DOWN = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
           asyncpg.exceptions.CannotConnectNowError, asyncpg.exceptions.AdminShutdownError,
           asyncio.TimeoutError, ConnectionError)




class Recorder:
    """Owns the queue, the spool, the pool and the cache of last-known states."""

    def __init__(self, settings: OperatorSettings, kube: Kube):
        self.settings = settings
        self.kube = kube
        self.queue: asyncio.Queue[store.Observation] = asyncio.Queue()
        self.prior: dict[str, lifecycle.State | None] = {}
        self.pool: asyncpg.Pool | None = None
        self.spool = Path(settings.spool)
        self._idle = asyncio.Event()

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
                    raise
                except Exception:
                    # A bug, not an outage: keep the batch where a human can see and replay it.
                    dead = self.spool.with_suffix(".failed.jsonl")
                    log.exception("could not record %d observations; kept in %s", len(batch), dead)
                    with dead.open("a") as handle:
                        handle.writelines(json.dumps(o.to_json()) + "\n" for o in batch)
            except DB_DOWN as exc:
                log.warning("lost PostgreSQL (%s); spooling until it returns", exc)
                await self._close_pool()

    async def _next_batch(self) -> list[store.Observation]:
        try:
            first = await asyncio.wait_for(self.queue.get(), timeout=1.0)
        except TimeoutError:
            return []
        batch = [first]
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
            unknown = list({o.uid for o in batch if o.uid not in self.prior})
            prior = {o.uid: self.prior[o.uid] for o in batch if o.uid in self.prior}
            if unknown:
                prior.update(await store.load_states(conn, unknown))
            await store.record(conn, batch, prior)
        # Only a committed batch moves the cache forward.
        self.prior.update(prior)

    async def close(self) -> None:
        """On shutdown: whatever could not be written goes to the spool, to survive the restart."""
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

    async def sweep(self) -> int:
        """Record the deletion of objects that exist in the store but no longer in the cluster."""
        if self.pool is None:
            return 0
        async with self.pool.acquire() as conn:
            rows = await store.live_resources(conn)
        by_kind: dict[tuple[str, str], list[Any]] = {}
        for row in rows:
            by_kind.setdefault((row["api_version"], row["kind"]), []).append(row)
        found = 0
        for (api_version, kind), recorded in by_kind.items():
            try:
                present = {i["metadata"]["uid"] for i in await self.kube.list(api_version, kind)}
            except UnknownKind:
                present = set()  # its CRD is gone, and with it every object
            except KubeError as exc:
                log.debug("sweep skipped %s %s: %s", api_version, kind, exc)
                continue
            for row in recorded:
                if row["uid"] not in present:
                    found += 1
                    self.observe(store.Observation(
                        uid=row["uid"], api_version=api_version, kind=kind, namespace=row["namespace"],
                        name=row["name"], resource_version=row["resource_version"], observed_at=lifecycle.now(),
                        state=None, deleted_at=lifecycle.now(), reconciled=True))
        if found:
            log.info("sweep found %d objects deleted while unobserved", found)
        return found

    async def sweep_forever(self) -> None:
        await asyncio.sleep(self.settings.sweep_delay)
        while True:
            try:
                await self.sweep()
            except DB_DOWN as exc:
                log.info("sweep postponed: %s", exc)
            await asyncio.sleep(self.settings.sweep_interval)
