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
and are left out of recall (their number is printed). Pure Python, no services.
The last line of output is ``BENCH_JSON {...}``.

    .venv/bin/python -m bench.bench_detection [--minutes 60] [--devices 10]
"""

from __future__ import annotations

import argparse
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
from sinks.records import Severity  # noqa: E402
from sources.clock import simulated_times  # noqa: E402
from sources.iot import METRICS, IotConfig, IotSimulator  # noqa: E402
from sources.models import Metric  # noqa: E402
from sources.truth import ChangeKind  # noqa: E402

T0_MS = 1_700_000_000_000
HZ_PER_DEVICE = 2.0


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
    print("BENCH_JSON " + orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
