"""Dependencies of the API routes: the runtime, and reads that turn an unreachable Redis into a 503."""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, status
from starlette.requests import HTTPConnection

from dashapp.runtime import Runtime
from sinks.reader import Query, Unavailable

T = TypeVar("T")


def get_runtime(conn: HTTPConnection) -> Runtime:
    """The server's runtime (HTTP requests and WebSockets alike)."""
    runtime: Runtime = conn.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


class Data:
    """Reads for one request: the query's result, or HTTP 503 when Redis can't answer."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def read(self, query: Query[T], operation: str) -> T:
        """Run `query`; 503 (with the reason) if Redis is unavailable."""
        result = await self._runtime.require_reader().read(query)
        if isinstance(result, Unavailable):
            self._runtime.metrics.redis_errors.labels(operation).inc()
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"Redis unavailable: {result.reason}"
            )
        return result


def get_data(runtime: RuntimeDep) -> Data:
    """Read access for a request."""
    return Data(runtime)


DataDep = Annotated[Data, Depends(get_data)]
