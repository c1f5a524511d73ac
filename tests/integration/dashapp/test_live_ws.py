"""/ws/live pushes the pipeline's notifications to every client, throttled and merged per client."""

from __future__ import annotations

import itertools
import threading
import time

import orjson
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

THROTTLE_MS = 200


def collect(ws: ClientConnection, until_at: int, into: list[tuple[float, dict]]) -> None:
    """Receive until the notification of `until_at` arrived (or 15 s passed)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            message = orjson.loads(ws.recv(timeout=max(deadline - time.monotonic(), 0.01)))
        except TimeoutError:
            return
        into.append((time.monotonic(), message))
        if message["at"] == until_at:
            return


def subscribed(seeder) -> None:
    """Wait until the server's live feed subscribed to the updates channel."""
    deadline = time.monotonic() + 10
    while seeder.client.pubsub_numsub(seeder.layout.updates_channel())[0][1] == 0:
        assert time.monotonic() < deadline, "the live feed never subscribed"
        time.sleep(0.02)


def test_two_clients_get_every_change_merged_at_most_once_per_throttle_interval(serve_app, seeder):
    host = serve_app(dash_ws_throttle_ms=THROTTLE_MS)
    with connect(f"ws://{host}/ws/live") as a, connect(f"ws://{host}/ws/live") as b:
        subscribed(seeder)
        got: dict[str, list[tuple[float, dict]]] = {"a": [], "b": []}
        readers = [
            threading.Thread(target=collect, args=(ws, 60, got[name])) for name, ws in (("a", a), ("b", b))
        ]
        for t in readers:
            t.start()
        kinds = itertools.cycle(["iot", "activity", "alerts", "stats"])
        for at in range(1, 61):  # 60 notifications in ~0.6 s
            seeder.publish(next(kinds), at_ms=at)
            time.sleep(0.01)
        for t in readers:
            t.join()

    for name, messages in got.items():
        times = [t for t, _ in messages]
        assert messages, f"client {name} got nothing"
        assert messages[-1][1]["at"] == 60, f"client {name} missed the newest notification"
        assert 2 <= len(messages) <= 12, f"client {name} was not throttled: {len(messages)} messages"
        assert all(
            later - earlier >= THROTTLE_MS / 1000 * 0.9 for earlier, later in itertools.pairwise(times)
        )
        seen = {k for _, m in messages for k in m["kinds"]}
        assert seen == {"iot", "activity", "alerts", "stats"}, "merging lost a kind of change"


def test_the_feed_turns_away_clients_beyond_its_maximum(serve_app, seeder):
    host = serve_app(dash_ws_max_clients=1)
    with connect(f"ws://{host}/ws/live") as first:
        with connect(f"ws://{host}/ws/live") as second, pytest.raises(ConnectionClosed) as closed:
            second.recv(timeout=5)
        assert closed.value.rcvd.code == 1013
        subscribed(seeder)
        seeder.publish("iot", at_ms=7)
        assert orjson.loads(first.recv(timeout=5)) == {"kinds": ["iot"], "at": 7}
