"""Structured logs for every process: JSON lines in containers, readable in a terminal.

Call `configure_logging(service)` once in a process's entry point, then use
``structlog.get_logger()`` everywhere. Every line carries the same fields:
``service``, ``event``, ``level`` and ``timestamp`` (UTC ISO-8601). Standard-library
loggers (uvicorn, bytewax) are routed through the same renderer.

Level and format come from ``PIPELINE_LOG_LEVEL`` and ``PIPELINE_LOG_FORMAT``
unless the caller passes them. ``auto`` picks coloured text on a terminal and JSON
otherwise; a process runner that pipes output but shows it to a person (honcho in
``make up``) sets ``PIPELINE_LOG_FORMAT=console`` for its children.

Secrets are redacted on the way out (`redact_secrets`): values of fields named like
a password, secret or token, and the password in any ``scheme://user:password@``
URL, so logging a client config or an error that quotes a URL cannot leak one.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, Literal

import structlog
from pydantic import Field

from config.settings import PipelineSettings, load_settings

LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

REDACTED = "***"
_SECRET_NAME = re.compile(
    r"(?:^|[._-])(?:password|passwd|secret|token|api_?key|credentials?)(?:$|[._-])", re.IGNORECASE
)
_URL_PASSWORD = re.compile(
    r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/@\s]*):(?P<password>[^@/\s]+)@", re.IGNORECASE
)


def redact_secrets(
    _logger: object, _name: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """Processor: mask secret-named fields and URL passwords, in nested dicts and lists too."""
    return {key: _redact(key, value) for key, value in event_dict.items()}


def _redact(key: object, value: Any) -> Any:
    if isinstance(key, str) and _SECRET_NAME.search(key) and value is not None:
        return REDACTED
    if isinstance(value, str):
        return _URL_PASSWORD.sub(rf"\g<head>:{REDACTED}@", value)
    if isinstance(value, Mapping):
        return {k: _redact(k, v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(None, v) for v in value]
    return value


class LoggingSettings(PipelineSettings):
    """How every process logs (read by `configure_logging` when its caller passes nothing)."""

    log_level: LogLevel = Field("INFO", description="Log level: DEBUG, INFO, WARNING, ERROR or CRITICAL.")
    log_format: LogFormat = Field(
        "auto", description="Log format: json, console (text), or auto (text on a terminal, else JSON)."
    )


def configure_logging(service: str, level: str | None = None, fmt: LogFormat | None = None) -> None:
    """Route structlog and stdlib logging to stderr as JSON or human-readable text.

    Args:
        service: Name put in every line's ``service`` field.
        level: Log level; default ``PIPELINE_LOG_LEVEL``.
        fmt: ``json``, ``console`` or ``auto``; default ``PIPELINE_LOG_FORMAT``.
    """
    if level is None or fmt is None:
        configured = load_settings(LoggingSettings)
        level = configured.log_level if level is None else level
        fmt = configured.log_format if fmt is None else fmt
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: structlog.types.Processor
    if use_json:
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                # Tracebacks become text before redaction, in both formats, so a secret
                # quoted in an exception message is masked too.
                structlog.processors.format_exc_info,
                redact_secrets,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
