"""Dashboard settings: safe defaults, and start-up stops naming a bad variable."""

from __future__ import annotations

import pytest

from config.settings import SettingsError, load_settings
from dashapp.settings import DashSettings


def test_defaults_are_local_quiet_and_one_second_polling():
    s = DashSettings()
    assert (s.dash_host, s.dash_port, s.dash_debug) == ("127.0.0.1", 8050, False)
    assert (s.dash_poll_interval_s, s.dash_ws_throttle_ms) == (1.0, 100)
    assert s.dash_cache_ttl_s <= s.dash_poll_interval_s


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PIPELINE_DASH_PORT", "0"),
        ("PIPELINE_DASH_POLL_INTERVAL_S", "0.01"),
        ("PIPELINE_DASH_CHART_WINDOW", "10s:*"),
        ("PIPELINE_DASH_MAX_REQUEST_BYTES", "10"),
        ("PIPELINE_LOG_LEVEL", "LOUD"),
        ("PIPELINE_DASH_API_RATE_LIMIT", "lots"),
        ("PIPELINE_DASH_API_RATE_LIMIT", "0/minute"),
    ],
)
def test_an_invalid_setting_stops_start_up_naming_the_variable(monkeypatch, capsys, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError):
        load_settings(DashSettings)
    assert variable in capsys.readouterr().err
