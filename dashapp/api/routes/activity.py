"""Website activity: windowed counts, events/s and revenue; the purchases leaderboard."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from dashapp.api.deps import DataDep
from dashapp.api.models import ActivityOut, PageOut, Problem
from dashapp.api.params import EndMs, Limit, StartMs, WindowName, check_range
from sinks.reader import ActivityQuery, LeaderboardQuery

router = APIRouter(tags=["activity"], responses={503: {"model": Problem}})


@router.get("/activity", response_model=list[ActivityOut], summary="Activity per window")
async def activity(
    data: DataDep,
    window: WindowName = "10s",
    start_ms: StartMs = None,
    end_ms: EndMs = None,
    limit: Limit = 60,
) -> list[ActivityOut]:
    """The newest `limit` activity windows whose start is in [start_ms, end_ms], oldest first."""
    check_range(start_ms, end_ms)
    found = await data.read(ActivityQuery(window, start_ms, end_ms, limit), "api")
    return [ActivityOut.model_validate(a, from_attributes=True) for a in found]


@router.get("/leaderboard", response_model=list[PageOut], summary="Top pages by purchases")
async def leaderboard(
    data: DataDep, limit: Annotated[int, Query(ge=1, le=100, description="Most pages returned.")] = 10
) -> list[PageOut]:
    """Pages with the most purchases (all-time totals), most first."""
    found = await data.read(LeaderboardQuery(limit), "api")
    return [PageOut(rank=i, page=p.page, purchases=p.purchases) for i, p in enumerate(found, start=1)]
