"""The producer command resolves flags and settings predictably and reports clearly."""

from __future__ import annotations

import io
import signal

import pytest
import structlog

from sources.models import ActivityEvent, SensorReading
from sources.produce import (
    Progress,
    RunPlan,
    RunReport,
    Source,
    StopSignals,
    build_parser,
    event_clock,
    event_factory,
    main,
    parse_start,
    poll_slice_s,
    progress_line,
    settings_overrides,
)
from sources.producer import DeliveryStats
from sources.settings import ProducerSettings


def plan_for(*argv: str, **env: object) -> RunPlan:
    args = build_parser().parse_args(argv)
    settings = ProducerSettings(**{**env, **settings_overrides(args)})
    return RunPlan.resolve(Source(args.source), settings)


def test_a_live_run_is_paced_at_the_sources_default_rate():
    iot = plan_for("iot")
    assert (iot.paced, iot.rate, iot.count, iot.topic) == (True, 20.0, None, "iot.readings")
    activity = plan_for("activity")
    assert (activity.paced, activity.rate, activity.topic) == (True, 50.0, "activity.events")


def test_a_counted_run_goes_full_speed_unless_a_rate_is_given():
    assert plan_for("iot", "--count", "100000").paced is False
    paced = plan_for("iot", "--count", "100", "--rate", "30")
    assert (paced.paced, paced.rate, paced.count) == (True, 30.0, 100)
    assert plan_for("iot", "--count", "100", producer_full_speed=False).paced is True


def test_rate_zero_means_full_speed_and_keeps_the_rate_for_simulated_time():
    plan = plan_for("activity", "--rate", "0")
    assert (plan.paced, plan.rate) == (False, 50.0)


def test_rate_applies_to_the_chosen_source_only():
    args = build_parser().parse_args(["activity", "--rate", "75"])
    assert settings_overrides(args) == {"producer_full_speed": False, "activity_rate": 75.0}


def test_start_implies_the_simulated_clock():
    plan = plan_for("iot", "--start", "2024-01-01T00:00:00Z", "--seed", "9")
    assert (plan.clock, plan.start_ms, plan.seed) == ("simulated", 1_704_067_200_000, 9)
    assert plan_for("iot", "--clock", "simulated").start_ms is None


def test_devices_is_an_iot_option():
    args = build_parser().parse_args(["iot", "--devices", "3"])
    assert settings_overrides(args)["iot_devices"] == 3
    with pytest.raises(SystemExit):
        build_parser().parse_args(["activity", "--devices", "3"])


@pytest.mark.parametrize(
    "argv",
    [
        ["iot", "--rate", "-1"],
        ["iot", "--rate", "nan"],
        ["iot", "--count", "0"],
        ["iot", "--seed", "-3"],
        ["iot", "--start", "yesterday"],
        ["iot", "--start", "2024-01-01T00:00:00"],  # no time zone
        ["weather"],
        [],
    ],
)
def test_bad_options_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_start_accepts_epoch_ms_and_aware_iso_times():
    assert parse_start("1700000000000") == 1_700_000_000_000
    assert parse_start("2024-01-01T01:00:00+01:00") == 1_704_067_200_000


def test_the_simulated_event_clock_starts_at_start_and_the_wall_clock_asks_now():
    simulated = event_clock(plan_for("iot", "--start", "1700000000000", "--rate", "4"))
    assert [simulated() for _ in range(3)] == [1_700_000_000_000, 1_700_000_000_250, 1_700_000_000_500]
    wall = event_clock(plan_for("iot"), now_ms=lambda: 42)
    assert wall() == 42


