"""One subscription per API process, fanned out to bounded per-client queues.

The fan-out sits behind a small :class:`Backend` interface (encode/broadcaster's pattern):
Redis in production, memory in unit tests. A client whose queue is full is too slow: it is
dropped (its socket closed), never the server. Each update is encoded once per tenant view,
not once per client or request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

import redis.asyncio as aioredis

from k8sim import contract

log = logging.getLogger(__name__)


class Backend(Protocol):
    """Where snapshots and deploy events come from."""

    async def close(self) -> None: ...

    async def get(self, key: str) -> bytes | None:
        """The value of a key (the latest snapshot), None when absent or unreachable."""

    async def publish(self, channel: str, message: bytes) -> None: ...

    def listen(self, *channels: str) -> AsyncIterator[tuple[str, bytes]]:
        """(channel, message) for every message on these channels, for ever (reconnecting)."""


class RedisBackend:
    """Redis pub/sub: one connection for the subscription, reconnecting with backoff."""

    def __init__(self, url: str):
        self.redis = aioredis.Redis.from_url(url, socket_timeout=None)

    async def close(self) -> None:
        await self.redis.aclose()

    async def get(self, key: str) -> bytes | None:
        try:
            raw = await self.redis.get(key)
        except (aioredis.RedisError, OSError):
            return None
        return raw if isinstance(raw, bytes | None) else str(raw).encode()

    async def publish(self, channel: str, message: bytes) -> None:
        await self.redis.publish(channel, message)

    async def listen(self, *channels: str) -> AsyncIterator[tuple[str, bytes]]:
        backoff = 0.5
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(*channels)
                    backoff = 0.5
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            yield message["channel"].decode(), message["data"]
            except (aioredis.RedisError, OSError, ValueError) as exc:
                log.warning("Redis subscription lost (%s); retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)


class MemoryBackend:
    """In-process pub/sub for tests: the same semantics without a server."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self._queues: list[tuple[set[str], asyncio.Queue[tuple[str, bytes]]]] = []

    async def close(self) -> None:
        self._queues.clear()

    async def get(self, key: str) -> bytes | None:
        return self.values.get(key)

    async def publish(self, channel: str, message: bytes) -> None:
        for channels, queue in self._queues:
            if channel in channels:
                queue.put_nowait((channel, message))

    async def listen(self, *channels: str) -> AsyncIterator[tuple[str, bytes]]:
        queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        entry = (set(channels), queue)
        self._queues.append(entry)
        try:
            while True:
                yield await queue.get()
        finally:
            if entry in self._queues:
                self._queues.remove(entry)


class Update:
    """One published message: a monitoring snapshot or a deploy progress event."""

    def __init__(self, kind: str, raw: bytes):
        self.kind, self.raw = kind, raw
        self.payload: dict[str, Any] = json.loads(raw)
        self._texts: dict[str | None, str] = {}

    @property
    def tenant(self) -> str | None:
        value = self.payload.get("tenant_id")
        return str(value) if value is not None else None

    def text_for(self, tenant: str | None) -> str:
        """The WebSocket message for a client with this tenant filter (None: everything)."""
        if tenant not in self._texts:
            if self.kind == "deployment":
                self._texts[tenant] = self.raw.decode()
            else:
                data = contract.tenant_document(self.payload, tenant) if tenant else self.payload
                self._texts[tenant] = json.dumps({"type": "monitoring_update", "tenant_id": tenant, "data": data,
                                                  "timestamp": self.payload["timestamp"]})
        return self._texts[tenant]


class Client:
    """One WebSocket's bounded queue; None in it means stop sending (``dropped``: it fell too far behind)."""

    def __init__(self, tenant: str | None, size: int):
        self.tenant = tenant
        self.queue: asyncio.Queue[Update | None] = asyncio.Queue(maxsize=size)
        self.dropped = asyncio.Event()

    def wants(self, update: Update) -> bool:
        """Deploy events go to their tenant's clients (exactly) and to unfiltered ones."""
        return update.kind != "deployment" or not self.tenant or update.tenant == self.tenant

    def stop(self) -> None:
        """Wake the sender with None: its socket is leaving (or too slow), so what is queued no longer
        matters. One awaited queue per client, not a task per update: at 1,000 clients that is the cost."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


class Broadcaster:
    def __init__(self, backend: Backend, channel: str, key: str, deploy_channel: str, queue_size: int = 16):
        self.backend = backend
        self.channel, self.key, self.queue_size = channel, key, queue_size
        self.deploy_channel = deploy_channel
        self.clients: set[Client] = set()
        self.latest: Update | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="broadcaster")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.backend.close()

    async def snapshot(self) -> Update | None:
        """The latest snapshot: from the subscription, else from the key the engine sets."""
        if self.latest is None:
            raw = await self.backend.get(self.key)
            if raw:
                self.latest = Update("monitoring", raw)
        return self.latest

    @contextlib.asynccontextmanager
    async def subscribe(self, tenant: str | None) -> AsyncIterator[Client]:
        """A client's queue for as long as the block runs."""
        client = Client(tenant, self.queue_size)
        self.clients.add(client)
        try:
            yield client
        finally:
            self.clients.discard(client)

    async def announce(self, event: dict[str, Any]) -> None:
        """Publish a deploy progress event to every API process's WebSocket clients."""
        try:
            await self.backend.publish(self.deploy_channel, json.dumps(event).encode())
        except (aioredis.RedisError, OSError) as exc:
            log.warning("deploy progress not published: %s", exc)

    def fan_out(self, update: Update) -> None:
        if update.kind == "monitoring":
            self.latest = update
        for client in list(self.clients):
            if not client.wants(update):
                continue
            try:
                client.queue.put_nowait(update)
            except asyncio.QueueFull:
                log.info("dropping a slow WebSocket client (queue of %d full)", self.queue_size)
                self.clients.discard(client)
                client.dropped.set()
                client.stop()

    async def _listen(self) -> None:
        async for channel, data in self.backend.listen(self.channel, self.deploy_channel):
            try:
                self.fan_out(Update("monitoring" if channel == self.channel else "deployment", data))
            except ValueError as exc:  # not JSON: someone else's message on our channel
                log.warning("ignoring an unreadable message on %s: %s", channel, exc)
