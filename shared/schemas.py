"""Types more than one function speaks: the public view of a user, shared constraints."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, TypeVar
from uuid import UUID

import msgspec
from litestar.params import Parameter

S = TypeVar("S", bound=msgspec.Struct)

MAX_ID = 2_147_483_647  # ids are PostgreSQL integers
PositiveInt = Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]

# Pagination query parameters of every list endpoint: ``skip: int = SKIP, limit: int = LIMIT``.
SKIP = Parameter(default=0, ge=0, le=1_000_000, description="How many items to skip")
LIMIT = Parameter(default=50, ge=1, le=100, description="How many items to return (1..100)")


def from_row(kind: type[S], row: Mapping[str, Any]) -> S:
    """The struct ``kind`` from a row (asyncpg record or Piccolo dict) holding its fields;
    other columns of the row are ignored."""
    return kind(**{name: row[name] for name in kind.__struct_fields__})


class UserPublic(msgspec.Struct):
    """What anybody may see of a user."""

    id: int
    username: str
    is_reviewer: bool
    reviewer_level: int | None
    created_at: datetime


class UserProfile(msgspec.Struct):
    """What a user sees of themselves."""

    id: int
    username: str
    email: str
    is_reviewer: bool
    reviewer_level: int | None
    created_at: datetime
    updated_at: datetime


class Session(msgspec.Struct):
    """A workspace (a session IS a workspace), as its owner and its reviewer see it."""

    id: UUID
    user_id: int
    name: str
    language: str
    is_active: bool
    created_at: datetime
    updated_at: datetime
