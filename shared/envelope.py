"""The response envelope every JSON endpoint speaks (DESIGN.md section 2).

Handlers return ``ok(data, "Session created")`` or ``ok_list(items, count, ...)``; the types are
generic msgspec structs, so the OpenAPI of each route names the exact shape of ``data``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Generic, TypeVar

import msgspec

T = TypeVar("T")


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 UTC with a ``Z``, as every timestamp of the API is written."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def now_iso() -> str:
    return iso(utc_now())  # type: ignore[return-value]


class Envelope(msgspec.Struct, Generic[T]):
    success: bool
    message: str
    data: T
    timestamp: str


class ListEnvelope(msgspec.Struct, Generic[T]):
    success: bool
    message: str
    data: list[T]
    count: int
    timestamp: str


class ErrorEnvelope(msgspec.Struct):
    success: bool
    message: str
    error: str
    timestamp: str


def ok(data: T, message: str = "OK") -> Envelope[T]:
    return Envelope(success=True, message=message, data=data, timestamp=now_iso())


def ok_list(items: list[T], count: int, message: str = "OK") -> ListEnvelope[T]:
    return ListEnvelope(success=True, message=message, data=items, count=count, timestamp=now_iso())


def error_body(message: str, error: str) -> ErrorEnvelope:
    return ErrorEnvelope(success=False, message=message, error=error, timestamp=now_iso())
