"""Start, wait for, and stop a real Kafka broker and Redis server on loopback.

Usage::

    python -m infra.local start [kafka|redis|all]
    python -m infra.local stop [kafka|redis|all]
    python -m infra.local status
    python -m infra.local exec -- CMD ...   # start what is missing, run CMD, stop what it started

Kafka is Apache Kafka from Maven Central (``infra/kafka/pom.xml``), one KRaft
node acting as broker and controller. Redis is the system's ``redis-server``
without persistence. Ports come from ``PIPELINE_KAFKA_BOOTSTRAP_SERVERS`` and
``PIPELINE_REDIS_URL``; state, logs and pid files live under ``PIPELINE_STATE_DIR``.
A second start of a running service is detected and left alone.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from config.settings import load_settings
from infra.settings import LocalInfraSettings

ROOT = Path(__file__).resolve().parent
KAFKA_POM = ROOT / "kafka" / "pom.xml"
KAFKA_LOG4J = ROOT / "kafka" / "log4j2.xml"


class ServiceError(RuntimeError):
    """A service could not be started or stopped; the message says what to do."""


def _log(msg: str) -> None:
    print(f"[infra] {msg}", file=sys.stderr, flush=True)


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _alive(pid: int, marker: str) -> bool:
    """True if `pid` runs and its command line contains `marker` (guards against pid reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return marker.encode() in cmdline


@dataclass
class Service:
    """A background process with a pid file, a log file and a readiness probe."""

    name: str
    port: int
    workdir: Path
    marker: str

    @property
    def pidfile(self) -> Path:
        """Where the running process's pid is kept."""
        return self.workdir / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        """Where the process's output goes."""
        return self.workdir / f"{self.name}.log"

    def pid(self) -> int | None:
        """Pid of the running service, None when it is not running."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid, self.marker) else None

    def running(self) -> bool:
        """True while the service process runs."""
        return self.pid() is not None

    def launch(self, argv: Sequence[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start `argv` in its own session with output to the log file; record its pid."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.logfile.open("ab") as log:
            proc = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                env=env,
                start_new_session=True,  # our own process group: Ctrl-C of a parent doesn't half-kill it
            )
        self.pidfile.write_text(f"{proc.pid}\n")
        return proc

    def wait_ready(self, proc: subprocess.Popen[bytes], probe: Callable[[], bool], timeout_s: float) -> None:
        """Wait until `probe` passes; fail fast with the log tail if `proc` exits."""
        # Poll the child itself: right after fork its cmdline is still ours, not the service's.
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ServiceError(f"{self.name} exited during start-up; last log lines:\n{self.tail()}")
            if probe():
                return
            time.sleep(0.25)
        raise ServiceError(f"{self.name} not ready after {timeout_s:.0f}s; last log lines:\n{self.tail()}")

    def stop(self, timeout_s: float = 30.0, sig: signal.Signals = signal.SIGTERM) -> bool:
        """Send `sig` to the process group, SIGKILL after `timeout_s`; True if something was stopped.

        Fault tests pass ``sig=signal.SIGKILL`` to crash the service instead of stopping it.
        """
        pid = self.pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            return False
        _log(f"stopping {self.name} (pid {pid}) with {sig.name}")
        os.killpg(pid, sig)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _alive(pid, self.marker):
            time.sleep(0.1)
        if _alive(pid, self.marker):
            _log(f"{self.name} ignored SIGTERM for {timeout_s:.0f}s, killing it")
            os.killpg(pid, signal.SIGKILL)
            while _alive(pid, self.marker):
                time.sleep(0.05)
        self.pidfile.unlink(missing_ok=True)
        return True

    def tail(self, lines: int = 30) -> str:
        """The last lines of the log, for error messages."""
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


# --- Kafka -----------------------------------------------------------------


def _first_port(bootstrap: str) -> int:
    return int(bootstrap.split(",")[0].strip().rpartition(":")[2])


def kafka_service(s: LocalInfraSettings) -> Service:
    """The local broker described by `s`."""
    return Service(
        "kafka", _first_port(s.kafka_bootstrap_servers), s.state_dir.resolve() / "kafka", "kafka.Kafka"
    )


def kafka_jars(s: LocalInfraSettings) -> Path:
    """Folder of the broker's jars, resolved by Maven once per pom and cached."""
    digest = hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest()[:12]
    libs = s.cache_dir.expanduser() / f"kafka-{digest}"
    if (libs / ".complete").exists():
        return libs
    if shutil.which("mvn") is None:
        raise ServiceError("Maven (mvn) is needed to fetch Kafka's jars: apt-get install maven")
    _log(f"resolving Apache Kafka's jars from Maven Central into {libs} (first run only)")
    tmp = libs.with_suffix(".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [
        "mvn",
        "-q",
        "-B",
        "-f",
        str(KAFKA_POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={tmp}",
        "-DincludeScope=runtime",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ServiceError(
            f"mvn failed to fetch Kafka ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    (libs / ".complete").touch()
    return libs


def _server_properties(s: LocalInfraSettings, port: int, data_dir: Path) -> str:
    cport = s.kafka_controller_port
    return f"""\
# Written by infra/local.py: a single KRaft node (broker + controller) on loopback.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{cport}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data_dir}
num.partitions=1
auto.create.topics.enable=false
# One node: every internal topic has one replica.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=24
"""


def _kafka_ready(port: int) -> Callable[[], bool]:
    def probe() -> bool:
        from confluent_kafka.admin import AdminClient

        if not _port_open(port):  # spares librdkafka's connection-refused log spam
            return False
        bootstrap = f"127.0.0.1:{port}"
        try:
            AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000}).list_topics(timeout=2)
        except Exception:  # noqa: BLE001 - any failure just means "not yet"
            return False
        return True

    return probe


def start_kafka(s: LocalInfraSettings) -> bool:
    """Start the broker unless it runs; return True if this call started it."""
    svc = kafka_service(s)
    if svc.running():
        _log(f"kafka already running on 127.0.0.1:{svc.port} (pid {svc.pid()})")
        return False
    for port in (svc.port, s.kafka_controller_port):
        if _port_open(port):
            raise ServiceError(f"port {port} is taken by another process; set PIPELINE_KAFKA_* to free ports")
    if shutil.which("java") is None:
        raise ServiceError("Java 17+ is needed to run Kafka: apt-get install openjdk-17-jre-headless")
    libs = kafka_jars(s)
    data_dir = svc.workdir / "data"
    props = svc.workdir / "server.properties"
    svc.workdir.mkdir(parents=True, exist_ok=True)
    props.write_text(_server_properties(s, svc.port, data_dir))
    classpath = f"{libs}/*"
    if not (data_dir / "meta.properties").exists():
        cluster_id = "-"
        while cluster_id.startswith("-"):  # as Kafka's Uuid.randomUuid: a leading '-' reads as an option
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        fmt = [
            "java",
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(props),
        ]
        result = subprocess.run(fmt, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ServiceError(f"formatting Kafka's log dir failed:\n{result.stdout}\n{result.stderr}")
    _log(f"starting kafka on 127.0.0.1:{svc.port} (logs: {svc.logfile})")
    proc = svc.launch(
        [
            "java",
            f"-Xms{s.kafka_heap}",
            f"-Xmx{s.kafka_heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={KAFKA_LOG4J}",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(props),
        ]
    )
    svc.wait_ready(proc, _kafka_ready(svc.port), s.service_start_timeout_s)
    _log("kafka ready")
    return True


# --- Redis -----------------------------------------------------------------


def redis_service(s: LocalInfraSettings) -> Service:
    """The local Redis described by `s`."""
    port = urlsplit(s.redis_url.get_secret_value()).port or 6379
    return Service("redis", port, s.state_dir.resolve() / "redis", "redis-server")


def _redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        _log("redis-server missing: installing Debian's redis-server package")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=False, env=env)
        found = shutil.which("redis-server")
        if found:
            return found
    raise ServiceError("redis-server (7+) is needed: apt-get install redis-server (or brew install redis)")


def _redis_ready(url: str) -> Callable[[], bool]:
    def probe() -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    return probe


def _redis_auth_file(workdir: Path, password: str) -> Path:
    """A redis.conf (mode 0600) holding ``requirepass``."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "auth.conf"
    # Every byte hex-escaped inside quotes: any password survives Redis' config parser.
    quoted = "".join(f"\\x{b:02x}" for b in password.encode())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f'requirepass "{quoted}"\n')
    path.chmod(0o600)  # it may have existed with other permissions
    return path


def start_redis(s: LocalInfraSettings) -> bool:
    """Start Redis unless it runs; return True if this call started it."""
    svc = redis_service(s)
    if svc.running():
        _log(f"redis already running on 127.0.0.1:{svc.port} (pid {svc.pid()})")
        return False
    if _port_open(svc.port):
        raise ServiceError(
            f"port {svc.port} is taken by another process; set PIPELINE_REDIS_URL to a free port"
        )
    argv = [
        _redis_binary(),
        "--port",
        str(svc.port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--dir",
        str(svc.workdir),
    ]
    password = urlsplit(s.redis_url.get_secret_value()).password
    if password:
        # From a file only we can read, not the command line: /proc/<pid>/cmdline is
        # world-readable. Unquoted, as redis-py unquotes the URL's password.
        argv.insert(1, str(_redis_auth_file(svc.workdir, unquote(password))))
    _log(f"starting redis on 127.0.0.1:{svc.port} (logs: {svc.logfile})")
    proc = svc.launch(argv)
    svc.wait_ready(proc, _redis_ready(s.redis_url.get_secret_value()), s.service_start_timeout_s)
    _log("redis ready")
    return True


# --- CLI -------------------------------------------------------------------

STARTERS: dict[str, Callable[[LocalInfraSettings], bool]] = {"kafka": start_kafka, "redis": start_redis}
SERVICES: dict[str, Callable[[LocalInfraSettings], Service]] = {
    "kafka": kafka_service,
    "redis": redis_service,
}


def _names(which: str) -> list[str]:
    return ["redis", "kafka"] if which == "all" else [which]


def start(s: LocalInfraSettings, which: str = "all", started: list[str] | None = None) -> list[str]:
    """Start the named services; return (and append to `started`) the ones this call started."""
    started = [] if started is None else started
    for name in _names(which):
        if STARTERS[name](s):
            started.append(name)
    return started


def stop(s: LocalInfraSettings, which: str = "all", sig: signal.Signals = signal.SIGTERM) -> None:
    """Stop the named services (Kafka first: it is the slow one); `sig` SIGKILL crashes them instead."""
    for name in reversed(_names(which)):
        SERVICES[name](s).stop(sig=sig)


def status(s: LocalInfraSettings) -> dict[str, int | None]:
    """Pid of each service, None where it is not running."""
    return {name: factory(s).pid() for name, factory in SERVICES.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m infra.local", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("start", "stop"):
        p = sub.add_parser(name)
        p.add_argument("which", nargs="?", default="all", choices=["all", "kafka", "redis"])
    sub.add_parser("status")
    p = sub.add_parser("exec", help="start what is missing, run a command, stop what was started")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    s = load_settings(LocalInfraSettings)
    try:
        if args.command == "start":
            start(s, args.which)
        elif args.command == "stop":
            stop(s, args.which)
        elif args.command == "status":
            for name, pid in status(s).items():
                print(f"{name}: {f'running (pid {pid})' if pid else 'stopped'}")
        elif args.command == "exec":
            cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
            if not cmd:
                parser.error("exec needs a command after --")
            started: list[str] = []
            try:
                start(s, started=started)
                return subprocess.call(cmd)
            except KeyboardInterrupt:
                return 130
            finally:
                for name in reversed(started):
                    SERVICES[name](s).stop()
    except ServiceError as exc:
        _log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
