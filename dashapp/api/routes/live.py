"""/ws/live: the pipeline's update notifications, pushed to each client (throttled, merged when slow)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, WebSocket, status

from dashapp.api.deps import RuntimeDep
from dashapp.live_push import TooManyClients

router = APIRouter(tags=["live"])


@router.websocket("/ws/live")
async def live(websocket: WebSocket, runtime: RuntimeDep) -> None:
    """Send ``{"kinds": [...], "at": ms}`` whenever the pipeline writes; clients need send nothing."""
    broadcaster = runtime.broadcaster
    try:
        box = broadcaster.open()
    except TooManyClients as exc:
        # Accept first: a close before the handshake can only say 403, not "try again later".
        await websocket.accept()
        await websocket.close(code=status.WS_1013_TRY_AGAIN_LATER, reason=str(exc))
        return
    try:
        await websocket.accept()
        pump = asyncio.create_task(broadcaster.pump(box, websocket.send_text))
        receive = asyncio.create_task(_until_closed(websocket))
        # Whichever ends first ends the connection: the client leaving, or a failed send.
        done, pending = await asyncio.wait({pump, receive}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        # A send to a client that just left fails: that is how a connection ends, not an error.
        await asyncio.gather(*done, *pending, return_exceptions=True)
    finally:
        broadcaster.close(box)


async def _until_closed(websocket: WebSocket) -> None:
    # Messages from clients are ignored; this only notices the close.
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass
