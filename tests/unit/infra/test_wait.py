"""Readiness gates poll with a deadline and say what is still missing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from infra import wait
from infra.settings import StackSettings


class FakeClock:
    """A clock the test moves: `sleep` advances it, so no test waits for real."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_wait_for_returns_once_every_probe_passed_asking_each_until_it_does():
    calls = {"a": 0, "b": 0}

    def after(name: str, n: int):
        def probe() -> bool:
            calls[name] += 1
            return calls[name] >= n

        return probe

    clock = FakeClock()
    missing = wait.wait_for({"a": after("a", 1), "b": after("b", 3)}, 10, 0.5, clock=clock, sleep=clock.sleep)
    assert missing == []
    assert calls == {"a": 1, "b": 3}  # a passed probe is not asked again
    assert clock.now == 1.0


def test_wait_for_names_what_is_not_ready_at_the_deadline():
    clock = FakeClock()
    missing = wait.wait_for(
        {"ok": lambda: True, "never": lambda: False}, 5, 0.5, clock=clock, sleep=clock.sleep
    )
    assert missing == ["never"]
    assert clock.now == 5.0


def test_timeout_zero_asks_once():
    clock = FakeClock()
    assert wait.wait_for({"never": lambda: False}, 0, clock=clock, sleep=clock.sleep) == ["never"]
    assert clock.now == 0.0


def test_wait_for_stops_early_when_asked():
    clock = FakeClock()
    missing = wait.wait_for(
        {"never": lambda: False}, 60, 1, should_stop=lambda: clock.now >= 3, clock=clock, sleep=clock.sleep
    )
    assert missing == ["never"]
    assert clock.now == 3


@pytest.fixture
def http_server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/ready" else 503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_probe_passes_only_on_200(http_server):
    assert wait.http_ready(f"{http_server}/ready")() is True
    assert wait.http_ready(f"{http_server}/starting")() is False


def test_http_probe_fails_when_nothing_listens(http_server):
    port = int(http_server.rsplit(":", 1)[1])
    assert wait.http_ready(f"http://127.0.0.1:{port + 1 if port < 65535 else port - 1}/ready")() is False


def test_recovery_probe_wants_exactly_the_configured_partition_count(tmp_path):
    s = StackSettings(_env_file=None, recovery_dir=tmp_path, recovery_partitions=2)  # type: ignore[call-arg]
    probe = wait.recovery_ready(s)
    assert probe() is False
    (tmp_path / "part-0.sqlite3").touch()
    assert probe() is False
    (tmp_path / "part-1.sqlite3").touch()
    assert probe() is True


def test_an_unknown_need_is_refused():
    with pytest.raises(ValueError, match="unknown need"):
        wait.probe_for("zookeeper", StackSettings(_env_file=None))  # type: ignore[call-arg]


def test_cli_exits_1_naming_what_is_missing(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_RECOVERY_DIR", str(tmp_path / "none"))
    assert wait.main(["--timeout", "0", "recovery"]) == 1
    assert "recovery" in capsys.readouterr().err


def test_cli_exits_0_when_ready(http_server):
    assert wait.main(["--timeout", "1", f"{http_server}/ready"]) == 0
