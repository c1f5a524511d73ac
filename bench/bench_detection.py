"""Detection quality: z-score alerts against the IoT simulator's injected spikes and dips.

Runs the simulator (``sources.iot.IotSimulator``, default `IotConfig`, 2 Hz per
device) and feeds every (device, metric) series to a `flows.zscore.ZScoreDetector`
built with the flow's default settings (``flows.logic.IotParams.from_settings(FlowSettings())``),
exactly as the flow's per-device state does; an alert is an episode (the detector
keeps one alert per episode, identified by its start). Scored against
``IotSimulator.truth.anomalies``:

* a *true positive* alert's episode (its flagged readings, from its first, even when
  the alert policy raised it a reading or two later, to its last) has a flagged
  reading in an injected anomaly of the same series: the anomaly may have joined an
  episode that a noise reading or an earlier anomaly began just before it (one alert
  per episode); any other alert is a *false positive*. False positives are broken
  down by what they follow: a level shift the simulator made (within
  ``max_episode`` readings: a real change, though not scored as a hit), the end
  of an injected anomaly (within ``cooldown`` readings: a split episode), a drift
  in progress, or nothing injected (noise on the baseline's own model error);
* an anomaly is *detected* if an alert matches it, as above (recall); a missed one is
  put down to its largest |z| staying under the warning threshold, its flagged
  readings not confirming a warning alert, or its readings falling inside an
  episode that began before it;
* *delay*: readings of the series (and ms of event time) from the anomaly's first
  reading to the reading that raised the alert (not the episode's start: a
  confirmed warning is raised at its confirming reading).

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

``--variant k=v,k=v`` (repeatable) instead scores the same simulated data with
the detector's defaults overridden (any `ZScoreDetector` keyword; ``detrend=0``
for the flat mean) and prints one markdown table row per variant: the sweep
behind the defaults (``bench/results/detection-sweep.md``).

    .venv/bin/python -m bench.bench_detection [--minutes 60] [--devices 10] [--seed 7] [--variant ...]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import orjson  # noqa: E402

from bench.harness import bar, say  # noqa: E402
from flows.logic import IotParams  # noqa: E402
from flows.settings import FlowSettings  # noqa: E402
from flows.zscore import ZScoreDetector  # noqa: E402
from sinks.records import Severity, Trend  # noqa: E402
from sources.clock import simulated_times  # noqa: E402
from sources.iot import METRICS, IotConfig, IotSimulator  # noqa: E402
from sources.models import Metric  # noqa: E402
from sources.truth import ChangeKind, GroundTruth, InjectedAnomaly, RegimeChange  # noqa: E402

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
    all_matrix = {t: dict.fromkeys(TRENDS, 0) for t in TRENDS}
    drift_matrix = {t: dict.fromkeys(TRENDS, 0) for t in TRENDS}
    for device, device_times in times.items():
        fit_state = params.new_state(device).trend
        t = np.array(device_times, dtype=np.int64)
        xs = np.array([values[device, m] for m in METRICS], dtype=np.float64)
        drifts = [truth.changes_of(device, m, ChangeKind.DRIFT) for m in METRICS]
        interval = params.trend_report_interval(device, t)
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


@dataclass
class DetectionTally:
    """Counts over all series of how the alerts and the injected anomalies matched."""

    true_alerts: int = 0
    false_alerts: int = 0
    false_by_cause: Counter[str] = field(default_factory=Counter)
    critical_true: int = 0
    critical_false: int = 0
    critical_detected: int = 0
    detected: int = 0
    eligible: int = 0
    in_warmup: int = 0
    missed_by_cause: Counter[str] = field(default_factory=Counter)
    delays_readings: list[int] = field(default_factory=list)
    delays_ms: list[int] = field(default_factory=list)


def simulate(minutes: float, devices: int, seed: int) -> tuple[IotSimulator, dict, dict]:
    """Run the simulator: (it, device -> event times, (device, metric) -> values)."""
    sim = IotSimulator(IotConfig(devices=devices), seed=seed)
    count = int(minutes * 60 * HZ_PER_DEVICE * devices)
    times: dict[str, list[int]] = defaultdict(list)
    values: dict[tuple[str, Metric], list[float]] = defaultdict(list)
    for r in sim.run(simulated_times(T0_MS, HZ_PER_DEVICE * devices, count)):
        reading = r.reading
        times[reading.device_id].append(reading.event_time)
        for metric in METRICS:
            values[reading.device_id, metric].append(reading.value(metric))
    return sim, times, values


@dataclass(frozen=True)
class SeriesAlerts:
    """A series' alerts as the flow stores them (one per episode, its latest version), by reading index."""

    raised_at: dict[int, int]
    """Episode start -> the reading that raised its alert (the confirming one, for a warning)."""
    last: dict[int, int]
    """Episode start -> its last flagged reading."""
    critical: set[int]
    """Starts of the episodes that reached critical."""
    level: np.ndarray
    """Every reading's own level (0, 1, 2), alerted or not."""
    absz: np.ndarray