def test_event_factories_make_wire_events_of_the_chosen_source():
    settings = ProducerSettings(iot_devices=3)
    make_reading = event_factory(Source.IOT, settings, seed=1)
    readings = [make_reading(1_700_000_000_000 + i) for i in range(4)]
    assert all(isinstance(r, SensorReading) for r in readings)
    assert [r.device_id for r in readings] == ["device-000", "device-001", "device-002", "device-000"]
    make_activity = event_factory(Source.ACTIVITY, settings, seed=1)
    assert isinstance(make_activity(1_700_000_000_000), ActivityEvent)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class FakeTime:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_progress_on_a_terminal_redraws_one_line_with_the_rate():
    stats, out, now = DeliveryStats(), FakeTerminal(), FakeTime()
    progress = Progress(Source.IOT, stats, out, interval_s=10.0, now=now)
    stats.produced, stats.delivered = 1000, 900
    progress.tick()
    assert out.getvalue() == ""  # not yet: a terminal redraws every 0.5 s
    now.t = 0.5
    progress.tick()
    now.t = 1.0
    stats.produced = 1500
    progress.tick()
    progress.finish()
    lines = out.getvalue().split("\r\x1b[K")
    assert lines[1] == "[iot] 1,000 produced · 900 delivered · 0 failed · 2,000 events/s"
    assert lines[2] == "[iot] 1,500 produced · 900 delivered · 0 failed · 1,000 events/s\n"


def test_progress_elsewhere_is_a_log_line_per_interval():
    stats, now, logger = DeliveryStats(), FakeTime(), structlog.testing.CapturingLogger()
    progress = Progress(Source.ACTIVITY, stats, io.StringIO(), interval_s=10.0, now=now, logger=logger)
    stats.produced = stats.delivered = 500
    now.t = 5.0
    progress.tick()
    now.t = 10.0
    progress.tick()
    assert [(c.args, c.kwargs["produced"], c.kwargs["events_per_s"]) for c in logger.calls] == [
        (("progress",), 500, 50.0)
    ]


def test_progress_line_formats_large_counts():
    stats = DeliveryStats(produced=1_234_567, delivered=1_234_000, failed=3)
    assert progress_line(Source.IOT, stats, 98_765.4) == (
        "[iot] 1,234,567 produced · 1,234,000 delivered · 3 failed · 98,765 events/s"
    )


def test_report_says_what_was_delivered_and_is_ok_only_when_everything_was():
    good = RunReport(Source.IOT, "iot.readings", 100_000, 100_000, 0, 0, 4.0, "count", {})
    assert good.ok
    assert str(good) == (
        "[iot] 100,000 of 100,000 events delivered to iot.readings in 4.0 s (25,000 events/s); "
        "0 failed, 0 undelivered; stopped by count"
    )
    bad = RunReport(Source.IOT, "t", 10, 7, 2, 1, 1.0, "SIGTERM", {"_MSG_TIMED_OUT": 2})
    assert not bad.ok
    assert str(bad).endswith("stopped by SIGTERM (_MSG_TIMED_OUT: 2)")


def test_first_signal_asks_to_stop_and_the_second_to_stop_waiting():
    signals = StopSignals()
    signals._handle(signal.SIGTERM, None)
    assert signals.stop.is_set() and not signals.abandon.is_set()
    assert signals.signal_name == "SIGTERM"
    signals._handle(signal.SIGINT, None)
    assert signals.abandon.is_set()
    assert signals.signal_name == "SIGTERM"


def test_an_invalid_setting_stops_the_command_naming_the_variable(monkeypatch, capsys):
    monkeypatch.setenv("PIPELINE_PRODUCER_COMPRESSION", "brotli")
    with pytest.raises(SystemExit) as exc:
        main(["iot", "--count", "1"])
    assert exc.value.code == 2
    assert "invalid setting PIPELINE_PRODUCER_COMPRESSION='brotli'" in capsys.readouterr().err


def test_the_wait_between_sends_is_never_a_busy_poll():
    # Below 1 ms librdkafka would not block at all: the producer would spin between events.
    assert poll_slice_s(0.00004) == 0.001
    assert poll_slice_s(0.0025) == 0.0025
    assert poll_slice_s(5.0) == 0.1  # a stop signal is seen within 0.1 s
