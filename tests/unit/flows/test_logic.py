import pickle
import time
from datetime import UTC, datetime, timedelta

import numpy as np
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.clock import ManualClock, SystemClock
from flows.dataflow import build_flow
from flows.decode import ActivityBlock, IotBlock
from flows.logic import ActivityLogic, CounterDelta, CountersLogic, DeviceLogic, IotParams
from flows.settings import FlowSettings
from sinks.records import ActivityWindow, PipelineCounters, WindowStats
from sources.models import SensorReading
from tests.unit.flows.messages import as_batches, iot_message, reading

T0 = 1_750_000_000_000


def _block(device, times, base=20.0):
    times = np.asarray(times, dtype=np.int64)
    values = np.vstack([np.full(times.size, base), np.full(times.size, 50.0), np.full(times.size, 1000.0)])
    return IotBlock(device, times, values)


def _records(outputs):
    return [r for o in outputs for r in o.records]


def _device(clock, **settings):
    return DeviceLogic(IotParams.from_settings(FlowSettings(**settings)), clock, None)


def test_an_idle_device_closes_its_windows_when_the_clock_says_so():
    clock = ManualClock(5_000_000)
    logic = _device(clock, allowed_lateness_s=2.0)
    out, _ = logic.on_batch([_block("d", [T0 + 1_000, T0 + 4_000])])
    assert not any(isinstance(r, WindowStats) for r in _records(out))
    # The 10 s window ends at T0 + 10 s; the watermark is 2 s behind T0 + 4 s: 8 s of idleness to go.
    due = logic.notify_at()
    assert due is not None
    assert timedelta(seconds=7.5) < due - datetime.now(UTC) <= timedelta(seconds=8)
    clock.advance(7_999)
    assert logic.on_notify()[0] == []
    clock.advance(1)
    closed = _records(logic.on_notify()[0])
    # The tumbling window and the sliding one ending with it, for each metric.
    assert {(r.window, r.start_ms) for r in closed} == {("10s", T0), ("60s", T0 - 50_000)}
    assert len(closed) == 6 and all(r.count == 2 for r in closed)


def test_a_device_whose_partition_is_behind_closes_nothing_by_the_clock_until_it_hears_the_end():
    clock = ManualClock(5_000_000)
    logic = _device(clock, allowed_lateness_s=2.0)
    behind = _block("d", [T0 + 1_000, T0 + 4_000])
    logic.on_batch([IotBlock(behind.device_id, behind.times, behind.values, at_end=False)])
    clock.advance(3_600_000)  # its worker is starved: the backlog's next block is on the way
    assert logic.on_notify()[0] == [] and logic.notify_at() is None
    out, _ = logic.on_batch([_block("d", [T0 + 2_500])])  # on time, and now at the partition's end
    assert out[0].late is None
    assert not any(isinstance(r, WindowStats) for r in _records(out))
    clock.advance(8_000)
    closed = [r for r in _records(logic.on_notify()[0]) if isinstance(r, WindowStats)]
    assert {(r.window, r.start_ms, r.count) for r in closed} == {("10s", T0, 3), ("60s", T0 - 50_000, 3)}


def test_an_empty_block_is_the_partition_s_word_on_its_end():
    clock = ManualClock(0)
    logic = _device(clock, allowed_lateness_s=0.0)
    behind = _block("d", [T0 + 1_000])
    logic.on_batch([IotBlock("d", behind.times, behind.values, at_end=False)])
    clock.advance(60_000)
    assert logic.on_notify()[0] == []
    empty = IotBlock("d", np.zeros(0, dtype=np.int64), np.zeros((3, 0)), at_end=True)
    assert logic.on_batch([empty])[0] == []  # idle time counts from here
    clock.advance(9_000)
    assert {r.start_ms for r in _records(logic.on_notify()[0]) if isinstance(r, WindowStats)} == {
        T0,
        T0 - 50_000,
    }


def test_nothing_due_means_a_wake_up_in_the_future_not_a_busy_loop():
    clock = ManualClock(0)
    logic = _device(clock)
    logic.on_batch([_block("d", [T0])])
    for _ in range(3):
        assert logic.on_notify()[0] == []
        assert logic.notify_at() > datetime.now(UTC) + timedelta(seconds=10)


def test_end_of_input_reports_open_windows_without_closing_them():
    logic = _device(ManualClock(0))
    logic.on_batch([_block("d", [T0 + 1_000])])
    first = _records(logic.on_eof()[0])
    assert {(r.window, r.start_ms) for r in first if isinstance(r, WindowStats)} >= {("10s", T0)}
    logic.on_batch([_block("d", [T0 + 2_000])])
    again = [r for r in _records(logic.on_eof()[0]) if isinstance(r, WindowStats) and r.window == "10s"]
    assert [r.count for r in again] == [2, 2, 2]


def test_a_restored_device_continues_and_does_not_count_downtime_as_idle():
    clock = ManualClock(1_000)
    logic = _device(clock, allowed_lateness_s=1.0)
    logic.on_batch([_block("d", [T0 + 1_000, T0 + 2_000])])
    snapshot = logic.snapshot()
    clock.advance(3_600_000)  # an hour of downtime
    restored = DeviceLogic(logic.params, clock, snapshot)
    out, _ = restored.on_batch([_block("d", [T0 + 1_500, T0 + 12_000])])
    assert restored.state.late_events == 0, "the replayed reading is not late"
    [w] = [
        r
        for r in _records(out)
        if isinstance(r, WindowStats) and r.window == "10s" and r.metric.value == "pressure"
    ]
    assert (w.start_ms, w.count) == (T0, 3)


