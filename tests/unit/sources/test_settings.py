"""Producer settings: documented defaults, the issue's Kafka safety and batching, clear errors."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from config.settings import SettingsError, load_settings
from sources.settings import ProducerSettings


def test_defaults_match_the_design():
    s = ProducerSettings()
    assert (s.iot_rate, s.activity_rate, s.iot_devices) == (20.0, 50.0, 10)
    assert s.producer_count is None
    assert s.producer_metrics_port == 9101
    assert s.producer_clock == "wall"


def test_producer_config_is_idempotent_acks_all_lz4_with_16_kb_batches():
    conf = ProducerSettings(kafka_bootstrap_servers="10.0.0.1:9092,10.0.0.2:9092").producer_config()
    assert conf["bootstrap.servers"] == "10.0.0.1:9092,10.0.0.2:9092"
    assert conf["enable.idempotence"] is True
    assert conf["acks"] == "all"
    assert conf["compression.type"] == "lz4"
    assert conf["batch.size"] == 16_384
    assert conf["linger.ms"] == 10.0
    assert conf["partitioner"] == "murmur2_random"
    assert conf["message.timeout.ms"] == 120_000


def test_settings_come_from_pipeline_variables(monkeypatch):
    monkeypatch.setenv("PIPELINE_PRODUCER_METRICS_PORT", "0")
    monkeypatch.setenv("PIPELINE_IOT_DEVICES", "25")
    monkeypatch.setenv("PIPELINE_PRODUCER_COMPRESSION", "zstd")
    s = ProducerSettings()
    assert (s.producer_metrics_port, s.iot_devices, s.producer_config()["compression.type"]) == (
        0,
        25,
        "zstd",
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PIPELINE_IOT_RATE", "-5"),
        ("PIPELINE_ACTIVITY_RATE", "fast"),
        ("PIPELINE_PRODUCER_COMPRESSION", "brotli"),
        ("PIPELINE_PRODUCER_METRICS_PORT", "70000"),
        ("PIPELINE_IOT_ANOMALY_RATE", "2"),
        ("PIPELINE_PRODUCER_CLOCK", "sundial"),
        ("PIPELINE_PRODUCER_START_MS", "1700000000"),
    ],
)
def test_an_invalid_variable_stops_start_up_naming_it(monkeypatch, capsys, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError):
        load_settings(ProducerSettings)
    assert f"invalid setting {variable}=" in capsys.readouterr().err


@pytest.mark.parametrize("compression", ["none", "gzip", "snappy", "lz4", "zstd"])
@pytest.mark.parametrize("partitioner", ["murmur2_random", "consistent_random", "fnv1a_random"])
def test_librdkafka_accepts_every_allowed_choice(compression, partitioner):
    s = ProducerSettings(
        kafka_bootstrap_servers="127.0.0.1:1",
        producer_compression=compression,
        producer_partitioner=partitioner,
    )
    # Construction validates every property; no broker is contacted until something is sent.
    Producer(s.producer_config())
