"""Entry point of the dataflow process: ``python -m bytewax.run flows.main``.

Builds the settings from ``PIPELINE_`` variables (start-up stops naming any
invalid one) and exposes `flow`.
"""

from __future__ import annotations

from bytewax.dataflow import Dataflow

from config.logging import configure_logging
from config.settings import load_settings
from flows.dataflow import build_flow
from flows.settings import FlowSettings


def make_flow() -> Dataflow:
    """The production dataflow, configured from the environment."""
    configure_logging("flow")
    settings = load_settings(FlowSettings)
    return build_flow(settings)


flow = make_flow()
