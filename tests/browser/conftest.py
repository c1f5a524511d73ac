"""A real `python -m dashapp` and a headless Chromium (Debian's chromium and chromium-driver)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.dash_process import DashServer, dash_process

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


@pytest.fixture
def dash_server(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[DashServer]:
    """The dashboard entry point on a free loopback port, on the test's Redis prefix."""
    with dash_process(
        redis_url,
        key_prefix,
        tmp_path / "dashapp.log",
        PIPELINE_DASH_POLL_INTERVAL_S="0.5",
        PIPELINE_DASH_CACHE_TTL_S="0.4",
        # The test writes 10 s windows faster than real time; staleness is tested elsewhere.
        PIPELINE_DASH_STALE_AFTER_S="3600",
    ) as server:
        yield server


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
