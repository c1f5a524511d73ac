"""Live push: merged notifications for slow clients, at most one per throttle interval."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from dashapp.live_push import Broadcaster, Mailbox, TooManyClients, merge_updates
from dashapp.metrics import DashMetrics
from sinks.layout import Update, decode_update


def test_merged_update_has_every_kind_once_and_the_latest_time():
    assert merge_updates(Update(("iot", "alerts"), 5), Update(("alerts", "stats"), 9)) == Update(
        ("iot", "alerts", "stats"), 9
    )


def test_a_mailbox_holds_one_update_merging_later_ones():
    async def scenario():
        box = Mailbox()
        assert box.put(Update(("iot",), 1)) is False
        assert box.put(Update(("alerts",), 2)) is True
        first = await box.take()
        box.put(Update(("stats",), 3))
        return first, await box.take(), box.merged

    assert asyncio.run(scenario()) == (Update(("iot", "alerts"), 2), Update(("stats",), 3), 1)


def test_the_feed_refuses_clients_beyond_its_maximum():
    b = Broadcaster(0.1, 2, DashMetrics())
    b.open()
    kept = b.open()
    with pytest.raises(TooManyClients):
        b.open()
    b.close(kept)
    b.open()
    assert b.clients == 2


def test_a_client_gets_at_most_one_message_per_throttle_interval_and_misses_nothing():
    async def scenario():
        b = Broadcaster(0.2, 10, DashMetrics())
        box = b.open()
        sent: list[tuple[float, Update]] = []
        loop = asyncio.get_running_loop()

        async def send(text: str) -> None:
            sent.append((loop.time(), decode_update(text)))

        pump = asyncio.create_task(b.pump(box, send))
        for i in range(1, 21):  # 20 updates over ~0.4 s
            b.publish(Update((f"k{i % 3}",), i))
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        pump.cancel()
        return sent

    sent = asyncio.run(scenario())
    times = [t for t, _ in sent]
    assert 2 <= len(sent) <= 4  # instead of 20
    assert all(b - a >= 0.19 for a, b in itertools.pairwise(times))
    assert sent[0][1] == Update(("k1",), 1)
    assert sent[-1][1].at_ms == 20  # the newest one always arrives
    assert {k for _, u in sent for k in u.kinds} == {"k0", "k1", "k2"}
