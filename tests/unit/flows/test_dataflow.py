"""The whole dataflow through Bytewax's testing source and sink, against independent references."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from flows.clock import ManualClock
from flows.dataflow import build_flow
from flows.logic import alert_id
from flows.settings import FlowSettings
from flows.trend import BUCKETS_PER_SPAN
from sinks.dead_letters import DeadLetterSink
from sinks.records import (
    ActivityWindow,
    Alert,
    EventType,
    Metric,
    PageTotal,
    PipelineCounters,
    Severity,
    TrendState,
    WindowStats,
)
from sinks.redis_sink import RedisSink
from sources.models import DeadLetter, SensorReading
from tests.unit.flows.messages import activity_event, activity_message, as_batches, iot_message, reading
from tests.unit.flows.reference import late_flags, window_aggregates, zscore_reference

T0 = 1_750_000_000_000
NOW = T0 + 3_600_000  # the frozen clock: after every event, so nothing idles and nothing is "future"
METRICS = (Metric.TEMPERATURE, Metric.HUMIDITY, Metric.PRESSURE)
LEVEL = {1: Severity.WARNING, 2: Severity.CRITICAL}

SETTINGS = dict(
    zscore_window=60,
    zscore_warmup=15,
    zscore_max_episode=8,
    trend_span_s=120.0,
    allowed_lateness_s=3.0,
)


def _scenario(seed: int = 24) -> tuple[list[Any], dict[str, Any]]:
    """Raw messages of 4 devices and the site, and what went in (for the references)."""
    rng = np.random.default_rng(seed)
    msgs: list[Any] = []
    sent: dict[str, list[tuple[int, float, float, float]]] = defaultdict(list)
    dead_expected = 0
    clocks = {f"dev-{d}": T0 + d * 333 for d in range(4)}
    offset = 0
    for i in range(4800):
        device = f"dev-{i % 4}"
        clocks[device] += int(rng.integers(50, 900))  # irregular
        t = clocks[device]
        if device == "dev-2" and 2000 <= i < 2600:
            continue  # dev-2 falls silent for a while
        if rng.random() < 0.08:
            t -= int(rng.integers(0, 2500))  # out of order, within the allowed lateness
        if rng.random() < 0.01:
            t -= int(rng.integers(4000, 60_000))  # late
        temp = 20 + 2 * math.sin(i / 300) + rng.normal(0, 0.4)
        hum = float(np.clip(45 + rng.normal(0, 2), 0, 100))
        pres = 1013 + 0.002 * (t - T0) / 1000 + rng.normal(0, 0.3)  # a slow rise
        if 1500 <= i < 1520 and device == "dev-1":
            temp += 9  # a burst of anomalies
        if rng.random() < 0.004:
            temp -= 7  # a dip
        if i == 3000:
            t_past = 980_000_000_000  # year 2001: valid, but far behind the device
            msgs.append(iot_message(reading(device, t_past, temp, hum, pres), offset))
            sent[device].append((t_past, temp, hum, pres))
            offset += 1
        msgs.append(iot_message(reading(device, t, round(temp, 4), round(hum, 4), round(pres, 4)), offset))
        sent[device].append((t, round(temp, 4), round(hum, 4), round(pres, 4)))
        offset += 1
        if i % 600 == 17:
            bad = [
                b'{"device_id":"dev-0","event_time":%d,"temperature":NaN,"humidity":1,"pressure":1000}' % t,
                b'{"device_id":"dev-0","event_time":%d,"temperature":1e999,"humidity":1,"pressure":1000}' % t,
                reading(device, NOW + 10 * 60_000, 1.0, 1.0, 1000.0),  # far future: a broken clock
                b"\xff\x00 binary junk",
            ][(i // 600) % 4]
            msgs.append(iot_message(bad, offset))
            offset += 1
            dead_expected += 1
    # A device whose first reading is from long ago: on time for it, its windows close later.
    msgs.insert(10, iot_message(reading("dev-old", 990_000_000_000, 5.0, 5.0, 500.0), 99_999))
    sent["dev-old"].append((990_000_000_000, 5.0, 5.0, 500.0))
    msgs.append(iot_message(reading("dev-old", T0 + 5_000, 6.0, 6.0, 600.0), 100_000))
    sent["dev-old"].append((T0 + 5_000, 6.0, 6.0, 600.0))

    activity: dict[int, list[tuple[int, EventType, float, str, str]]] = defaultdict(list)
    kinds = list(EventType)
    for j in range(900):
        partition = j % 3
        t = T0 + j * 150 + int(rng.integers(0, 400)) - (30_000 if rng.random() < 0.02 else 0)
        kind = kinds[int(rng.integers(0, 4))]
        amount = round(float(rng.uniform(5, 300)), 2) if kind is EventType.PURCHASE else None
        user, page = f"u{int(rng.integers(0, 60))}", f"/p/{int(rng.integers(0, 9))}"
        value = activity_event(j, user, kind, page, t, amount)
        # Interleave activity into the IoT stream.
        msgs.insert(min(len(msgs), j * 6 + 3), activity_message(value, j, partition))
        activity[partition].append((t, kind, amount or 0.0, user, page))
    msgs.insert(50, activity_message(b'{"type":"purchase"}', 5000, 1))
    dead_expected += 1
    return msgs, {"iot": sent, "activity": activity, "dead": dead_expected}


def _run(msgs: list[Any], workers: int = 1, batch_size: int = 250) -> tuple[list[Any], list[DeadLetter]]:
    out: list[Any] = []
    dlq: list[DeadLetter] = []
    flow = build_flow(
        FlowSettings(**SETTINGS),  # type: ignore[arg-type]
        TestingSource(as_batches(msgs, batch_size)),
        TestingSink(out),
        TestingSink(dlq),
        clock=ManualClock(NOW),
    )
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return out, dlq


@pytest.fixture(scope="module")
def scenario() -> tuple[list[Any], dict[str, Any]]:
    return _scenario()


@pytest.fixture(scope="module")
def one_worker(scenario) -> tuple[list[Any], list[DeadLetter]]:
    return _run(scenario[0])


def _on_time(
    sent: list[tuple[int, float, float, float]], lateness_ms: int
) -> list[tuple[int, float, float, float]]:
    flags = late_flags([r[0] for r in sent], lateness_ms)
    return [r for r, late in zip(sent, flags, strict=True) if not late]


def test_window_stats_equal_numpy_on_the_on_time_readings(scenario, one_worker):
    out, _ = one_worker
    got = {(r.window, r.device_id, r.metric, r.start_ms): r for r in out if isinstance(r, WindowStats)}
    assert len(got) == sum(isinstance(r, WindowStats) for r in out), "every window is reported once"
    expected = 0
    for device, sent in scenario[1]["iot"].items():
        kept = _on_time(sent, 3000)
        for name, length, step in (("10s", 10_000, 10_000), ("60s", 60_000, 10_000)):
            for row, metric in enumerate(METRICS):
                ref = window_aggregates([r[0] for r in kept], [r[1 + row] for r in kept], length, step)
                for start, (count, mean, lo, hi, p99) in ref.items():
                    w = got[(name, device, metric, start)]
                    assert (w.end_ms, w.count, w.min, w.max, w.p99) == (start + length, count, lo, hi, p99)
                    assert w.avg == pytest.approx(mean, rel=1e-12)
                    expected += 1
    assert expected == len(got)


def test_alerts_equal_the_reference_detector(scenario, one_worker):
    out, _ = one_worker
    alerts = {a.alert_id: a for a in out if isinstance(a, Alert)}  # the latest version of each
    expected = {}
    unconfirmed = 0
    for device, sent in scenario[1]["iot"].items():
        kept = _on_time(sent, 3000)
        for row, metric in enumerate(METRICS):
            _, _, _, episodes = zscore_reference(
                [r[0] for r in kept], [r[1 + row] for r in kept], window=60, warmup=15, max_episode=8
            )
            for ep in episodes:
                if ep.alerted:  # an episode never confirmed raised no alert
                    expected[alert_id(device, metric.value, ep.start_ms)] = (device, metric, ep)
                unconfirmed += not ep.alerted
    assert alerts.keys() == expected.keys()
    assert unconfirmed, "the scenario has lone warnings, which must raise no alert"
    assert any(a.device_id == "dev-1" and a.severity is Severity.CRITICAL for a in alerts.values())
    for key, (device, metric, ep) in expected.items():
        a = alerts[key]
        assert (a.device_id, a.metric, a.value, a.event_time_ms, a.severity) == (
            device,
            metric,
            ep.value,
            ep.peak_ms,
            LEVEL[ep.level],
        )
        assert a.z == pytest.approx(ep.z, rel=1e-9)
        assert a.mean == pytest.approx(ep.mean, rel=1e-12)
        assert a.std == pytest.approx(ep.std, rel=1e-9)


def test_trends_equal_numpy_polyfit_over_the_span(scenario, one_worker):
    out, _ = one_worker
    trends = {(t.device_id, t.metric): t for t in out if isinstance(t, TrendState)}  # the latest of each
    bucket = 120_000 // BUCKETS_PER_SPAN
    for device, sent in scenario[1]["iot"].items():
        kept = _on_time(sent, 3000)
        newest = max(r[0] for r in kept)
        sel = [r for r in kept if r[0] - r[0] % bucket > newest - 120_000]
        for row, metric in enumerate(METRICS):
            t = trends[(device, metric)]
            assert (t.points, t.updated_ms) == (len(sel), newest)
            if len(sel) < 2:
                assert t.slope_per_min == 0.0
                continue
            u = np.array([(r[0] - sel[0][0]) / 60_000 for r in sel])
            x = np.array([r[1 + row] for r in sel])
            assert t.slope_per_min == pytest.approx(np.polyfit(u, x, 1)[0], rel=1e-9, abs=1e-12)
            assert t.r2 == pytest.approx(np.corrcoef(u, x)[0, 1] ** 2, rel=1e-9, abs=1e-12)
    assert trends[("dev-0", Metric.PRESSURE)].slope_per_min == pytest.approx(0.12, rel=0.5)


def test_latest_reading_is_the_newest_per_device(scenario, one_worker):
    out, _ = one_worker
    latest = {r.device_id: r for r in out if isinstance(r, SensorReading)}
    for device, sent in scenario[1]["iot"].items():
        newest = max(sent, key=lambda r: r[0])
        r = latest[device]
        assert (r.event_time, r.temperature, r.humidity, r.pressure) == newest
        assert SensorReading.model_validate_json(r.to_json()) == r


def test_activity_windows_and_leaderboard_equal_the_reference(scenario, one_worker):
    out, _ = one_worker
    activity = scenario[1]["activity"]
    kept = []
    for events in activity.values():
        flags = late_flags([e[0] for e in events], 3000)
        kept += [e for e, late in zip(events, flags, strict=True) if not late]
    windows: dict[int, list[Any]] = defaultdict(list)
    for e in kept:
        windows[e[0] - e[0] % 10_000].append(e)
    got = {w.start_ms: w for w in out if isinstance(w, ActivityWindow)}
    assert got.keys() == windows.keys()
    for start, evs in windows.items():
        w = got[start]
        assert w.counts == {k: sum(e[1] is k for e in evs) for k in EventType}
        assert (w.events_per_s, w.distinct_users) == (len(evs) / 10, len({e[3] for e in evs}))
        assert w.revenue == math.fsum(e[2] for e in evs)
    totals: dict[str, int] = defaultdict(int)
    for events in activity.values():
        for e in events:
            totals[e[4]] += e[1] is EventType.PURCHASE
    board = {p.page: p.purchases for p in out if isinstance(p, PageTotal)}
    assert board == {page: n for page, n in totals.items() if n}


def test_counters_count_every_message_dead_letter_and_late_event(scenario, one_worker):
    msgs, truth = scenario
    out, dlq = one_worker
    final = [c for c in out if isinstance(c, PipelineCounters)][-1]
    late = sum(sum(late_flags([r[0] for r in sent], 3000)) for sent in truth["iot"].values())
    late += sum(sum(late_flags([e[0] for e in evs], 3000)) for evs in truth["activity"].values())
    newest = max(
        max(r[0] for s in truth["iot"].values() for r in s),
        max(e[0] for a in truth["activity"].values() for e in a),
    )
    assert final == PipelineCounters(len(msgs), truth["dead"], late, newest)
    assert late > 20 and len(dlq) == truth["dead"]
    assert {d.error_type for d in dlq} >= {"ValidationError", "FutureEventError"}


def _final(out: list[Any]) -> dict[str, Any]:
    """What a sink would hold at the end: each record's last version under its key."""
    return {
        "windows": {
            (r.window, r.device_id, r.metric, r.start_ms): r for r in out if isinstance(r, WindowStats)
        },
        "alerts": {r.alert_id: r for r in out if isinstance(r, Alert)},
        "trends": {(r.device_id, r.metric): r for r in out if isinstance(r, TrendState)},
        "latest": {r.device_id: r for r in out if isinstance(r, SensorReading)},
        "activity": {r.start_ms: r for r in out if isinstance(r, ActivityWindow)},
        "pages": {r.page: r.purchases for r in out if isinstance(r, PageTotal)},
        "counters": [r for r in out if isinstance(r, PipelineCounters)][-1],
    }


