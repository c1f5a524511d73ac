"""Validated request parameters shared by the routes (FastAPI answers 422 with the reason otherwise).

Nothing from a request reaches a Redis key unchecked: ids and window names are
held to the key-safe alphabet here, and `sinks.layout` checks them again.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from fastapi.exceptions import RequestValidationError

from sources.models import MAX_EVENT_TIME_MS

ID_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"
WINDOW_PATTERN = r"^[0-9]{1,6}[smh]$"
MAX_LIMIT = 1000

DeviceId = Annotated[
    str, Path(pattern=ID_PATTERN, description="Device id: 1-64 of A-Z a-z 0-9 _ . -", examples=["dev-01"])
]
WindowName = Annotated[
    str, Query(pattern=WINDOW_PATTERN, description="Window series, e.g. 10s (tumbling) or 60s (sliding).")
]
StartMs = Annotated[
    int | None,
    Query(ge=0, le=MAX_EVENT_TIME_MS, description="Earliest window start, UTC epoch ms (inclusive)."),
]
EndMs = Annotated[
    int | None,
    Query(ge=0, le=MAX_EVENT_TIME_MS, description="Latest window start, UTC epoch ms (inclusive)."),
]

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Most items returned.")]


def check_range(start_ms: int | None, end_ms: int | None) -> None:
    """422 when the range is empty by construction.

    Raised as a validation error so the body has the shape the OpenAPI document
    declares for every 422 (``detail``: a list of ``{loc, msg, type}``).
    """
    if start_ms is not None and end_ms is not None and start_ms > end_ms:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("query", "start_ms"),
                    "msg": f"start_ms ({start_ms}) is after end_ms ({end_ms})",
                    "input": start_ms,
                }
            ]
        )
