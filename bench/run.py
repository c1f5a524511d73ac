"""The benchmark suite in one command (``make bench``): runs every benchmark, writes the results.

Starts its own Kafka broker and Redis through ``infra.local`` (own ports and state
folder, ``.run/bench`` by default, so it never touches a ``make up`` stack or the
test services) when they don't answer already, runs each benchmark of ``bench/``
as a subprocess in its quick mode (``--full``: the larger sizes), shows their
output as they go, picks the figures out of what they print, and writes

* ``bench/results/latest.json``: date, machine, every figure, the raw output;
* ``bench/results/latest.md``: the same as a markdown table with the method of each.

Services it started are stopped at the end. Each benchmark stays runnable on its own
(the command is in the results).

    .venv/bin/python -m bench.run [--full] [--only e2e,sink] [--kafka-port 29092] [--redis-port 26379]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
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


def _e2e_figures(data: dict[str, Any]) -> dict[str, tuple[float | str, str]]:
    figures: dict[str, tuple[float | str, str]] = {
        "ceiling (batch consume + orjson)": (data["ceiling_events_per_s"], "events/s"),
    }
    for run in data["runs"]:
        w = run["workers"]
        figures[f"{w} worker(s), wall"] = (run["wall_events_per_s"], "events/s")
        figures[f"{w} worker(s), from first write"] = (run["steady_events_per_s"], "events/s")
        figures[f"{w} worker(s), flow CPU time / wall time"] = (run["cpu_s"] / run["wall_s"], "x")
        figures[f"{w} worker(s), fraction of ceiling (wall)"] = (run["fraction_of_ceiling_wall"], "")
        figures[f"{w} worker(s), fraction of ceiling (from first write)"] = (
            run["fraction_of_ceiling_steady"],
            "",
        )
        if run["matches_reference"] is not None:
            figures[f"{w} worker(s), Redis equals 1-worker run"] = (
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
    }


PY = sys.executable
BENCHES = [
    Bench(
        "e2e",
        "Real dataflow process (bytewax.run flows.main, stop at end) over preloaded simulator events "
        "(IoT + 10% activity, 3 partitions) into the real Redis; wall = process start to exit, "
        "'from first write' = first Redis write to exit; Redis content of each run compared to the "
        "1-worker run; ceiling = confluent-kafka batch consumer that only orjson-decodes the same messages.",
        [PY, "-m", "bench.bench_e2e", "--iot", "200000"],
        [PY, "-m", "bench.bench_e2e", "--iot", "2000000"],
        from_json=_e2e_figures,
    ),
    Bench(
        "detection",
        "ZScoreDetector at the flow's default settings on every (device, metric) series of the IoT "
        "simulator, scored against its ground truth (truth.anomalies): an alert (episode) is true if it "
        "starts or peaks inside an injected spike/dip of the same series; recall over anomalies after "
        "warm-up; delay from the anomaly's first reading to the reading that raised the alert.",
        [PY, "-m", "bench.bench_detection", "--minutes", "60"],
        [PY, "-m", "bench.bench_detection", "--minutes", "600"],
        from_json=_detection_figures,
    ),
    Bench(
        "core",
        "IoT analytics core (flows.dataflow.build_flow) in-process through Bytewax's testing source, "
        "1 worker, against a naive per-item Bytewax flow doing the same work (results must agree).",
        [PY, "bench/bench_core.py", "--events", "100000", "--repeat", "1"],
        [PY, "bench/bench_core.py", "--events", "500000", "--repeat", "2"],
        figures={
            "core": (rf"^core:\s+{NUM} events/s wall", "events/s"),
            "naive baseline (same work)": (rf"^baseline \(same work\):\s+{NUM} events/s", "events/s"),
            "windows-only baseline": (rf"^windows-only baseline:\s+{NUM} events/s", "events/s"),
            "ratio core / baseline (wall)": (rf"ratio core/baseline: {NUM}x wall", "x"),
            "identical results": (r"^identical results \(core vs baseline\): (.*)$", ""),
        },
    ),
    Bench(
        "producer",
        "Producer on the real broker: batching + LZ4 (the pipeline's config) against produce+flush per "
        "event, same idempotent acks=all safety; events/s from first send to last acknowledgement.",
        [PY, "bench/bench_producer.py", "--quick"],
        [PY, "bench/bench_producer.py", "--events", "1000000", "--sync-events", "5000"],
        figures={
            "batched + LZ4": (rf"^\s+batched \+ LZ4 \(pipeline config\)\s+{NUM} events/s", "events/s"),
            "synchronous": (rf"^\s+synchronous.*?\s{NUM} events/s", "events/s"),
            "ratio batched / synchronous": (rf"ratio batched / synchronous\s+{NUM} x", "x"),
            "simulate + produce (CLI path)": (rf"^\s+simulate \+ produce.*?\s{NUM} events/s", "events/s"),
        },
    ),
    Bench(
        "sink",
        "Redis sink writer on the real redis-server: pipelined batches (what the flow emits when every "
        "device's windows close) against unpipelined and record-by-record writes.",
        [PY, "bench/bench_sink.py", "--batches", "100"],
        [PY, "bench/bench_sink.py", "--batches", "400", "--devices", "200"],
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
    ),
    Bench(
        "dash_tick",
        "One dashboard tick (10 devices) posted through the ASGI app in-process as the browser does, "
        "Redis seeded with 60 windows per device; median and p95 of 40 ticks per situation.",
        [PY, "-m", "bench.dash_tick"],
        [PY, "-m", "bench.dash_tick"],
        figures={
            "tick, new window (median)": (rf"^read, new window\s+server\s+{NUM} ms median", "ms"),
            "tick, new window (p95)": (rf"^read, new window.*?{NUM} ms p95", "ms"),
            "tick, nothing new (median)": (rf"^read, nothing new\s+server\s+{NUM} ms median", "ms"),
            "tick, cache hit (median)": (rf"^cache hit\s+server\s+{NUM} ms median", "ms"),
            "tick, new window, gzip bytes": (rf"^read, new window.*gzip\s+{NUM} B", "B"),
        },
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


def _pump(stream: Any, sink: list[str], label: str, keep: bool) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").rstrip("\n")
        if keep:
            sink.append(line)
        if not line.startswith("BENCH_JSON "):
            print(f"  {label} | {line}", flush=True)


def run_one(bench: Bench, argv: list[str], env: dict[str, str], index: int, count: int) -> dict[str, Any]:
    """Run one benchmark as a subprocess, echoing its output; return its result entry."""
    print(f"[{index}/{count}] {bench.name}: {' '.join(argv[1:])}", flush=True)
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out: list[str] = []
    err: list[str] = []
    pumps = [
        threading.Thread(target=_pump, args=(proc.stdout, out, bench.name, True)),
        threading.Thread(target=_pump, args=(proc.stderr, err, bench.name, True)),
    ]
    for t in pumps:
        t.start()
    stop = threading.Event()

    def ticker() -> None:
        # A heartbeat, so a long quiet phase (a flow run) still shows progress.
        while not stop.wait(15):
            print(f"[{index}/{count}] {bench.name}: {time.perf_counter() - started:.0f} s ...", flush=True)

    beat = threading.Thread(target=ticker, daemon=True)
    beat.start()
    returncode = proc.wait()
    for t in pumps:
        t.join()
    stop.set()
    seconds = time.perf_counter() - started
    output = "\n".join(out)
    figures = extract(bench, output)
    state = "ok" if returncode == 0 else f"FAILED (exit {returncode})"
    print(f"[{index}/{count}] {bench.name}: {state} in {seconds:.0f} s, {len(figures)} figures", flush=True)
    return {
        "name": bench.name,
        "method": bench.method,
        "command": " ".join(["python", *argv[1:]]),
        "returncode": returncode,
        "seconds": round(seconds, 1),
        "figures": {name: {"value": value, "unit": unit} for name, (value, unit) in figures.items()},
        "output": out,
        "stderr_tail": err[-20:] if returncode else [],
    }


def _fmt(value: float | str, unit: str) -> str:
    if isinstance(value, str):
        return value
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
    for bench in result["benchmarks"]:
        status = "" if bench["returncode"] == 0 else f" — **failed (exit {bench['returncode']})**"
        lines += [f"### {bench['name']}{status}", "", "| figure | value |", "|---|---|"]
        for name, fig in bench["figures"].items():
            lines.append(f"| {name} | {_fmt(fig['value'], fig['unit'])} |")
        lines += ["", f"Method: {bench['method']} Command: `{bench['command']}` ({bench['seconds']} s).", ""]
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
    started_services = local.start(infra)
    results = []
    suite_started = time.perf_counter()
    try:
        for i, bench in enumerate(chosen, 1):
            argv = bench.full if args.full else bench.quick
            if bench.name == "sink":
                argv = [*argv, "--redis-url", redis_url]
            results.append(run_one(bench, argv, env, i, len(chosen)))
    finally:
        for name in reversed(started_services):
            local.stop(infra, name)

    result = {
        "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "cores": os.cpu_count(),
        "machine": f"{platform.machine()}, {platform.system()} {platform.release()}, Python "
        f"{platform.python_version()}",
        "mode": "full" if args.full else "quick",
        "suite_seconds": round(time.perf_counter() - suite_started, 1),
        "benchmarks": results,
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "latest.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    (args.output / "latest.md").write_text(markdown(result) + "\n")
    print(f"bench: wrote {args.output / 'latest.json'} and latest.md in {result['suite_seconds']:.0f} s")
    return 0 if all(r["returncode"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
