import pytest

from config.envdoc import SETTINGS_CLASSES
from config.settings import SettingsError, load_settings
from flows.settings import FlowSettings, window_name
from sources.models import Metric


def test_defaults_are_the_designed_windows():
    s = load_settings(FlowSettings)
    assert (s.tumbling_ms, s.sliding_ms, s.slide_ms, s.activity_ms) == (10_000, 60_000, 10_000, 10_000)
    assert (s.lateness_ms, s.trend_span_ms, s.kafka_batch_size) == (5_000, 300_000, 5000)
    assert (s.zscore_warning, s.zscore_critical) == (3.0, 5.0)
    assert s.trend_min_slope(Metric.PRESSURE) == s.trend_min_slope_pressure


def test_settings_read_pipeline_variables(monkeypatch):
    monkeypatch.setenv("PIPELINE_SLIDING_WINDOW_S", "30")
    monkeypatch.setenv("PIPELINE_ZSCORE_WINDOW_S", "120")
    monkeypatch.setenv("PIPELINE_IOT_TOPIC", "iot.test")
    s = load_settings(FlowSettings)
    assert (s.sliding_ms, s.zscore_window_s, s.iot_topic) == (30_000, 120.0, "iot.test")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PIPELINE_TUMBLING_WINDOW_S", "0"),
        ("PIPELINE_TUMBLING_WINDOW_S", "0.0005"),
        ("PIPELINE_SLIDING_SLIDE_S", "90"),
        ("PIPELINE_ZSCORE_CRITICAL", "2.5"),
        ("PIPELINE_ZSCORE_WINDOW", "2"),  # a line through two readings leaves no residual
        ("PIPELINE_ZSCORE_CONFIRM", "0"),
        ("PIPELINE_ZSCORE_CONFIRM", "31"),
        ("PIPELINE_ALLOWED_LATENESS_S", "-1"),
        ("PIPELINE_KAFKA_BATCH_SIZE", "many"),
    ],
)
def test_invalid_setting_stops_startup_naming_the_variable(monkeypatch, capsys, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError):
        load_settings(FlowSettings)
    assert variable in capsys.readouterr().err


def test_flow_settings_are_documented_in_env_example():
    assert ("dataflow (python -m bytewax.run flows.main)", "flows.settings:FlowSettings") in SETTINGS_CLASSES


def test_window_names_are_short_and_key_safe():
    assert [window_name(ms) for ms in (10_000, 60_000, 250, 3_600_000)] == ["10s", "60s", "250ms", "3600s"]
