"""Redis with a password: started protected by infra.local; the writer authenticates; wrong passwords fail.

Each test module run starts its own password-protected redis-server (infra.local,
on a free port, state in a temporary folder) next to the suite's open one.
"""

from __future__ import annotations

import logging
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import redis

from config.logging import configure_logging
from infra.local import redis_service, start_redis
from infra.settings import LocalInfraSettings
from sinks.layout import Layout, decode_latest
from sinks.settings import SinkSettings
from sinks.writer import RedisWriter
from tests.sink_samples import T0, reading

# Characters a URL must percent-encode and Redis' config parser must not misread.
PASSWORD = 'se cr"et:@/%\\x'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def protected(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, LocalInfraSettings]]:
    """A password-protected redis-server started by infra.local; its port and settings."""
    port = free_port()
    settings = LocalInfraSettings(
        redis_url=f"redis://:{quote(PASSWORD, safe='')}@127.0.0.1:{port}/0",
        state_dir=tmp_path_factory.mktemp("redis-auth"),
        service_start_timeout_s=60,
    )
    assert start_redis(settings)
    yield port, settings
    redis_service(settings).stop()


def url(port: int, password: str | None) -> str:
    auth = "" if password is None else f":{quote(password, safe='')}@"
    return f"redis://{auth}127.0.0.1:{port}/0"


def writer_for(redis_url: str, prefix: str) -> RedisWriter:
    # sink_retries=0: an authentication error is not transient, no point retrying it.
    writer = RedisWriter(SinkSettings(redis_url=redis_url, redis_prefix=prefix, sink_retries=0))
    writer.setup()
    return writer


def test_the_writer_authenticates_with_the_url_password_and_writes(protected, key_prefix):
    port, _ = protected
    writer = writer_for(url(port, PASSWORD), key_prefix)
    r = reading("dev-1", T0)
    try:
        writer.add([r])
        writer.flush()
    finally:
        writer.close()
    client = redis.Redis.from_url(url(port, PASSWORD))
    assert decode_latest(client.hget(Layout(key_prefix).latest(), "dev-1")) == r
    client.close()


@pytest.mark.parametrize(
    ("password", "message"),
    # redis-py 8 opens with HELLO (RESP3): without a password Redis answers that HELLO needs
    # an authenticated client; both surface as redis.AuthenticationError.
    [(None, "authenticated"), ("wrong-pw", "invalid username-password pair")],
    ids=["missing", "wrong"],
)
def test_a_missing_or_wrong_password_fails_clearly_without_echoing_it(
    protected, key_prefix, password, message
):
    port, _ = protected
    writer = writer_for(url(port, password), key_prefix)
    try:
        writer.add([reading("dev-1", T0)])
        with pytest.raises(redis.AuthenticationError, match=message) as caught:
            writer.flush()
    finally:
        writer.close()
    assert len(writer.pending) == 1, "what could not be written stays buffered"
    assert PASSWORD not in str(caught.value) and "wrong-pw" not in str(caught.value)


def test_the_password_is_neither_on_the_command_line_nor_in_a_readable_file(protected):
    _, settings = protected
    svc = redis_service(settings)
    pid = svc.pid()
    assert pid is not None
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    assert PASSWORD.encode() not in cmdline and b"requirepass" not in cmdline
    conf = svc.workdir / "auth.conf"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600


def test_writer_logs_do_not_show_the_password(protected, key_prefix, capsys):
    port, _ = protected
    configure_logging("test", fmt="json")
    closed = free_port()  # nothing listens: setup logs that Redis is unreachable
    writer = writer_for(url(closed, PASSWORD), key_prefix)
    writer.close()
    logging.getLogger("test").warning("connecting to %s", url(port, PASSWORD))
    err = capsys.readouterr().err
    assert "redis_unreachable_at_setup" in err and "connecting to redis://:***@127.0.0.1" in err
    assert quote(PASSWORD, safe="") not in err and PASSWORD not in err
