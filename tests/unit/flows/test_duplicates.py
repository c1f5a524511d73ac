"""What the dataflow does with an exact duplicate of a valid message (at a new offset).

Decision, documented in tests/hostile.py (`Expect.DUPLICATE`): the product does not
de-duplicate by content. A duplicate is a valid message; a reading sent twice counts
twice in its window. Idempotence covers re-reading the *same* offset after a crash.
"""

from __future__ import annotations

from bytewax.testing import TestingSink, TestingSource, run_main

from flows.clock import ManualClock
from flows.dataflow import build_flow
from flows.settings import FlowSettings
from sinks.records import Metric, WindowStats
from tests.kafka_batches import as_batches
from tests.unit.flows.messages import iot_message, reading

T0 = 1_750_000_000_000


def _windows(values: list[bytes]) -> dict[int, WindowStats]:
    out: list[object] = []
    flow = build_flow(
        FlowSettings(),
        TestingSource(as_batches([iot_message(v, i) for i, v in enumerate(values)])),
        TestingSink(out),
        TestingSink([]),
        clock=ManualClock(T0 + 3_600_000),
    )
    run_main(flow)
    return {
        r.start_ms: r
        for r in out
        if isinstance(r, WindowStats) and r.metric is Metric.TEMPERATURE and r.window == "10s"
    }


def test_an_exact_duplicate_reading_counts_twice_in_its_window():
    good = [reading("dev-1", T0 + i * 1000, 20.0 + i % 3, 50.0, 1000.0) for i in range(40)]
    with_duplicate = [*good[:5], good[4], *good[5:]]
    base, dup = _windows(good), _windows(with_duplicate)
    start = (T0 + 4000) // 10_000 * 10_000
    assert dup[start].count == base[start].count + 1
    assert {s: w for s, w in dup.items() if s != start} == {s: w for s, w in base.items() if s != start}
