"""One Redis subscription per API process, fanned out to bounded per-client queues.

A client whose queue is full is too slow: it is dropped (its socket closed), never the server.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import redis.asyncio as aioredis

log = logging.getLogger(__name__)


class Client:
    def __init__(self, tenant: str | None, size: int):
        self.tenant = tenant
        # (kind, payload): "monitoring" snapshots and "deployment" progress events.
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(maxsize=size)
        self.dropped = asyncio.Event()


class Broadcaster:
    def __init__(self, url: str, channel: str, key: str, deploy_channel: str, queue_size: int = 16):
        self.redis = aioredis.Redis.from_url(url, socket_timeout=None)
        self.channel, self.key, self.queue_size = channel, key, queue_size
        self.deploy_channel = deploy_channel
        self.clients: set[Client] = set()
        self.latest: dict[str, Any] | None = None
        self.published = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="broadcaster")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.redis.aclose()

    async def snapshot(self) -> dict[str, Any] | None:
        """The latest snapshot: from the subscription, else from the key the engine sets."""
        if self.latest is None:
            try:
                raw = await self.redis.get(self.key)
            except (aioredis.RedisError, OSError):
                return None
            if raw:
                self.latest = json.loads(raw)
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

    def fan_out(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "monitoring":
            self.latest = payload
            self.published += 1
        for client in list(self.clients):
            if kind == "deployment" and client.tenant and payload.get("tenant_id") != client.tenant:
                continue
            try:
                client.queue.put_nowait((kind, payload))
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
                            channel = message["channel"].decode()
                            kind = "monitoring" if channel == self.channel else "deployment"
                            self.fan_out(kind, json.loads(message["data"]))
            except asyncio.CancelledError:
                raise
            except (aioredis.RedisError, OSError, ValueError) as exc:
                log.warning("Redis subscription lost (%s); retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)
