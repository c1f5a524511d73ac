"""The suite runner's scheduling, clock and report (bench/run.py), without running a benchmark."""

from __future__ import annotations

import argparse
import importlib
import sys
import time

import pytest

from bench.run import BENCHES, Bench, Suite, argv_of, markdown, schedule, services_needed


def _bench(name: str, beside: str | None = None, expect: tuple[float, float] = (10, 100)) -> Bench:
    return Bench(name, "method", ["q"], ["f"], beside=beside, expect_s=expect)


def test_a_guest_runs_beside_its_host_and_takes_no_step_of_its_own():
    a, guest, host = _bench("a"), _bench("guest", beside="host"), _bench("host")
    assert schedule([a, guest, host]) == [(a, None), (host, guest)]


def test_a_guest_runs_alone_when_its_host_is_not_chosen():
    guest = _bench("guest", beside="host")
    assert schedule([_bench("a"), guest]) == [(_bench("a"), None), (guest, None)]


def test_the_suites_detection_runs_beside_the_memory_run():
    steps = {host.name: guest for host, guest in schedule(BENCHES)}
    assert steps["memory"] is not None and steps["memory"].name == "detection"
    assert "detection" not in steps


def test_time_left_leaves_out_guests_and_counts_the_remainder_of_what_runs():
    a, guest, host = _bench("a", expect=(10, 100)), _bench("guest", beside="host"), _bench("host")
    suite = Suite([a, guest, host], full=False)
    assert suite.expected_total() == 20
    suite.done("a")
    suite.running["host"] = time.perf_counter() - 4
    assert 5.5 < suite.left() <= 6.0


def test_time_left_uses_the_full_sizes_in_full_mode():
    suite = Suite([_bench("a", expect=(10, 100))], full=True)
    assert suite.expected_total() == 100


def test_every_benchmark_has_both_sizes_and_an_expected_length():
    for bench in BENCHES:
        assert bench.quick and bench.full and bench.quick != bench.full, bench.name
        assert bench.expect_s[0] > 0 and bench.expect_s[1] > bench.expect_s[0], bench.name


def test_the_report_states_the_suites_wall_time_and_load():
    result = {
        "date": "2026-11-27 02:00 UTC",
        "cores": 2,
        "machine": "x86_64",
        "mode": "quick",
        "suite_seconds": 83.4,
        "services_start_seconds": 11.2,
        "load_average_before": [0.3, 0.2, 0.1],
        "load_average_after": [1.5, 0.9, 0.4],
        "benchmarks": [
            {
                "name": "detection",
                "method": "m.",
                "command": "python -m bench.bench_detection",
                "returncode": 0,
                "seconds": 6.0,
                "figures": {"alerts F1": {"value": 0.9, "unit": "ratio"}},
                "ran_beside": "memory",
            }
        ],
    }
    text = markdown(result)
    assert "1:23 (m:ss) of wall time, of which 11 s starting the services" in text
    assert "load average 0.30 before, 1.50 after" in text
    assert "(6.0 s, beside memory)" in text


def test_only_the_services_the_chosen_benchmarks_need_are_started():
    by_name = {b.name: b for b in BENCHES}
    assert services_needed([by_name["core"], by_name["detection"]]) == []
    assert services_needed([by_name["sink"], by_name["dash_tick"]]) == ["redis"]
    assert services_needed([by_name["sink"], by_name["e2e"]]) == ["redis", "kafka"]


class _Parsed(Exception):
    pass


@pytest.mark.parametrize("full", [False, True], ids=["quick", "full"])
@pytest.mark.parametrize("bench", BENCHES, ids=lambda b: b.name)
def test_every_suite_command_line_is_accepted_by_its_benchmark(bench, full, monkeypatch):
    # Stops each benchmark's main() right after its argparse accepted the suite's arguments
    # (a typo in a size would otherwise surface only in a 25-minute full run).
    argv = argv_of(bench, full, "redis://127.0.0.1:1/0")
    assert argv[1] == "-m", argv
    parse_args = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        raise _Parsed(parse_args(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    monkeypatch.setattr(sys, "argv", [argv[2], *argv[3:]])
    with pytest.raises(_Parsed):
        importlib.import_module(argv[2]).main()