def alerts_of(det: ZScoreDetector, t: np.ndarray, x: np.ndarray) -> SeriesAlerts:
    """Score a series with `det`."""
    out = det.update_many(t, x)
    index = {int(ms): i for i, ms in enumerate(t.tolist())}
    latest = {index[ep.start_ms]: ep for ep in out.alerts}
    raised = np.flatnonzero(out.raised)
    # Episodes don't overlap: the first raising reading at or after a start is its alert's.
    return SeriesAlerts(
        raised_at={s: int(raised[np.searchsorted(raised, s)]) for s in sorted(latest)},
        last={s: last_flagged(out.level, s, det.cooldown) for s in latest},
        critical={index[ep.start_ms] for ep in out.alerts if ep.severity is Severity.CRITICAL},
        level=out.level,
        absz=np.abs(out.z),
    )


def last_flagged(level: np.ndarray, start: int, cooldown: int) -> int:
    """The last flagged reading of the episode starting at `start`: before `cooldown` normal ones."""
    i = last = start
    while i < level.shape[0] and i - last <= cooldown:
        if level[i]:
            last = i
        i += 1
    return last


def false_alert_cause(
    i: int, anomalies: list[tuple[int, int]], shifts: list[int], drifts: list[tuple[int, int]], zkw: dict
) -> str:
    """What a false alert starting at reading `i` follows (see the module docstring)."""
    if any(0 <= i - s <= int(zkw["max_episode"]) for s in shifts):
        return "level shift"
    if any(0 < i - end <= int(zkw["cooldown"]) for _, end in anomalies):
        return "anomaly's end"
    if any(a <= i <= b for a, b in drifts):
        return "drift"
    return "nothing injected"


def missed_cause(first: int, last: int, found: SeriesAlerts, zkw: dict) -> str:
    """Why the anomaly over readings [first, last] matched no alert."""
    if found.absz[first : last + 1].max() < float(zkw["warning_z"]):
        return "|z| under warning"
    if found.level[max(0, first - int(zkw["cooldown"])) : first].any():
        # A flagged reading shortly before: the anomaly joined an episode in progress.
        return "inside an earlier episode"
    return "warning not confirmed"


