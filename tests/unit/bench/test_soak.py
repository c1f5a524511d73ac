import argparse

import pytest

from bench.soak import FAULT_KINDS, fault_schedule, parse_duration, verdict


def test_the_fault_schedule_is_the_same_for_the_same_seed_and_differs_for_another():
    assert fault_schedule(3, 1800, 60) == fault_schedule(3, 1800, 60)
    assert fault_schedule(3, 1800, 60) != fault_schedule(4, 1800, 60)


def test_every_round_of_the_schedule_holds_every_fault_kind_once():
    faults = fault_schedule(11, 3600, 30)
    rounds = [faults[i : i + len(FAULT_KINDS)] for i in range(0, len(faults), len(FAULT_KINDS))]
    for r in rounds[:-1]:
        assert sorted(f.kind for f in r) == sorted(FAULT_KINDS)


def test_faults_keep_off_the_warm_up_and_the_cool_down():
    faults = fault_schedule(5, 600, 20)
    assert faults and all(60 <= f.at_s < 540 for f in faults)
    assert [f.at_s for f in faults] == sorted(f.at_s for f in faults)
    assert all(f.target in {"producer-iot", "producer-activity"} for f in faults if f.kind == "producer_kill")


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("45s", 45), ("10m", 600), ("1h", 3600), ("1h30m", 5400), ("2.5m", 150)]
)
def test_durations_read_as_seconds(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "ten minutes", "10x", "-5m"])
def test_a_malformed_duration_is_refused(text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)


def _result(**counts):
    base = {"lost": 0, "in_kafka": 10, "events_in": 10, "confirmed_missing_from_kafka": 0}
    base |= {"dead_lettered": 2, "bad_injected": 2}
    return {
        "counts": base | counts,
        "dead_letters": {"injected_missing_from_dlq": 0, "dlq_not_injected": 0},
        "completeness": {
            "iot_windows_expected": 4,
            "iot_windows_exact_count": 4,
            "activity_windows_expected": 2,
            "activity_windows_exact_count": 2,
        },
        "faults": {"unexpected_exits": {}},
    }


def test_a_clean_run_passes_and_a_lost_event_fails():
    assert verdict(_result()) == []
    assert any("lost 1" in p for p in verdict(_result(lost=1)))
    assert verdict(_result(dead_lettered=1))
