"""Freshness under steady load: from an event's production to its effect being readable in Redis.

For each requested rate, the live pipeline runs on fresh topics (`bench.harness.LiveRun`):
the dataflow process tailing them (``PIPELINE_KAFKA_STOP_AT_END=false``) and
``python -m sources.produce iot --rate R`` processes stamping each reading with the
wall clock as they make it (event time = time of production), plus an activity
producer. An observer in this process watches Redis as a client would: it wakes
on every notification the sink publishes on the ``updates`` channel, or every
25 ms when none comes (so it keeps measuring whatever the sink publishes), and
reads:

* **latest reading**: ``iot:latest`` for every device. When a device's newest
  event time moves from ``e0`` to ``e1``, every reading the device produced in
  ``(e0, e1]`` became readable now: each contributes ``now - its event time``.
  Producers send each device's readings evenly spaced, so the readings of that
  span are spread evenly over it and the latency distribution is built exactly
  from these spans (a 1 ms histogram), not from the newest reading alone (which
  would flatter the figure).
* **alerts**: each new alert id in ``alerts``; latency ``now - started_ms``
  (the reading that started the episode).
* **window results**: the newest window of each sampled device's temperature series
  (10 s tumbling and 60 s sliding); a window ``[start, end)`` can close only
  when its device has a reading at ``end + allowed lateness``; latency
  ``now - (end + lateness)``.

"now" is taken after the read returns (an upper bound). The first ``--warmup``
seconds after the flow's first write are not measured, nor the time until it has
worked off the backlog of its start-up (newest reading younger than 1 s; at most
``--catch-up-timeout``, and the output says when it never got there). The
achieved rate is the IoT topic's growth over the measured span, beside the
requested one; when the machine cannot produce or process the rate, freshness
degrades and the figures say so. Targets: p99 < 250 ms for all three.

    .venv/bin/python -m bench.bench_freshness [--rates 10000,50000] [--seconds 60] [--devices 100]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import orjson  # noqa: E402
import redis  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402
from redis.client import PubSub  # noqa: E402

from bench.harness import CpuMeter, FlowShape, LiveRun, bar, percentile, say  # noqa: E402
from config.settings import load_settings  # noqa: E402
from flows.settings import FlowSettings, window_name  # noqa: E402
from infra.local import kafka_service, redis_service  # noqa: E402
from infra.settings import LocalInfraSettings  # noqa: E402
from sinks.layout import Layout, decode_alert, decode_latest, decode_update  # noqa: E402
from sources.iot import IotConfig, IotSimulator  # noqa: E402
from sources.models import Metric  # noqa: E402

MAX_LATENCY_MS = 600_000
CAUGHT_UP_MS = 1000
"""The flow has worked off its start-up backlog when its newest reading is younger than this."""
POLL_S = 0.025
WINDOW_SAMPLE_DEVICES = 20


def now_ms() -> int:
    """Wall clock, epoch ms: the producers' clock."""
    return time.time_ns() // 1_000_000


@dataclass
class Observations:
    """What the observer saw."""

    latest_hist: np.ndarray = field(default_factory=lambda: np.zeros(MAX_LATENCY_MS + 2, dtype=np.int64))
    """Readings (ms of per-device event time, see the module docstring) per latency ms (difference array)."""
    alerts: list[int] = field(default_factory=list)
    windows: dict[str, list[int]] = field(default_factory=dict)
    reads: int = 0
    notifications: int = 0
    read_ms: list[float] = field(default_factory=list)
    """How long each of the observer's reads took (its own share of the figures)."""

    def add_span(self, seen_ms: int, e0: int, e1: int) -> None:
        """Readings with event times in (e0, e1] became readable at `seen_ms`."""
        lo = min(max(seen_ms - e1, 0), MAX_LATENCY_MS)
        hi = min(max(seen_ms - e0, 0), MAX_LATENCY_MS)
        # Latencies seen - e for e in (e0, e1]: lo .. hi - 1, one unit each.
        self.latest_hist[lo] += 1
        self.latest_hist[hi] -= 1

    def latest_percentiles(self, qs: Sequence[float]) -> list[float]:
        """Percentiles (ms) of the latest-reading latency."""
        counts = np.cumsum(self.latest_hist[:-1])
        total = counts.sum()
        if total == 0:
            return [float("nan")] * len(qs)
        cum = np.cumsum(counts)
        return [float(np.searchsorted(cum, q / 100 * total)) for q in qs]

    @property
    def latest_weight(self) -> int:
        """Milliseconds of device event time covered by the latest-reading figures."""
        return int(np.cumsum(self.latest_hist[:-1]).sum())


