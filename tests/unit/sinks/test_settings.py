"""The sink's settings: defaults from the issue, and errors that name the variable."""

from __future__ import annotations

import pytest

from config.settings import SettingsError, load_settings
from sinks.settings import SinkSettings


def test_defaults_match_the_design():
    s = SinkSettings()
    assert (s.sink_retention_ms, s.sink_alerts_kept) == (3_600_000, 1000)
    assert (s.sink_breaker_failure_threshold, s.sink_breaker_reset_timeout_s) == (5, 30.0)


def test_settings_come_from_pipeline_variables(monkeypatch):
    monkeypatch.setenv("PIPELINE_SINK_BUFFER_MAX_RECORDS", "500")
    monkeypatch.setenv("PIPELINE_SINK_BREAKER_RESET_TIMEOUT_S", "2.5")
    s = SinkSettings()
    assert (s.sink_buffer_max_records, s.sink_breaker_reset_timeout_s) == (500, 2.5)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PIPELINE_SINK_BREAKER_FAILURE_THRESHOLD", "0"),
        ("PIPELINE_SINK_RETENTION_S", "-1"),
        ("PIPELINE_SINK_BUFFER_MAX_RECORDS", "lots"),
        ("PIPELINE_SINK_BACKOFF_CAP_S", "0.01"),  # below the base (0.05)
    ],
)
def test_an_invalid_setting_stops_start_up_naming_the_variable(monkeypatch, capsys, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError):
        load_settings(SinkSettings)
    assert f"invalid setting {variable}=" in capsys.readouterr().err
