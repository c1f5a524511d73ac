"""The benchmarks' own arithmetic: percentiles, the freshness histogram, flow shapes, trend scoring."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from typing import Any

import pytest
import redis

from bench.bench_detection import _direction, trend_accuracy
from bench.bench_freshness import Observations, Observer
from bench.harness import CpuMeter, FlowShape, percentile
from flows.logic import IotParams
from flows.settings import FlowSettings
from sinks.layout import Layout, Update, encode_update
from sinks.records import Trend
from sources.clock import simulated_times
from sources.iot import METRICS, IotConfig, IotSimulator


def test_percentile_is_the_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))


def test_freshness_span_spreads_latency_over_the_readings_that_became_readable():
    obs = Observations()
    # Readings at event times 1001..2000 became readable at 2100: latencies 100..1099 ms, one each.
    obs.add_span(2100, 1000, 2000)
    assert obs.latest_weight == 1000
    p0, p50, p100 = obs.latest_percentiles([0.1, 50, 100])
    assert p0 == 100
    assert p50 == pytest.approx(599, abs=1)
    assert p100 == 1099


def test_freshness_spans_weigh_by_their_length():
    obs = Observations()
    obs.add_span(1010, 1000, 1010)  # 10 readings, 0..9 ms
    obs.add_span(5000, 1010, 1020)  # 10 readings, 3980..3989 ms
    p25, p75 = obs.latest_percentiles([25, 75])
    assert p25 < 10
    assert 3980 <= p75 < 3990


def test_flow_shape_parses_workers_and_processes():
    assert FlowShape.parse("2w") == FlowShape(workers=2)
    assert FlowShape.parse("2p") == FlowShape(processes=2)
    assert FlowShape.parse("1w").label == "1 worker"
    assert FlowShape.parse("2p").short == "2p"
    with pytest.raises(ValueError, match="not a flow shape"):
        FlowShape.parse("2x")


def test_direction_uses_the_minimum_slope_both_ways():
    assert _direction(0.05, 0.02) is Trend.RISING
    assert _direction(-0.05, 0.02) is Trend.FALLING
    assert _direction(0.01, 0.02) is Trend.STABLE


def test_trend_accuracy_is_high_on_noise_free_drifts():
    # No noise, anomalies or shifts: every signal is its cycle plus drifts, which the fit follows
    # exactly; directions can differ only where a slope is near the threshold.
    config = IotConfig(
        devices=2, noise_scale=0.0, anomaly_rate=0.0, shift_rate_per_hour=0.0, drift_rate_per_hour=6
    )
    sim = IotSimulator(config, seed=3)
    times: dict[str, list[int]] = {}
    values: dict[tuple[str, object], list[float]] = {}
    for r in sim.run(simulated_times(1_700_000_000_000, 4.0, 4 * 60 * 20)):
        times.setdefault(r.reading.device_id, []).append(r.reading.event_time)
        for m in METRICS:
            values.setdefault((r.reading.device_id, m), []).append(r.reading.value(m))
    result = trend_accuracy(times, values, sim.truth, IotParams.from_settings(FlowSettings()))  # type: ignore[arg-type]
    assert result["trend_reports"] > 0
    assert result["trend_drift_reports"] > 0
    assert result["trend_drift_accuracy"] >= 0.9


class QueuedMessages:
    """What redis-py's PubSub.get_message returns, from a script: messages already queued, then None."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages

    def get_message(self, timeout: float = 0.0) -> dict[str, Any] | None:
        return self.messages.pop(0) if self.messages else None


def _observer() -> Observer:
    client = redis.Redis.from_url("redis://127.0.0.1:1/0")  # never connects: only _notified is used
    return Observer(client, Layout("t:"), ["device-000"], {"10s": 10_000}, 5_000)


def test_the_observer_takes_every_queued_notification_in_one_read():
    observer = _observer()
    queued = QueuedMessages(
        [
            {"type": "message", "data": encode_update(Update(("latest",), 1))},
            {"type": "message", "data": encode_update(Update(("alerts", "latest"), 2))},
            {"type": "message", "data": encode_update(Update(("windows",), 3))},
        ]
    )
    assert observer._notified(queued) == {"latest", "alerts", "windows"}  # type: ignore[arg-type]
    assert queued.messages == []
    assert observer.obs.notifications == 3


def test_the_observer_reads_everything_without_a_notification_or_with_one_it_cannot_parse():
    observer = _observer()
    assert observer._notified(QueuedMessages([])) is None  # type: ignore[arg-type]
    garbled = QueuedMessages([{"type": "message", "data": b"not json"}])
    assert observer._notified(garbled) is None  # type: ignore[arg-type]


def test_cpu_meter_tells_a_busy_process_from_a_sleeping_one():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    sleeping = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.5)  # both started (interpreter start-up is not in the span)
        meter = CpuMeter({"busy": busy.pid, "sleeping": sleeping.pid})
        meter.start()
        time.sleep(1.0)  # the span measured: a span of time, not a condition
        used = meter.stop()
    finally:
        busy.kill()
        sleeping.kill()
        busy.wait()
        sleeping.wait()
    assert used["busy"] > used["sleeping"]
    assert used["sleeping"] < 5.0
