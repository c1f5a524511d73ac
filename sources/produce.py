"""``python -m sources.produce iot|activity``: run a simulator into its Kafka topic.

Examples::

    python -m sources.produce iot                         # live: 20 readings/s until Ctrl-C
    python -m sources.produce activity --rate 200         # live, 200 events/s
    python -m sources.produce iot --count 100000          # a bounded load, as fast as possible
    python -m sources.produce iot --count 72000 --start 2024-01-01T00:00:00Z   # an hour of data, instantly

Defaults come from `ProducerSettings` (``PIPELINE_`` variables); flags override them.
``--rate 0`` sends as fast as possible. A run with ``--count`` goes full speed too,
unless ``--rate`` is given (or ``PIPELINE_PRODUCER_FULL_SPEED=false``). With the
simulated clock (``--start`` or ``PIPELINE_PRODUCER_CLOCK=simulated``) event times
advance 1/rate per event however fast they are sent. SIGINT/SIGTERM stop the run:
events in flight are flushed (up to ``PIPELINE_PRODUCER_FLUSH_TIMEOUT_S``; a second
signal stops waiting) and a final report is printed. Exit status 0 when every
produced event was delivered, 1 otherwise, 2 on bad options or settings.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from types import FrameType
from typing import Any, TextIO

import structlog
from confluent_kafka import KafkaException
from prometheus_client import CollectorRegistry, start_http_server

from config.logging import configure_logging
from config.settings import load_settings
from sources.activity import ActivityConfig, ActivitySimulator
from sources.clock import Pacer, SimulatedClock, wall_ms
from sources.iot import IotConfig, IotSimulator
from sources.producer import DeliveryStats, EventProducer, ProducerMetrics, WireEvent
from sources.settings import ClockMode, ProducerSettings

log = structlog.get_logger(__name__)


class Source(StrEnum):
    """What to simulate."""

    IOT = "iot"
    ACTIVITY = "activity"


@dataclass(frozen=True, slots=True)
class RunPlan:
    """How one run goes, resolved from settings and flags."""

    source: Source
    topic: str
    rate: float
    """Events per second: the pace when paced, the event-time spacing of the simulated clock."""
    paced: bool
    count: int | None
    seed: int
    clock: ClockMode
    start_ms: int | None

    @classmethod
    def resolve(cls, source: Source, settings: ProducerSettings) -> RunPlan:
        """Apply the defaulting rules: full speed when asked, or when a count bounds the run."""
        full_speed = settings.producer_full_speed
        if full_speed is None:
            full_speed = settings.producer_count is not None
        iot = source is Source.IOT
        return cls(
            source=source,
            topic=settings.iot_topic if iot else settings.activity_topic,
            rate=settings.iot_rate if iot else settings.activity_rate,
            paced=not full_speed,
            count=settings.producer_count,
            seed=settings.producer_seed,
            clock=settings.producer_clock,
            start_ms=settings.producer_start_ms,
        )


def iot_config(settings: ProducerSettings) -> IotConfig:
    """The IoT simulation described by `settings`."""
    return IotConfig(
        devices=settings.iot_devices,
        cycle_period_s=settings.iot_cycle_period_s,
        noise_scale=settings.iot_noise_scale,
        anomaly_rate=settings.iot_anomaly_rate,
        shift_rate_per_hour=settings.iot_shift_rate_per_hour,
        drift_rate_per_hour=settings.iot_drift_rate_per_hour,
    )


def activity_config(settings: ProducerSettings) -> ActivityConfig:
    """The website simulation described by `settings`."""
    return ActivityConfig(
        users=settings.activity_users,
        sessions=min(settings.activity_sessions, settings.activity_users),
        pages=settings.activity_pages,
        zipf_exponent=settings.activity_zipf_exponent,
    )


def event_factory(source: Source, settings: ProducerSettings, seed: int) -> Callable[[int], WireEvent]:
    """A function from event time (epoch ms) to the source's next wire event."""
    if source is Source.IOT:
        iot = IotSimulator(iot_config(settings), seed)
        return lambda t_ms: iot.emit(t_ms).reading
    activity = ActivitySimulator(activity_config(settings), seed)
    return activity.emit


