"""Devices: latest readings, window history and trends."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from dashapp.api.deps import DataDep
from dashapp.api.models import HistoryOut, Problem, ReadingOut, TrendOut, WindowOut
from dashapp.api.params import DeviceId, EndMs, Limit, StartMs, WindowName, check_range
from sinks.reader import LatestQuery, SeriesQuery, TrendsQuery
from sinks.records import Metric

router = APIRouter(prefix="/devices", tags=["devices"], responses={503: {"model": Problem}})


@router.get("/latest", response_model=list[ReadingOut], summary="Latest reading of every device")
async def latest_readings(data: DataDep) -> list[ReadingOut]:
    """The latest reading of every device, by device id."""
    readings = await data.read(LatestQuery(), "api")
    return [ReadingOut.model_validate(r, from_attributes=True) for r in readings.values()]


@router.get(
    "/{device_id}/latest",
    response_model=ReadingOut,
    responses={404: {"model": Problem}},
    summary="Latest reading of one device",
)
async def latest_reading(device_id: DeviceId, data: DataDep) -> ReadingOut:
    """The latest reading of `device_id`; 404 if it never reported."""
    readings = await data.read(LatestQuery(), "api")
    if device_id not in readings:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no reading of device {device_id!r}")
    return ReadingOut.model_validate(readings[device_id], from_attributes=True)


@router.get("/{device_id}/history", response_model=HistoryOut, summary="Window history of a device's metric")
async def history(
    device_id: DeviceId,
    metric: Metric,
    data: DataDep,
    window: WindowName = "10s",
    start_ms: StartMs = None,
    end_ms: EndMs = None,
    limit: Limit = 60,
) -> HistoryOut:
    """The newest `limit` windows of `metric` whose start is in [start_ms, end_ms], oldest first."""
    check_range(start_ms, end_ms)
    points = await data.read(SeriesQuery(window, device_id, metric, start_ms, end_ms, limit), "api")
    return HistoryOut(
        device_id=device_id,
        metric=metric,
        window=window,
        points=[WindowOut.model_validate(p, from_attributes=True) for p in points],
    )


@router.get("/{device_id}/trends", response_model=list[TrendOut], summary="Trends of a device's metrics")
async def trends(device_id: DeviceId, data: DataDep) -> list[TrendOut]:
    """The trend of each metric of `device_id` that has one."""
    found = await data.read(TrendsQuery((device_id,)), "api")
    return [TrendOut.model_validate(t, from_attributes=True) for t in found.values()]
