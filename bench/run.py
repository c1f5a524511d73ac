"""The benchmark suite in one command (``make bench``): runs every benchmark, writes the results.

Starts its own Kafka broker and Redis through ``infra.local`` (own ports and state
folder, ``.run/bench`` by default, so it never touches a ``make up`` stack or the
test services) when they don't answer already, runs each benchmark of ``bench/``
as a subprocess in its quick mode (``--full``: the larger sizes), shows their
output as they go, picks the figures out of what they print, and writes

* ``bench/results/latest.json``: date, machine, every figure, the raw output;
* ``bench/results/latest.md``: the same as a markdown table with the method of each.

Services it started are stopped at the end. Each benchmark stays runnable on its own
(the command is in the results). The sizes are chosen so that the quick run takes about a
minute and a half on a quiet 2-core machine (plus Kafka's start-up) and the full run about 25
minutes; the suite's wall time, its services' start-up and the load average before and after
are in the results. A benchmark whose figures involve no timing (detection) runs beside one
whose figures are not CPU-bound (memory, whose achieved rate is reported beside).

    .venv/bin/python -m bench.run [--full] [--only e2e,sink] [--kafka-port 29092] [--redis-port 26379]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from infra import local  # noqa: E402
from infra.settings import LocalInfraSettings  # noqa: E402

RESULTS = ROOT / "bench" / "results"
NUM = r"([\d,]+(?:\.\d+)?)"


@dataclass
class Bench:
    """One benchmark: how to run it, what it measures, and where its figures are in its output."""

    name: str
    method: str
    quick: list[str]
    full: list[str]
    # figure name -> (regex with one group, unit)
    figures: dict[str, tuple[str, str]] = field(default_factory=dict)
    # For output with a BENCH_JSON line: turn it into figures.
    from_json: Callable[[dict[str, Any]], dict[str, tuple[float | str, str]]] | None = None
    beside: str | None = None
    """Run at the same time as this other benchmark (when both are chosen), to save its length.

    Only for a benchmark whose figures involve no timing (counts on a seeded simulation),
    beside one whose figures are not CPU-bound (memory at a steady rate leaves a core idle).
    Not at a lower CPU priority: on a busy machine that starved it for minutes.
    """
    expect_s: tuple[float, float] = (0.0, 0.0)
    """About how long it takes on a quiet machine, quick and full (for the progress lines)."""
    needs: tuple[str, ...] = ("redis", "kafka")
    """The services it talks to (the suite starts only those its chosen benchmarks need)."""


def _e2e_figures(data: dict[str, Any]) -> dict[str, tuple[float | str, str]]:
    figures: dict[str, tuple[float | str, str]] = {
        "ceiling (batch consume + orjson)": (data["ceiling_events_per_s"], "events/s"),
    }
    for run in data["runs"]:
        w = run.get("label", f"{run['workers']} worker(s)")
        figures[f"{w}, wall"] = (run["wall_events_per_s"], "events/s")
        figures[f"{w}, from first write"] = (run["steady_events_per_s"], "events/s")
        figures[f"{w}, flow CPU time / wall time"] = (run["cpu_s"] / run["wall_s"], "x")
        figures[f"{w}, fraction of ceiling (wall)"] = (run["fraction_of_ceiling_wall"], "")
        figures[f"{w}, fraction of ceiling (from first write)"] = (
            run["fraction_of_ceiling_steady"],
            "",
        )
        if "peak_rss_bytes" in run:
            figures[f"{w}, flow peak RSS"] = (run["peak_rss_bytes"] / 2**20, "MB")
        if run["matches_reference"] is not None:
            figures[f"{w}, Redis equals 1-worker run"] = (
                "yes" if run["matches_reference"] else "NO",
                "",
            )
    return figures


def _detection_figures(data: dict[str, Any]) -> dict[str, tuple[float | str, str]]:
    return {
        "alerts precision": (round(data["precision"], 3), "ratio"),
        "alerts recall": (round(data["recall"], 3), "ratio"),
        "alerts F1": (round(data["f1"], 3), "ratio"),
        "critical alerts precision": (round(data["critical_precision"], 3), "ratio"),
        "critical alerts recall": (round(data["critical_recall"], 3), "ratio"),
        "false alerts (of which at a level shift)": (
            f"{data['false_alerts']} ({data['false_alerts_at_level_shift']}) of {data['alerts']}",
            "",
        ),
        "mean detection delay": (round(data["mean_delay_readings"], 2), "readings"),
        "mean detection delay (event time)": (round(data["mean_delay_ms"]), "ms"),
        **_trend_figures(data),
    }


def _confusion(matrix: dict[str, dict[str, int]]) -> str:
    # Rows: the truth's direction; the flow's answers beside each.
    return "; ".join(f"{want}: " + "/".join(str(n) for n in row.values()) for want, row in matrix.items())


def _trend_figures(data: dict[str, Any]) -> dict[str, tuple[float | str, str]]:
    if "trend_accuracy" not in data:
        return {}
    order = "/".join(next(iter(data["trend_confusion"].values())))
    return {
        "trend direction accuracy": (round(data["trend_accuracy"], 3), "ratio"),
        "trend direction accuracy inside injected drifts": (round(data["trend_drift_accuracy"], 3), "ratio"),
        "trend reports scored (inside drifts)": (
            f"{data['trend_reports']} ({data['trend_drift_reports']})",
            "",
        ),
        f"trend confusion, truth: flow {order}": (_confusion(data["trend_confusion"]), ""),
        f"trend confusion inside drifts, truth: flow {order}": (
            _confusion(data["trend_drift_confusion"]),
            "",
        ),
    }


def _freshness_figures(data: dict[str, Any]) -> dict[str, tuple[float | str, str]]:
    figures: dict[str, tuple[float | str, str]] = {}
    for r in data["rates"]:
        at = f"{r['requested_per_s']:,.0f}/s"
        figures[f"{at}: achieved rate"] = (r["achieved_per_s"], "events/s")
        if "caught_up" in r:
            figures[f"{at}: start-up backlog worked off before measuring"] = (
                "yes" if r["caught_up"] else "NO (the flow lags the producers)",
                "",
            )
        figures[f"{at}: latest reading p50"] = (r["latest_p50_ms"], "ms")
        figures[f"{at}: latest reading p99"] = (r["latest_p99_ms"], "ms")
        figures[f"{at}: alerts p50 ({r['alerts']} alerts)"] = (r["alert_p50_ms"], "ms")
        figures[f"{at}: alerts p99"] = (r["alert_p99_ms"], "ms")
        for name, w in r["windows"].items():
            figures[f"{at}: {name} window after close + lateness, p50 ({w['count']} windows)"] = (
                w["p50_ms"],
                "ms",
            )
            figures[f"{at}: {name} window after close + lateness, p99"] = (w["p99_ms"], "ms")
        if "cpu_pct" in r:
            figures[f"{at}: IoT producer processes"] = (r["producers"], "")
            figures[f"{at}: CPU, % of one core (load average {r['load_avg']:.1f})"] = (
                ", ".join(f"{name} {pct:.0f}" for name, pct in r["cpu_pct"].items()),
                "",
            )
            figures[f"{at}: observer read p99 (its own share)"] = (r["read_p99_ms"], "ms")
    return figures


def _scaling_figures(data: dict[str, Any]) -> dict[str, tuple[float | str, str]]:
    figures: dict[str, tuple[float | str, str]] = {}
    for p in data["points"]:
        at = f"{p['sweep']} {p['value']}"
        figures[f"{at}: from first write"] = (p["steady_events_per_s"], "events/s")
        figures[f"{at}: wall"] = (p["wall_events_per_s"], "events/s")
        figures[f"{at}: flow peak RSS"] = (p["peak_rss_mb"], "MB")
    return figures


def _memory_figures(data: dict[str, Any]) -> dict[str, tuple[float | str, str]]:
    return {
        f"rate requested / achieved ({data['seconds']:g} s)": (
            f"{data['rate_requested']:,.0f} / {data['rate_achieved']:,.0f} events/s",
            "",
        ),
        "flow RSS start": (data["flow_rss_start_mb"], "MB"),
        "flow RSS peak": (data["flow_rss_peak_mb"], "MB"),
        "flow RSS end": (data["flow_rss_end_mb"], "MB"),
        "flow RSS slope, second half": (data["flow_rss_slope_mb_per_min"], "MB/min"),
        "Redis used_memory after the retention span": (data["redis_used_at_retention_mb"], "MB"),
        "Redis used_memory peak": (data["redis_used_peak_mb"], "MB"),
        "Redis used_memory end": (data["redis_used_end_mb"], "MB"),
        "Redis used_memory slope once settled": (data["redis_used_slope_mb_per_min"], "MB/min"),
        f"windows kept per series (retention {data['retention_s']:g} s)": (
            f"{data['windows_kept_max']} (bound {data['windows_kept_bound']})",
            "",
        ),
    }


def _dash_figures(data: dict[str, Any]) -> dict[str, tuple[float | str, str]]:
    figures: dict[str, tuple[float | str, str]] = {}
    for r in data["single"]:
        d = f"{r['devices']} devices, 1 client"
        figures[f"{d}: tick, new window (median)"] = (r["new_window"]["median_ms"], "ms")
        figures[f"{d}: tick, new window (p99)"] = (r["new_window"]["p99_ms"], "ms")
        figures[f"{d}: tick, nothing new (median)"] = (r["nothing_new"]["median_ms"], "ms")
        figures[f"{d}: tick, nothing new (p99)"] = (r["nothing_new"]["p99_ms"], "ms")
        figures[f"{d}: tick, cache hit (median)"] = (r["cache_hit"]["median_ms"], "ms")
        figures[f"{d}: tick, cache hit (p99)"] = (r["cache_hit"]["p99_ms"], "ms")
        figures[f"{d}: tick, new window, gzip bytes"] = (r["new_window"]["gzip_bytes"], "B")
    for r in data["load"]:
        d = f"{r['devices']} devices, {r['clients']} clients"
        figures[f"{d}: tick round trip p50"] = (r["p50_ms"], "ms")
        figures[f"{d}: tick round trip p99"] = (r["p99_ms"], "ms")
        figures[f"{d}: server CPU per answered tick"] = (r["server_cpu_ms_per_tick"], "ms")
        figures[f"{d}: bytes per tick (median)"] = (r["bytes_median"], "B")
        figures[f"{d}: most requests in flight"] = (f"{r['max_in_flight']} of {r['clients']} clients", "")
        figures[f"{d}: interval ticks skipped by the gate"] = (
            f"{r['skipped_interval_ticks']} (of {r['ticks']} ticks answered)",
            "",
        )
        figures[f"{d}: Redis reads / data requests"] = (
            f"{r['redis_reads']:.0f} / {r['data_requests']:.0f}",
            "",
        )
    return figures


PY = sys.executable
BENCHES = [
    Bench(
        "e2e",
        "Real dataflow process (bytewax.run flows.main, stop at end) over preloaded simulator events "
        "(IoT + 10% activity, 3 partitions) into the real Redis, as 1 worker, 2 workers (-w 2) and "
        "2 processes (-i/-a); wall = process start to exit, "
        "'from first write' = first Redis write to exit; Redis content of each run compared to the "
        "1-worker run; peak RSS = the flow's processes' resident memory summed, sampled every 0.2 s; "
        "ceiling = confluent-kafka batch consumer that only orjson-decodes the same messages.",
        # Quick: 30k readings still span ~25 min of event time per device (windows, alerts, trends)
        # through all three flow shapes; most of its time is the flows' start-up.
        [PY, "-m", "bench.bench_e2e", "--iot", "30000"],
        [PY, "-m", "bench.bench_e2e", "--iot", "2000000"],
        from_json=_e2e_figures,
        expect_s=(18, 264),
    ),
    Bench(
        "detection",
        "ZScoreDetector at the flow's default settings on every (device, metric) series of the IoT "
        "simulator, scored against its ground truth (truth.anomalies): an alert (episode) is true if it "
        "has a flagged reading inside an injected spike/dip of the same series; recall over anomalies "
        "after warm-up; delay from the anomaly's first reading to the reading that raised the alert. "
        "Trend: the flow's RollingTrend (default settings) read once per 10 s report, its direction "
        "against the direction of the truth's noise-free least-squares slope over the same 5-min span "
        "(same minimum slopes); all reports after the first full span, and those inside a drift.",
        [PY, "-m", "bench.bench_detection", "--minutes", "30"],
        [PY, "-m", "bench.bench_detection", "--minutes", "600"],
        from_json=_detection_figures,
        beside="memory",
        expect_s=(6, 148),
        needs=(),
    ),
    Bench(
        "core",
        "IoT analytics core (flows.dataflow.build_flow) in-process through Bytewax's testing source, "
        "1 worker, against a naive per-item Bytewax flow doing the same work (results must agree).",
        # The naive baseline (~4,000 events/s) is most of the time: full 300k events take it ~75 s;
        # the core's runs (~1 s each) are repeated, best kept.
        [PY, "-m", "bench.bench_core", "--events", "10000", "--repeat", "1"],
        [PY, "-m", "bench.bench_core", "--events", "300000", "--repeat", "2"],
        figures={
            "core": (rf"^core:\s+{NUM} events/s wall", "events/s"),
            "naive baseline (same work)": (rf"^baseline \(same work\):\s+{NUM} events/s", "events/s"),
            "windows-only baseline": (rf"^windows-only baseline:\s+{NUM} events/s", "events/s"),
            "ratio core / baseline (wall)": (rf"ratio core/baseline: {NUM}x wall", "x"),
            "identical results": (r"^identical results \(core vs baseline\): (.*)$", ""),
        },
        expect_s=(7, 110),
        needs=(),
    ),
    Bench(
        "producer",
        "Producer on the real broker: batching + LZ4 (the pipeline's config) against produce+flush per "
        "event, same idempotent acks=all safety; events/s from first send to last acknowledgement.",
        # Full: simulating the events (~36,000/s, twice) is most of the time; 500k keep each batched
        # run several seconds long.
        [PY, "-m", "bench.bench_producer", "--events", "10000", "--sync-events", "300"],
        [PY, "-m", "bench.bench_producer", "--events", "500000", "--sync-events", "5000"],
        figures={
            "batched + LZ4": (rf"^\s+batched \+ LZ4 \(pipeline config\)\s+{NUM} events/s", "events/s"),
            "synchronous": (rf"^\s+synchronous.*?\s{NUM} events/s", "events/s"),
            "ratio batched / synchronous": (rf"ratio batched / synchronous\s+{NUM} x", "x"),
            "simulate + produce (CLI path)": (rf"^\s+simulate \+ produce.*?\s{NUM} events/s", "events/s"),
        },
        expect_s=(4, 40),
    ),
    Bench(
        "sink",
        "Redis sink writer on the real redis-server: pipelined batches (what the flow emits when every "
        "device's windows close) against unpipelined and record-by-record writes.",
        # Record-by-record writes (a quarter of the batches, ~2,300 records/s) are most of the time.
        [PY, "-m", "bench.bench_sink", "--batches", "20"],
        [PY, "-m", "bench.bench_sink", "--batches", "200", "--devices", "200"],
        figures={
            "pipelined": (rf"^pipelined \(the sink\):\s+{NUM} records/s", "records/s"),
            "record by record, unpipelined": (
                rf"^record by record, unpipelined:\s+{NUM} records/s",
                "records/s",
            ),
            "ratio pipelined / record by record": (rf"ratio pipelined / record by record: {NUM}x", "x"),
            "batch latency p50": (rf"batch latency.*p50 {NUM} ms", "ms"),
            "batch latency p99": (rf"batch latency.*p99 {NUM} ms", "ms"),
        },
        expect_s=(3, 60),
        needs=("redis",),
    ),
    Bench(
        "dash_tick",
        "Dashboard tick as the browser posts it. 1 client: the ASGI app in-process, Redis seeded with "
        "60 windows per device, median/p99 of N ticks per situation. Under load: python -m dashapp "
        "(uvicorn) with 20 client threads, each on its own connection watching its own device, ticking "
        "every poll interval (1 s) behind the page's client-side gate (next tick only once answered), "
        "a writer adding a window to every device every 10 s; round trip over loopback, first 3 s "
        "unmeasured; Redis reads from the server's own /metrics.",
        # Load runs: 3 s unmeasured, then ~20 ticks/s (full: ~540 ticks per device count for the p99).
        # Quick: 10 devices only; seeding and serving 100 devices is the same code, ~15 s longer.
        [PY, "-m", "bench.dash_tick", "--devices", "10", "--seconds", "6", "--rounds", "10"],
        [PY, "-m", "bench.dash_tick", "--seconds", "30"],
        from_json=_dash_figures,
        expect_s=(14, 85),
        needs=("redis",),
    ),
    Bench(
        "freshness",
        "Live pipeline on fresh topics: the flow process tailing them, python -m sources.produce iot at "
        "the rate (wall-clock event time = production time; 25k/s per producer process) plus activity "
        "100/s, 100 devices. An observer wakes on the sink's notifications (all queued ones at once; or "
        "every 25 ms) and reads Redis: latest reading = for each device, readings in (previous newest, "
        "newest] became readable now (1 ms histogram over per-device event time); alerts = now - the "
        "episode's first reading; "
        "windows (10 s, 60 s; 20 devices sampled) = now - (window end + allowed lateness). 'now' after "
        "the read returns; warm-up and the start-up backlog unmeasured; achieved rate = IoT topic growth; "
        "CPU of each process over the measured span (psutil).",
        # Quick: one rate, 10 s measured (a 10 s window closes in any 10 s span).
        [PY, "-m", "bench.bench_freshness", "--rates", "10000", "--seconds", "10", "--warmup", "2"],
        [PY, "-m", "bench.bench_freshness", "--rates", "10000,50000", "--seconds", "45"],
        from_json=_freshness_figures,
        expect_s=(17, 116),
    ),
    Bench(
        "scaling",
        "Like e2e (preloaded events, flow to the end of the topics, fresh key prefix per run): flow shape "
        "(1w/2w/2p, 3 partitions, 10 devices), partitions (2 workers) and devices (1 worker, 3 partitions), "
        "the same number of events per run; peak RSS of the flow's processes (psutil, every 0.2 s). The "
        "suite skips the shape sweep: e2e runs 1w/2w/2p with peak RSS on its larger load.",
        [
            PY,
            "-m",
            "bench.bench_scaling",
            "--events",
            "10000",
            "--shapes",
            "",
            "--partitions",
            "1,6",
            "--devices",
            "10,1000",
        ],
        # Full: 200k readings per point: at 10,000 devices (~3,000 events/s) that point alone is ~70 s.
        [PY, "-m", "bench.bench_scaling", "--events", "200000", "--shapes", ""],
        from_json=_scaling_figures,
        expect_s=(14, 190),
    ),
    Bench(
        "memory",
        "Live pipeline (as freshness) at a steady rate with the sink's retention set short "
        "(PIPELINE_SINK_RETENTION_S) so the run outlasts it; every 1 s the flow's RSS (psutil), Redis "
        "INFO used_memory and one 10 s series' ZCARD. Slopes: least squares, flow over the second half, "
        "Redis once retention plus the sliding window have passed.",
        # Quick: the start figure after the flow's start-up, past the retention span (two 10 s windows
        # kept) for its last 10 s.
        [PY, *"-m bench.bench_memory --seconds 20 --rate 2000 --retention-s 10 --warmup 5".split()],
        [PY, "-m", "bench.bench_memory", "--seconds", "600", "--rate", "10000", "--retention-s", "120"],
        from_json=_memory_figures,
        expect_s=(24, 602),
    ),
]


def _number(text: str) -> float | str:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return text.strip()


def extract(bench: Bench, output: str) -> dict[str, tuple[float | str, str]]:
    """The figures a benchmark printed."""
    figures: dict[str, tuple[float | str, str]] = {}
    for name, (pattern, unit) in bench.figures.items():
        match = re.search(pattern, output, re.MULTILINE)
        if match:
            figures[name] = (_number(match.group(1)), unit)
    if bench.from_json is not None:
        line = next((ln for ln in output.splitlines() if ln.startswith("BENCH_JSON ")), None)
        if line is not None:
            figures.update(bench.from_json(orjson.loads(line[len("BENCH_JSON ") :])))
    return figures


_PROGRESS_EVERY_S = 10.0
_SEGMENT = re.compile(rb"([^\r\n]*)([\r\n])")


def _pump(stream: Any, sink: list[str], label: str, keep: bool) -> None:
    # Lines end in \n; a progress bar (tqdm) redraws its line ending in \r. On a terminal the bar is
    # redrawn in place; elsewhere (CI logs) one redraw per _PROGRESS_EVERY_S is printed as a line.
    tty = sys.stdout.isatty()
    clear = "\r\x1b[K" if tty else ""  # wipe a bar drawn in place before a line
    pending = b""
    last_bar = 0.0
    for chunk in iter(lambda: stream.read1(65536), b""):
        pending += chunk
        consumed = 0
        for match in _SEGMENT.finditer(pending):
            consumed = match.end()
            text = match.group(1).decode(errors="replace")
            if match.group(2) == b"\r":
                if not text.strip():
                    continue
                now = time.monotonic()
                if tty:
                    print(f"\r\x1b[K  {label} | {text}", end="", flush=True)
                elif now - last_bar >= _PROGRESS_EVERY_S:
                    print(f"  {label} | {text.strip()}", flush=True)
                    last_bar = now
                continue
            if keep:
                sink.append(text)
            if not text.startswith("BENCH_JSON "):
                print(f"{clear}  {label} | {text}", flush=True)
        pending = pending[consumed:]


@dataclass
class Running:
    """A benchmark's process while it runs, with the threads echoing its output."""

    bench: Bench
    argv: list[str]
    proc: subprocess.Popen[bytes]
    started: float
    out: list[str]
    err: list[str]
    threads: list[threading.Thread]
    stop: threading.Event


