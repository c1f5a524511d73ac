"""Live push: the pipeline's Redis notifications forwarded to every /ws/live client, throttled per client.

One forwarder task per process reads the updates channel (through the reader)
and drops each notification into every client's `Mailbox`. A mailbox holds at
most one pending notification: a newer one is merged into it (the union of what
changed, the latest time), so a slow client gets fewer, merged messages instead
of an ever-growing queue. Each client's sender waits at least the throttle
interval between two messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from dashapp.metrics import DashMetrics
from sinks.layout import Update, encode_update
from sinks.reader import AsyncReader, Unavailable

log = structlog.get_logger(__name__)


class TooManyClients(RuntimeError):
    """The live feed already has its maximum number of clients."""


def merge_updates(older: Update, newer: Update) -> Update:
    """One notification saying everything two say: kinds in first-seen order, the later time."""
    return Update(tuple(dict.fromkeys(older.kinds + newer.kinds)), max(older.at_ms, newer.at_ms))


class Mailbox:
    """A client's pending notification (at most one; later ones merge into it)."""

    __slots__ = ("_pending", "_ready", "merged")

    def __init__(self) -> None:
        self._pending: Update | None = None
        self._ready = asyncio.Event()
        self.merged = 0

    def put(self, update: Update) -> bool:
        """Leave `update` for the client; True if it was merged into a pending one."""
        if self._pending is None:
            self._pending = update
            self._ready.set()
            return False
        self._pending = merge_updates(self._pending, update)
        self.merged += 1
        return True

    async def take(self) -> Update:
        """Wait for and remove the pending notification."""
        await self._ready.wait()
        self._ready.clear()
        update, self._pending = self._pending, None
        assert update is not None
        return update


class Broadcaster:
    """Fans notifications out to the connected clients' mailboxes."""

    def __init__(self, throttle_s: float, max_clients: int, metrics: DashMetrics) -> None:
        self.throttle_s = throttle_s
        self.max_clients = max_clients
        self._metrics = metrics
        self._boxes: set[Mailbox] = set()

    @property
    def clients(self) -> int:
        """Connected clients."""
        return len(self._boxes)

    def open(self) -> Mailbox:
        """A mailbox for a new client; `TooManyClients` when full."""
        if len(self._boxes) >= self.max_clients:
            self._metrics.ws_rejected.inc()
            raise TooManyClients(f"the live feed is full ({self.max_clients} clients)")
        box = Mailbox()
        self._boxes.add(box)
        self._metrics.ws_clients.set(len(self._boxes))
        return box

    def close(self, box: Mailbox) -> None:
        """Forget a client's mailbox."""
        self._boxes.discard(box)
        self._metrics.ws_clients.set(len(self._boxes))

    def publish(self, update: Update) -> None:
        """Give `update` to every client."""
        for box in self._boxes:
            if box.put(update):
                self._metrics.ws_messages.labels("merged").inc()

    async def pump(self, box: Mailbox, send: Callable[[str], Awaitable[None]]) -> None:
        """Send `box`'s notifications to one client, forever, at most one per throttle interval."""
        while True:
            update = await box.take()
            await send(encode_update(update).decode())
            self._metrics.ws_messages.labels("sent").inc()
            if self.throttle_s > 0:
                await asyncio.sleep(self.throttle_s)

    async def forward(self, reader: AsyncReader, stop: asyncio.Event) -> None:
        """Publish every notification of the pipeline's updates channel until `stop` (reconnecting)."""
        down = False
        async for item in reader.updates(stop):
            if isinstance(item, Unavailable):
                self._metrics.redis_errors.labels("pubsub").inc()
                if not down:
                    log.warning("live feed lost its Redis subscription, retrying", reason=item.reason)
                down = True
                continue
            if down:
                log.info("live feed subscribed to Redis again")
                down = False
            self.publish(item)
