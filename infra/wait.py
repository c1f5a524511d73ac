"""Readiness gates: wait until what a process needs is ready, with a deadline.

Usage::

    python -m infra.wait [--timeout S] NEED [NEED ...]

where NEED is ``kafka`` (the broker answers), ``topics`` (the pipeline's topics
exist), ``redis`` (Redis answers PING), ``recovery`` (the recovery partitions are
initialised) or an ``http://`` URL (answers 200). Exit status 0 once every need is
ready, 1 when the deadline passes (the message names what is missing).
``--timeout 0`` checks once, as a container healthcheck does.

`infra.stack` uses the same probes to start each process of ``make up`` only
when its dependencies are ready.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from config.settings import load_settings
from infra.settings import StackSettings

Probe = Callable[[], bool]

NEEDS = ("kafka", "topics", "redis", "recovery")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _first_server(bootstrap: str) -> tuple[str, int]:
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    return host, int(port)


def kafka_ready(s: StackSettings) -> Probe:
    """The broker answers a metadata request."""

    def probe() -> bool:
        from confluent_kafka.admin import AdminClient

        if not _port_open(*_first_server(s.kafka_bootstrap_servers)):
            return False  # spares librdkafka's connection-refused log lines
        try:
            AdminClient({**s.kafka_client_config(), "socket.timeout.ms": 2000}).list_topics(timeout=2)
        except Exception:  # noqa: BLE001 - any failure only means "not yet"
            return False
        return True

    return probe


def topics_ready(s: StackSettings) -> Probe:
    """The IoT, activity and dead-letter topics exist (auto-creation is off)."""

    def probe() -> bool:
        from confluent_kafka.admin import AdminClient

        from sources.topics import topic_specs

        if not _port_open(*_first_server(s.kafka_bootstrap_servers)):
            return False
        try:
            existing = (
                AdminClient({**s.kafka_client_config(), "socket.timeout.ms": 2000})
                .list_topics(timeout=2)
                .topics
            )
        except Exception:  # noqa: BLE001 - any failure only means "not yet"
            return False
        return all(spec.name in existing for spec in topic_specs(s))

    return probe


def redis_ready(s: StackSettings) -> Probe:
    """Redis answers PING."""

    def probe() -> bool:
        import redis

        try:
            with redis.Redis.from_url(s.redis_url.get_secret_value(), socket_timeout=1) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    return probe


def recovery_partitions(directory: Path) -> list[Path]:
    """The recovery partition files Bytewax created in `directory` (``part-N.sqlite3``)."""
    return sorted(directory.glob("part-*.sqlite3"))


def recovery_ready(s: StackSettings) -> Probe:
    """The recovery folder holds exactly PIPELINE_RECOVERY_PARTITIONS partitions."""
    return lambda: len(recovery_partitions(s.recovery_dir)) == s.recovery_partitions


def http_ready(url: str) -> Probe:
    """`url` answers 200."""

    def probe() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own http URL
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    return probe


def probe_for(need: str, s: StackSettings) -> Probe:
    """The probe of one NEED (see the module docstring)."""
    factories: dict[str, Callable[[StackSettings], Probe]] = {
        "kafka": kafka_ready,
        "topics": topics_ready,
        "redis": redis_ready,
        "recovery": recovery_ready,
    }
    if need in factories:
        return factories[need](s)
    if urlsplit(need).scheme in {"http", "https"}:
        return http_ready(need)
    raise ValueError(f"unknown need {need!r}: expected one of {', '.join(NEEDS)} or an http:// URL")


def wait_for(
    probes: dict[str, Probe],
    timeout_s: float,
    interval_s: float = 0.5,
    should_stop: Callable[[], bool] = lambda: False,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Poll every probe until all pass, `timeout_s` passes or `should_stop()`; return those not ready.

    A probe that passed is not asked again. `timeout_s` 0 asks each probe once.
    """
    pending = dict(probes)
    deadline = clock() + timeout_s
    while True:
        pending = {name: probe for name, probe in pending.items() if not probe()}
        if not pending or clock() >= deadline or should_stop():
            return list(pending)
        sleep(interval_s)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m infra.wait", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds (default PIPELINE_STACK_READY_TIMEOUT_S)"
    )
    parser.add_argument("needs", nargs="+", metavar="NEED")
    args = parser.parse_args(argv)
    s = load_settings(StackSettings)
    try:
        probes = {need: probe_for(need, s) for need in args.needs}
    except ValueError as exc:
        parser.error(str(exc))
    timeout = s.stack_ready_timeout_s if args.timeout is None else args.timeout
    missing = wait_for(probes, timeout)
    if missing:
        print(f"[wait] not ready after {timeout:.0f}s: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