def event_clock(plan: RunPlan, now_ms: Callable[[], int] = wall_ms) -> Callable[[], int]:
    """The event-time source of `plan`: the wall clock or a simulated one."""
    if plan.clock == "simulated":
        return SimulatedClock(now_ms() if plan.start_ms is None else plan.start_ms, plan.rate)
    return now_ms


# --- progress and report ----------------------------------------------------


class Progress:
    """A live progress line on a terminal, or a log line every `interval_s` elsewhere."""

    def __init__(
        self,
        source: Source,
        stats: DeliveryStats,
        stream: TextIO,
        interval_s: float,
        now: Callable[[], float] = time.monotonic,
        logger: Any = None,
    ) -> None:
        """Report on `stream` when it is a terminal, else through `logger` (default: this module's)."""
        self._log = log if logger is None else logger
        self._source = source
        self._stats = stats
        self._stream = stream
        self._tty = stream.isatty()
        self._interval = 0.5 if self._tty else interval_s
        self._now = now
        self._last_t = now()
        self._last_produced = 0
        self._next_t = self._last_t + self._interval
        self._drawn = False

    def tick(self) -> None:
        """Report if the interval has passed (cheap otherwise: call it per event)."""
        now = self._now()
        if now >= self._next_t:
            self._report(now)

    def _report(self, now: float) -> None:
        stats = self._stats
        rate = (stats.produced - self._last_produced) / max(now - self._last_t, 1e-9)
        self._last_t, self._last_produced = now, stats.produced
        self._next_t = now + self._interval
        if self._tty:
            self._stream.write("\r\x1b[K" + progress_line(self._source, stats, rate))
            self._stream.flush()
            self._drawn = True
        else:
            self._log.info(
                "progress",
                produced=stats.produced,
                delivered=stats.delivered,
                failed=stats.failed,
                in_flight=stats.in_flight,
                events_per_s=round(rate, 1),
            )

    def finish(self) -> None:
        """End the terminal line so the report starts on its own."""
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()


def progress_line(source: Source, stats: DeliveryStats, rate: float) -> str:
    """One terminal line: counts and the current sending rate."""
    return (
        f"[{source.value}] {stats.produced:,} produced · {stats.delivered:,} delivered · "
        f"{stats.failed:,} failed · {rate:,.0f} events/s"
    )


@dataclass(frozen=True, slots=True)
class RunReport:
    """The outcome of one run, printed at the end."""

    source: Source
    topic: str
    produced: int
    delivered: int
    failed: int
    undelivered: int
    """Still in flight when the flush timed out (fate unknown)."""
    elapsed_s: float
    stopped_by: str
    failures: dict[str, int]

    @property
    def ok(self) -> bool:
        """Every produced event was delivered."""
        return self.delivered == self.produced

    def __str__(self) -> str:
        rate = self.delivered / self.elapsed_s if self.elapsed_s > 0 else 0.0
        line = (
            f"[{self.source.value}] {self.delivered:,} of {self.produced:,} events delivered to "
            f"{self.topic} in {self.elapsed_s:.1f} s ({rate:,.0f} events/s); "
            f"{self.failed:,} failed, {self.undelivered:,} undelivered; stopped by {self.stopped_by}"
        )
        if self.failures:
            line += " (" + ", ".join(f"{name}: {n:,}" for name, n in sorted(self.failures.items())) + ")"
        return line


# --- the run ------------------------------------------------------------------


