"""Memory over a long steady run: the flow's resident memory stays flat, Redis stays bounded by retention.

The live pipeline (`bench.harness.LiveRun`: the dataflow process tailing fresh
topics, ``python -m sources.produce`` at a steady rate) runs for ``--seconds``
with the sink's retention set short (``PIPELINE_SINK_RETENTION_S``, default 120 s),
so that the run outlasts it several times. Every second this samples:

* the flow's resident memory (RSS, psutil, summed over its processes);
* Redis ``used_memory`` (INFO memory) and the number of windows kept in one
  device's 10 s series (``ZCARD``), against its bound (retention / step + 1).

Reported: flow RSS at the start of the measured span (after ``--warmup``), peak,
end and the least-squares slope over the second half (MB/min; near 0 = flat);
Redis used_memory once the retention span has passed, its peak and end, and its
slope after the retention span plus the sliding window's length (when every
series has filled up and trimming keeps pace; a short run: after the retention
span). The run's achieved IoT rate is printed beside.

    .venv/bin/python -m bench.bench_memory [--seconds 600] [--rate 10000] [--retention-s 120]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import orjson  # noqa: E402
import redis  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402

from bench.harness import MB, FlowShape, LiveRun, MemorySampler, bar, say  # noqa: E402
from config.settings import load_settings  # noqa: E402
from flows.settings import FlowSettings, window_name  # noqa: E402
from infra.settings import LocalInfraSettings  # noqa: E402
from sinks.layout import Layout  # noqa: E402
from sources.iot import IotConfig, IotSimulator  # noqa: E402
from sources.models import Metric  # noqa: E402


def slope_per_min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) samples, value units per minute (NaN for < 3)."""
    if len(samples) < 3:
        return float("nan")
    t = np.array([s[0] for s in samples])
    v = np.array([s[1] for s in samples])
    return float(np.polyfit(t / 60.0, v, 1)[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="length of the run (600)")
    parser.add_argument("--rate", type=float, default=10_000.0, help="IoT readings/s (10,000)")
    parser.add_argument("--devices", type=int, default=100, help="simulated devices (100)")
    parser.add_argument("--activity-rate", type=float, default=100.0, help="website events/s beside (100)")
    parser.add_argument("--retention-s", type=float, default=120.0, help="the sink's retention, s (120)")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before the start figure (10)")
    parser.add_argument("--flow", default="1w", help="flow shape: 1w, 2w or 2p (1w)")
    args = parser.parse_args()
    infra = load_settings(LocalInfraSettings)
    bootstrap = infra.kafka_bootstrap_servers
    redis_url = infra.redis_url.get_secret_value()
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 4})
    client = redis.Redis.from_url(redis_url)
    flow = FlowSettings()
    tumbling = window_name(flow.tumbling_ms)
    bound = int(args.retention_s * 1000 // flow.tumbling_ms) + 1
    device = IotSimulator(IotConfig(devices=args.devices), seed=0).device_ids[0]

    live = LiveRun(
        admin,
        bootstrap,
        redis_url,
        iot_rate=args.rate,
        activity_rate=args.activity_rate,
        devices=args.devices,
        shape=FlowShape.parse(args.flow),
        flow_env={"PIPELINE_SINK_RETENTION_S": f"{args.retention_s:g}"},
    )
    kept: list[tuple[float, int]] = []
    with live:
        series = Layout(live.prefix).window_series(tumbling, device, Metric.TEMPERATURE)
        t0 = time.monotonic()

        def redis_sample() -> float:
            kept.append((time.monotonic() - t0, int(client.zcard(series))))
            return float(client.info("memory")["used_memory"])

        say("memory", f"{args.rate:,.0f} readings/s for {args.seconds:g} s, retention {args.retention_s:g} s")
        count0 = live.produced()
        with (
            MemorySampler([p.pid for p in live.flow], interval_s=1.0, extra=redis_sample) as memory,
            bar(args.seconds, "memory run", "s") as progress,
        ):
            while (elapsed := time.monotonic() - t0) < args.seconds:
                live.check_alive()
                progress.n = min(elapsed, args.seconds)
                progress.refresh()
                time.sleep(min(1.0, args.seconds - elapsed))
        achieved = (live.produced() - count0) / (time.monotonic() - t0)

    samples = [(t, rss / MB, used / MB) for t, rss, used in memory.samples]
    measured = [s for s in samples if s[0] >= args.warmup] or samples
    second_half = [(t, rss) for t, rss, _ in measured if t >= args.seconds / 2]
    rss_start, rss_end = measured[0][1], measured[-1][1]
    rss_peak = max(s[1] for s in measured)
    after_retention = [(t, used) for t, _, used in samples if t >= args.retention_s]
    # Settled: retention plus the sliding window's length have passed (every series trims), when the
    # run is that long; a short (quick) run uses what follows the retention span.
    settle_s = args.retention_s + flow.sliding_ms / 1000
    if settle_s > args.seconds * 0.8:
        settle_s = args.retention_s
    settled = [(t, used) for t, used in after_retention if t >= settle_s]
    redis_at_retention = after_retention[0][1] if after_retention else float("nan")
    result = {
        "seconds": args.seconds,
        "rate_requested": args.rate,
        "rate_achieved": achieved,
        "devices": args.devices,
        "retention_s": args.retention_s,
        "flow_rss_start_mb": rss_start,
        "flow_rss_peak_mb": rss_peak,
        "flow_rss_end_mb": rss_end,
        "flow_rss_slope_mb_per_min": slope_per_min(second_half),
        "redis_used_start_mb": samples[0][2] if samples else float("nan"),
        "redis_used_at_retention_mb": redis_at_retention,
        "redis_used_peak_mb": max((s[2] for s in samples), default=float("nan")),
        "redis_used_end_mb": samples[-1][2] if samples else float("nan"),
        "redis_used_slope_mb_per_min": slope_per_min(settled),
        "windows_kept_max": max((k for _, k in kept), default=0),
        "windows_kept_bound": bound,
        "samples": len(samples),
    }
    print(
        f"# bench_memory: {args.seconds:g} s at {args.rate:,.0f} IoT readings/s requested "
        f"({achieved:,.0f}/s achieved), {args.devices} devices, flow {FlowShape.parse(args.flow).label}, "
        f"sink retention {args.retention_s:g} s; sampled every 1 s"
    )
    print(
        f"flow RSS: start {rss_start:.0f} MB (at {args.warmup:g} s), peak {rss_peak:.0f} MB, end "
        f"{rss_end:.0f} MB; slope over the second half {result['flow_rss_slope_mb_per_min']:+.2f} MB/min"
    )
    print(
        f"Redis used_memory: start {result['redis_used_start_mb']:.1f} MB, after the retention span "
        f"{redis_at_retention:.1f} MB, peak {result['redis_used_peak_mb']:.1f} MB, end "
        f"{result['redis_used_end_mb']:.1f} MB; slope once settled (from {settle_s:g} s on) "
        f"{result['redis_used_slope_mb_per_min']:+.2f} MB/min"
    )
    print(
        f"windows kept in one {tumbling} series: at most {result['windows_kept_max']} "
        f"(bound: retention / step + 1 = {bound})"
    )
    print("BENCH_JSON " + orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