def start_one(bench: Bench, argv: list[str], env: dict[str, str], tag: str, suite: Suite) -> Running:
    """Start one benchmark as a subprocess, echoing its output as it comes."""
    print(f"{tag} {bench.name}: {shlex.join(argv[1:])}", flush=True)
    suite.begin(bench.name)
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out: list[str] = []
    err: list[str] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=_pump, args=(proc.stdout, out, bench.name, True)),
        threading.Thread(target=_pump, args=(proc.stderr, err, bench.name, True)),
    ]

    def ticker() -> None:
        # A heartbeat, so a long quiet phase (a flow run) still shows progress.
        while not stop.wait(15):
            print(
                f"{tag} {bench.name}: {time.perf_counter() - started:.0f} s ...; {suite.status()}", flush=True
            )

    threads.append(threading.Thread(target=ticker, daemon=True))
    for t in threads:
        t.start()
    return Running(bench, argv, proc, started, out, err, threads, stop)


def finish_one(run: Running, tag: str, suite: Suite) -> dict[str, Any]:
    """Wait for a started benchmark; its result entry."""
    returncode = run.proc.wait()
    for t in run.threads[:2]:
        t.join()
    run.stop.set()
    seconds = time.perf_counter() - run.started
    suite.done(run.bench.name)
    figures = extract(run.bench, "\n".join(run.out))
    state = "ok" if returncode == 0 else f"FAILED (exit {returncode})"
    print(
        f"{tag} {run.bench.name}: {state} in {seconds:.0f} s, {len(figures)} figures; {suite.status()}",
        flush=True,
    )
    return {
        "name": run.bench.name,
        "method": run.bench.method,
        "command": shlex.join(["python", *run.argv[1:]]),
        "returncode": returncode,
        "seconds": round(seconds, 1),
        "figures": {name: {"value": value, "unit": unit} for name, (value, unit) in figures.items()},
        "output": run.out,
        "stderr_tail": run.err[-20:] if returncode else [],
    }


