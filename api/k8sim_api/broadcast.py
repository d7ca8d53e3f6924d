"""One Redis subscription per API process, fanned out to bounded per-client queues.

A client whose queue is full is too slow: it is dropped (its socket closed), never the server.
Each update is encoded once per tenant view, not once per client or request.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import redis.asyncio as aioredis

from k8sim import contract

log = logging.getLogger(__name__)


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
    def __init__(self, tenant: str | None, size: int):
        self.tenant = tenant
        self.queue: asyncio.Queue[Update] = asyncio.Queue(maxsize=size)
        self.dropped = asyncio.Event()


class Broadcaster:
    def __init__(self, url: str, channel: str, key: str, deploy_channel: str, queue_size: int = 16):
        self.redis = aioredis.Redis.from_url(url, socket_timeout=None)
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
        await self.redis.aclose()

    async def snapshot(self) -> Update | None:
        """The latest snapshot: from the subscription, else from the key the engine sets."""
        if self.latest is None:
            try:
                raw = await self.redis.get(self.key)
            except (aioredis.RedisError, OSError):
                return None
            if raw:
                self.latest = Update("monitoring", raw if isinstance(raw, bytes) else raw.encode())
        return self.latest

    def subscribe(self, tenant: str | None) -> Client:
        client = Client(tenant, self.queue_size)
        self.clients.add(client)
        return client

    def unsubscribe(self, client: Client) -> None:
        self.clients.discard(client)

    async def announce(self, event: dict[str, Any]) -> None:
        """Publish a deploy progress event to every API process's WebSocket clients."""
        try:
            await self.redis.publish(self.deploy_channel, json.dumps(event))
        except (aioredis.RedisError, OSError) as exc:
            log.warning("deploy progress not published: %s", exc)

    def fan_out(self, update: Update) -> None:
        if update.kind == "monitoring":
            self.latest = update
        for client in list(self.clients):
            if update.kind == "deployment" and client.tenant and update.tenant != client.tenant:
                continue
            try:
                client.queue.put_nowait(update)
            except asyncio.QueueFull:
                log.info("dropping a slow WebSocket client (queue of %d full)", self.queue_size)
                self.clients.discard(client)
                client.dropped.set()

    async def _listen(self) -> None:
        backoff = 0.5
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel, self.deploy_channel)
                    backoff = 0.5
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            kind = "monitoring" if message["channel"].decode() == self.channel else "deployment"
                            self.fan_out(Update(kind, message["data"]))
            except asyncio.CancelledError:
                raise
            except (aioredis.RedisError, OSError, ValueError) as exc:
                log.warning("Redis subscription lost (%s); retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)