def score_series(
    tally: DetectionTally,
    t: np.ndarray,
    x: np.ndarray,
    anomalies: list[InjectedAnomaly],
    changes: list[RegimeChange],
    zkw: dict,
) -> None:
    """Score one (device, metric) series' alerts against its injected anomalies into `tally`.

    An alert matches an anomaly when one of its episode's flagged readings is one of the anomaly's.
    """
    found = alerts_of(ZScoreDetector(**zkw), t, x)
    index = {int(ms): i for i, ms in enumerate(t.tolist())}
    spans = [(index[a.start_ms], index[a.end_ms]) for a in anomalies]
    shifts = [index[c.start_ms] for c in changes if c.kind is ChangeKind.LEVEL_SHIFT]
    drifts = [
        (index[c.start_ms], int(np.searchsorted(t, c.end_ms))) for c in changes if c.kind is ChangeKind.DRIFT
    ]

    def matches(start: int, a: int, b: int) -> bool:
        return start <= b and a <= found.last[start] and bool(found.level[max(a, start) : b + 1].any())

    for start in found.raised_at:
        hit = any(matches(start, a, b) for a, b in spans)
        if hit:
            tally.true_alerts += 1
        else:
            tally.false_alerts += 1
            tally.false_by_cause[false_alert_cause(start, spans, shifts, drifts, zkw)] += 1
        if start in found.critical:
            tally.critical_true += hit
            tally.critical_false += not hit
    for a, b in spans:
        if a < int(zkw["warmup"]):
            tally.in_warmup += 1
            continue
        tally.eligible += 1
        start = next((s for s in found.raised_at if matches(s, a, b)), None)
        if start is None:
            tally.missed_by_cause[missed_cause(a, b, found, zkw)] += 1
            continue
        tally.detected += 1
        tally.critical_detected += start in found.critical
        # When the alert is out and the anomaly flagged: an episode begun before the anomaly
        # took it in at its first flagged reading.
        inside = a + int(np.flatnonzero(found.level[a : b + 1])[0]) if start < a else a
        seen = max(found.raised_at[start], inside)
        tally.delays_readings.append(seen - a)
        tally.delays_ms.append(int(t[seen] - t[a]))


def score_all(
    times: dict,
    values: dict,
    truth: GroundTruth,
    zkw: dict,
    on_series: Callable[[], object] | None = None,
) -> DetectionTally:
    """Score a detector with settings `zkw` on every (device, metric) series of the simulation."""
    tally = DetectionTally()
    for (device, metric), series in values.items():
        if on_series is not None:
            on_series()
        score_series(
            tally,
            np.array(times[device], dtype=np.int64),
            np.array(series),
            truth.anomalies_of(device, metric),
            truth.changes_of(device, metric),
            zkw,
        )
    return tally


def detection_result(tally: DetectionTally) -> dict[str, object]:
    """The figures of a tally (the BENCH_JSON fields)."""
    alerts = tally.true_alerts + tally.false_alerts
    precision = tally.true_alerts / alerts if alerts else 0.0
    recall = tally.detected / tally.eligible if tally.eligible else 0.0
    crit = tally.critical_true + tally.critical_false
    d = tally.delays_readings
    return {
        "alerts": alerts,
        "true_alerts": tally.true_alerts,
        "false_alerts": tally.false_alerts,
        "false_alerts_at_level_shift": tally.false_by_cause["level shift"],
        "false_alerts_by_cause": dict(tally.false_by_cause),
        "missed_by_cause": dict(tally.missed_by_cause),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "critical_precision": tally.critical_true / crit if crit else 0.0,
        "critical_recall": tally.critical_detected / tally.eligible if tally.eligible else 0.0,
        "mean_delay_readings": statistics.fmean(d) if d else 0.0,
        "mean_delay_ms": statistics.fmean(tally.delays_ms) if d else 0.0,
        "max_delay_readings": max(d, default=0),
        "alerts_raised_late": sum(1 for v in d if v > 0),
    }


def parse_variant(text: str, defaults: dict) -> dict:
    """``"window=40,detrend=0"`` -> the detector's keyword arguments with those overridden."""
    kw = dict(defaults)
    for item in filter(None, text.split(",")):
        key, _, raw = item.partition("=")
        if key == "detrend":
            kw[key] = raw not in ("0", "false", "False")
        elif key == "window_s":
            kw[key] = float(raw)
        elif key in kw:
            kw[key] = type(kw[key])(raw)
        else:
            raise SystemExit(f"unknown detector setting {key!r} in --variant {text!r}")
    return kw