@dataclass
class Suite:
    """The suite's clock: elapsed time and, from the benchmarks' usual lengths, about how much is left."""

    chosen: list[Bench]
    full: bool
    started: float = field(default_factory=time.perf_counter)
    running: dict[str, float] = field(default_factory=dict)
    """Name -> start time of the benchmarks running now."""
    finished: set[str] = field(default_factory=set)

    def expect(self, bench: Bench) -> float:
        """About how long `bench` takes on a quiet machine in this mode."""
        return bench.expect_s[1 if self.full else 0]

    def timed(self, bench: Bench) -> bool:
        """Whether `bench` adds to the suite's length (not when it runs beside another)."""
        return bench.beside not in {b.name for b in self.chosen}

    def expected_total(self) -> float:
        """The chosen benchmarks' usual lengths, those run beside another left out."""
        return sum(self.expect(b) for b in self.chosen if self.timed(b))

    def begin(self, name: str) -> None:
        """Note that `name` started."""
        self.running[name] = time.perf_counter()

    def done(self, name: str) -> None:
        """Note that `name` finished."""
        self.running.pop(name, None)
        self.finished.add(name)

    def left(self) -> float:
        """About how many seconds are left on a quiet machine (what runs now counts its remainder)."""
        now = time.perf_counter()
        return sum(
            max(self.expect(b) - (now - self.running.get(b.name, now)), 0.0)
            for b in self.chosen
            if b.name not in self.finished and self.timed(b)
        )

    def status(self) -> str:
        """``suite 2:10, about 1:05 left on a quiet machine``."""
        elapsed = _clock(time.perf_counter() - self.started)
        return f"suite {elapsed}, about {_clock(self.left())} left on a quiet machine"


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def schedule(chosen: list[Bench]) -> list[tuple[Bench, Bench | None]]:
    """The order of the runs: each benchmark with the one that runs beside it, if any."""
    names = {b.name for b in chosen}
    hosted = {b.beside: b for b in chosen if b.beside in names}
    return [(b, hosted.get(b.name)) for b in chosen if b.beside not in names]