def test_two_workers_give_the_same_output_as_one(scenario, one_worker):
    two, dlq2 = _run(scenario[0], workers=2, batch_size=97)
    assert _final(two) == _final(one_worker[0])
    assert sum(isinstance(r, WindowStats) for r in two) == sum(
        isinstance(r, WindowStats) for r in one_worker[0]
    )
    assert sorted(d.offset for d in dlq2) == sorted(d.offset for d in one_worker[1])


def test_the_batch_size_does_not_change_the_output(scenario, one_worker):
    out, _ = _run(scenario[0], batch_size=1000)
    assert _final(out) == _final(one_worker[0])


def test_without_sinks_the_flow_writes_to_redis_and_the_dead_letter_topic():
    flow = build_flow(FlowSettings(), TestingSource([]))
    steps = {step.step_name: step for step in flow.substeps}
    assert isinstance(steps["write_sink"].sink, RedisSink)
    assert isinstance(steps["write_dlq"].sink, DeadLetterSink)


def test_an_aborted_run_resumed_from_its_snapshots_ends_like_an_uninterrupted_one(
    scenario, one_worker, tmp_path
):
    msgs = list(scenario[0])
    # A crash mid-stream. (One: TestingSource miscounts positions after a second ABORT.)
    msgs.insert(len(msgs) // 2, TestingSource.ABORT())
    init_db_dir(tmp_path, 1)
    runs: list[list[Any]] = []
    dlq: list[DeadLetter] = []
    for _ in range(2):
        runs.append([])
        flow = build_flow(
            FlowSettings(**SETTINGS),  # type: ignore[arg-type]
            TestingSource(as_batches(msgs, 250)),
            TestingSink(runs[-1]),
            TestingSink(dlq),
            clock=ManualClock(NOW),
        )
        run_main(flow, epoch_interval=timedelta(0), recovery_config=RecoveryConfig(str(tmp_path)))
    resumed = next(c for c in runs[1] if isinstance(c, PipelineCounters))
    assert resumed.events_in > len(msgs) // 3, "the second execution resumed from a snapshot"
    assert _final(runs[0] + runs[1]) == _final(one_worker[0]), "replays overwrite; totals are absolute"
    assert {d.offset for d in dlq} == {d.offset for d in one_worker[1]}
