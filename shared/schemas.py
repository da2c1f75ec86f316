"""Types more than one function speaks: the public view of a user, shared constraints."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar.params import Parameter

PositiveInt = Annotated[int, msgspec.Meta(ge=1, le=2_147_483_647)]
Skip = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
Limit = Annotated[int, msgspec.Meta(ge=1, le=100)]

# Pagination query parameters of every list endpoint: ``skip: int = SKIP, limit: int = LIMIT``.
SKIP = Parameter(default=0, ge=0, le=1_000_000, description="How many items to skip")
LIMIT = Parameter(default=50, ge=1, le=100, description="How many items to return (1..100)")


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


def public_user(row: Mapping[str, Any]) -> UserPublic:
    """From a row (asyncpg record or Piccolo dict) that has the user's columns."""
    return UserPublic(
        id=row["id"],
        username=row["username"],
        is_reviewer=row["is_reviewer"],
        reviewer_level=row["reviewer_level"],
        created_at=row["created_at"],
    )