class StopSignals:
    """SIGINT/SIGTERM handling: the first asks for a graceful stop, the second abandons the flush."""

    def __init__(self) -> None:
        """Nothing is installed until `install`."""
        self.stop = threading.Event()
        self.abandon = threading.Event()
        self.signal_name: str | None = None

    def install(self) -> None:
        """Handle SIGINT and SIGTERM (main thread only)."""
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.stop.is_set():
            self.abandon.set()
            log.warning("second signal: not waiting for events in flight", signal=name)
            return
        self.signal_name = name
        self.stop.set()
        log.info("stopping: flushing events in flight", signal=name)


MIN_POLL_S = 0.001
"""Shortest wait between sends: librdkafka's poll counts whole milliseconds."""
MAX_POLL_S = 0.1
"""Longest wait in one poll, so that a stop signal is seen promptly."""


def poll_slice_s(wait_s: float) -> float:
    """How long to poll (serving delivery reports) while the next event is `wait_s` away.

    librdkafka's poll truncates its timeout to whole milliseconds, so a wait under
    1 ms would be a non-blocking poll and the loop would spin a whole core between
    events (at 10,000 events/s the gap is 0.1 ms). Waiting at least 1 ms and then
    sending what fell due meanwhile as a burst keeps the rate; each event's time is
    taken when it is made, so event times stay true.
    """
    return min(max(wait_s, MIN_POLL_S), MAX_POLL_S)


def run(
    plan: RunPlan,
    make_event: Callable[[int], WireEvent],
    producer: EventProducer,
    clock: Callable[[], int],
    pacer: Pacer,
    signals: StopSignals,
    progress: Progress,
    flush_timeout_s: float,
) -> RunReport:
    """Produce until the count is reached, a signal arrives, or the producer fails fatally."""
    started = time.monotonic()
    stats = producer.stats
    stopped_by = "count"
    try:
        while plan.count is None or stats.produced < plan.count:
            if signals.stop.is_set():
                stopped_by = signals.signal_name or "signal"
                break
            if producer.fatal_error is not None:
                stopped_by = f"fatal error {producer.fatal_error.name()}"
                break
            wait = pacer.due_in()
            if wait > 0:
                # Serve delivery reports while waiting; short slices keep signals prompt.
                producer.poll(poll_slice_s(wait))
            else:
                try:
                    producer.send(make_event(clock()))
                except KafkaException as exc:  # fatal: the producer can't go on (already logged)
                    stopped_by = f"fatal error {exc.args[0].name()}"
                    break
                pacer.sent()
            progress.tick()
        deadline = time.monotonic() + flush_timeout_s
        # Flush in slices so a second signal can cut the wait short.
        while stats.in_flight and not signals.abandon.is_set() and time.monotonic() < deadline:
            producer.flush(min(0.2, max(0.0, deadline - time.monotonic())))
            progress.tick()
    finally:
        progress.finish()
    return RunReport(
        source=plan.source,
        topic=plan.topic,
        produced=stats.produced,
        delivered=stats.delivered,
        failed=stats.failed,
        undelivered=stats.in_flight,
        elapsed_s=time.monotonic() - started,
        stopped_by=stopped_by,
        failures=dict(stats.failures),
    )


# --- command line -------------------------------------------------------------


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also rejects NaN
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def parse_start(text: str) -> int:
    """``--start``: UTC epoch ms, or ISO-8601 with a time zone (``2024-01-01T00:00:00Z``)."""
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not epoch ms nor ISO-8601: {text!r}") from None
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone, e.g. {text}Z or {text}+00:00")
    return int(when.timestamp() * 1000)


