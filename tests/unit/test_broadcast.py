"""The WebSocket fan-out over the in-memory backend: tenant filters and slow-client eviction."""

from __future__ import annotations

import asyncio
import json

from k8sim_api.broadcast import Broadcaster, MemoryBackend

SNAPSHOT = {"timestamp": "2026-11-28T10:00:00Z", "summary": {"sla_percentage": 99.9, "sla_status": "meeting"},
            "services": {"ecp-ai-t1/a": {"tenant_id": "t1", "health": {"status": "healthy"},
                                         "network": {"requests_per_second": 1.0, "response_time_ms": 10.0}},
                         "ecp-ai-t10/a": {"tenant_id": "t10", "health": {"status": "healthy"},
                                          "network": {"requests_per_second": 1.0, "response_time_ms": 10.0}}}}


async def started(queue_size: int = 2) -> tuple[Broadcaster, MemoryBackend]:
    backend = MemoryBackend()
    broadcaster = Broadcaster(backend, "snap", "latest", "deploys", queue_size=queue_size)
    await broadcaster.start()
    await asyncio.sleep(0)  # let the listener subscribe
    return broadcaster, backend


async def test_a_slow_client_is_dropped_and_a_fast_one_keeps_everything() -> None:
    broadcaster, backend = await started(queue_size=2)
    async with broadcaster.subscribe(None) as slow, broadcaster.subscribe(None) as fast:
        received = []
        for i in range(4):
            await backend.publish("snap", json.dumps({**SNAPSHOT, "timestamp": f"t{i}"}).encode())
            await asyncio.sleep(0.01)
            received.append((await asyncio.wait_for(fast.queue.get(), 1)).payload["timestamp"])
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
        await asyncio.sleep(0.01)
        first = await asyncio.wait_for(t1.queue.get(), 1)
        assert list(json.loads(first.text_for("t1"))["data"]["services"]) == ["ecp-ai-t1/a"]
        assert t1.queue.empty(), "t1 does not get t10's deploy events"
        kinds = [(await t10.queue.get()).kind for _ in range(2)]
        assert kinds == ["monitoring", "deployment"]
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
        update = await asyncio.wait_for(client.queue.get(), 1)
        assert update.payload["timestamp"] == SNAPSHOT["timestamp"]
    await broadcaster.stop()
