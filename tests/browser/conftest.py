"""A real `python -m dashapp` and a headless Chromium (Debian's chromium and chromium-driver)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.conftest import ROOT
from tests.net import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests need the real Redis too."""
    for item in items:
        if "tests/browser" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.browser)


class DashServer:
    """A running ``python -m dashapp`` subprocess."""

    def __init__(self, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.process = process
        self.log = log

    def log_tail(self) -> str:
        """The end of the server's log, for failure messages."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])


@pytest.fixture
def dash_server(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[DashServer]:
    """The dashboard entry point on a free loopback port, on the test's Redis prefix."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")},
        "PIPELINE_REDIS_URL": redis_url,
        "PIPELINE_REDIS_PREFIX": key_prefix,
        "PIPELINE_DASH_PORT": str(port),
        "PIPELINE_DASH_POLL_INTERVAL_S": "0.5",
        "PIPELINE_DASH_CACHE_TTL_S": "0.4",
        # The test writes 10 s windows faster than real time; staleness is tested elsewhere.
        "PIPELINE_DASH_STALE_AFTER_S": "3600",
    }
    log = tmp_path / "dashapp.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "dashapp"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    server = DashServer(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"dashapp exited:\n{server.log_tail()}"
            assert time.monotonic() < deadline, f"dashapp not ready in 30 s:\n{server.log_tail()}"
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


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """Headless Chromium with its console and network logs kept."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        pytest.fail(f"{missing} not found: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / f'chromium-{uuid.uuid4().hex[:8]}'}")
    options.add_argument("--window-size=1600,1000")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
