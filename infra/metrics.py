"""The Prometheus metrics the monitoring relies on, by scrape job: the one list to check.

Grafana's dashboard (infra/monitoring/grafana/dashboards) may query only the names
here (plus Prometheus's own, `PROMETHEUS_BUILTIN`), and every name here must be
queried by it: a unit test checks both. The stack test checks each name against
what the running processes really export on their /metrics, so a renamed metric
fails a test instead of leaving a panel empty.

Names are sample names as they appear on /metrics and in PromQL: counters with
``_total``, histograms by their ``_bucket`` series.
"""

from __future__ import annotations

# job (infra/monitoring/prometheus.yml) -> sample name -> what it is (type{labels}: meaning)
EXPECTED_METRICS: dict[str, dict[str, str]] = {
    "flow": {
        "pipeline_flow_events_in_total": "counter: messages read from Kafka (pipeline total, flows.metrics)",
        "pipeline_flow_dead_letters_total": "counter: messages sent to the dead-letter topic",
        "pipeline_flow_late_events_total": "counter: events that arrived after their window closed",
        "pipeline_flow_alerts_total": "counter{severity}: anomaly alerts emitted by this process",
        "pipeline_sink_batch_seconds_bucket": "histogram: seconds per Redis write batch (sinks.metrics)",
        "pipeline_sink_circuit_state": (
            "gauge{partition}: Redis circuit breaker of each sink partition, 0 closed, 1 half-open, 2 open"
        ),
        # Bytewax's own KafkaSource gauge (statistics.interval.ms is set on the flow's consumers).
        "bytewax_kafka_consumer_lag": "gauge{step_id,topic,partition}: messages behind the log end",
    },
    "producers": {
        "pipeline_producer_events_delivered_total": "counter{source}: events the broker acknowledged",
        "pipeline_producer_events_failed_total": "counter{source,reason}: events that could not be delivered",
    },
    # The dashboard's /metrics is scraped (and must answer); the Grafana board needs none of its series.
    "dashboard": {},
}

# Series Prometheus makes itself for every target.
PROMETHEUS_BUILTIN = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})


def expected_names() -> set[str]:
    """Every metric name the monitoring may query."""
    return {name for names in EXPECTED_METRICS.values() for name in names} | PROMETHEUS_BUILTIN
