"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from fastapi.responses import JSONResponse

from dashapp.api.deps import RuntimeDep
from dashapp.api.models import Health
from sinks.reader import PingQuery, Unavailable

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, summary="Liveness")
async def health() -> Health:
    """The process serves requests (says nothing about Redis)."""
    return Health(status="ok")


@router.get(
    "/ready",
    response_model=Health,
    responses={503: {"model": Health, "description": "Redis is unreachable"}},
    summary="Readiness",
)
async def ready(runtime: RuntimeDep) -> Response:
    """200 when Redis answers, 503 (with the reason) when it does not."""
    result = await runtime.require_reader().read(PingQuery())
    if isinstance(result, Unavailable):
        runtime.metrics.redis_errors.labels("ready").inc()
        body = Health(status="unavailable", detail=f"Redis unavailable: {result.reason}")
        return JSONResponse(body.model_dump(), status_code=status.HTTP_503_SERVICE_UNAVAILABLE)
    return JSONResponse(Health(status="ready").model_dump())


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(runtime: RuntimeDep) -> Response:
    """Request counts and latencies, callback latency, Redis errors, live feed clients."""
    return Response(runtime.metrics.exposition(), media_type=runtime.metrics.content_type)
