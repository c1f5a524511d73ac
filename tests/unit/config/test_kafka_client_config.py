"""Every Kafka client the project builds gets `KafkaConnection.kafka_client_config()` (SASL/SSL pass through).

Two checks: a source scan finds every construction of a Kafka client (confluent-kafka's
Producer/Consumer/AdminClient, Bytewax's KafkaSource/KafkaSink and kafka operators) in
the project's code and requires the enclosing function to use ``kafka_client_config``;
and the clients this package builds are constructed with the security settings.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

import sinks.dlq
from config.settings import KafkaConnection
from sinks.dlq import DlqReader, replay
from sinks.settings import DlqToolSettings

ROOT = Path(__file__).resolve().parents[3]
# bench/ is left out: benchmarks talk to the local PLAINTEXT broker they measure.
PACKAGES = ("config", "sources", "flows", "sinks", "dashapp", "infra")

KAFKA_CLIENTS = {
    "confluent_kafka.Producer",
    "confluent_kafka.Consumer",
    "confluent_kafka.SerializingProducer",
    "confluent_kafka.DeserializingConsumer",
    "confluent_kafka.AdminClient",
    "confluent_kafka.admin.AdminClient",
    "confluent_kafka.aio.AIOProducer",
    "confluent_kafka.aio.AIOConsumer",
    "bytewax.connectors.kafka.KafkaSource",
    "bytewax.connectors.kafka.KafkaSink",
    "bytewax.connectors.kafka.operators.input",
    "bytewax.connectors.kafka.operators.output",
}

EXEMPT = {
    # The readiness probe of the PLAINTEXT loopback broker that infra.local itself starts.
    ("infra/local.py", "_kafka_ready.probe"),
    # Takes its config injected: ProducerSettings.producer_config, checked below to carry SASL.
    ("sources/producer.py", "EventProducer.__init__"),
    # Take their config injected: flows.dataflow.kafka_source builds it from kafka_client_config (below).
    ("flows/kafka_input.py", "KafkaPartitionReader.__init__"),
    ("flows/kafka_input.py", "KafkaInput.list_parts"),
}

SECURE = {
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_mechanism": "SCRAM-SHA-512",
    "kafka_sasl_username": "pipeline",
    "kafka_sasl_password": "s3cret-pw",
}


def _imports(tree: ast.Module) -> dict[str, str]:
    """Local name -> fully qualified name, from the module's imports."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _qualified(func: ast.expr, names: dict[str, str]) -> str | None:
    parts: list[str] = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name) or func.id not in names:
        return None
    return ".".join([names[func.id], *reversed(parts)])


def kafka_client_constructions() -> Iterator[tuple[str, str, int, bool]]:
    """(file, enclosing function, line, uses kafka_client_config) for every Kafka client built."""
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            source = path.read_text()
            tree = ast.parse(source)
            names = _imports(tree)
            yield from _visit(tree, names, source, str(path.relative_to(ROOT)), [], None)