class Observer:
    """Reads the run's keys after each notification (or every POLL_S) and records latencies."""

    def __init__(
        self, client: redis.Redis, layout: Layout, devices: list[str], windows: dict[str, int], lateness: int
    ) -> None:
        """Watch `devices` (windows of at most WINDOW_SAMPLE_DEVICES of them)."""
        self.client = client
        self.layout = layout
        self.devices = devices
        self.lateness = lateness
        self.window_keys = [
            (name, length, layout.window_series(name, d, Metric.TEMPERATURE))
            for name, length in windows.items()
            for d in devices[:WINDOW_SAMPLE_DEVICES]
        ]
        self.newest: dict[str, int] = {}
        self.latest_raw: dict[bytes, bytes] = {}
        self.window_starts: dict[str, float] = {}
        self.alert_ids: set[str] = set()
        self.alert_members: set[bytes] = set()
        self.alert_floor = 0
        self.obs = Observations(windows={name: [] for name in windows})
        self.measuring = False

    def prime(self) -> None:
        """Take what is in Redis now as already seen (warm-up)."""
        self._read_latest(record=False)
        self._read_windows(record=False)
        self._read_alerts(record=False)

    def run(self, seconds: float, progress: object | None = None) -> None:
        """Observe for `seconds`."""
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(self.layout.updates_channel())
        end = time.monotonic() + seconds
        try:
            while time.monotonic() < end:
                kinds = self._notified(pubsub)
                started = time.perf_counter()
                if kinds is None or "latest" in kinds:
                    self._read_latest(record=True)
                if kinds is None or "alerts" in kinds:
                    self._read_alerts(record=True)
                if kinds is None or "windows" in kinds:
                    self._read_windows(record=True)
                self.obs.reads += 1
                self.obs.read_ms.append((time.perf_counter() - started) * 1000)
                if progress is not None:
                    progress.n = min(seconds, seconds - (end - time.monotonic()))  # type: ignore[attr-defined]
                    progress.refresh()  # type: ignore[attr-defined]
        finally:
            pubsub.close()

    def _notified(self, pubsub: PubSub) -> set[str] | None:
        """Wait for notifications (at most POLL_S); the kinds they name, None to read everything.

        Every notification already queued is taken at once: the sink may publish faster
        than the observer reads, and reading once per notification would fall behind and
        measure the observer's own queue instead of the pipeline.
        """
        kinds: set[str] | None = set()
        msg = pubsub.get_message(timeout=POLL_S)
        if msg is None:
            return None  # no notification: read everything
        while msg is not None:
            if msg.get("type") == "message":
                self.obs.notifications += 1
                try:
                    if kinds is not None:
                        kinds.update(decode_update(msg["data"]).kinds)
                except (ValueError, KeyError, TypeError):
                    kinds = None  # a notification of another shape: read everything
            msg = pubsub.get_message(timeout=0)
        return kinds

    def _read_latest(self, record: bool) -> None:
        raw = self.client.hgetall(self.layout.latest())
        seen = now_ms()
        for device_raw, value in raw.items():
            if self.latest_raw.get(device_raw) == value:
                continue  # unchanged since the last read: no need to decode it
            self.latest_raw[device_raw] = value
            device = device_raw.decode()
            e1 = decode_latest(value).event_time
            e0 = self.newest.get(device)
            if e0 is not None and e1 > e0 and record:
                self.obs.add_span(seen, e0, e1)
            if e0 is None or e1 > e0:
                self.newest[device] = e1

    def _read_alerts(self, record: bool) -> None:
        raw = self.client.zrangebyscore(self.layout.alerts(), self.alert_floor, "+inf")
        seen = now_ms()
        for member in raw:
            if member in self.alert_members:
                continue  # read before: decoding a minute of alerts on every read would swamp the observer
            self.alert_members.add(member)
            alert = decode_alert(member)
            if alert.alert_id in self.alert_ids:
                continue
            self.alert_ids.add(alert.alert_id)
            if record:
                started = alert.started_ms if alert.started_ms is not None else alert.event_time_ms
                self.obs.alerts.append(seen - started)
        # Episodes start in event-time order per device; a minute back covers any still open.
        self.alert_floor = max(self.alert_floor, seen - 60_000)

    def _read_windows(self, record: bool) -> None:
        pipe = self.client.pipeline(transaction=False)
        for _, _, key in self.window_keys:
            pipe.zrangebyscore(key, f"({self.window_starts.get(key, 0)}", "+inf", withscores=True)
        results = pipe.execute()
        seen = now_ms()
        for (name, length, key), members in zip(self.window_keys, results, strict=True):
            if not record:
                self.window_starts.setdefault(key, 0)  # primed: its next window counts
            for _member, start in members:
                if record and key in self.window_starts:
                    self.obs.windows[name].append(seen - (int(start) + length + self.lateness))
                self.window_starts[key] = max(self.window_starts.get(key, 0), start)


