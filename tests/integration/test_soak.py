"""The soak script (bench/soak.py) in miniature, so it cannot rot: a short run with every fault kind.

It runs the whole stack (producers, the flow with recovery, the dashboard) against the
test broker and a Redis of its own (the faults stop and freeze it), for 45 s with a fault
every few seconds, and must report nothing lost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench.soak import FAULT_KINDS
from tests.pipeline_harness import ROOT, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def report(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The JSON report of a 45 s soak."""
    state = tmp_path_factory.mktemp("soak")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(
        {
            "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "PIPELINE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "PIPELINE_STATE_DIR": str(state),
            "PIPELINE_DASH_PORT": str(free_port()),
            "PIPELINE_FLOW_METRICS_PORT": str(free_port()),
            "PIPELINE_PRODUCER_METRICS_PORT": str(free_port()),
            "PIPELINE_ACTIVITY_PRODUCER_METRICS_PORT": str(free_port()),
        }
    )
    argv = [
        sys.executable,
        "-m",
        "bench.soak",
        "--duration=45s",
        "--fault-every=7",
        "--sample-every=5",
        "--bad-every=5",
        "--iot-rate=300",
        "--activity-rate=60",
        "--devices=5",
        "--drain-timeout=180",
        f"--out-dir={state}",
        "--name=soak",
    ]
    proc = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=540, check=False)
    path = state / "soak.json"
    assert path.exists(), f"no report (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(path.read_text())


def test_a_short_soak_with_every_fault_kind_loses_nothing(report):
    counts = report["counts"]
    assert set(report["faults"]["by_kind"]) == set(FAULT_KINDS)
    assert counts["in_kafka"] > 5_000, "the producers hardly produced: nothing was proved"
    assert counts["lost"] == 0, counts
    assert counts["processed"] + counts["dead_lettered"] == counts["in_kafka"]
    assert counts["confirmed_missing_from_kafka"] == 0


def test_a_short_soak_dead_letters_exactly_the_bad_messages_it_injected(report):
    counts, dead = report["counts"], report["dead_letters"]
    assert counts["bad_injected"] > 0
    assert counts["dead_lettered"] == counts["bad_injected"]
    assert dead["injected_missing_from_dlq"] == 0 and dead["dlq_not_injected"] == 0


def test_no_process_of_a_short_soak_dies_unless_killed(report):
    assert report["faults"]["unexpected_exits"] == {}


def test_a_short_soak_reports_memory_and_completeness(report):
    for series in report["memory"].values():
        assert series["peak"] is not None and series["peak"] >= series["start"] > 0
    assert report["completeness"]["iot_windows_expected"] > 0
    assert len(report["samples"]) >= 5
