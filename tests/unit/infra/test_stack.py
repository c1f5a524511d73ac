"""infra.stack builds every process's command from the settings; the Procfile runs them all."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from config.settings import SettingsError, load_settings
from infra import stack
from infra.settings import StackSettings
from infra.stack import (
    PROCESS_BY_NAME,
    PROCESSES,
    StackError,
    init_recovery,
    processes,
    render_prometheus_config,
)

ROOT = Path(__file__).resolve().parents[3]


def settings(**overrides) -> StackSettings:
    return StackSettings(_env_file=None, **overrides)  # type: ignore[call-arg]


def procfile_lines() -> dict[str, str]:
    lines = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_-]+):\s*(.+)", line)
        if match:
            lines[match.group(1)] = match.group(2)
    return lines


def test_the_procfile_runs_every_process_through_its_readiness_gate():
    assert procfile_lines() == {p.name: f"python -m infra.stack exec {p.name}" for p in PROCESSES}


def test_up_runs_prometheus_only_with_monitoring():
    assert "prometheus" not in [p.name for p in processes()]
    assert [p.name for p in processes(monitoring=True)] == [p.name for p in PROCESSES]


def test_flow_command_carries_workers_and_recovery_flags_from_the_settings():
    s = settings(recovery_dir="state/rec", snapshot_interval_s=30, backup_interval_s=600, flow_workers=2)
    assert PROCESS_BY_NAME["flow"].argv(s) == [
        "python", "-m", "bytewax.run", "flows.main", "-w", "2", "-r", "state/rec", "-s", "30", "-b", "600",
    ]  # fmt: skip


def test_each_producer_gets_its_own_metrics_port():
    s = settings(producer_metrics_port=9201, activity_producer_metrics_port=9202)
    assert PROCESS_BY_NAME["producer-iot"].env(s) == {"PIPELINE_PRODUCER_METRICS_PORT": "9201"}
    assert PROCESS_BY_NAME["producer-activity"].env(s) == {"PIPELINE_PRODUCER_METRICS_PORT": "9202"}
    assert PROCESS_BY_NAME["producer-activity"].argv(s)[-1] == "activity"


def test_readiness_urls_follow_the_settings_and_reach_a_wildcard_host_on_loopback():
    s = settings(dash_host="0.0.0.0", dash_port=8123, flow_metrics_port=9300)  # noqa: S104
    assert PROCESS_BY_NAME["dashboard"].ready_url(s) == "http://127.0.0.1:8123/ready"
    assert PROCESS_BY_NAME["flow"].ready_url(s) == "http://127.0.0.1:9300/metrics"


def test_urls_name_dashboard_api_docs_and_every_metrics_endpoint():
    shown = dict(stack.urls(settings()))
    assert shown["dashboard"] == "http://127.0.0.1:8050/"
    assert shown["API docs"] == "http://127.0.0.1:8050/docs"
    assert shown["flow metrics"] == "http://127.0.0.1:9100/metrics"
    assert shown["producer-activity metrics"] == "http://127.0.0.1:9102/metrics"
    assert "Prometheus" in dict(stack.urls(settings(), monitoring=True))


def test_processes_have_distinct_ports():
    s = settings()
    ports = [p.port(s) for p in PROCESSES]
    assert len(ports) == len(set(ports))


def test_local_prometheus_config_scrapes_loopback_on_the_settings_ports():
    config = render_prometheus_config(settings(flow_metrics_port=19100, dash_port=18050))
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert targets == {
        "flow": ["127.0.0.1:19100"],
        "producers": ["127.0.0.1:9101", "127.0.0.1:9102"],
        "dashboard": ["127.0.0.1:18050"],
    }


def test_recovery_is_initialised_once_and_left_alone_afterwards(tmp_path):
    s = settings(recovery_dir=tmp_path / "recovery", recovery_partitions=3)
    assert init_recovery(s) is True
    files = sorted(p.name for p in (tmp_path / "recovery").iterdir())
    assert files == ["part-0.sqlite3", "part-1.sqlite3", "part-2.sqlite3"]
    before = [p.stat().st_mtime_ns for p in sorted((tmp_path / "recovery").iterdir())]
    assert init_recovery(s) is False
    assert [p.stat().st_mtime_ns for p in sorted((tmp_path / "recovery").iterdir())] == before


def test_a_changed_partition_count_is_reported_naming_the_variable(tmp_path):
    init_recovery(settings(recovery_dir=tmp_path, recovery_partitions=2))
    with pytest.raises(StackError, match="PIPELINE_RECOVERY_PARTITIONS=4"):
        init_recovery(settings(recovery_dir=tmp_path, recovery_partitions=4))


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PIPELINE_SNAPSHOT_INTERVAL_S", "0"),
        ("PIPELINE_SNAPSHOT_INTERVAL_S", "2.5"),  # bytewax.run takes whole seconds
        ("PIPELINE_RECOVERY_PARTITIONS", "0"),
        ("PIPELINE_FLOW_METRICS_PORT", "70000"),
        ("PIPELINE_FLOW_WORKERS", "0"),
    ],
)
def test_invalid_stack_setting_stops_startup_naming_the_variable(monkeypatch, capsys, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError):
        load_settings(StackSettings)
    assert variable in capsys.readouterr().err


def test_commands_listing_shows_each_command():
    listing = stack.commands(settings())
    assert "PIPELINE_PRODUCER_METRICS_PORT=9102 python -m sources.produce activity" in listing
    assert "python -m bytewax.run flows.main -w 1 -r .run/recovery -s 10 -b 0" in listing
