"""Alerts: the newest anomalies, filtered."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from dashapp.api.deps import DataDep
from dashapp.api.models import AlertOut, Problem
from dashapp.api.params import ID_PATTERN, Limit, StartMs
from sinks.reader import AlertsQuery
from sinks.records import Severity

router = APIRouter(prefix="/alerts", tags=["alerts"], responses={503: {"model": Problem}})


@router.get("", response_model=list[AlertOut], summary="Newest alerts")
async def alerts(
    data: DataDep,
    limit: Limit = 50,
    severity: Annotated[Severity | None, Query(description="Only this severity.")] = None,
    device_id: Annotated[str | None, Query(pattern=ID_PATTERN, description="Only this device.")] = None,
    since_ms: StartMs = None,
) -> list[AlertOut]:
    """Alerts newest first, at most `limit`, optionally of one severity or device, or since a time."""
    found = await data.read(AlertsQuery(limit, severity, device_id, since_ms), "api")
    return [AlertOut.model_validate(a, from_attributes=True) for a in found]