def sweep(variants: list[str], zkw: dict, times: dict, values: dict, truth: GroundTruth) -> None:
    """Print a markdown row of detection figures per variant of the detector's settings."""
    print(
        "| variant | precision | recall | F1 | critical P | critical R | mean delay (readings / ms) "
        "| false alerts: nothing injected / drift / level shift | missed |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for text in variants:
        tally = score_all(times, values, truth, parse_variant(text, zkw))
        r = detection_result(tally)
        f = tally.false_by_cause
        print(
            f"| {text or 'defaults'} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} "
            f"| {r['critical_precision']:.3f} | {r['critical_recall']:.3f} "
            f"| {r['mean_delay_readings']:.2f} / {r['mean_delay_ms']:.0f} "
            f"| {f['nothing injected']} / {f['drift']} / {f['level shift']} "
            f"| {sum(tally.missed_by_cause.values())} |",
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="event time simulated (default 60)")
    parser.add_argument("--devices", type=int, default=10, help="devices (default 10)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="detector settings to sweep, e.g. window=40,detrend=0 (repeatable; '' = defaults)",
    )
    args = parser.parse_args()

    params = IotParams.from_settings(FlowSettings())
    zkw = dict(params.zscore)
    say("detection", f"simulating {args.minutes:g} min of {args.devices} devices")
    sim, times, values = simulate(args.minutes, args.devices, args.seed)
    if args.variant:
        print(
            f"# detection sweep: {args.minutes:g} min, {args.devices} devices, seed {args.seed}, "
            f"{len(sim.truth.anomalies)} anomalies; defaults {zkw}"
        )
        sweep(args.variant, zkw, times, values, sim.truth)
        return 0
    count = sum(len(v) for v in times.values())
    truth = sim.truth
    progress = bar(len(values), "detection: alerts", "series")
    tally = score_all(times, values, truth, zkw, on_series=progress.update)
    result = {"readings": count, "anomalies": len(truth.anomalies), "anomalies_in_warmup": tally.in_warmup}
    result.update(detection_result(tally))
    print(
        f"# bench_detection: {count:,} readings ({args.devices} devices x 3 metrics, {args.minutes:g} min "
        f"of event time at {HZ_PER_DEVICE:g} Hz), seed {args.seed}; detector {zkw}"
    )
    print(
        f"injected anomalies: {len(truth.anomalies)} ({tally.in_warmup} during warm-up, left out); "
        f"level shifts: {sum(c.kind is ChangeKind.LEVEL_SHIFT for c in truth.changes)}"
    )
    print(
        f"alerts: {result['alerts']} ({result['true_alerts']} true, {result['false_alerts']} false: "
        f"{dict(tally.false_by_cause.most_common())})"
    )
    print(f"missed anomalies: {dict(tally.missed_by_cause.most_common())}")
    print(f"precision {result['precision']:.3f}  recall {result['recall']:.3f}  F1 {result['f1']:.3f}")
    print(
        f"critical episodes only (|z| >= {zkw['critical_z']}): {tally.critical_true + tally.critical_false} "
        f"alerts, precision {result['critical_precision']:.3f}  recall {result['critical_recall']:.3f}"
    )
    print(
        f"detection delay (anomaly start to the alert's raising reading): mean "
        f"{result['mean_delay_readings']:.2f} readings, {result['mean_delay_ms']:.0f} ms of event time; "
        f"max {result['max_delay_readings']} readings; {result['alerts_raised_late']} of {tally.detected} "
        "raised after the anomaly's first reading"
    )
    progress.close()
    say("detection", "trend accuracy: the flow's RollingTrend over every device")
    trend = trend_accuracy(times, values, truth, params)
    print_trend(trend, params)
    result.update(trend)
    print("BENCH_JSON " + orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
