"""Detection quality: z-score alerts against the IoT simulator's injected spikes and dips.

Runs the simulator (``sources.iot.IotSimulator``, default `IotConfig`, 2 Hz per
device) and feeds every (device, metric) series to a `flows.zscore.ZScoreDetector`
built with the flow's default settings (``flows.logic.IotParams.from_settings(FlowSettings())``),
exactly as the flow's per-device state does; an alert is an episode (the detector
keeps one alert per episode, identified by its start). Scored against
``IotSimulator.truth.anomalies``:

* a *true positive* alert starts inside an injected anomaly of the same series;
  any other alert is a *false positive*; those that start at or shortly after a level
  shift the simulator made (within ``max_episode`` readings) are counted apart, as
  they are real changes, not noise, though not scored as hits;
* an anomaly is *detected* if an alert starts inside it (recall);
* *delay*: readings of the series (and ms of event time) from the anomaly's first
  reading to the alert's first reading.

Anomalies before a series' detector has its warm-up baseline cannot be detected
and are left out of recall (their number is printed).

Trend accuracy (`trend_accuracy`): each device's readings feed the flow's own
`flows.trend.RollingTrend`, built as the flow builds it
(``IotParams.new_state``), and its direction is read once per trend report
interval (the flow reports a device's trend once per 10 s of event time). The
truth is `GroundTruth.slope_per_min` (least-squares slope of the noise-free
signal: cycle, drifts and shifts, no noise or spikes) over the same span, given a
direction by the same minimum slope per metric. Scored: accuracy and the confusion
matrix over every report once a full span of readings exists, and over the
reports whose whole span lies inside an injected drift. Pure Python, no services.
The last line of output is ``BENCH_JSON {...}``.

    .venv/bin/python -m bench.bench_detection [--minutes 60] [--devices 10]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import orjson  # noqa: E402

from flows.logic import IotParams  # noqa: E402
from flows.settings import FlowSettings  # noqa: E402
from flows.zscore import ZScoreDetector  # noqa: E402
from sinks.records import Severity, Trend  # noqa: E402
from sources.clock import simulated_times  # noqa: E402
from sources.iot import METRICS, IotConfig, IotSimulator  # noqa: E402
from sources.models import Metric  # noqa: E402
from sources.truth import ChangeKind, GroundTruth  # noqa: E402

T0_MS = 1_700_000_000_000
HZ_PER_DEVICE = 2.0
TRENDS = (Trend.RISING, Trend.FALLING, Trend.STABLE)


def _direction(slope_per_min: float, min_slope: float) -> Trend:
    if slope_per_min >= min_slope:
        return Trend.RISING
    if slope_per_min <= -min_slope:
        return Trend.FALLING
    return Trend.STABLE


def trend_accuracy(
    times: dict[str, list[int]],
    values: dict[tuple[str, Metric], list[float]],
    truth: GroundTruth,
    params: IotParams,
) -> dict[str, object]:
    """Score the flow's trend direction against the ground truth's (see the module docstring).

    Args:
        times: Event times (ms) of each device's readings, in order.
        values: The readings' values per (device, metric), aligned with `times`.
        truth: The simulator's ground truth.
        params: The flow's per-device configuration (trend span, thresholds, report interval).

    Returns:
        Counts, accuracies and confusion matrices (``confusion[truth][flow]``), JSON-ready.
    """
    span_ms = round(params.trend_span_s * 1000)
    report_ms = params.trend_report_ms
    all_matrix = {t: dict.fromkeys(TRENDS, 0) for t in TRENDS}
    drift_matrix = {t: dict.fromkeys(TRENDS, 0) for t in TRENDS}
    for device, device_times in times.items():
        fit_state = params.new_state(device).trend
        t = np.array(device_times, dtype=np.int64)
        xs = np.array([values[device, m] for m in METRICS], dtype=np.float64)
        drifts = [truth.changes_of(device, m, ChangeKind.DRIFT) for m in METRICS]
        interval = t // report_ms
        bounds = np.flatnonzero(np.diff(interval)) + 1
        for a, b in itertools.pairwise([0, *bounds.tolist(), len(t)]):
            fit_state.update_many(t[a:b], xs[:, a:b])
            newest = int(t[b - 1])
            start = newest - span_ms
            if start < int(t[0]):
                continue  # the fit doesn't have a full span yet: the truth would cover other readings
            for i, (metric, fit) in enumerate(zip(METRICS, fit_state.fit(), strict=True)):
                min_slope = params.trend_min_slopes[i]
                want = _direction(truth.slope_per_min(device, metric, start, newest), min_slope)
                all_matrix[want][fit.direction] += 1
                if any(d.start_ms <= start and newest <= d.end_ms for d in drifts[i]):
                    drift_matrix[want][fit.direction] += 1

    def score(matrix: dict[Trend, dict[Trend, int]]) -> tuple[int, float]:
        total = sum(sum(row.values()) for row in matrix.values())
        right = sum(matrix[t][t] for t in TRENDS)
        return total, right / total if total else float("nan")

    total, accuracy = score(all_matrix)
    drift_total, drift_accuracy = score(drift_matrix)
    return {
        "trend_reports": total,
        "trend_accuracy": accuracy,
        "trend_drift_reports": drift_total,
        "trend_drift_accuracy": drift_accuracy,
        "trend_confusion": {w.value: {g.value: n for g, n in row.items()} for w, row in all_matrix.items()},
        "trend_drift_confusion": {
            w.value: {g.value: n for g, n in row.items()} for w, row in drift_matrix.items()
        },
    }


def print_trend(result: dict[str, object], params: IotParams) -> None:
    """The trend figures, readable (confusion rows: the truth; columns: the flow)."""
    print(
        f"trend direction vs truth (span {params.trend_span_s:g} s, min slopes "
        f"{dict(zip((m.value for m in METRICS), params.trend_min_slopes, strict=True))}/min, "
        f"min |t| {params.trend_min_t:g}): accuracy {result['trend_accuracy']:.3f} over "
        f"{result['trend_reports']} reports; inside injected drifts {result['trend_drift_accuracy']:.3f} "
        f"over {result['trend_drift_reports']}"
    )
    for name, key in (("all reports", "trend_confusion"), ("inside drifts", "trend_drift_confusion")):
        matrix = result[key]
        assert isinstance(matrix, dict)
        print(
            f"  confusion, {name} (rows truth, columns flow): "
            + " | ".join(f"{w}: " + " ".join(f"{g} {n}" for g, n in row.items()) for w, row in matrix.items())
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="event time simulated (default 60)")
    parser.add_argument("--devices", type=int, default=10, help="devices (default 10)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    params = IotParams.from_settings(FlowSettings())
    zkw = dict(params.zscore)
    sim = IotSimulator(IotConfig(devices=args.devices), seed=args.seed)
    count = int(args.minutes * 60 * HZ_PER_DEVICE * args.devices)
    times: dict[str, list[int]] = defaultdict(list)
    values: dict[tuple[str, Metric], list[float]] = defaultdict(list)
    for r in sim.run(simulated_times(T0_MS, HZ_PER_DEVICE * args.devices, count)):
        reading = r.reading
        times[reading.device_id].append(reading.event_time)
        for metric in METRICS:
            values[reading.device_id, metric].append(reading.value(metric))

    truth = sim.truth
    tp_alerts = fp_alerts = fp_at_shift = 0
    crit_tp = crit_fp = crit_detected = 0
    detected = eligible = in_warmup = 0
    delays_readings: list[int] = []
    delays_ms: list[int] = []
    warmup = int(zkw["warmup"])  # type: ignore[arg-type]
    max_episode = int(zkw["max_episode"])  # type: ignore[arg-type]
    for (device, metric), series in values.items():
        t = np.array(times[device], dtype=np.int64)
        det = ZScoreDetector(**zkw)  # type: ignore[arg-type]
        episodes = det.update_many(t, np.array(series)).alerts
        starts = sorted({ep.start_ms for ep in episodes})
        critical = sorted({ep.start_ms for ep in episodes if ep.severity is Severity.CRITICAL})
        anomalies = truth.anomalies_of(device, metric)
        shifts = [c.start_ms for c in truth.changes_of(device, metric) if c.kind is ChangeKind.LEVEL_SHIFT]
        index = {int(ms): i for i, ms in enumerate(t.tolist())}
        for start in starts:
            if any(a.covers(start) for a in anomalies):
                tp_alerts += 1
            else:
                fp_alerts += 1
                i = index[start]
                if any(0 <= i - index.get(s, -(10**9)) <= max_episode for s in shifts):
                    fp_at_shift += 1
        for start in critical:
            if any(a.covers(start) for a in anomalies):
                crit_tp += 1
            else:
                crit_fp += 1
        for a in anomalies:
            if index[a.start_ms] >= warmup and any(a.covers(s) for s in critical):
                crit_detected += 1
            if index[a.start_ms] < warmup:
                in_warmup += 1
                continue
            eligible += 1
            hit = next((s for s in starts if a.covers(s)), None)
            if hit is not None:
                detected += 1
                delays_ms.append(hit - a.start_ms)
                delays_readings.append(index[hit] - index[a.start_ms])

    alerts = tp_alerts + fp_alerts
    precision = tp_alerts / alerts if alerts else 0.0
    recall = detected / eligible if eligible else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    crit_precision = crit_tp / (crit_tp + crit_fp) if crit_tp + crit_fp else 0.0
    crit_recall = crit_detected / eligible if eligible else 0.0
    mean_delay_readings = statistics.fmean(delays_readings) if delays_readings else 0.0
    mean_delay_ms = statistics.fmean(delays_ms) if delays_ms else 0.0
    print(
        f"# bench_detection: {count:,} readings ({args.devices} devices x 3 metrics, {args.minutes:g} min "
        f"of event time at {HZ_PER_DEVICE:g} Hz), seed {args.seed}; detector {zkw}"
    )
    print(
        f"injected anomalies: {len(truth.anomalies)} ({in_warmup} during warm-up, left out); "
        f"level shifts: {sum(c.kind is ChangeKind.LEVEL_SHIFT for c in truth.changes)}"
    )
    print(f"alerts: {alerts} ({tp_alerts} true, {fp_alerts} false of which {fp_at_shift} at a level shift)")
    print(f"precision {precision:.3f}  recall {recall:.3f}  F1 {f1:.3f}")
    print(
        f"critical episodes only (|z| >= {zkw['critical_z']}): {crit_tp + crit_fp} alerts, "
        f"precision {crit_precision:.3f}  recall {crit_recall:.3f}"
    )
    print(
        f"detection delay: mean {mean_delay_readings:.2f} readings, {mean_delay_ms:.0f} ms of event time; "
        f"max {max(delays_readings, default=0)} readings"
    )
    result = {
        "readings": count,
        "anomalies": len(truth.anomalies),
        "anomalies_in_warmup": in_warmup,
        "alerts": alerts,
        "true_alerts": tp_alerts,
        "false_alerts": fp_alerts,
        "false_alerts_at_level_shift": fp_at_shift,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "critical_precision": crit_precision,
        "critical_recall": crit_recall,
        "mean_delay_readings": mean_delay_readings,
        "mean_delay_ms": mean_delay_ms,
    }
    trend = trend_accuracy(times, values, truth, params)
    print_trend(trend, params)
    result.update(trend)
    print("BENCH_JSON " + orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
