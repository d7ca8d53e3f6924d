"""The WebSocket fan-out over the in-memory backend: tenant filters and slow-client eviction."""

from __future__ import annotations

import asyncio
import json

from k8sim_api.broadcast import Broadcaster, Client, MemoryBackend, Update

SNAPSHOT = {"timestamp": "2026-11-28T10:00:00Z", "summary": {"sla_percentage": 99.9, "sla_status": "meeting"},
            "services": {"ecp-ai-t1/a": {"tenant_id": "t1", "health": {"status": "healthy"},
                                         "network": {"requests_per_second": 1.0, "response_time_ms": 10.0}},
                         "ecp-ai-t10/a": {"tenant_id": "t10", "health": {"status": "healthy"},
                                          "network": {"requests_per_second": 1.0, "response_time_ms": 10.0}}}}


class Listened(MemoryBackend):
    """The in-memory backend with an event set when a listener subscribes: a message published
    before that reaches nobody, as with Redis."""

    def __init__(self) -> None:
        super().__init__()
        self.subscribed = asyncio.Event()
        subscribed = self.subscribed

        class Subscriptions(list[tuple[set[str], asyncio.Queue[tuple[str, bytes]]]]):
            def append(self, entry: tuple[set[str], asyncio.Queue[tuple[str, bytes]]]) -> None:
                super().append(entry)
                subscribed.set()
        self._queues = Subscriptions()


async def next_update(client: Client) -> Update:
    update = await asyncio.wait_for(client.queue.get(), 1)
    assert update is not None, "the client was stopped"
    return update


async def started(queue_size: int = 2) -> tuple[Broadcaster, Listened]:
    backend = Listened()
    broadcaster = Broadcaster(backend, "snap", "latest", "deploys", queue_size=queue_size)
    await broadcaster.start()
    await asyncio.wait_for(backend.subscribed.wait(), 1)
    return broadcaster, backend


async def test_a_slow_client_is_dropped_and_a_fast_one_keeps_everything() -> None:
    broadcaster, backend = await started(queue_size=2)
    async with broadcaster.subscribe(None) as slow, broadcaster.subscribe(None) as fast:
        received = []
        for i in range(4):
            await backend.publish("snap", json.dumps({**SNAPSHOT, "timestamp": f"t{i}"}).encode())
            received.append((await next_update(fast)).payload["timestamp"])
        assert received == ["t0", "t1", "t2", "t3"]
        assert slow.dropped.is_set() and slow not in broadcaster.clients
        assert fast in broadcaster.clients and not fast.dropped.is_set()
    assert not broadcaster.clients, "leaving the block unsubscribes"
    await broadcaster.stop()


async def test_tenant_views_are_exact_and_deploy_events_reach_only_their_tenant() -> None:
    broadcaster, backend = await started(queue_size=8)
    async with broadcaster.subscribe("t1") as t1, broadcaster.subscribe("t10") as t10:
        await backend.publish("snap", json.dumps(SNAPSHOT).encode())
        await backend.publish("deploys", json.dumps({"type": "deployment_progress", "tenant_id": "t10"}).encode())
        # t10 has both: both messages have been fanned out, so t1's queue holds all it will get.
        kinds = [(await next_update(t10)).kind for _ in range(2)]
        assert kinds == ["monitoring", "deployment"]
        first = t1.queue.get_nowait()
        assert first is not None
        assert list(json.loads(first.text_for("t1"))["data"]["services"]) == ["ecp-ai-t1/a"]
        assert t1.queue.empty(), "t1 does not get t10's deploy events"
    assert (await broadcaster.snapshot()) is not None
    await broadcaster.stop()


async def test_the_latest_snapshot_comes_from_the_key_before_any_message() -> None:
    backend = MemoryBackend()
    backend.values["latest"] = json.dumps(SNAPSHOT).encode()
    broadcaster = Broadcaster(backend, "snap", "latest", "deploys")
    snapshot = await broadcaster.snapshot()
    assert snapshot is not None and snapshot.payload["timestamp"] == SNAPSHOT["timestamp"]


async def test_garbage_on_the_channel_is_ignored() -> None:
    broadcaster, backend = await started()
    async with broadcaster.subscribe(None) as client:
        await backend.publish("snap", b"not json")
        await backend.publish("snap", json.dumps(SNAPSHOT).encode())
        update = await next_update(client)
        assert update.payload["timestamp"] == SNAPSHOT["timestamp"]
    await broadcaster.stop()
