"""Throughput of the IoT analytics core against a naive per-item Bytewax flow.

Both flows get the same pre-serialized Kafka messages (`RawMessage`
with JSON values, a few of them broken) through Bytewax's testing source in
one worker, compute the IoT analytics (10 s tumbling and 60 s sliding windows
with p99, z-score alerts, trends, latest reading per device), and must agree on
every result; the script prints events/s of each and the ratio.

* core: `flows.dataflow.build_flow` (batch decoding, numpy over per-device
  blocks, one item per device per batch).
* baseline: ``op.map`` to decode each message with the model, then one key per
  (device, metric): ``fold_window`` for each window, a ``stateful_map`` per
  reading for the detector, and per-reading trend updates with the fit
  reported at the end. It reuses the same math modules, so results must match.
* windows-only baseline: ``op.map`` decode + one ``fold_window`` (10 s
  tumbling) and nothing else, the style quoted as ~50,000 items/s.

Both flows use a frozen clock, so they are purely event-time driven.

    .venv/bin/python bench/bench_core.py [--events 200000] [--devices 10] [--hz 100]
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulLogic
from bytewax.operators.windowing import EventClock, SlidingWindower, TumblingWindower, fold_window
from bytewax.testing import TestingSink, TestingSource, run_main
from pydantic import ValidationError

from bench.harness import bar
from flows.clock import ManualClock
from flows.dataflow import build_flow
from flows.decode import METRICS
from flows.logic import IotParams, alert_id
from flows.settings import FlowSettings
from flows.stats import summarize
from flows.trend import RollingTrend
from flows.zscore import ZScoreDetector
from sinks.records import Alert, PipelineCounters, TrendState, WindowStats
from sources.models import SensorReading
from tests.kafka_batches import RawMessage, as_batches

T0 = 1_750_000_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def make_messages(events: int, devices: int, hz: float, batch: int, seed: int = 7) -> list[RawMessage]:
    """Readings of `devices` devices at `hz` each, jittered, with spikes and a few bad ones.

    Keyed by device onto 3 partitions, and ordered as a Kafka source delivers a
    backlog: `batch` messages of one partition, then of the next.
    """
    rng = np.random.default_rng(seed)
    step = 1000.0 / hz / devices
    times = (T0 + np.arange(events) * step + rng.integers(-200, 200, events)).astype(np.int64)
    dev = np.arange(events) % devices
    phase = np.arange(events) / (devices * hz * 600.0)  # a 10-minute cycle
    temp = 21 + 1.0 * np.sin(2 * np.pi * phase) + rng.normal(0, 0.3, events)
    hum = 45 + 3.0 * np.cos(2 * np.pi * phase) + rng.normal(0, 1.0, events)
    pres = 1013 + rng.normal(0, 0.5, events)
    spikes = rng.random(events) < 0.002
    temp[spikes] += rng.choice([-1, 1], int(spikes.sum())) * rng.uniform(4, 8, int(spikes.sum()))
    by_partition: list[list[RawMessage]] = [[], [], []]
    for i in range(events):
        device = f"dev-{dev[i]:04d}"
        value = SensorReading(
            device_id=device,
            event_time=int(times[i]),
            temperature=round(float(temp[i]), 3),
            humidity=round(float(np.clip(hum[i], 0, 100)), 3),
            pressure=round(float(pres[i]), 3),
        ).to_json()
        if i % 5000 == 4999:
            value = value[: len(value) // 2]  # truncated: a dead letter
        partition = int(dev[i]) % 3
        by_partition[partition].append(
            RawMessage("iot.readings", partition, len(by_partition[partition]), device.encode(), value)
        )
    return _as_consumed(by_partition, batch)


def _as_consumed(by_partition: list[list[RawMessage]], batch: int) -> list[RawMessage]:
    """The order a Kafka source delivers them in: a batch from each partition in turn."""
    out: list[RawMessage] = []
    for start in range(0, max(len(p) for p in by_partition), batch):
        for part in by_partition:
            out.extend(part[start : start + batch])
    return out


# --- core -------------------------------------------------------------------


def run_core(msgs: list[RawMessage], settings: FlowSettings) -> tuple[Timing, list[Any], list[Any]]:
    out: list[Any] = []
    dlq: list[Any] = []
    flow = build_flow(
        settings,
        TestingSource(as_batches(msgs, settings.kafka_batch_size)),
        TestingSink(out),
        TestingSink(dlq),
        # Frozen after the newest event: nothing is "from the future", and time never idles.
        clock=ManualClock(T0 + 10 * 365 * 86_400_000),
    )
    return _timed(lambda: run_main(flow)), out, dlq


# --- naive per-item baseline ----------------------------------------------------


def _decode_one(msg: RawMessage) -> SensorReading | None:
    try:
        return SensorReading.model_validate_json(msg.value)  # type: ignore[arg-type]
    except ValidationError:
        return None


def _clock(lateness_ms: int) -> EventClock:
    fixed = datetime.fromtimestamp(T0 / 1000, tz=UTC)
    return EventClock(
        ts_getter=lambda v: datetime.fromtimestamp(v[0] / 1000, tz=UTC),
        wait_for_system_duration=timedelta(milliseconds=lateness_ms),
        now_getter=lambda: fixed,
    )


def _fold(acc: list[float], v: tuple[int, float]) -> list[float]:
    acc.append(v[1])
    return acc


class _TrendLogic(StatefulLogic):  # type: ignore[type-arg]
    def __init__(self, params: IotParams, metric_index: int) -> None:
        self.trend = RollingTrend(
            span_s=params.trend_span_s,
            series=1,
            min_points=params.trend_min_points,
            min_t=params.trend_min_t,
            min_slope_per_min=params.trend_min_slopes[metric_index],
        )

    def on_item(self, value: tuple[int, float]) -> tuple[list[Any], bool]:
        self.trend.update(value[0], value[1])
        return [], False

    def on_eof(self) -> tuple[list[Any], bool]:
        return [self.trend.fit()[0]], False

    def snapshot(self) -> Any:
        return self.trend


def build_baseline(
    msgs: list[RawMessage], settings: FlowSettings, out: list[Any], windows_only: bool = False
) -> Dataflow:
    params = IotParams.from_settings(settings)
    flow = Dataflow("baseline")
    raw = op.input("read", flow, TestingSource(msgs, batch_size=settings.kafka_batch_size))
    readings = op.filter_map("decode", raw, _decode_one)
    per_metric = op.flat_map(
        "per_metric",
        readings,
        lambda r: [(f"{r.device_id}|{m.value}", (r.event_time, r.value(m))) for m in METRICS],
    )
    specs = params.windows[:1] if windows_only else params.windows
    for spec in specs:
        windower = (
            TumblingWindower(length=timedelta(milliseconds=spec.length_ms), align_to=EPOCH)
            if spec.length_ms == spec.step_ms
            else SlidingWindower(
                length=timedelta(milliseconds=spec.length_ms),
                offset=timedelta(milliseconds=spec.step_ms),
                align_to=EPOCH,
            )
        )
        win = fold_window(
            f"window_{spec.name}", per_metric, _clock(params.lateness_ms), windower, list, _fold, list.__add__
        )

        def stats(kv: tuple[str, tuple[int, list[float]]], spec: Any = spec) -> Any:
            key, (window_id, values) = kv
            return ("stats", spec, key, window_id, summarize(np.array(values)))

        op.output(f"out_{spec.name}", op.map(f"stats_{spec.name}", win.down, stats), TestingSink(out))
        op.output(
            f"out_meta_{spec.name}",
            op.map(f"meta_{spec.name}", win.meta, lambda kv, s=spec: ("meta", s, kv)),
            TestingSink(out),
        )
    if windows_only:
        return flow

    zs_kwargs = dict(params.zscore)

    def detect(det: ZScoreDetector | None, v: tuple[int, float]) -> tuple[ZScoreDetector, list[Any]]:
        det = det if det is not None else ZScoreDetector(**zs_kwargs)  # type: ignore[arg-type]
        scores = det.update_many(np.array([v[0]], dtype=np.int64), np.array([v[1]]))
        return det, scores.alerts

    alerts = op.stateful_map("zscore", per_metric, detect)
    flat = op.flat_map("alerts", alerts, lambda kv: [("alert", (kv[0], ep)) for ep in kv[1]])
    op.output("out_alerts", flat, TestingSink(out))
    idx = {m.value: i for i, m in enumerate(METRICS)}
    tr = _stateful_trend(per_metric, params, idx)
    op.output("out_trend", tr, TestingSink(out))
    return flow


def _stateful_trend(per_metric: Any, params: IotParams, idx: dict[str, int]) -> Any:
    class Keyed(StatefulLogic):  # type: ignore[type-arg]
        def __init__(self) -> None:
            self.inner: _TrendLogic | None = None

        def on_item(self, value: tuple[str, tuple[int, float]]) -> tuple[list[Any], bool]:
            key, v = value
            if self.inner is None:
                self.inner = _TrendLogic(params, idx[key.split("|")[1]])
                self.key = key
            return self.inner.on_item(v)

        def on_eof(self) -> tuple[list[Any], bool]:
            assert self.inner is not None
            fits, keep = self.inner.on_eof()
            return [("trend", self.key, f) for f in fits], keep

        def snapshot(self) -> Any:
            return None

    with_key = op.map("carry_key", per_metric, lambda kv: (kv[0], kv))
    return op.key_rm("trend_unkey", op.stateful("trend", with_key, lambda _s: Keyed()))


def run_baseline(
    msgs: list[RawMessage], settings: FlowSettings, windows_only: bool = False
) -> tuple[Timing, list[Any]]:
    out: list[Any] = []
    flow = build_baseline(msgs, settings, out, windows_only)
    return _timed(lambda: run_main(flow)), out


# --- comparison ---------------------------------------------------------------


def core_results(out: list[Any]) -> dict[str, Any]:
    windows = {
        (r.window, r.device_id, r.metric.value, r.start_ms): (r.end_ms, r.count, r.avg, r.min, r.max, r.p99)
        for r in out
        if isinstance(r, WindowStats)
    }
    alerts = {
        r.alert_id: (r.value, r.mean, r.std, r.z, r.severity.value, r.event_time_ms)
        for r in out
        if isinstance(r, Alert)
    }
    trends = {
        (r.device_id, r.metric.value): (r.slope_per_min, r.r2, r.points, r.direction.value)
        for r in out
        if isinstance(r, TrendState)
    }
    counters = [r for r in out if isinstance(r, PipelineCounters)][-1]
    return {"windows": windows, "alerts": alerts, "trends": trends, "dead": counters.dead_letters}


def baseline_results(out: list[Any], events: int) -> dict[str, Any]:
    metas: dict[tuple[str, str, int], Any] = {}
    for item in out:
        if item[0] == "meta":
            _, spec, (key, (window_id, meta)) = item
            metas[(spec.name, key, window_id)] = meta
    windows = {}
    alerts = {}
    trends = {}
    for item in out:
        if item[0] == "stats":
            _, spec, key, window_id, s = item
            meta = metas[(spec.name, key, window_id)]
            device, metric = key.split("|")
            start = int(meta.open_time.timestamp() * 1000)
            end = int(meta.close_time.timestamp() * 1000)
            windows[(spec.name, device, metric, start)] = (end, s.count, s.avg, s.min, s.max, s.p99)
        elif item[0] == "alert":
            key, ep = item[1]
            device, metric = key.split("|")
            alerts[alert_id(device, metric, ep.start_ms)] = (
                ep.value,
                ep.mean,
                ep.std,
                ep.z,
                ep.severity.value,
                ep.peak_ms,
            )
        elif item[0] == "trend":
            _, key, fit = item
            device, metric = key.split("|")
            trends[(device, metric)] = (fit.slope_per_min, fit.r2, fit.points, fit.direction.value)
    return {"windows": windows, "alerts": alerts, "trends": trends}


@dataclass(frozen=True, slots=True)
class Timing:
    """Wall and CPU seconds of one run (CPU time is less disturbed by other processes)."""

    wall: float
    cpu: float

    def best(self, other: Timing) -> Timing:
        """The faster of the two, per measure."""
        return Timing(min(self.wall, other.wall), min(self.cpu, other.cpu))


def _timed(fn: Callable[[], None]) -> Timing:
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return Timing(time.perf_counter() - wall, time.process_time() - cpu)


def _rate(events: int, t: Timing) -> str:
    return f"{events / t.wall:>10,.0f} events/s wall, {events / t.cpu:>10,.0f} per CPU-second"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--events", type=int, default=200_000, help="IoT messages to process (default 200000)"
    )
    parser.add_argument("--devices", type=int, default=10, help="devices (default 10)")
    parser.add_argument(
        "--hz", type=float, default=100.0, help="readings per second per device (default 100)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of the core and of the windows-only baseline, best kept"
    )
    parser.add_argument("--skip-baseline", action="store_true", help="only run the core")
    args = parser.parse_args()

    settings = FlowSettings()
    print(
        f"# bench_core {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {args.events:,} IoT messages, "
        f"{args.devices} devices at {args.hz:g} Hz of event time, batch {settings.kafka_batch_size}, "
        f"1 worker, {os.cpu_count()} CPUs (shared with other work: figures are noisy)"
    )
    msgs = make_messages(args.events, args.devices, args.hz, settings.kafka_batch_size)
    core_t = win_t = Timing(math.inf, math.inf)
    out: list[Any] = []
    # One step per flow run; the naive baseline (the last) is the long one.
    runs = args.repeat * (1 if args.skip_baseline else 2) + (0 if args.skip_baseline else 1)
    progress = bar(runs, "core", "runs")
    for _ in range(args.repeat):
        # Interleaved, so a burst of load elsewhere hurts both sides alike.
        progress.set_postfix_str("core")
        seconds, out, _dlq = run_core(msgs, settings)
        core_t = core_t.best(seconds)
        progress.update()
        if not args.skip_baseline:
            progress.set_postfix_str("windows-only baseline")
            win_t = win_t.best(run_baseline(msgs, settings, windows_only=True)[0])
            progress.update()
    core = core_results(out)
    print(
        f"core:                  {_rate(args.events, core_t)}  "
        f"({len(core['windows'])} windows, {len(core['alerts'])} alerts, {core['dead']} dead letters)"
    )
    if args.skip_baseline:
        progress.close()
        return 0
    progress.set_postfix_str("naive baseline (the long run)")
    base_t, base_out = run_baseline(msgs, settings)
    progress.update()
    progress.close()
    base = baseline_results(base_out, args.events)
    same = {name: core[name] == base[name] for name in ("windows", "alerts", "trends")}
    print(f"baseline (same work):  {_rate(args.events, base_t)}")
    print(
        f"windows-only baseline: {_rate(args.events, win_t)}  (op.map decode + one fold_window, nothing else)"
    )
    print(f"identical results (core vs baseline): {same}")
    print(
        f"ratio core/baseline: {base_t.wall / core_t.wall:.1f}x wall, {base_t.cpu / core_t.cpu:.1f}x CPU;  "
        f"core/windows-only: {win_t.wall / core_t.wall:.1f}x wall, {win_t.cpu / core_t.cpu:.1f}x CPU"
    )
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