def test_latest_reading_only_moves_forward_in_event_time():
    logic = _device(ManualClock(0), allowed_lateness_s=60.0)
    logic.on_batch([_block("d", [T0 + 5_000], base=1.0)])
    out, _ = logic.on_batch([_block("d", [T0 + 4_000], base=2.0)])
    assert not any(isinstance(r, SensorReading) for r in _records(out))
    out, _ = logic.on_batch([_block("d", [T0 + 6_000], base=3.0)])
    [latest] = [r for r in _records(out) if isinstance(r, SensorReading)]
    assert (latest.device_id, latest.event_time, latest.temperature) == ("d", T0 + 6_000, 3.0)


def test_late_readings_are_counted_per_device():
    logic = _device(ManualClock(0), allowed_lateness_s=1.0)
    logic.on_batch([_block("d", [T0 + 10_000])])
    out, _ = logic.on_batch([_block("d", [T0 + 1_000, T0 + 9_500, T0 + 2_000])])
    assert (out[0].late.key, out[0].late.total, out[0].late.delta) == ("d", 2, 2)


def test_activity_windows_close_when_idle_partitions_let_them():
    clock = ManualClock(0)
    logic = ActivityLogic(10_000, 1_000, clock, None)
    block = ActivityBlock(
        0, np.array([T0 + 500], dtype=np.int64), np.array([1], dtype=np.int8), np.zeros(1), ("u",), ("/",)
    )
    logic.on_batch([block])
    assert logic.notify_at() is not None
    clock.advance(10_499)
    assert logic.on_notify()[0] == []
    clock.advance(1)
    [w] = _records(logic.on_notify()[0])
    assert isinstance(w, ActivityWindow) and (w.window, w.start_ms, w.distinct_users) == ("10s", T0, 1)


def test_counters_are_absolute_and_only_emitted_when_they_change():
    logic = CountersLogic(None)
    out, _ = logic.on_batch(
        [CounterDelta(events_in=10, dead_letters=1, newest_ms=5), CounterDelta(late_events=2)]
    )
    assert out == [PipelineCounters(10, 1, 2, 5)]
    assert logic.on_batch([CounterDelta()])[0] == []
    restored = CountersLogic(pickle.loads(pickle.dumps(logic.snapshot())))
    assert restored.on_batch([CounterDelta(events_in=1, newest_ms=3)])[0] == [PipelineCounters(11, 1, 2, 5)]


class _OffsetClock(SystemClock):
    """Real time, shifted so that test data written around T0 is "now"."""

    def __init__(self) -> None:
        self.offset = T0 - super().now_ms()

    def now_ms(self) -> int:
        return super().now_ms() + self.offset


def test_the_runtime_wakes_an_idle_device_without_spinning():
    settings = FlowSettings(
        tumbling_window_s=1.0, sliding_window_s=1.0, sliding_slide_s=1.0, allowed_lateness_s=0.2
    )
    clock = _OffsetClock()
    msgs = [
        iot_message(reading("a", T0 + 100, 20.0, 50.0, 1000.0), 0),
        iot_message(reading("a", T0 + 300, 21.0, 50.0, 1000.0), 1),
        TestingSource.PAUSE(timedelta(seconds=2)),
        iot_message(reading("b", T0 + 2_500, 20.0, 50.0, 1000.0), 2),
    ]
    out: list = []
    flow = build_flow(
        settings, TestingSource(as_batches(msgs)), TestingSink(out), TestingSink([]), clock=clock
    )
    wall, cpu = time.perf_counter(), time.process_time()
    run_main(flow)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    closed_a = next(i for i, r in enumerate(out) if isinstance(r, WindowStats) and r.device_id == "a")
    first_b = next(i for i, r in enumerate(out) if getattr(r, "device_id", None) == "b")
    assert closed_a < first_b, "device a's window closed while it was idle, before b's reading came"
    assert wall >= 2.0
    assert cpu < 0.5 * wall, f"busy loop: {cpu:.2f} s of CPU in {wall:.2f} s"


def test_a_quiet_device_reports_its_latest_trend_when_woken():
    clock = ManualClock(0)
    logic = _device(clock, allowed_lateness_s=0.0)
    # Two readings in one trend bucket: the first batch reports the trend, the second only updates it.
    logic.on_batch([_block("d", [T0 + 1_000])])
    out, _ = logic.on_batch([_block("d", [T0 + 2_000], base=25.0)])
    assert not [r for r in _records(out) if type(r).__name__ == "TrendState"]
    clock.advance(10_000)
    woken = [r for r in _records(logic.on_notify()[0]) if type(r).__name__ == "TrendState"]
    assert [(r.points, r.updated_ms) for r in woken] == [(2, T0 + 2_000)] * 3


def test_devices_report_trends_once_per_interval_on_their_own_phase():
    params = IotParams.from_settings(FlowSettings())
    step = params.trend_report_ms
    times = np.arange(T0, T0 + 20 * step, 500, dtype=np.int64)
    starts = {}
    for device in (f"sensor-{i:03d}" for i in range(50)):
        intervals = params.trend_report_interval(device, times)
        boundaries = times[1:][np.diff(intervals) != 0]
        # One new interval per report period, the same phase every time, stable across calls.
        assert np.all(np.diff(boundaries) == step)
        assert params.trend_report_interval(device, int(times[7])) == intervals[7]
        starts[device] = int(boundaries[0]) % step
    # Devices don't all report in the same batch: their phases spread over the period
    # (readings every 500 ms: 20 possible report points per period).
    assert len(set(starts.values())) >= 15
