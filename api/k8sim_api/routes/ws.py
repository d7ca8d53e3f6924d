"""WebSocket /ws/monitoring (and /ws/monitoring/{tenant_id} or ?tenant_id=): live snapshots."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from k8sim_api.deps import BroadcasterDep

router = APIRouter(tags=["monitoring"])


async def stream(websocket: WebSocket, broadcaster: BroadcasterDep, tenant: str | None) -> None:
    await websocket.accept()

    async def drain_incoming() -> None:
        # Clients may send pings or nothing; we only need to notice when they leave.
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            while True:
                await websocket.receive_text()

    reader = asyncio.create_task(drain_incoming())
    try:
        async with broadcaster.subscribe(tenant) as client:
            reader.add_done_callback(lambda _: client.stop())  # the client left: stop waiting for updates
            latest = await broadcaster.snapshot()
            if latest is not None:
                await websocket.send_text(latest.text_for(tenant))
            while (update := await client.queue.get()) is not None:
                await websocket.send_text(update.text_for(tenant))
            if client.dropped.is_set():
                await websocket.close(code=1013, reason="too slow: updates were piling up")
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        reader.cancel()


@router.websocket("/ws/monitoring")
async def monitoring(websocket: WebSocket, broadcaster: BroadcasterDep) -> None:
    await stream(websocket, broadcaster, websocket.query_params.get("tenant_id"))


@router.websocket("/ws/monitoring/{tenant_id}")
async def monitoring_tenant(websocket: WebSocket, broadcaster: BroadcasterDep, tenant_id: str) -> None:
    await stream(websocket, broadcaster, tenant_id)
