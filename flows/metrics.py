"""The dataflow's Prometheus metrics, read from what the flow emits.

Counters come from the flow's own `PipelineCounters` (absolute totals restored
from recovery snapshots), so a restarted process reports the pipeline's totals,
not its own since start. Windows and alerts are counted as this process emits
them. Bytewax's own ``bytewax_kafka_consumer_lag`` gauge and the Redis sink's
metrics (`sinks.metrics`) live in the same default registry.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from flows.logic import SinkRecord
from sinks.records import Alert, PipelineCounters, WindowStats


class FlowMetrics(Collector):
    """Collects from the records the flow emits; register with ``REGISTRY.register``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # workers are threads; scrapes come from the HTTP thread
        self._counters: PipelineCounters | None = None
        self._windows: Counter[str] = Counter()
        self._alerts: Counter[str] = Counter()

    def observe_batch(self, records: list[SinkRecord]) -> list[SinkRecord]:
        """Take note of a batch of emitted records; return them unchanged.

        For a `flat_map_batch` step: one call and one lock per batch rather than
        per record (a backlog emits thousands of window results per batch).
        """
        windows: Counter[str] = Counter()
        alerts: Counter[str] = Counter()
        counters: PipelineCounters | None = None
        for record in records:
            if isinstance(record, WindowStats):
                windows[record.window] += 1
            elif isinstance(record, Alert):
                alerts[record.severity.value] += 1
            elif isinstance(record, PipelineCounters):
                counters = record
        with self._lock:
            self._windows.update(windows)
            self._alerts.update(alerts)
            if counters is not None:
                self._counters = counters
        return records

    def collect(self) -> Iterable[Metric]:
        """The current values (called on each scrape)."""
        with self._lock:
            counters, windows, alerts = self._counters, dict(self._windows), dict(self._alerts)
        events = CounterMetricFamily("pipeline_flow_events_in", "Messages read from Kafka (pipeline total).")
        dead = CounterMetricFamily("pipeline_flow_dead_letters", "Messages sent to the dead-letter topic.")
        late = CounterMetricFamily("pipeline_flow_late_events", "Events that came after their window closed.")
        newest = GaugeMetricFamily(
            "pipeline_flow_last_event_time_seconds", "Event time of the newest event read, Unix seconds."
        )
        if counters is not None:
            events.add_metric([], counters.events_in)
            dead.add_metric([], counters.dead_letters)
            late.add_metric([], counters.late_events)
            if counters.last_event_ms is not None:
                newest.add_metric([], counters.last_event_ms / 1000)
        window_family = CounterMetricFamily(
            "pipeline_flow_windows", "Window results emitted by this process.", labels=["window"]
        )
        for name, n in sorted(windows.items()):
            window_family.add_metric([name], n)
        alert_family = CounterMetricFamily(
            "pipeline_flow_alerts", "Anomaly alerts emitted by this process.", labels=["severity"]
        )
        for severity, n in sorted(alerts.items()):
            alert_family.add_metric([severity], n)
        return [events, dead, late, newest, window_family, alert_family]
