"""Structured logs for every process: JSON lines in containers, readable in a terminal.

Call `configure_logging(service)` once in a process's entry point, then use
``structlog.get_logger()`` everywhere. Every line carries the same fields:
``service``, ``event``, ``level`` and ``timestamp`` (UTC ISO-8601). Standard-library
loggers (uvicorn, bytewax) are routed through the same renderer.

Level and format come from ``PIPELINE_LOG_LEVEL`` and ``PIPELINE_LOG_FORMAT``
unless the caller passes them. ``auto`` picks coloured text on a terminal and JSON
otherwise; a process runner that pipes output but shows it to a person (honcho in
``make up``) sets ``PIPELINE_LOG_FORMAT=console`` for its children.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog
from pydantic import Field

from config.settings import PipelineSettings, load_settings

LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


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
                structlog.processors.format_exc_info if use_json else _identity,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)


def _identity(
    _logger: object, _name: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    return event_dict
