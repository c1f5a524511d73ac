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
and are left out of recall (their number is printed). Pure Python, no services.
The last line of output is ``BENCH_JSON {...}``.

    .venv/bin/python -m bench.bench_detection [--minutes 60] [--devices 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import orjson  # noqa: E402

from flows.logic import IotParams  # noqa: E402
from flows.settings import FlowSettings  # noqa: E402
from flows.zscore import ZScoreDetector  # noqa: E402
from sinks.records import Severity  # noqa: E402
from sources.clock import simulated_times  # noqa: E402
from sources.iot import METRICS, IotConfig, IotSimulator  # noqa: E402
from sources.models import Metric  # noqa: E402
from sources.truth import ChangeKind, InjectedAnomaly, RegimeChange  # noqa: E402

T0_MS = 1_700_000_000_000
HZ_PER_DEVICE = 2.0


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="event time simulated (default 60)")
    parser.add_argument("--devices", type=int, default=10, help="devices (default 10)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    params = IotParams.from_settings(FlowSettings())
    zkw = dict(params.zscore)
    sim, times, values = simulate(args.minutes, args.devices, args.seed)
    count = sum(len(v) for v in times.values())
    truth = sim.truth
    tally = DetectionTally()
    for (device, metric), series in values.items():
        score_series(
            tally,
            np.array(times[device], dtype=np.int64),
            np.array(series),
            truth.anomalies_of(device, metric),
            truth.changes_of(device, metric),
            zkw,
        )
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
    print("BENCH_JSON " + orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
