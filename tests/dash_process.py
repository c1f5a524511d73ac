"""A real ``python -m dashapp`` subprocess on a free loopback port (browser and fault tests)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.conftest import ROOT
from tests.net import free_port

START_TIMEOUT_S = 90.0
"""Generous: several test sessions may share the machine's cores."""


class DashServer:
    """A running ``python -m dashapp`` subprocess."""

    def __init__(self, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.process = process
        self.log = log

    def log_text(self) -> str:
        """Everything the server logged so far."""
        return self.log.read_text(errors="replace")

    def log_tail(self) -> str:
        """The end of the server's log, for failure messages."""
        return "\n".join(self.log_text().splitlines()[-40:])


@contextlib.contextmanager
def dash_process(redis_url: str, key_prefix: str, log: Path, **env: str) -> Iterator[DashServer]:
    """Run the dashboard entry point until the block ends; ready (``/ready`` 200) when yielded.

    `env` adds ``PIPELINE_`` settings (e.g. ``PIPELINE_DASH_CACHE_TTL_S="0.4"``).
    """
    port = free_port()
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")},
        "PIPELINE_REDIS_URL": redis_url,
        "PIPELINE_REDIS_PREFIX": key_prefix,
        "PIPELINE_DASH_PORT": str(port),
        **env,
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "dashapp"], cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT
        )
    server = DashServer(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert process.poll() is None, f"dashapp exited:\n{server.log_tail()}"
            assert time.monotonic() < deadline, (
                f"dashapp not ready in {START_TIMEOUT_S:.0f} s:\n{server.log_tail()}"
            )
            try:
                if httpx.get(f"{server.url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
