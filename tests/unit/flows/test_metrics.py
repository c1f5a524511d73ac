from flows.metrics import FlowMetrics
from sinks.records import Alert, Metric, PipelineCounters, Severity, WindowStats


def _window(name, start):
    return WindowStats(name, "d", Metric.TEMPERATURE, start, start + 10_000, 2, 1.0, 0.5, 1.5, 1.49)


def _alert(severity):
    return Alert("d:temperature:1", "d", Metric.TEMPERATURE, 9.0, 1.0, 1.0, 8.0, severity, 1, 1)


def _samples(metrics):
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in metrics.collect()
        for s in family.samples
    }


def test_a_batch_of_records_is_counted_and_passed_through_unchanged():
    metrics = FlowMetrics()
    batch = [
        _window("10s", 0),
        _window("10s", 10_000),
        _window("60s", 0),
        _alert(Severity.CRITICAL),
        PipelineCounters(5, 1, 0, 1_000),
        PipelineCounters(9, 1, 2, 2_000),
    ]
    assert metrics.observe_batch(batch) is batch
    metrics.observe_batch([_alert(Severity.WARNING)])
    samples = _samples(metrics)
    assert samples[("pipeline_flow_windows_total", (("window", "10s"),))] == 2
    assert samples[("pipeline_flow_windows_total", (("window", "60s"),))] == 1
    assert samples[("pipeline_flow_alerts_total", (("severity", "critical"),))] == 1
    assert samples[("pipeline_flow_alerts_total", (("severity", "warning"),))] == 1
    # Counters are absolute: the batch's last one stands.
    assert samples[("pipeline_flow_events_in_total", ())] == 9
    assert samples[("pipeline_flow_late_events_total", ())] == 2