def build_parser() -> argparse.ArgumentParser:
    """The command line; every default lives in `ProducerSettings`."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--rate",
        type=_non_negative_float,
        help="events/s; 0 = as fast as possible (default: PIPELINE_IOT_RATE or PIPELINE_ACTIVITY_RATE)",
    )
    common.add_argument(
        "--count", type=_positive_int, help="stop after this many events (default: PIPELINE_PRODUCER_COUNT)"
    )
    common.add_argument(
        "--seed", type=_non_negative_int, help="simulator seed (default: PIPELINE_PRODUCER_SEED)"
    )
    common.add_argument(
        "--clock",
        choices=["wall", "simulated"],
        help="event-time source (default: PIPELINE_PRODUCER_CLOCK; simulated when --start is given)",
    )
    common.add_argument(
        "--start", type=parse_start, help="simulated clock start: epoch ms or ISO-8601 with a time zone"
    )
    parser = argparse.ArgumentParser(
        prog="python -m sources.produce",
        # The module docstring is the manual: examples, defaulting rules, exit status.
        description=(__doc__ or "").replace("``", "").replace("::", ":"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="source", required=True, metavar="{iot,activity}")
    iot = sub.add_parser("iot", parents=[common], help="IoT sensor readings")
    iot.add_argument(
        "--devices", type=_positive_int, help="number of simulated devices (default: PIPELINE_IOT_DEVICES)"
    )
    sub.add_parser("activity", parents=[common], help="website activity events")
    return parser


def settings_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Flags given on the command line, as `ProducerSettings` fields."""
    overrides: dict[str, Any] = {}
    if args.rate is not None:
        # --rate R paces at R; --rate 0 means full speed (the settings' rate still
        # spaces simulated event times).
        overrides["producer_full_speed"] = args.rate == 0
        if args.rate > 0:
            overrides["iot_rate" if args.source == "iot" else "activity_rate"] = args.rate
    if args.count is not None:
        overrides["producer_count"] = args.count
    if args.seed is not None:
        overrides["producer_seed"] = args.seed
    if args.start is not None:
        overrides["producer_start_ms"] = args.start
        overrides["producer_clock"] = args.clock or "simulated"
    elif args.clock is not None:
        overrides["producer_clock"] = args.clock
    if getattr(args, "devices", None) is not None:
        overrides["iot_devices"] = args.devices
    return overrides


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m sources.produce``."""
    args = build_parser().parse_args(argv)
    source = Source(args.source)
    settings = load_settings(ProducerSettings, **settings_overrides(args))
    configure_logging(f"producer-{source.value}")
    plan = RunPlan.resolve(source, settings)

    producer = EventProducer(settings.producer_config(), plan.topic)
    registry = CollectorRegistry()
    registry.register(ProducerMetrics(producer.stats, source.value))
    server = None
    if settings.producer_metrics_port:
        try:
            server, _ = start_http_server(
                settings.producer_metrics_port, addr=settings.producer_metrics_host, registry=registry
            )
        except OSError as exc:
            log.error(
                "metrics endpoint unavailable: free the port or change PIPELINE_PRODUCER_METRICS_PORT",
                host=settings.producer_metrics_host,
                port=settings.producer_metrics_port,
                error=str(exc),
            )
            return 2

    signals = StopSignals()
    signals.install()
    clock = event_clock(plan)
    log.info(
        "producing",
        source=source.value,
        topic=plan.topic,
        bootstrap=settings.kafka_bootstrap_servers,
        rate=plan.rate,
        paced=plan.paced,
        count=plan.count,
        seed=plan.seed,
        clock=plan.clock,
        start_ms=getattr(clock, "start_ms", None),
        metrics_port=settings.producer_metrics_port or None,
    )
    report = run(
        plan,
        event_factory(source, settings, plan.seed),
        producer,
        clock,
        Pacer(plan.rate if plan.paced else None),
        signals,
        Progress(source, producer.stats, sys.stderr, settings.producer_progress_interval_s),
        settings.producer_flush_timeout_s,
    )
    log.info(
        "finished",
        produced=report.produced,
        delivered=report.delivered,
        failed=report.failed,
        undelivered=report.undelivered,
        elapsed_s=round(report.elapsed_s, 3),
        stopped_by=report.stopped_by,
        failures=report.failures,
    )
    print(report, flush=True)
    if server is not None:
        server.shutdown()
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
