"""`make up`'s runner against the real Kafka and Redis of `make test`.

Each test runs the stack on its own topics, key prefix, recovery folder and free ports;
Kafka and Redis are the ones `make test` started, so `up` starts neither and must leave
both running when it stops.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from confluent_kafka.admin import AdminClient

from infra import local, stack
from infra.metrics import EXPECTED_METRICS
from infra.settings import StackSettings
from infra.wait import probe_for, wait_for
from sinks.layout import Layout
from tests.pending_merge import still_awaited

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def poll(check: Callable[[], object], timeout_s: float, what: str, interval_s: float = 0.5) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval_s)
    pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}")


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, response.read()
    except OSError:
        return 0, b""


@pytest.fixture
def stack_env(infra_settings, kafka_admin: AdminClient, tmp_path) -> Iterator[dict[str, str]]:
    """PIPELINE_ variables of a private stack on the live Kafka and Redis; its topics are deleted after."""
    tag = uuid.uuid4().hex[:8]
    topics = {
        "PIPELINE_IOT_TOPIC": f"test-iot-{tag}",
        "PIPELINE_ACTIVITY_TOPIC": f"test-activity-{tag}",
        "PIPELINE_DLQ_TOPIC": f"test-dlq-{tag}",
    }
    env = {
        **{k: v for k, v in os.environ.items() if k.startswith("PIPELINE_")},
        **topics,
        "PIPELINE_REDIS_PREFIX": f"test-{tag}:",
        "PIPELINE_RECOVERY_DIR": str(tmp_path / "recovery"),
        "PIPELINE_FLOW_METRICS_PORT": str(free_port()),
        "PIPELINE_PRODUCER_METRICS_PORT": str(free_port()),
        "PIPELINE_ACTIVITY_PRODUCER_METRICS_PORT": str(free_port()),
        "PIPELINE_DASH_PORT": str(free_port()),
        "PIPELINE_PROMETHEUS_PORT": str(free_port()),
        "PIPELINE_STACK_READY_TIMEOUT_S": "90",
        "PIPELINE_LOG_FORMAT": "json",
    }
    yield env
    existing = kafka_admin.list_topics(timeout=10).topics
    doomed = [t for t in topics.values() if t in existing]
    if doomed:
        for future in kafka_admin.delete_topics(doomed, operation_timeout=30).values():
            future.result(timeout=30)


def settings_of(env: dict[str, str]) -> StackSettings:
    fields = {
        name: env[f"PIPELINE_{name.upper()}"]
        for name in StackSettings.model_fields
        if f"PIPELINE_{name.upper()}" in env
    }
    return StackSettings(_env_file=None, **fields)  # type: ignore[call-arg]


def start_up(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "infra.stack", "up", *args],
            cwd=ROOT,
            env={**{k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_up(proc: subprocess.Popen[bytes], log: Path, sig: int = signal.SIGINT) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail(f"`infra.stack up` ignored {signal.Signals(sig).name}:\n{log.read_text()[-3000:]}")


def test_prepare_creates_topics_and_recovery_and_starts_nothing_already_running(stack_env, kafka_admin):
    s = settings_of(stack_env)
    assert stack.prepare(s) == []  # make test's Kafka and Redis already run
    topics = kafka_admin.list_topics(timeout=10).topics
    assert len(topics[s.iot_topic].partitions) == s.iot_partitions
    assert len(topics[s.activity_topic].partitions) == s.activity_partitions
    assert len(topics[s.dlq_topic].partitions) == s.dlq_partitions
    assert len(list(s.recovery_dir.glob("part-*.sqlite3"))) == s.recovery_partitions
    needs = {need: probe_for(need, s) for need in ("kafka", "topics", "redis", "recovery")}
    assert wait_for(needs, timeout_s=10) == []
    assert stack.prepare(s) == []  # a second time changes nothing


def test_topics_gate_is_closed_until_the_topics_exist(stack_env):
    s = settings_of(stack_env)
    assert probe_for("kafka", s)() is True
    assert probe_for("topics", s)() is False


@pytest.mark.slow
def test_up_runs_every_procfile_process_once_its_needs_are_ready_and_ctrl_c_stops_them_all(
    stack_env, tmp_path, infra_settings
):
    # The services' code is not what is under test here: each Procfile line is the real
    # readiness gate (infra.wait) in front of a small HTTP server answering the process's
    # readiness path, so this checks the runner itself: prepare, honcho, gates, URLs, Ctrl-C.
    s = settings_of(stack_env)
    site = tmp_path / "site"
    site.mkdir()
    (site / "metrics").write_text("# nothing yet\n")
    (site / "ready").write_text("ok\n")
    lines = []
    for proc in stack.processes():
        needs = " ".join(proc.needs) or "redis"
        lines.append(
            f"{proc.name}: python -m infra.wait {needs} && exec python -m http.server {proc.port(s)} "
            f"--bind 127.0.0.1 --directory {site}"
        )
    procfile = tmp_path / "Procfile"
    procfile.write_text("\n".join(lines) + "\n")
    log = tmp_path / "up.log"

    up = start_up(stack_env, log, f"--procfile={procfile}")
    try:
        poll(lambda: "every process is ready" in log.read_text() or up.poll() is not None, 120, "the stack")
        assert up.poll() is None, log.read_text()[-3000:]
        output = log.read_text()
        for what, url in stack.urls(s):
            assert re.search(rf"{re.escape(what)}\s+{re.escape(url)}", output), f"{what} not announced"
        assert stack.running_pid(s) == up.pid
        ready = [p.ready_url(s) for p in stack.processes()]
        assert all(get(url)[0] == 200 for url in ready)
    finally:
        stop_up(up, log)

    assert up.returncode == 130, log.read_text()[-3000:]  # honcho's status after SIGINT
    assert all(get(url)[0] == 0 for url in ready), "a process outlived Ctrl-C"
    assert stack.running_pid(s) is None
    status = local.status(infra_settings)
    assert status["kafka"] and status["redis"], "up stopped services it had not started"


@pytest.mark.slow
@pytest.mark.skipif(bool(still_awaited()), reason=f"awaiting merge of {', '.join(still_awaited())}")
def test_whole_stack_shows_data_in_redis_and_on_the_api_and_prometheus_scrapes_it(stack_env, tmp_path):
    s = settings_of(stack_env)
    log = tmp_path / "up.log"
    started = time.monotonic()
    up = start_up(stack_env, log, "--monitoring")
    try:
        poll(lambda: "every process is ready" in log.read_text() or up.poll() is not None, 180, "readiness")
        assert up.poll() is None, log.read_text()[-3000:]
        layout = Layout(s.redis_prefix)
        client = redis.Redis.from_url(s.redis_url.get_secret_value())
        poll(lambda: client.hlen(layout.latest()) > 0, 60, "readings in Redis")
        first_data_s = time.monotonic() - started
        print(f"time to first data in Redis: {first_data_s:.1f}s")  # shown with pytest -s
        dash = stack.PROCESS_BY_NAME["dashboard"]
        base = f"http://127.0.0.1:{dash.port(s)}"
        assert get(f"{base}/ready")[0] == 200

        def alerts() -> bool:
            status, body = get(f"{base}/api/v1/alerts")
            return status == 200 and bool(json.loads(body or b"null"))

        poll(alerts, 120, "alerts on /api/v1/alerts")

        # Every metric the monitoring relies on is exported (a labelled family shows its TYPE line
        # before its first sample).
        for proc in stack.processes():
            if not proc.scraped:
                continue
            status, body = get(f"http://127.0.0.1:{proc.port(s)}/metrics")
            assert status == 200, proc.name
            text = body.decode()
            exported = set(re.findall(r"^# TYPE (\S+)", text, re.M))
            exported |= set(re.findall(r"^(\w+)[{ ]", text, re.M))
            job = "producers" if proc.name.startswith("producer") else proc.name
            for name in EXPECTED_METRICS[job]:
                family = re.sub(r"_(bucket|count|sum)$", "", name)
                assert name in exported or family in exported, f"{proc.name} does not export {name}"

        # A real Prometheus, with the config make up-monitoring renders, scrapes every target.
        prometheus = f"http://127.0.0.1:{s.prometheus_port}"

        def targets_up() -> bool:
            status, body = get(f"{prometheus}/api/v1/targets")
            active = json.loads(body)["data"]["activeTargets"] if status == 200 else []
            return len(active) == 4 and all(t["health"] == "up" for t in active)

        poll(targets_up, 60, "Prometheus scraping every target")
    finally:
        stop_up(up, log)
    assert all(get(p.ready_url(s))[0] == 0 for p in stack.processes(monitoring=True))
