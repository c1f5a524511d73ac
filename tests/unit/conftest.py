"""Unit tests run without services and without the caller's PIPELINE_ environment."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _no_pipeline_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PIPELINE_"):
            monkeypatch.delenv(name)
