"""Secrets never reach output: settings reprs, start-up errors and logs (JSON and console) hide them."""

from __future__ import annotations

import logging

import pytest
import structlog
from pydantic import ValidationError

from config.logging import REDACTED, configure_logging, redact_secrets
from config.settings import KafkaConnection, RedisConnection, describe_error
from infra.settings import LocalInfraSettings
from sinks.settings import DlqToolSettings, SinkSettings

REDIS_PW = "r3dis-Secret-42"
SASL_PW = "sasl-Secret-99"
SECRETS = (REDIS_PW, SASL_PW)
REDIS_URL = f"redis://:{REDIS_PW}@127.0.0.1:6379/0"
SASL = {
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_mechanism": "PLAIN",
    "kafka_sasl_username": "pipeline",
    "kafka_sasl_password": SASL_PW,
}


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


@pytest.mark.parametrize(
    "settings",
    [
        RedisConnection(redis_url=REDIS_URL),
        KafkaConnection(**SASL),
        SinkSettings(redis_url=REDIS_URL),
        DlqToolSettings(**SASL),
        LocalInfraSettings(redis_url=REDIS_URL, **SASL),
    ],
    ids=lambda s: type(s).__name__,
)
def test_settings_render_without_their_secrets(settings):
    for text in (repr(settings), str(settings), settings.model_dump_json(), f"{settings!r:}"):
        assert_no_secret(text)


def test_settings_errors_name_the_variable_without_echoing_secret_values():
    with pytest.raises(ValidationError) as url_error:
        RedisConnection(redis_url=f"http://:{REDIS_PW}@127.0.0.1:6379")
    with pytest.raises(ValidationError) as sasl_error:
        KafkaConnection(kafka_sasl_password=12345, kafka_bootstrap_servers=f"{SASL_PW}")
    url_text = describe_error(RedisConnection, url_error.value)
    sasl_text = describe_error(KafkaConnection, sasl_error.value)
    assert "PIPELINE_REDIS_URL=***" in url_text
    assert "PIPELINE_KAFKA_SASL_PASSWORD=***" in sasl_text
    assert_no_secret(url_text)
    assert "12345" not in sasl_text
    # Not a secret field: the bad bootstrap value is shown (it is what the user must fix).
    assert "PIPELINE_KAFKA_BOOTSTRAP_SERVERS" in sasl_text


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_logs_mask_secret_fields_client_configs_and_url_passwords(fmt, capsys):
    configure_logging("test", fmt=fmt)
    log = structlog.get_logger("secrets-test")
    log.info(
        "connecting",
        redis_url=REDIS_URL,
        kafka=KafkaConnection(**SASL).kafka_client_config(),
        settings=SinkSettings(redis_url=REDIS_URL),
        password=SASL_PW,
        nested={"items": [{"sasl.password": SASL_PW}, f"see {REDIS_URL}"]},
    )
    log.warning(f"could not reach {REDIS_URL}")
    logging.getLogger("stdlib").error("retrying %s", REDIS_URL)
    try:
        raise ConnectionError(f"Error connecting to {REDIS_URL}")
    except ConnectionError:
        log.exception("redis_down")
    err = capsys.readouterr().err
    assert_no_secret(err)
    assert err.count(f"redis://:{REDACTED}@127.0.0.1:6379/0") >= 4
    assert "'sasl.username': 'pipeline'" in err or '"sasl.username": "pipeline"' in err  # not over-masked


def test_redaction_masks_only_secret_names_and_url_passwords():
    out = redact_secrets(
        None,
        "info",
        {
            "event": "x",
            "db_password": "a",
            "api_key": "b",
            "access-token": "c",
            "tokens": 3,
            "bypass": "keep",
            "url": "https://user:pw@example.com/path",
            "plain_url": "redis://127.0.0.1:6379/0",
            "password_set": None,
        },
    )
    assert out == {
        "event": "x",
        "db_password": REDACTED,
        "api_key": REDACTED,
        "access-token": REDACTED,
        "tokens": 3,
        "bypass": "keep",
        "url": f"https://user:{REDACTED}@example.com/path",
        "plain_url": "redis://127.0.0.1:6379/0",
        "password_set": None,
    }
