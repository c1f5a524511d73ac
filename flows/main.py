"""Entry point of the dataflow process: ``python -m bytewax.run flows.main``.

Builds the settings from ``PIPELINE_`` variables (start-up stops naming any
invalid one), serves the Prometheus metrics, makes SIGTERM stop the flow the way
Ctrl-C does, and exposes `flow`. Bytewax imports this module once per process.
"""

from __future__ import annotations

import signal
from types import FrameType

import structlog
from bytewax.dataflow import Dataflow
from prometheus_client import REGISTRY, start_http_server

from config.logging import configure_logging
from config.settings import load_settings
from flows.dataflow import build_flow
from flows.metrics import FlowMetrics
from flows.settings import FlowSettings

log = structlog.get_logger()


def _stop_like_ctrl_c(signum: int, _frame: FrameType | None) -> None:
    # Bytewax stops cleanly on KeyboardInterrupt (sinks closed, buffers drained);
    # container runtimes and honcho send SIGTERM, whose default would kill us mid-batch.
    raise KeyboardInterrupt(f"signal {signum}")


def serve_metrics(settings: FlowSettings, metrics: FlowMetrics) -> None:
    """Register the flow's metrics and serve the default registry (port 0: not at all)."""
    REGISTRY.register(metrics)
    if settings.flow_metrics_port == 0:
        return
    try:
        start_http_server(settings.flow_metrics_port, addr=settings.flow_metrics_host)
    except OSError as exc:
        # Several processes on one machine need one port each; the flow itself runs on.
        log.error(
            "metrics_port_unavailable",
            port=settings.flow_metrics_port,
            error=str(exc),
            hint="give each process its own PIPELINE_FLOW_METRICS_PORT",
        )
        return
    log.info(
        "metrics_serving", url=f"http://{settings.flow_metrics_host}:{settings.flow_metrics_port}/metrics"
    )


def make_flow() -> Dataflow:
    """The production dataflow, configured from the environment."""
    configure_logging("flow")
    settings = load_settings(FlowSettings)
    signal.signal(signal.SIGTERM, _stop_like_ctrl_c)
    metrics = FlowMetrics()
    serve_metrics(settings, metrics)
    log.info(
        "flow_configured",
        topics=[settings.iot_topic, settings.activity_topic],
        start_from=settings.kafka_start_from,
        stop_at_end=settings.kafka_stop_at_end,
    )
    return build_flow(settings, metrics=metrics)


flow = make_flow()