def run_suite(
    chosen: list[Bench], full: bool, env: dict[str, str], redis_url: str, started: float
) -> list[dict[str, Any]]:
    """Run the chosen benchmarks (each beside its host, if any); their results in the given order.

    `started` is when the suite started (perf_counter), services' start-up included.
    """
    suite = Suite(chosen, full, started)
    print(
        f"bench: {len(chosen)} benchmark(s), about {_clock(suite.expected_total())} on a quiet machine "
        "(longer under load)",
        flush=True,
    )
    results: dict[str, dict[str, Any]] = {}
    steps = schedule(chosen)
    for i, (bench, guest) in enumerate(steps, 1):
        tag = f"[{i}/{len(steps)}]"
        runs = [bench, guest] if guest is not None else [bench]
        if guest is not None:
            print(f"{tag} {guest.name} runs beside {bench.name} (its figures involve no timing)", flush=True)
        running = [start_one(b, argv_of(b, full, redis_url), env, tag, suite) for b in runs]
        for run in running:
            results[run.bench.name] = finish_one(run, tag, suite)
        if guest is not None:
            results[guest.name]["ran_beside"] = bench.name
    return [results[b.name] for b in chosen]


def services_needed(chosen: list[Bench]) -> list[str]:
    """The services the chosen benchmarks talk to, in start order (Redis is the quick one)."""
    return [name for name in ("redis", "kafka") if any(name in b.needs for b in chosen)]


