"""Dashboard ticks: server time and bytes per tick, alone and under 20 concurrent clients.

Two parts, for each device count (``--devices 10,100``). Redis
(``PIPELINE_REDIS_URL``, a throwaway key prefix) is filled through the test
seeder with N devices x 60 windows.

**One client, in-process**: the app runs in this process (no network) and ticks
are posted exactly as the browser does, in three situations:

* ``read, new window``: the cache expired and every device has a new 10 s window
  (what a page sees once every 10 s);
* ``read, nothing new``: the cache expired, Redis has nothing new for the page;
* ``cache hit``: another page already read Redis within the TTL.

"Server time" is the HTTP round trip through the ASGI app (Dash dispatch,
callback, JSON) without a network; bytes are the JSON body and, gzip-compressed,
what goes over the wire.

**Under load, the real server**: ``python -m dashapp`` (uvicorn) in a subprocess,
``--clients`` (20) concurrent clients, each a thread with its own keep-alive HTTP
connection watching its own device, ticking at the dashboard's poll interval
(``PIPELINE_DASH_POLL_INTERVAL_S``, 1 s) behind the page's client-side gate: a
client sends its next tick only when the last one was answered, and skips the
interval ticks that come while one is in flight (counted: that is what a
pile-up would look like). Meanwhile a writer adds a new window to every device
every 10 s, as the flow does. Reported: p50/p99 of the tick round trip over
loopback (an upper bound of server time), bytes per tick, the most requests in
flight at once (never more than the clients), skipped interval ticks, and the
server's own count of Redis reads against data requests (its cache joins
concurrent ticks into one read: no pile-up on Redis either), and the server
process's CPU time per answered tick (user + system, psutil): unlike the round
trip, it hardly moves when other processes share the cores, so it is the figure
to compare two versions by on a busy machine. The first 3 s (each page's first
ticks carry its whole state) are not measured. Target: p99 < 50 ms.

The last line of output is ``BENCH_JSON {...}``.

    .venv/bin/python -m bench.dash_tick [--devices 10,100] [--clients 20] [--seconds 30]
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402
import psutil  # noqa: E402
import redis  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from bench.harness import bar, drain, percentile, say, stop_processes  # noqa: E402
from config.settings import load_settings  # noqa: E402
from dashapp.app import create_app  # noqa: E402
from dashapp.settings import DashSettings  # noqa: E402
from tests.dash_client import initial_cursor, post_tick, tick_body  # noqa: E402
from tests.pipeline_harness import free_port  # noqa: E402
from tests.seed import T0_MS, WINDOW_MS, Fleet, Seeder, device_ids  # noqa: E402


class Clock:
    """The app's wall clock, moved by the benchmark (so cache expiry is exact)."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        """Now, epoch ms."""
        return self.now_ms


def measure(
    name: str, rounds: int, before: Callable[[], None], tick: Callable[[int], tuple[float, int, int]]
) -> dict[str, float]:
    times, sizes, wire = [], [], []
    for i in range(rounds):
        before()
        elapsed, size, gz = tick(i)
        times.append(elapsed)
        sizes.append(size)
        wire.append(gz)
    times.sort()
    out = {
        "median_ms": statistics.median(times) * 1000,
        "p95_ms": percentile(times, 95) * 1000,
        "p99_ms": percentile(times, 99) * 1000,
        "body_bytes": statistics.median(sizes),
        "gzip_bytes": statistics.median(wire),
    }
    print(
        f"{name:<22} server {out['median_ms']:6.2f} ms median, {out['p95_ms']:6.2f} ms p95, "
        f"{out['p99_ms']:6.2f} ms p99 | "
        f"body {out['body_bytes']:7.0f} B, gzip {out['gzip_bytes']:6.0f} B"
    )
    return out


def _clean(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)