@dataclass
class RateResult:
    """Freshness at one requested rate."""

    requested_per_s: float
    achieved_per_s: float
    seconds: float
    producers: int
    latest_p50_ms: float
    latest_p99_ms: float
    latest_max_ms: float
    alerts: int
    alert_p50_ms: float
    alert_p99_ms: float
    windows: dict[str, dict[str, float]]
    notifications: int
    reads: int
    read_p50_ms: float
    read_p99_ms: float
    """How long one observer read took: 'now' is taken after it, so this much is the observer's own."""
    caught_up: bool
    """The flow had worked off its start-up backlog before the measured span (else it lags behind)."""
    cpu_pct: dict[str, float]
    """CPU of each process over the measured span, % of one core (the machine has os.cpu_count())."""
    load_avg: float
    """The machine's 1-minute load average at the end of the span (other work shares the cores)."""


def process_pids(live: LiveRun, infra: LocalInfraSettings) -> dict[str, int]:
    """The run's processes by name: flow, producers, this observer, and the local broker and Redis."""
    pids = {f"flow-{i}": p.pid for i, p in enumerate(live.flow)}
    n_iot = len(live.producers) - (1 if live.activity_rate > 0 else 0)
    pids.update({f"producer-iot-{i}": p.pid for i, p in enumerate(live.producers[:n_iot])})
    if live.activity_rate > 0:
        pids["producer-activity"] = live.producers[-1].pid
    pids["observer"] = os.getpid()
    for name, service in (("kafka", kafka_service(infra)), ("redis", redis_service(infra))):
        pid = service.pid()
        if pid is not None:  # not started by infra.local (e.g. a broker of its own): not measured
            pids[name] = pid
    return pids


