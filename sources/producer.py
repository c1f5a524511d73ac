"""Sending wire models to Kafka: serialise, key, produce, and account for every event.

`EventProducer` wraps a confluent-kafka producer configured by
`ProducerSettings.producer_config` (batching, LZ4, idempotence, acks=all). It
counts every event three ways (produced, delivered, failed) from librdkafka's
delivery reports, logs failures (each of the first few, then a count), and
applies back-pressure when librdkafka's queue is full instead of dropping
events. `ProducerMetrics` exports the counts to Prometheus. It knows nothing
about simulators.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sources.models import ActivityEvent, SensorReading

WireEvent = SensorReading | ActivityEvent

log = structlog.get_logger(__name__)


def kafka_key(event: WireEvent) -> str:
    """The Kafka key of an event (DESIGN.md): the device id of a reading, the user id of an activity.

    Keys decide partitions, so one device's (one user's) events stay in order.
    """
    if isinstance(event, SensorReading):
        return event.device_id
    return event.user_id


@dataclass
class DeliveryStats:
    """What happened to the events of one producer so far."""

    produced: int = 0
    delivered: int = 0
    failed: int = 0
    failures: Tally[str] = field(default_factory=Tally)
    """Failed events by error name."""
    delivered_by_partition: Tally[int] = field(default_factory=Tally)
    """Delivered events by partition: acknowledged events of a partition are a prefix of what was
    sent to it (idempotence keeps the order), so these counts say exactly which events are safe."""

    @property
    def in_flight(self) -> int:
        """Produced, but neither delivered nor failed yet."""
        return self.produced - self.delivered - self.failed


class ProducerMetrics(Collector):
    """Prometheus view of a producer's `DeliveryStats`, labelled by source (``iot``, ``activity``).

    A collector reads the counts when scraped, so the hot path pays nothing for metrics.
    """

    def __init__(self, stats: DeliveryStats, source: str) -> None:
        """Export `stats`; register it with ``registry.register(metrics)``."""
        self._stats = stats
        self._source = source

    def collect(self) -> Iterable[Metric]:
        """The current counts (called by the registry on each scrape)."""
        stats, source = self._stats, self._source
        produced = CounterMetricFamily(
            "pipeline_producer_events_produced", "Events handed to the Kafka client.", labels=["source"]
        )
        produced.add_metric([source], stats.produced)
        delivered = CounterMetricFamily(
            "pipeline_producer_events_delivered",
            "Events the broker acknowledged (acks=all).",
            labels=["source"],
        )
        delivered.add_metric([source], stats.delivered)
        failed = CounterMetricFamily(
            "pipeline_producer_events_failed",
            "Events that could not be delivered, by error.",
            labels=["source", "reason"],
        )
        # dict() copies in one step under the GIL: the producer thread may add a reason meanwhile.
        for reason, n in sorted(dict(stats.failures).items()):
            failed.add_metric([source, reason], n)
        by_partition = CounterMetricFamily(
            "pipeline_producer_partition_events_delivered",
            "Events the broker acknowledged, by partition.",
            labels=["source", "partition"],
        )
        for partition, n in sorted(dict(stats.delivered_by_partition).items()):
            by_partition.add_metric([source, str(partition)], n)
        in_flight = GaugeMetricFamily(
            "pipeline_producer_events_in_flight",
            "Events produced but not yet delivered or failed.",
            labels=["source"],
        )
        in_flight.add_metric([source], stats.in_flight)
        return [produced, delivered, by_partition, failed, in_flight]


class Throttle:
    """Lets one message per key through every `interval_s` and counts the ones held back.

    A broker outage makes librdkafka report the same connection error on every
    reconnect attempt; one line per kind and interval says as much, and the count
    keeps it honest.
    """

    def __init__(self, interval_s: float = 30.0, now: Callable[[], float] = time.monotonic) -> None:
        """Throttle to one message per key per `interval_s` seconds of `now`."""
        self._interval_s = interval_s
        self._now = now
        self._next: dict[str, float] = {}
        self._held: Tally[str] = Tally()

    def allow(self, key: str) -> int | None:
        """None to hold this message back; else how many of its kind were held back before it."""
        now = self._now()
        if now < self._next.get(key, -math.inf):
            self._held[key] += 1
            return None
        self._next[key] = now + self._interval_s
        return self._held.pop(key, 0)


class LibrdkafkaLog:
    """The ``logger`` librdkafka writes to: a stdlib logger (so our log format), throttled per facility."""

    def __init__(self, logger: logging.Logger, throttle: Throttle) -> None:
        """Forward to `logger` what `throttle` lets through."""
        self._logger = logger
        self._throttle = throttle

    def log(self, level: int, fmt: str, *args: object) -> None:
        """Called by confluent-kafka as ``log(level, "%s [%s] %s", facility, client, message)``."""
        facility = str(args[0]) if args else fmt
        held = self._throttle.allow(f"librdkafka:{facility}")
        if held is None:
            return
        if held:
            fmt, args = f"{fmt} (%d similar lines held back)", (*args, held)
        self._logger.log(level, fmt, *args)


class EventProducer:
    """Produces wire events to one topic and keeps `stats` from delivery reports.

    Call `poll` (or `send`, which polls) regularly so delivery reports are served,
    and `flush` before exiting.
    """

    def __init__(
        self,
        config: dict[str, Any],
        topic: str,
        max_failure_logs: int = 20,
        logger: structlog.typing.FilteringBoundLogger | None = None,
    ) -> None:
        """Create the Kafka producer from librdkafka `config` (e.g. `ProducerSettings.producer_config`).

        Args:
            config: librdkafka properties.
            topic: where every event goes.
            max_failure_logs: failures logged one by one before only counting them.
            logger: where failures are logged (default: this module's structlog logger).
        """
        self.topic = topic
        self._log = logger if logger is not None else log
        self._throttle = Throttle()
        self.stats = DeliveryStats()
        self.fatal_error: KafkaError | None = None
        self._max_failure_logs = max_failure_logs
        self._producer = Producer(
            {
                **config,
                "on_delivery": self._on_delivery,
                "error_cb": self._on_error,
                # librdkafka's own log lines go through our structured logging, not raw stderr.
                "logger": LibrdkafkaLog(logging.getLogger("librdkafka"), self._throttle),
            }
        )

    def send(self, event: WireEvent) -> None:
        """Serialise and produce one event, keyed per DESIGN.md.

        Blocks (serving delivery reports) while librdkafka's queue is full, so a slow
        broker slows the producer down instead of losing events.

        Raises:
            KafkaException: on a fatal producer error (e.g. an idempotence violation).
        """
        value = event.to_json()
        key = kafka_key(event).encode()
        while True:
            try:
                self._producer.produce(self.topic, value, key)
                break
            except BufferError:
                self._producer.poll(0.05)
            except KafkaException as exc:
                self.stats.produced += 1
                self._fail(exc.args[0], key)
                if exc.args[0].fatal():
                    raise
                return
        self.stats.produced += 1
        self._producer.poll(0)

    def poll(self, timeout_s: float) -> None:
        """Serve delivery reports, waiting up to `timeout_s` for one."""
        self._producer.poll(timeout_s)

    def flush(self, timeout_s: float) -> int:
        """Wait up to `timeout_s` for every event in flight; returns how many are still in flight."""
        self._producer.flush(timeout_s)
        return self.stats.in_flight

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.stats.delivered += 1
            partition = msg.partition()
            if partition is not None:  # always set on a delivered message; None only in the stubs' type
                self.stats.delivered_by_partition[partition] += 1
            return
        self._fail(err, msg.key(), msg.partition())

    def _fail(self, err: KafkaError, key: bytes | None, partition: int | None = None) -> None:
        self.stats.failed += 1
        self.stats.failures[err.name()] += 1
        if self.stats.failed <= self._max_failure_logs:
            self._log.warning(
                "event not delivered",
                topic=self.topic,
                key=None if key is None else key.decode(errors="replace"),
                partition=partition,
                error=err.name(),
                reason=err.str(),
                retriable=err.retriable(),
            )
            if self.stats.failed == self._max_failure_logs:
                self._log.warning(
                    "further delivery failures are counted, not logged one by one",
                    topic=self.topic,
                    logged=self._max_failure_logs,
                )

    def _on_error(self, err: KafkaError) -> None:
        # Client-level errors (broker down, authentication): librdkafka keeps retrying
        # the transient ones; a fatal one ends this producer.
        if err.fatal():
            self.fatal_error = err
            self._log.error("fatal Kafka producer error", error=err.name(), reason=err.str())
            return
        held = self._throttle.allow(f"error:{err.name()}")
        if held is not None:
            self._log.warning("Kafka client error", error=err.name(), reason=err.str(), held_back=held)
