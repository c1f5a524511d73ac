"""The pipeline's own counters."""

from __future__ import annotations

from fastapi import APIRouter

from dashapp.api.deps import DataDep
from dashapp.api.models import Problem, StatsOut
from sinks.reader import StatsQuery

router = APIRouter(tags=["pipeline"], responses={503: {"model": Problem}})


@router.get("/stats", response_model=StatsOut, summary="Pipeline counters")
async def stats(data: DataDep) -> StatsOut:
    """Events in, dead letters, late events, newest event and write times, circuit state."""
    s = await data.read(StatsQuery(), "api")
    c = s.counters
    return StatsOut(
        events_in=c.events_in,
        dead_letters=c.dead_letters,
        late_events=c.late_events,
        last_event_ms=c.last_event_ms,
        last_write_ms=s.last_write_ms,
        circuit_state=s.circuit_state,
    )
