"""Schemathesis against the OpenAPI document the running server serves.

Every operation gets schema-valid and schema-invalid requests (positive and
negative generation, the coverage phase's boundary values, and the stateful
phase's linked calls) over HTTP to a real uvicorn on a Redis that holds a small
fleet, with every check schemathesis has: no 5xx, invalid requests answered 4xx,
valid ones accepted, status codes, content types, headers and bodies as declared.

Schemathesis runs as its CLI: its pytest plugin's lazy loader (the only way to
load a schema that a fixture serves) does not work with pytest 9.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.seed import Fleet, device_ids

pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = 60
"""Generated cases per operation and phase (the coverage phase adds its own)."""

SEED = 20261126
CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_the_api_answers_every_generated_request_as_its_openapi_document_says(
    serve_app, seeder, tmp_path: Path
):
    fleet = Fleet(seeder, device_ids(3))
    fleet.advance(12)
    # The fuzzer is one client sending hundreds of requests a second: the rate
    # limit has its own test, here it would only answer 429.
    base = serve_app(dash_api_rate_limit="1000000/minute")
    report = tmp_path / "report.json"

    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            f"--config-file={CONFIG}",
            "run",
            f"http://{base}/openapi.json",
            "--checks=all",
            "--mode=all",
            "--phases=examples,coverage,fuzzing,stateful",
            f"--max-examples={EXAMPLES_PER_OPERATION}",
            f"--seed={SEED}",
            "--workers=1",
            "--request-timeout=10",
            "--generation-database=none",
            "--no-color",
            "--report=json",
            f"--report-json-path={report}",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=tmp_path,
    )

    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    summary = json.loads(report.read_text())
    assert summary["operations"]["tested"] == summary["operations"]["total"] >= 10
    assert summary["test_cases"]["generated"] >= 300
    cases, operations = summary["test_cases"]["generated"], summary["operations"]["tested"]
    print(f"schemathesis: {cases} requests over {operations} operations")
