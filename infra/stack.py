"""The whole local stack in one place: every process's command, needs and readiness.

Usage::

    python -m infra.stack up [--monitoring]            # make up / make up-monitoring (foreground)
    python -m infra.stack up --detach [--monitoring]   # make up-detached
    python -m infra.stack down                         # make down
    python -m infra.stack logs                         # make logs (the detached stack's output)
    python -m infra.stack exec NAME                    # one Procfile line
    python -m infra.stack init-recovery                # create the recovery partitions once
    python -m infra.stack commands | urls              # what runs, and where to look

``up`` starts Kafka and Redis unless they run (`infra.local`), creates the topics
(as ``python -m sources.topics`` does), initialises the recovery folder, then runs the
Procfile with honcho in the foreground: one prefixed, coloured stream of every
process's log. Each Procfile line is ``python -m infra.stack exec NAME``, which
waits for NAME's needs (`infra.wait`) and then becomes NAME's command, built here
from the ``PIPELINE_`` settings. Once every process answers its readiness URL,
``up`` prints the URLs. Ctrl-C (or ``down`` from another terminal) stops honcho,
which stops every process, and then the Kafka and Redis this ``up`` started.

compose.yaml runs the same commands; tests check that the two agree.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import structlog
import yaml
from confluent_kafka.admin import AdminClient

from config.logging import LoggingSettings, configure_logging
from config.settings import load_settings
from infra import local
from infra.settings import StackSettings
from infra.wait import probe_for, recovery_partitions, wait_for
from sources.topics import TopicOutcome, ensure_topics, topic_specs

ROOT = Path(__file__).resolve().parent.parent
PROCFILE = ROOT / "Procfile"
PROMETHEUS_CONFIG = ROOT / "infra" / "monitoring" / "prometheus.yml"

# argv[0] of the Python processes, as compose.yaml spells it; `exec` runs this interpreter instead.
PYTHON = "python"

log = structlog.get_logger()


class StackError(RuntimeError):
    """The stack could not be prepared; the message says what to do."""


def _no_env(_: StackSettings) -> dict[str, str]:
    return {}


@dataclass(frozen=True)
class StackProcess:
    """One long-running process of the stack (a Procfile line and a compose.yaml service)."""

    name: str
    """Procfile process name, compose.yaml service name and Prometheus target host."""
    needs: tuple[str, ...]
    """What must be ready before it starts (`infra.wait` needs)."""
    argv: Callable[[StackSettings], list[str]]
    port: Callable[[StackSettings], int]
    """Its HTTP port: readiness, and Prometheus metrics where `scraped`."""
    ready_path: str
    """HTTP path that answers 200 once the process is up."""
    env: Callable[[StackSettings], dict[str, str]] = field(default=_no_env)
    """Settings this process gets that differ from the rest of the stack."""
    scraped: bool = True
    """Prometheus scrapes its /metrics."""
    monitoring: bool = False
    """Runs only with `up --monitoring`."""

    def ready_url(self, s: StackSettings) -> str:
        """Where to ask whether the process is up."""
        return f"http://{_client_host(s, self)}:{self.port(s)}{self.ready_path}"


def _client_host(s: StackSettings, proc: StackProcess) -> str:
    # The dashboard listens on PIPELINE_DASH_HOST; a wildcard address is reached on loopback.
    if proc.name == "dashboard" and s.dash_host not in {"0.0.0.0", "::", ""}:  # noqa: S104
        return s.dash_host
    return "127.0.0.1"


def _flow_argv(s: StackSettings) -> list[str]:
    return [
        PYTHON,
        "-m",
        "bytewax.run",
        "flows.main",
        "-w",
        str(s.flow_workers),
        "-r",
        str(s.recovery_dir),
        "-s",
        str(s.snapshot_interval_s),
        "-b",
        str(s.backup_interval_s),
    ]


def monitoring_dir(s: StackSettings) -> Path:
    """Where the local Prometheus keeps its rendered config and its data."""
    return s.state_dir / "monitoring"


def _prometheus_argv(s: StackSettings) -> list[str]:
    return [
        "prometheus",
        f"--config.file={monitoring_dir(s) / 'prometheus.yml'}",
        f"--storage.tsdb.path={monitoring_dir(s) / 'data'}",
        f"--web.listen-address=127.0.0.1:{s.prometheus_port}",
        "--storage.tsdb.retention.time=1d",
    ]


PROCESSES: tuple[StackProcess, ...] = (
    StackProcess(
        "producer-iot",
        needs=("kafka", "topics"),
        argv=lambda s: [PYTHON, "-m", "sources.produce", "iot"],
        port=lambda s: s.producer_metrics_port,
        ready_path="/metrics",
        env=lambda s: {"PIPELINE_PRODUCER_METRICS_PORT": str(s.producer_metrics_port)},
    ),
    StackProcess(
        "producer-activity",
        needs=("kafka", "topics"),
        argv=lambda s: [PYTHON, "-m", "sources.produce", "activity"],
        port=lambda s: s.activity_producer_metrics_port,
        ready_path="/metrics",
        env=lambda s: {"PIPELINE_PRODUCER_METRICS_PORT": str(s.activity_producer_metrics_port)},
    ),
    StackProcess(
        "flow",
        needs=("kafka", "topics", "redis", "recovery"),
        argv=_flow_argv,
        port=lambda s: s.flow_metrics_port,
        ready_path="/metrics",
    ),
    StackProcess(
        "dashboard",
        needs=("redis",),
        argv=lambda s: [PYTHON, "-m", "dashapp"],
        port=lambda s: s.dash_port,
        ready_path="/ready",
    ),
    StackProcess(
        "prometheus",
        needs=(),
        argv=_prometheus_argv,
        port=lambda s: s.prometheus_port,
        ready_path="/-/ready",
        scraped=False,
        monitoring=True,
    ),
)
PROCESS_BY_NAME = {p.name: p for p in PROCESSES}


def processes(monitoring: bool = False) -> list[StackProcess]:
    """The processes `up` runs, in start order."""
    return [p for p in PROCESSES if monitoring or not p.monitoring]


def urls(s: StackSettings, monitoring: bool = False) -> list[tuple[str, str]]:
    """(what, URL) a person opens once the stack runs."""
    dash = PROCESS_BY_NAME["dashboard"]
    base = f"http://{_client_host(s, dash)}:{dash.port(s)}"
    out = [
        ("dashboard", f"{base}/"),
        ("API docs", f"{base}/docs"),
        ("alerts API", f"{base}/api/v1/alerts"),
        ("ready", f"{base}/ready"),
    ]
    out += [
        (f"{p.name} metrics", f"http://{_client_host(s, p)}:{p.port(s)}/metrics")
        for p in processes()
        if p.scraped
    ]
    if monitoring:
        out.append(("Prometheus", f"http://127.0.0.1:{s.prometheus_port}/targets"))
    return out


# --- preparation -------------------------------------------------------------


def init_recovery(s: StackSettings) -> bool:
    """Create PIPELINE_RECOVERY_PARTITIONS empty partitions once; True if this call created them.

    Bytewax cannot re-initialise a folder, and a different partition count than the one
    a folder was made with would lose state, so that is reported, not changed.
    """
    from bytewax.recovery import init_db_dir

    s.recovery_dir.mkdir(parents=True, exist_ok=True)
    existing = recovery_partitions(s.recovery_dir)
    if not existing:
        init_db_dir(s.recovery_dir, s.recovery_partitions)
        return True
    if len(existing) != s.recovery_partitions:
        raise StackError(
            f"{s.recovery_dir} holds {len(existing)} recovery partitions but "
            f"PIPELINE_RECOVERY_PARTITIONS={s.recovery_partitions}; set it back, or delete the folder "
            "(losing the dataflow's state) to start afresh"
        )
    return False


def render_prometheus_config(s: StackSettings, template: Path = PROMETHEUS_CONFIG) -> dict[str, Any]:
    """The compose Prometheus config with each stack target moved to loopback and its settings port."""
    config: dict[str, Any] = yaml.safe_load(template.read_text())
    for job in config.get("scrape_configs", []):
        for static in job.get("static_configs", []):
            targets = []
            for target in static["targets"]:
                host = target.rpartition(":")[0]
                proc = PROCESS_BY_NAME.get(host)
                targets.append(f"{_client_host(s, proc)}:{proc.port(s)}" if proc else target)
            static["targets"] = targets
    return config


def _write_prometheus_config(s: StackSettings) -> None:
    if shutil.which("prometheus") is None:
        raise StackError("Prometheus is needed for monitoring: apt-get install prometheus (make setup does)")
    monitoring_dir(s).mkdir(parents=True, exist_ok=True)
    (monitoring_dir(s) / "prometheus.yml").write_text(
        "# Rendered by infra/stack.py from infra/monitoring/prometheus.yml for the local stack.\n"
        + yaml.safe_dump(render_prometheus_config(s), sort_keys=False)
    )


def prepare(s: StackSettings, monitoring: bool = False, started: list[str] | None = None) -> list[str]:
    """Kafka and Redis running, topics created, recovery initialised; return what was started."""
    started = local.start(s, started=started)
    # What `python -m sources.topics` does, with these settings rather than the environment's.
    reports = ensure_topics(AdminClient(s.kafka_client_config()), topic_specs(s))
    for report in reports:
        _say(f"topic {report}")
    if any(r.outcome is TopicOutcome.MISMATCH for r in reports):
        raise StackError("a topic's partition count differs from the settings (see above)")
    if init_recovery(s):
        _say(f"initialised {s.recovery_partitions} recovery partitions in {s.recovery_dir}")
    if monitoring:
        _write_prometheus_config(s)
    return started


def child_env(s: StackSettings) -> dict[str, str]:
    """The environment of honcho and its processes."""
    env = dict(os.environ)
    # `python` in the Procfile is this interpreter (the project's .venv).
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    if load_settings(LoggingSettings).log_format == "auto":
        # Output goes through honcho's pipe, so each process would pick JSON; a person reads this.
        env["PIPELINE_LOG_FORMAT"] = "console" if sys.stdout.isatty() else "json"
    return env


# --- running -----------------------------------------------------------------


def _say(msg: str) -> None:
    print(f"stack | {msg}", flush=True)


def _pidfile(s: StackSettings) -> Path:
    return s.state_dir.resolve() / "stack" / "stack.pid"


def logfile(s: StackSettings) -> Path:
    """Output of a detached stack."""
    return s.state_dir.resolve() / "stack" / "stack.log"


def running_pid(s: StackSettings) -> int | None:
    """Pid of a running `up`, None when none runs."""
    try:
        pid = int(_pidfile(s).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if local._alive(pid, "infra.stack") else None


def _announce(s: StackSettings, monitoring: bool, since: float, stop: threading.Event) -> None:
    probes = {p.name: probe_for(p.ready_url(s), s) for p in processes(monitoring)}
    missing = wait_for(probes, s.stack_ready_timeout_s, should_stop=stop.is_set)
    if stop.is_set():
        return
    if missing:
        _say(f"not ready after {s.stack_ready_timeout_s:.0f}s: {', '.join(missing)} (see their log lines)")
        return
    _say(f"every process is ready ({time.monotonic() - since:.1f}s):")
    width = max(len(what) for what, _ in urls(s, monitoring))
    for what, url in urls(s, monitoring):
        _say(f"  {what.ljust(width)}  {url}")
    _say("Ctrl-C (or make down) stops everything")


def up(s: StackSettings, monitoring: bool = False, procfile: Path = PROCFILE) -> int:
    """Prepare, run every process under honcho until it ends, then stop what was started."""
    since = time.monotonic()
    other = running_pid(s)
    if other is not None:
        raise StackError(f"the stack already runs (pid {other}); make down stops it")
    _pidfile(s).parent.mkdir(parents=True, exist_ok=True)
    _pidfile(s).write_text(f"{os.getpid()}\n")
    started: list[str] = []
    stop_announcing = threading.Event()
    try:
        prepare(s, monitoring, started)
        names = [p.name for p in processes(monitoring)]
        # Its own process group: Ctrl-C reaches honcho once, forwarded by us, and we outlive it
        # to stop Kafka and Redis afterwards.
        honcho = subprocess.Popen(
            [sys.executable, "-m", "honcho", "-f", str(procfile), "-d", str(Path.cwd()), "start", *names],
            env=child_env(s),
            process_group=0,
        )

        def forward(signum: int, _frame: FrameType | None) -> None:
            stop_announcing.set()
            if honcho.poll() is None:
                honcho.send_signal(signum)

        signal.signal(signal.SIGINT, forward)
        signal.signal(signal.SIGTERM, forward)
        threading.Thread(target=_announce, args=(s, monitoring, since, stop_announcing), daemon=True).start()
        return honcho.wait()
    finally:
        stop_announcing.set()
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        for name in reversed(started):
            local.SERVICES[name](s).stop()
        _pidfile(s).unlink(missing_ok=True)


def up_detached(s: StackSettings, monitoring: bool = False, procfile: Path = PROCFILE) -> int:
    """Run `up` in the background (output to `logfile`); return once every process is ready."""
    pid = running_pid(s)
    if pid is not None:
        _say(f"already running (pid {pid}); make logs shows its output, make down stops it")
        return 0
    logfile(s).parent.mkdir(parents=True, exist_ok=True)
    with logfile(s).open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "infra.stack",
                "up",
                f"--procfile={procfile}",
                *(["--monitoring"] if monitoring else []),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the terminal that started it
        )
    _say(f"started in the background (pid {proc.pid}), output in {logfile(s)}")
    probes = {p.name: probe_for(p.ready_url(s), s) for p in processes(monitoring)}
    # Kafka's first start fetches its jars, so allow for preparation on top of readiness.
    missing = wait_for(
        probes,
        s.service_start_timeout_s + s.stack_ready_timeout_s,
        should_stop=lambda: proc.poll() is not None,
    )
    if proc.poll() is not None:
        _say(f"the stack stopped (exit status {proc.returncode}); last lines of {logfile(s)}:")
        print("\n".join(logfile(s).read_text(errors="replace").splitlines()[-30:]), flush=True)
        return 1
    if missing:
        _say(f"not ready yet: {', '.join(missing)}; make logs shows why, make down stops it")
        return 1
    for what, url in urls(s, monitoring):
        _say(f"  {what}: {url}")
    return 0


def down(s: StackSettings, timeout_s: float = 60.0) -> None:
    """Stop a running `up` (foreground or detached), then any Kafka and Redis left."""
    pid = running_pid(s)
    if pid is not None:
        _say(f"stopping the stack (pid {pid})")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and local._alive(pid, "infra.stack"):
            time.sleep(0.2)
        if local._alive(pid, "infra.stack"):
            raise StackError(f"the stack (pid {pid}) did not stop within {timeout_s:.0f}s")
    local.stop(s)
    _pidfile(s).unlink(missing_ok=True)


def exec_process(name: str, s: StackSettings) -> int:
    """Wait for `name`'s needs, then replace this process with its command (a Procfile line)."""
    configure_logging("stack")
    proc = PROCESS_BY_NAME[name]
    if proc.needs:
        log.info("waiting", process=name, needs=list(proc.needs))
        missing = wait_for({need: probe_for(need, s) for need in proc.needs}, s.stack_ready_timeout_s)
        if missing:
            log.error(
                "dependencies not ready", process=name, missing=missing, timeout_s=s.stack_ready_timeout_s
            )
            return 1
    argv = proc.argv(s)
    if argv[0] == PYTHON:
        argv[0] = sys.executable
    elif shutil.which(argv[0]) is None:
        log.error("command not found", process=name, command=argv[0])
        return 127
    log.info("starting", process=name, command=shlex.join(argv))
    os.execvpe(argv[0], argv, {**os.environ, **proc.env(s)})  # noqa: S606 - our own, fixed commands


