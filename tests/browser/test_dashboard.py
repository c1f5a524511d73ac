"""The dashboard in headless Chromium, live: it loads while data is written and follows the writes.

Saves a screenshot: to ``$DASHBOARD_SCREENSHOT`` when set (``docs/screenshot.png``
for the README), else into the test's temporary folder.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
from selenium import webdriver

from dashapp import ids
from sinks.records import Metric
from tests.dash_process import DashServer
from tests.seed import WINDOW_MS, Fleet, Seeder, device_ids

HISTORY = 60
"""Windows written before the page opens (one chart's worth)."""
STEPS = 14
"""Windows written while the page is open."""

# What the page shows, read from the DOM: plotly keeps a graph's data on its div.
STATE_JS = """
const plot = (id) => document.querySelector('#' + id + ' .js-plotly-plot');
const chart = plot(arguments[0]), gauge = plot(arguments[1]), board = plot(arguments[2]);
const rows = [...document.querySelectorAll('#' + arguments[3] + ' .ag-center-cols-container .ag-row')];
const first = rows.find((r) => r.getAttribute('row-index') === '0');
return {
    chart: chart && chart.data
        ? {n: chart.data[2].x.length, last: chart.data[2].x.at(-1), xs: chart.data[2].x}
        : null,
    gauge: gauge && gauge.data ? gauge.data[0].value : null,
    gaugeText: gauge ? gauge.querySelector('.number')?.textContent : null,
    alertRows: rows.length,
    firstAlert: first ? first.textContent : null,
    leaders: board && board.data ? board.data[0].x.join(',') : null,
};
"""


def page_state(driver: webdriver.Chrome) -> dict[str, Any]:
    state: dict[str, Any] = driver.execute_script(
        STATE_JS, ids.chart(Metric.TEMPERATURE), ids.gauge(Metric.TEMPERATURE), ids.LEADERBOARD, ids.ALERTS
    )
    return state


def wait_for(driver: webdriver.Chrome, check: Any, what: str, timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        state = page_state(driver)
        if check(state):
            return state
        assert time.monotonic() < deadline, f"page never showed {what}; last state: {state}"
        time.sleep(0.2)


def test_the_dashboard_follows_live_data_without_errors(
    dash_server: DashServer, browser, redis_url, key_prefix, tmp_path
):
    # Data time runs ahead of the wall clock (a 10 s window per step); it ends about now.
    t0 = int(time.time() * 1000) - (HISTORY + STEPS) * WINDOW_MS
    fleet = Fleet(Seeder(redis.Redis.from_url(redis_url), key_prefix), device_ids(10), t0_ms=t0)
    fleet.advance(HISTORY, alert_every=4)

    browser.get(dash_server.url)
    before = wait_for(
        browser,
        lambda s: s["chart"] and s["gauge"] is not None and s["alertRows"] and s["leaders"],
        "gauges, chart points, alert rows and the leaderboard",
    )
    assert before["chart"]["n"] == HISTORY
    assert before["gaugeText"]  # the indicator drew its number

    stop = threading.Event()

    def write() -> None:
        for _ in range(STEPS):
            if stop.wait(0.5):
                return
            fleet.advance(1, alert_every=2)

    writer = threading.Thread(target=write, name="fleet-writer")
    writer.start()
    try:
        after = wait_for(
            browser,
            lambda s: (
                s["chart"]["last"] > before["chart"]["last"]
                and s["gauge"] != before["gauge"]
                and s["firstAlert"] != before["firstAlert"]
                and s["leaders"] != before["leaders"]
            ),
            "new chart points, gauge values, alert rows and leaderboard totals",
        )
    finally:
        writer.join()
        stop.set()
    assert after["chart"]["n"] == HISTORY  # a rolling window: old points leave as new ones come

    # Everything the written data says has arrived, none of it twice.
    final = wait_for(
        browser,
        lambda s: s["chart"]["last"] == fleet.newest_start_ms,
        "the newest window",
    )
    assert final["chart"]["n"] == HISTORY
    xs = final["chart"]["xs"]
    assert [b - a for a, b in itertools.pairwise(xs)] == [WINDOW_MS] * (HISTORY - 1), (
        "a point lost or doubled"
    )

    check_client_side_callbacks(browser)

    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], f"console errors: {errors}\nserver log:\n{dash_server.log_tail()}"
    requested = {
        json.loads(e["message"])["message"]["params"]["request"]["url"]
        for e in browser.get_log("performance")
        if json.loads(e["message"])["message"]["method"] == "Network.requestWillBeSent"
    }
    server = urlsplit(dash_server.url).netloc
    foreign = sorted(
        u
        for u in requested
        if urlsplit(u).scheme in {"http", "https", "ws", "wss"} and urlsplit(u).netloc != server
    )
    assert foreign == [], "the page must work offline: everything from its own server"

    screenshot = Path(os.environ.get("DASHBOARD_SCREENSHOT", tmp_path / "dashboard.png"))
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1600, height + 120)  # headless: the window is the page
    time.sleep(1.0)  # let the responsive plots follow the new size
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(screenshot))


GATE_JS = """
const {gate, mergeAlerts} = window.dash_clientside.pipeline;
const skip = window.dash_clientside.no_update, now = Date.now(), config = {retry_ms: 5000, alert_rows: 3};
const row = (id) => ({alert_id: id});
return {
    first: gate(1, undefined, undefined, config),
    pending: gate(5, 1, {seq: 2, at: now}, config) === skip,
    answered: gate(5, 2, {seq: 2, at: now}, config),
    overdue: gate(5, 1, {seq: 2, at: now - 6000}, config),
    merged: mergeAlerts({rows: [row('c'), row('b')]}, [row('b'), row('a'), row('z'), row('y')], config)
        .map((r) => r.alert_id),
    nothing: mergeAlerts({rows: []}, [row('a')], config) === skip,
};
"""


def check_client_side_callbacks(driver: webdriver.Chrome) -> None:
    """The shipped gate and alert merge, run in the page: no request while one is unanswered."""
    got = driver.execute_script(GATE_JS)
    assert got["first"]["seq"] == 1
    assert got["pending"] is True, "a tick must wait for the answer to the previous one"
    assert got["answered"]["seq"] == 3
    assert got["overdue"]["seq"] == 3, "an answer lost for good must not stop the page"
    assert got["merged"] == ["c", "b", "a"], "new rows on top, no duplicates, at most alert_rows"
    assert got["nothing"] is True