def _visit(
    node: ast.AST, names: dict[str, str], source: str, file: str, scope: list[str], func: ast.AST | None
) -> Iterator[tuple[str, str, int, bool]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            inner = child if not isinstance(child, ast.ClassDef) else func
            yield from _visit(child, names, source, file, [*scope, child.name], inner)
            continue
        if isinstance(child, ast.Call) and _qualified(child.func, names) in KAFKA_CLIENTS:
            # The enclosing function (or the module, at top level) must build the client's config
            # from the settings: kafka_client_config() carries bootstrap servers and security.
            context = ast.get_source_segment(source, func) if func is not None else source
            yield file, ".".join(scope) or "<module>", child.lineno, "kafka_client_config" in (context or "")
        yield from _visit(child, names, source, file, scope, func)


def test_every_kafka_client_in_the_project_is_built_from_kafka_client_config():
    found = list(kafka_client_constructions())
    offenders = [
        f"{file}:{line} ({where})"
        for file, where, line, ok in found
        if not ok and (file, where) not in EXEMPT
    ]
    assert not offenders, (
        "build these Kafka clients from settings.kafka_client_config() so PIPELINE_KAFKA_SECURITY_PROTOCOL "
        f"and PIPELINE_KAFKA_SASL_* reach them: {offenders}"
    )
    # The scan must see the clients we know of, or it proves nothing.
    seen = {(file, where) for file, where, _, _ in found}
    assert {
        ("sinks/dlq.py", "DlqReader.__init__"),
        ("sinks/dlq.py", "replay"),
        ("sources/topics.py", "main"),
    } <= seen
    assert EXEMPT <= seen, "an exemption no longer matches any code: remove it"


def test_the_scan_catches_a_client_built_without_the_settings(tmp_path):
    source = (
        "from confluent_kafka import Producer as P\n"
        "import confluent_kafka.admin\n"
        "from bytewax.connectors.kafka import operators as kop\n"
        "def bad():\n"
        "    return P({'bootstrap.servers': 'x:1'})\n"
        "def also_bad(flow):\n"
        "    kop.input('in', flow, brokers=['x:1'], topics=['t'])\n"
        "    return confluent_kafka.admin.AdminClient({})\n"
        "def good(settings):\n"
        "    return P(settings.kafka_client_config())\n"
    )
    tree = ast.parse(source)
    found = list(_visit(tree, _imports(tree), source, "m.py", [], None))
    assert [(where, ok) for _, where, _, ok in found] == [
        ("bad", False),
        ("also_bad", False),
        ("also_bad", False),
        ("good", True),
    ]


def test_kafka_client_config_passes_sasl_ssl_settings_through():
    conf = KafkaConnection(**SECURE).kafka_client_config()
    assert conf["security.protocol"] == "SASL_SSL"
    assert (conf["sasl.mechanism"], conf["sasl.username"], conf["sasl.password"]) == (
        "SCRAM-SHA-512",
        "pipeline",
        "s3cret-pw",
    )


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Configs of the confluent-kafka clients sinks.dlq builds (real clients, configs recorded)."""
    configs: list[dict] = []

    def recording(cls):
        def make(conf: dict):
            configs.append(dict(conf))
            return cls(conf)

        return make

    monkeypatch.setattr(sinks.dlq, "Consumer", recording(Consumer))
    monkeypatch.setattr(sinks.dlq, "Producer", recording(Producer))
    return configs


def test_the_dlq_tools_clients_carry_the_security_settings(built):
    settings = DlqToolSettings(**SECURE, kafka_bootstrap_servers="127.0.0.1:1")
    with DlqReader(settings) as reader:
        assert replay(reader, []) == []  # builds its producer even with nothing to send
    assert len(built) == 2
    expected = settings.kafka_client_config()
    for conf in built:
        assert {k: conf[k] for k in expected} == expected


def test_producer_settings_config_carries_the_security_settings():
    from sources.settings import ProducerSettings

    conf = ProducerSettings(**SECURE).producer_config()
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (conf["sasl.username"], conf["sasl.password"]) == ("pipeline", "s3cret-pw")


def test_the_flows_kafka_input_consumers_carry_the_security_settings(monkeypatch: pytest.MonkeyPatch):
    import flows.kafka_input
    from flows.dataflow import kafka_source
    from flows.settings import FlowSettings

    configs: list[dict] = []

    def recording(conf: dict) -> Consumer:
        configs.append(dict(conf))
        return Consumer(conf)

    monkeypatch.setattr(flows.kafka_input, "Consumer", recording)
    settings = FlowSettings(**SECURE, kafka_bootstrap_servers="127.0.0.1:1")  # type: ignore[arg-type]
    kafka_source(settings).build_part("read_kafka", f"0-{settings.iot_topic}", None).close()
    expected = settings.kafka_client_config()
    [conf] = configs
    assert {k: conf[k] for k in expected} == expected