def in_process(base: DashSettings, devices: int, rounds: int) -> dict[str, Any]:
    """One client posting ticks through the app in this process; the figures of each situation."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    settings = DashSettings(redis_url=base.redis_url, redis_prefix=prefix)
    client_redis = redis.Redis.from_url(settings.redis_url.get_secret_value())
    fleet = Fleet(Seeder(client_redis, prefix), device_ids(devices))
    fleet.advance(60)
    clock = Clock(T0_MS + 60 * WINDOW_MS + 500)
    result: dict[str, Any] = {"devices": devices}
    print(f"## {devices} devices, one client, in-process")
    try:
        with TestClient(create_app(settings, clock_ms=clock)) as client:
            dash = client.app.state.dash  # type: ignore[attr-defined]
            layout = client.get("/_dash-layout")
            result["layout_bytes"] = len(layout.content)
            result["layout_gzip_bytes"] = len(gzip.compress(layout.content))
            print(
                f"page load: layout {len(layout.content):,} B JSON, "
                f"{len(gzip.compress(layout.content)):,} B gzip (full figures, grid, stores)"
            )
            cursor = [initial_cursor(client)]
            seq = [0]

            def tick(_: int) -> tuple[float, int, int]:
                seq[0] += 1
                body = tick_body(dash, seq[0], "dev-01", cursor[0])
                started = time.perf_counter()
                resp = client.post(
                    "/_dash-update-component", content=body, headers={"content-type": "application/json"}
                )
                elapsed = time.perf_counter() - started
                assert resp.status_code == 200, resp.text
                cursor[0] = resp.json()["response"]["stream-cursor"]["data"]
                return elapsed, len(resp.content), len(gzip.compress(resp.content))

            def new_window() -> None:
                fleet.advance(1, alert_every=0)
                clock.now_ms += WINDOW_MS

            def nothing_new() -> None:
                clock.now_ms += 1_000

            # warm up (imports, first figures)
            for _ in range(3):
                nothing_new()
                tick(0)
            result["new_window"] = measure("read, new window", rounds, new_window, tick)
            result["nothing_new"] = measure("read, nothing new", rounds, nothing_new, tick)
            result["cache_hit"] = measure("cache hit", rounds, lambda: None, tick)

            live = client.app.state.runtime.live  # type: ignore[attr-defined]
            metrics = client.get("/metrics").text
            count, total = _histogram(metrics, "dashboard_redis_read_duration_seconds", 'query="snapshot"')
            cb_count, cb_sum = _histogram(metrics, "dashboard_callback_duration_seconds", "")
            print(
                f"Redis snapshot read: {total / count * 1000:.2f} ms mean over {count:.0f} reads "
                f"({live.reads} round trips in all); callback alone: {cb_sum / cb_count * 1000:.2f} ms mean"
            )
            one = post_tick(client, dash, seq[0] + 1, "dev-01", cursor[0])
            print(f"a tick with nothing new: {one.body_bytes} B, outputs updated: {len(one.values)}")
    finally:
        _clean(client_redis, prefix)
    return result


def _histogram(metrics: str, name: str, label: str) -> tuple[float, float]:
    """(count, sum) of a Prometheus histogram in /metrics text, summed over series matching `label`."""
    count = total = 0.0
    for line in metrics.splitlines():
        if label not in line:
            continue
        if line.startswith(f"{name}_count"):
            count += float(line.split()[-1])
        elif line.startswith(f"{name}_sum"):
            total += float(line.split()[-1])
    return count, total


def _counter(metrics: str, name: str, label: str) -> float:
    return sum(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith(name) and label in line and not line.startswith("#")
    )


class LoadClient(threading.Thread):
    """One page: ticks at the poll interval behind the client-side gate, on its own connection."""

    def __init__(
        self,
        base_url: str,
        cursor: Any,
        body: Callable[[int, Any], bytes],
        interval_s: float,
        stop: threading.Event,
        in_flight: list[int],
        lock: threading.Lock,
    ) -> None:
        super().__init__(daemon=True)
        self.http = httpx.Client(base_url=base_url, timeout=30)
        self.cursor = cursor
        self.body = body
        self.interval_s = interval_s
        self.stop = stop
        self.in_flight = in_flight
        self.lock = lock
        self.measure_from = 0.0
        """perf_counter before which ticks are warm-up (a page's first ticks carry its whole state)."""
        self.times: list[float] = []
        self.sizes: list[int] = []
        self.errors = 0
        self.skipped = 0
        self.answered = 0
        """Ticks answered, warm-up included."""

    def run(self) -> None:
        """Tick until stopped."""
        cursor = self.cursor
        seq = 0
        next_tick = time.monotonic()
        while not self.stop.is_set():
            seq += 1
            with self.lock:
                self.in_flight[0] += 1
                self.in_flight[1] = max(self.in_flight[1], self.in_flight[0])
            started = time.perf_counter()
            try:
                resp: httpx.Response | None = self.http.post(
                    "/_dash-update-component",
                    content=self.body(seq, cursor),
                    headers={"content-type": "application/json", "accept-encoding": "identity"},
                )
            except httpx.HTTPError:
                resp = None
            elapsed = time.perf_counter() - started
            with self.lock:
                self.in_flight[0] -= 1
            if resp is None or resp.status_code != 200:
                self.errors += 1
            else:
                self.answered += 1
                if started >= self.measure_from:
                    self.times.append(elapsed)
                    self.sizes.append(len(resp.content))
                cursor = resp.json()["response"]["stream-cursor"]["data"]
            # The gate: interval ticks that fired while this one was in flight are skipped.
            next_tick += self.interval_s
            now = time.monotonic()
            while next_tick < now:
                next_tick += self.interval_s
                self.skipped += 1
            self.stop.wait(next_tick - now)
        self.http.close()


WARMUP_S = 3.0


def under_load(base: DashSettings, devices: int, clients: int, seconds: float) -> dict[str, Any]:
    """`clients` pages ticking against ``python -m dashapp`` for `seconds` (the first WARMUP_S unmeasured)."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    settings = DashSettings(redis_url=base.redis_url, redis_prefix=prefix)
    client_redis = redis.Redis.from_url(settings.redis_url.get_secret_value())
    now = time.time_ns() // 1_000_000
    ids_ = device_ids(devices)
    # Current data: the newest window is the one that just ended, as with a live flow.
    fleet = Fleet(Seeder(client_redis, prefix), ids_, t0_ms=now - now % WINDOW_MS - 60 * WINDOW_MS)
    fleet.advance(60)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(
        {
            "PIPELINE_REDIS_URL": settings.redis_url.get_secret_value(),
            "PIPELINE_REDIS_PREFIX": prefix,
            "PIPELINE_DASH_HOST": "127.0.0.1",
            "PIPELINE_DASH_PORT": str(port),
            "PIPELINE_LOG_LEVEL": "WARNING",
        }
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "dashapp"], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    output = drain(server)
    base_url = f"http://127.0.0.1:{port}"
    dash = create_app(settings).state.dash  # only to spell the tick's callback like the page does
    say("dash", f"{devices} devices, {clients} clients against python -m dashapp on :{port}")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base_url}/metrics", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the dashboard did not start:\n" + "\n".join(output))
            time.sleep(0.1)
        layout = httpx.get(f"{base_url}/_dash-layout", timeout=30)
        assert layout.status_code == 200, layout.text[:500]
        # Every page starts from the layout's cursor (loaded once: page loads are not what is measured).
        cursor = initial_cursor(httpx.Client(base_url=base_url, timeout=30))
        before = httpx.get(f"{base_url}/metrics").text
        stop = threading.Event()
        in_flight = [0, 0]
        lock = threading.Lock()
        pages = [
            LoadClient(
                base_url,
                cursor,
                lambda seq, cursor, d=ids_[i % devices]: tick_body(dash, seq, d, cursor),
                base.dash_poll_interval_s,
                stop,
                in_flight,
                lock,
            )
            for i in range(clients)
        ]
        server_process = psutil.Process(server.pid)
        cpu_before: Any = None
        answered_before = 0
        started = time.monotonic()
        for page in pages:
            page.measure_from = time.perf_counter() + WARMUP_S
            page.start()
        next_window = started + WINDOW_MS / 1000
        with bar(seconds, f"dash load, {devices} devices", "s") as progress:
            while (elapsed := time.monotonic() - started) < seconds:
                if cpu_before is None and elapsed >= WARMUP_S:
                    # CPU per tick leaves out the warm-up too: each page's first tick draws every figure.
                    cpu_before = server_process.cpu_times()
                    answered_before = sum(p.answered for p in pages)
                if time.monotonic() >= next_window:
                    fleet.advance(1)  # what the flow writes every 10 s
                    next_window += WINDOW_MS / 1000
                progress.n = min(elapsed, seconds)
                progress.refresh()
                time.sleep(0.1)
        stop.set()
        for page in pages:
            page.join(timeout=60)
        cpu_after = server_process.cpu_times()
        after = httpx.get(f"{base_url}/metrics").text
    finally:
        stop_processes([server])
        _clean(client_redis, prefix)

    times = [t * 1000 for p in pages for t in p.times]
    sizes = [s for p in pages for s in p.sizes]
    reads = _counter(after, "dashboard_cache_requests_total", 'result="read"') - _counter(
        before, "dashboard_cache_requests_total", 'result="read"'
    )
    requests = _counter(after, "dashboard_cache_requests_total", "result=") - _counter(
        before, "dashboard_cache_requests_total", "result="
    )
    cb_count, cb_sum = _histogram(after, "dashboard_callback_duration_seconds", "")
    cb_count0, cb_sum0 = _histogram(before, "dashboard_callback_duration_seconds", "")
    result = {
        "devices": devices,
        "clients": clients,
        "seconds": seconds,
        "interval_s": base.dash_poll_interval_s,
        "ticks": len(times),
        "errors": sum(p.errors for p in pages),
        "p50_ms": percentile(times, 50),
        "p99_ms": percentile(times, 99),
        "max_ms": max(times, default=float("nan")),
        "bytes_median": statistics.median(sizes) if sizes else float("nan"),
        "max_in_flight": in_flight[1],
        "skipped_interval_ticks": sum(p.skipped for p in pages),
        "redis_reads": reads,
        "data_requests": requests,
        "server_cpu_ms_per_tick": (
            (cpu_after.user + cpu_after.system - cpu_before.user - cpu_before.system)
            * 1000
            / max(sum(p.answered for p in pages) - answered_before, 1)
        ),
        "callback_mean_ms": (cb_sum - cb_sum0) / (cb_count - cb_count0) * 1000
        if cb_count > cb_count0
        else float("nan"),
    }
    print(f"## {devices} devices, {clients} clients, real server (uvicorn), {seconds:g} s")
    print(
        f"tick round trip: p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, max "
        f"{result['max_ms']:.1f} ms over {result['ticks']} ticks ({result['errors']} errors); "
        f"callback alone {result['callback_mean_ms']:.1f} ms mean; {result['bytes_median']:,.0f} B per tick"
    )
    print(
        f"pile-up: at most {result['max_in_flight']} requests in flight ({clients} clients); "
        f"{result['skipped_interval_ticks']} interval ticks skipped by the gate; "
        f"{reads:.0f} Redis reads for {requests:.0f} data requests; "
        f"server CPU {result['server_cpu_ms_per_tick']:.2f} ms per tick"
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", default="10,100", help="device counts, comma-separated (10,100)")
    parser.add_argument("--clients", type=int, default=20, help="concurrent pages under load (20)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each load run (30)")
    parser.add_argument("--rounds", type=int, default=40, help="in-process ticks per situation (40)")
    parser.add_argument("--no-load", action="store_true", help="only the in-process single-client part")
    args = parser.parse_args()
    base = load_settings(DashSettings)
    counts = [int(d) for d in args.devices.split(",")]
    single = [in_process(base, n, args.rounds) for n in counts]
    load = [] if args.no_load else [under_load(base, n, args.clients, args.seconds) for n in counts]
    print("BENCH_JSON " + orjson.dumps({"single": single, "load": load}).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