def argv_of(bench: Bench, full: bool, redis_url: str) -> list[str]:
    """The command line of `bench` in this mode."""
    argv = bench.full if full else bench.quick
    if bench.name == "sink":
        argv = [*argv, "--redis-url", redis_url]
    return argv


def _fmt(value: float | str | None, unit: str) -> str:
    if isinstance(value, str):
        return value
    if value is None or value != value:  # JSON null (NaN: nothing measured)
        return "n/a"
    if unit == "ratio":
        return f"{value:.3f}"
    if unit == "" and value <= 1.5:
        return f"{value:.0%}"
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}".strip()
    return f"{value:.2f} {unit}".strip()


def markdown(result: dict[str, Any]) -> str:
    """The results as a markdown section (a table per benchmark, its method beneath)."""
    lines = [
        f"Measured {result['date']} on this machine: {result['cores']} cores ({result['machine']}), "
        f"{result['mode']} sizes (`make bench{' FULL=1' if result['mode'] == 'full' else ''}`); "
        "Kafka, Redis and the benchmark share the cores, so figures are indicative.",
        "",
    ]
    if "services_start_seconds" in result:
        before, after = result["load_average_before"][0], result["load_average_after"][0]
        lines += [
            f"The whole suite took {_clock(result['suite_seconds'])} (m:ss) of wall time, of which "
            f"{result['services_start_seconds']:.0f} s starting the services; load average "
            f"{before:.2f} before, {after:.2f} after.",
            "",
        ]
    for bench in result["benchmarks"]:
        status = "" if bench["returncode"] == 0 else f" — **failed (exit {bench['returncode']})**"
        lines += [f"### {bench['name']}{status}", "", "| figure | value |", "|---|---|"]
        for name, fig in bench["figures"].items():
            lines.append(f"| {name} | {_fmt(fig['value'], fig['unit'])} |")
        beside = f", beside {bench['ran_beside']}" if bench.get("ran_beside") else ""
        lines += [
            "",
            f"Method: {bench['method']} Command: `{bench['command']}` ({bench['seconds']} s{beside}).",
            "",
        ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="the larger sizes (e2e: 2 million IoT readings)")
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(b.name for b in BENCHES)}")
    parser.add_argument("--kafka-port", type=int, default=29092, help="the suite's broker port (29092)")
    parser.add_argument("--kafka-controller-port", type=int, default=29093, help="its controller port")
    parser.add_argument("--redis-port", type=int, default=26379, help="the suite's Redis port (26379)")
    parser.add_argument("--state-dir", default=".run/bench", help="state folder of the suite's services")
    parser.add_argument("--output", type=Path, default=RESULTS, help="folder of latest.json and latest.md")
    args = parser.parse_args()
    chosen = BENCHES
    if args.only:
        names = set(args.only.split(","))
        unknown = names - {b.name for b in BENCHES}
        if unknown:
            parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
        chosen = [b for b in BENCHES if b.name in names]

    bootstrap = f"127.0.0.1:{args.kafka_port}"
    redis_url = f"redis://127.0.0.1:{args.redis_port}/0"
    infra = LocalInfraSettings(
        kafka_bootstrap_servers=bootstrap,
        redis_url=SecretStr(redis_url),
        kafka_controller_port=args.kafka_controller_port,
        state_dir=Path(args.state_dir),
    )
    # The benchmarks are separate processes configured by the usual PIPELINE_ variables.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(
        {
            "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "PIPELINE_KAFKA_CONTROLLER_PORT": str(args.kafka_controller_port),
            "PIPELINE_REDIS_URL": redis_url,
            "PIPELINE_STATE_DIR": args.state_dir,
            "PIPELINE_LOG_LEVEL": "WARNING",
        }
    )
    print(f"bench: services on Kafka {bootstrap}, Redis {redis_url} (state {args.state_dir})", flush=True)
    suite_started = time.perf_counter()
    load_before = os.getloadavg()
    started_services: list[str] = []
    try:
        for name in services_needed(chosen):
            local.start(infra, name, started_services)
        services_s = time.perf_counter() - suite_started
        print(f"bench: services ready in {services_s:.1f} s", flush=True)
        results = run_suite(chosen, args.full, env, redis_url, suite_started)
    finally:
        for name in reversed(started_services):
            local.stop(infra, name)
    wall_s = time.perf_counter() - suite_started

    result = {
        "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "cores": os.cpu_count(),
        "machine": f"{platform.machine()}, {platform.system()} {platform.release()}, Python "
        f"{platform.python_version()}",
        "mode": "full" if args.full else "quick",
        "suite_seconds": round(wall_s, 1),
        "services_start_seconds": round(services_s, 1),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "benchmarks": results,
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "latest.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    (args.output / "latest.md").write_text(markdown(result) + "\n")
    print(
        f"bench: {len(results)} benchmark(s) in {_clock(wall_s)} wall (services {services_s:.0f} s), "
        f"load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after; wrote "
        f"{args.output / 'latest.json'} and latest.md"
    )
    return 0 if all(r["returncode"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