def measure_rate(
    admin: AdminClient,
    infra: LocalInfraSettings,
    rate: float,
    args: argparse.Namespace,
    flow: FlowSettings,
) -> RateResult:
    """One live run at `rate` IoT readings/s."""
    bootstrap = infra.kafka_bootstrap_servers
    redis_url = infra.redis_url.get_secret_value()
    devices = IotSimulator(IotConfig(devices=args.devices), seed=0).device_ids
    windows = {window_name(flow.tumbling_ms): flow.tumbling_ms, window_name(flow.sliding_ms): flow.sliding_ms}
    client = redis.Redis.from_url(redis_url)
    live = LiveRun(
        admin,
        bootstrap,
        redis_url,
        iot_rate=rate,
        activity_rate=args.activity_rate,
        devices=args.devices,
        shape=FlowShape.parse(args.flow),
        max_rate_per_producer=args.max_rate_per_producer,
    )
    with live:
        observer = Observer(client, Layout(live.prefix), devices, windows, flow.lateness_ms)
        say("freshness", f"{rate:,.0f} readings/s requested; warm-up")
        deadline = time.monotonic() + args.warmup + 120
        while not client.exists(Layout(live.prefix).latest()):
            live.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError("the flow wrote nothing to Redis")
            time.sleep(0.05)
        time.sleep(args.warmup)  # the warm-up is a span of time, not a condition to wait for
        # Then the backlog of the flow's start-up (producers started with it) must be worked off:
        # steady load is what is measured. A flow that cannot keep up never gets there (said so).
        caught_up = False
        deadline = time.monotonic() + args.catch_up_timeout
        while time.monotonic() < deadline:
            live.check_alive()
            newest = max(
                (decode_latest(v).event_time for v in client.hvals(Layout(live.prefix).latest())), default=0
            )
            if now_ms() - newest < CAUGHT_UP_MS:
                caught_up = True
                break
            time.sleep(0.2)
        if not caught_up:
            say("freshness", f"  the flow did not catch up within {args.catch_up_timeout:g} s: it lags")
        observer.prime()
        cpu = CpuMeter(process_pids(live, infra))
        cpu.start()
        count0, t0 = live.produced(), time.monotonic()
        with bar(args.seconds, f"freshness {rate:,.0f}/s", "s") as progress:
            observer.run(args.seconds, progress)
        count1, t1 = live.produced(), time.monotonic()
        cpu_pct = cpu.stop()
        live.check_alive()
        obs = observer.obs
        p50, p99, pmax = obs.latest_percentiles([50, 99, 100])
        return RateResult(
            requested_per_s=rate,
            achieved_per_s=(count1 - count0) / (t1 - t0),
            seconds=t1 - t0,
            producers=len(live.producers) - (1 if args.activity_rate > 0 else 0),
            latest_p50_ms=p50,
            latest_p99_ms=p99,
            latest_max_ms=pmax,
            alerts=len(obs.alerts),
            alert_p50_ms=percentile(obs.alerts, 50),
            alert_p99_ms=percentile(obs.alerts, 99),
            windows={
                name: {
                    "count": len(values),
                    "p50_ms": percentile(values, 50),
                    "p99_ms": percentile(values, 99),
                }
                for name, values in obs.windows.items()
            },
            notifications=obs.notifications,
            reads=obs.reads,
            read_p50_ms=percentile(obs.read_ms, 50),
            read_p99_ms=percentile(obs.read_ms, 99),
            caught_up=caught_up,
            cpu_pct=cpu_pct,
            load_avg=os.getloadavg()[0],
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="10000,50000", help="IoT readings/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds per rate (60)")
    parser.add_argument("--warmup", type=float, default=8.0, help="unmeasured s after 1st write")
    parser.add_argument(
        "--catch-up-timeout", type=float, default=30.0, help="most s to wait for the start-up backlog (30)"
    )
    parser.add_argument("--devices", type=int, default=100, help="simulated devices (100)")
    parser.add_argument("--activity-rate", type=float, default=100.0, help="website events/s beside (100)")
    parser.add_argument("--flow", default="1w", help="flow shape: 1w, 2w or 2p (1w)")
    parser.add_argument(
        "--max-rate-per-producer", type=float, default=25_000.0, help="IoT rate per producer process"
    )
    args = parser.parse_args()
    infra = load_settings(LocalInfraSettings)
    admin = AdminClient({"bootstrap.servers": infra.kafka_bootstrap_servers, "log_level": 4})
    flow = FlowSettings()  # the flow's defaults: window lengths and allowed lateness
    results = [measure_rate(admin, infra, float(r), args, flow) for r in args.rates.split(",")]

    print(
        f"# bench_freshness: {args.devices} devices, flow {FlowShape.parse(args.flow).label}, "
        f"{args.seconds:g} s measured per rate after {args.warmup:g} s warm-up, activity "
        f"{args.activity_rate:g}/s; allowed lateness {flow.lateness_ms} ms"
    )
    for r in results:
        print(
            f"rate {r.requested_per_s:,.0f}/s requested, {r.achieved_per_s:,.0f}/s achieved "
            f"({r.producers} producer processes): latest reading p50 {r.latest_p50_ms:.0f} ms, "
            f"p99 {r.latest_p99_ms:.0f} ms, max {r.latest_max_ms:.0f} ms; alerts ({r.alerts}) p50 "
            f"{r.alert_p50_ms:.0f} ms, p99 {r.alert_p99_ms:.0f} ms"
        )
        for name, w in r.windows.items():
            print(
                f"  window {name} ({w['count']:.0f} closed): readable after close + lateness: "
                f"p50 {w['p50_ms']:.0f} ms, p99 {w['p99_ms']:.0f} ms"
            )
        backlog = "worked off before measuring" if r.caught_up else "NOT worked off: the flow lags"
        print(
            f"  observer: {r.notifications:,} notifications, {r.reads:,} reads (p50 {r.read_p50_ms:.1f} ms, "
            f"p99 {r.read_p99_ms:.1f} ms each); start-up backlog {backlog}"
        )
        # CPU per achieved IoT reading: what each process costs, so what rate the cores could carry.
        rate = max(r.achieved_per_s, 1e-9)
        per_event = {name: pct / 100 / rate * 1e6 for name, pct in r.cpu_pct.items()}
        cpu = ", ".join(
            f"{name} {pct:.0f}% ({per_event[name]:.0f} us/reading)" for name, pct in r.cpu_pct.items()
        )
        print(
            f"  CPU (% of one core; {os.cpu_count()} cores, load average {r.load_avg:.1f}): {cpu}; "
            f"total {sum(r.cpu_pct.values()):.0f}%"
        )
    payload = {
        "devices": args.devices,
        "seconds": args.seconds,
        "flow": args.flow,
        "lateness_ms": flow.lateness_ms,
        "rates": [r.__dict__ for r in results],
    }
    print("BENCH_JSON " + orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
