"""Settings load from PIPELINE_ variables and fail naming the variable."""

from __future__ import annotations

import pytest

from config.settings import KafkaConnection, RedisConnection, SettingsError, load_settings
from infra.settings import LocalInfraSettings


def test_settings_read_pipeline_prefixed_variables(monkeypatch):
    monkeypatch.setenv("PIPELINE_KAFKA_BOOTSTRAP_SERVERS", "broker:29092")
    monkeypatch.setenv("PIPELINE_IOT_PARTITIONS", "6")
    s = load_settings(KafkaConnection)
    assert s.kafka_bootstrap_servers == "broker:29092"
    assert s.iot_partitions == 6


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PIPELINE_KAFKA_BOOTSTRAP_SERVERS", "no-port"),
        ("PIPELINE_IOT_PARTITIONS", "0"),
        ("PIPELINE_IOT_TOPIC", "bad topic!"),
        ("PIPELINE_KAFKA_SECURITY_PROTOCOL", "CARRIER_PIGEON"),
    ],
)
def test_invalid_kafka_setting_stops_startup_naming_the_variable(monkeypatch, capsys, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as err:
        load_settings(KafkaConnection)
    assert err.value.code == 2
    assert variable in capsys.readouterr().err


def test_invalid_redis_url_is_named_without_echoing_the_secret(monkeypatch, capsys):
    monkeypatch.setenv("PIPELINE_REDIS_URL", "http://:hunter2@host:6379")
    with pytest.raises(SettingsError):
        load_settings(RedisConnection)
    err = capsys.readouterr().err
    assert "PIPELINE_REDIS_URL" in err
    assert "hunter2" not in err


def test_redis_url_is_a_secret_in_repr():
    s = RedisConnection(redis_url="redis://:hunter2@127.0.0.1:6379/0")
    assert "hunter2" not in repr(s)


def test_kafka_client_config_carries_sasl_credentials():
    s = KafkaConnection(
        kafka_security_protocol="sasl_ssl",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="u",
        kafka_sasl_password="p",
    )
    assert s.kafka_client_config() == {
        "bootstrap.servers": "127.0.0.1:9092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "u",
        "sasl.password": "p",
    }


def test_local_heap_setting_rejects_a_bare_number(monkeypatch, capsys):
    monkeypatch.setenv("PIPELINE_KAFKA_HEAP", "768")
    with pytest.raises(SettingsError):
        load_settings(LocalInfraSettings)
    assert "PIPELINE_KAFKA_HEAP" in capsys.readouterr().err
