"""Health: a cheap liveness route for probes and a health report that checks the database."""

from __future__ import annotations

import asyncio
import math
import time

import msgspec
from litestar import Response, get

from shared import db
from shared.docs import API_VERSION
from shared.envelope import Envelope, error_body, ok
from shared.errors import DatabaseUnavailable, database_fault, error_responses

_STARTED = time.monotonic()


class DatabaseHealth(msgspec.Struct):
    ok: bool
    latency_ms: float | None


class Health(msgspec.Struct):
    status: str
    database: DatabaseHealth
    version: str
    uptime_s: float


class Liveness(msgspec.Struct):
    status: str


@get("/livez", operation_id="liveness", tags=["health"], summary="Liveness (no database)")
async def liveness() -> Envelope[Liveness]:
    return ok(Liveness(status="alive"), "Alive")


@get(
    "/api/health",
    operation_id="health",
    tags=["health"],
    summary="Health, including a database round trip",
    responses=error_responses(503),
)
async def health() -> Response[Envelope[Health]]:
    return await _health_response()


@get("/readyz", include_in_schema=False)
async def readiness() -> Response[Envelope[Health]]:
    """Readiness for probes: the same check as /api/health/."""
    return await _health_response()


async def _health_response() -> Response[Envelope[Health]]:
    try:
        latency = await _ping()
    except Exception as exc:  # noqa: BLE001 - any failure to reach the database is "down"
        fault = database_fault(exc)
        error = fault.error if fault is not None else "The database is unreachable"
        return Response(error_body("Service unavailable", error), status_code=503)
    data = Health(
        status="healthy",
        database=DatabaseHealth(ok=True, latency_ms=round(latency, 2)),
        version=API_VERSION,
        uptime_s=round(time.monotonic() - _STARTED, 1),
    )
    return Response(ok(data, "Healthy"))


_PING_TTL_SECONDS = 1.0
# While a new measurement is under way, the last one still answers for this long: a health
# check never queues behind another's round trip (under load that wait was health's p99)
# unless the database has been silent for longer than both together.
_STALE_GRACE_SECONDS = 1.0
# (monotonic time, latency ms or the failure): one measurement shared for a second.
_last_ping: tuple[float, float | Exception] | None = None
_refresh: asyncio.Task[float | Exception] | None = None


async def _ping() -> float:
    """The database round trip, measured at most once a second however often health is asked.

    Probes and load balancers poll health; one shared measurement per second keeps that from
    costing a query per request. A failure is shared for that second too, so checks arriving
    while a stalled database is awaited answer at once instead of each waiting. Once the
    measurement is a second old, the next check starts a new one in the background and
    checks keep the last answer until it lands, or wait for it when that answer is over
    ``_PING_TTL_SECONDS + _STALE_GRACE_SECONDS`` old.
    """
    last = _last_ping
    age = time.monotonic() - last[0] if last is not None else math.inf
    if age >= _PING_TTL_SECONDS:
        refresh = _refreshing()
        if last is None or age >= _PING_TTL_SECONDS + _STALE_GRACE_SECONDS:
            # One caller giving up (a probe's timeout) stops nobody else's wait.
            last = (0.0, await asyncio.shield(refresh))
    result = last[1]
    if isinstance(result, Exception):
        raise result
    return result


def _refreshing() -> asyncio.Task[float | Exception]:
    """The measurement under way, started now if there is none (on this event loop)."""
    global _refresh
    loop = asyncio.get_running_loop()
    if _refresh is None or _refresh.done() or _refresh.get_loop() is not loop:
        _refresh = loop.create_task(_measure_and_keep())
    return _refresh


async def _measure_and_keep() -> float | Exception:
    global _last_ping
    result = await _measure()
    _last_ping = (time.monotonic(), result)
    return result


async def _measure() -> float | Exception:
    """One bounded round trip: its latency, or why it failed."""
    try:
        return await db.ping()
    except TimeoutError as exc:
        failure = DatabaseUnavailable("The database did not answer in time")
        failure.__cause__ = exc
        return failure
    except Exception as exc:  # noqa: BLE001 - raised to every caller sharing this measurement
        return exc
