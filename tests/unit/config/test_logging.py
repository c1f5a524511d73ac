"""Every process logs the same fields, as JSON or as text, chosen by PIPELINE_LOG_FORMAT."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from config.logging import configure_logging
from config.settings import SettingsError


@pytest.fixture(autouse=True)
def _restore_logging():
    yield
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def test_json_lines_carry_service_event_level_and_time(capsys):
    configure_logging("flow", fmt="json")
    structlog.get_logger().info("window closed", device="d-1")
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["service"] == "flow"
    assert line["event"] == "window closed"
    assert line["level"] == "info"
    assert line["timestamp"].endswith("Z")
    assert line["device"] == "d-1"


def test_log_format_comes_from_the_environment_when_not_passed(monkeypatch, capsys):
    # honcho pipes the output, so `auto` would pick JSON; make up asks for text instead.
    monkeypatch.setenv("PIPELINE_LOG_FORMAT", "console")
    configure_logging("dashboard")
    structlog.get_logger().warning("slow read", ms=120)
    err = capsys.readouterr().err
    assert "slow read" in err
    assert "service=dashboard" in err
    assert not err.lstrip().startswith("{")


def test_stdlib_loggers_share_the_format(monkeypatch, capsys):
    monkeypatch.setenv("PIPELINE_LOG_FORMAT", "json")
    configure_logging("flow")
    logging.getLogger("bytewax").warning("from the library")
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert (line["service"], line["event"], line["level"]) == ("flow", "from the library", "warning")


def test_log_level_from_the_environment_filters(monkeypatch, capsys):
    monkeypatch.setenv("PIPELINE_LOG_LEVEL", "WARNING")
    configure_logging("producer", fmt="json")
    structlog.get_logger().info("hidden")
    structlog.get_logger().error("shown")
    err = capsys.readouterr().err
    assert "shown" in err and "hidden" not in err


def test_invalid_log_format_stops_startup_naming_the_variable(monkeypatch, capsys):
    monkeypatch.setenv("PIPELINE_LOG_FORMAT", "xml")
    with pytest.raises(SettingsError):
        configure_logging("flow")
    assert "PIPELINE_LOG_FORMAT" in capsys.readouterr().err