def commands(s: StackSettings) -> str:
    """Every process with its needs and command, as `exec` runs them."""
    lines = []
    for p in PROCESSES:
        env = " ".join(f"{k}={v}" for k, v in p.env(s).items())
        cmd = shlex.join(p.argv(s))
        extra = " (up --monitoring)" if p.monitoring else ""
        needs = ", ".join(p.needs) or "-"
        lines.append(f"{p.name}{extra}\n  needs: {needs}\n  runs:  {f'{env} ' if env else ''}{cmd}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m infra.stack", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("up", help="run the whole stack (foreground unless --detach)")
    p.add_argument("--monitoring", action="store_true", help="also run Prometheus")
    p.add_argument("--detach", action="store_true", help="run in the background")
    p.add_argument("--procfile", type=Path, default=PROCFILE, help="honcho's Procfile (default: ./Procfile)")
    sub.add_parser("down", help="stop the stack, Kafka and Redis")
    sub.add_parser("logs", help="follow the detached stack's output")
    p = sub.add_parser("exec", help="wait for a process's needs, then run it")
    p.add_argument("name", choices=sorted(PROCESS_BY_NAME))
    sub.add_parser("init-recovery", help="create the recovery partitions unless they exist")
    sub.add_parser("commands", help="list every process and its command")
    sub.add_parser("urls", help="list the URLs of a running stack")
    args = parser.parse_args(argv)
    s = load_settings(StackSettings)
    try:
        if args.command == "up":
            if args.detach:
                return up_detached(s, args.monitoring, args.procfile)
            return up(s, args.monitoring, args.procfile)
        if args.command == "down":
            down(s)
        elif args.command == "logs":
            if not logfile(s).exists():
                raise StackError(f"no {logfile(s)} yet: make up-detached writes it")
            os.execvp("tail", ["tail", "-n", "200", "-F", str(logfile(s))])  # noqa: S606
        elif args.command == "exec":
            return exec_process(args.name, s)
        elif args.command == "init-recovery":
            created = init_recovery(s)
            state = "created" if created else "already there"
            print(
                f"[stack] {s.recovery_partitions} recovery partitions in {s.recovery_dir}: {state}",
                file=sys.stderr,
            )
        elif args.command == "commands":
            sys.stdout.write(commands(s))
        elif args.command == "urls":
            for what, url in urls(s, monitoring=True):
                print(f"{what}: {url}")
    except (StackError, local.ServiceError) as exc:
        print(f"[stack] error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C while Kafka or Redis were starting; `up` stopped what it started
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
