"""Request and response types of the users function."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from shared.schemas import UserProfile, UserPublic

Username = Annotated[str, msgspec.Meta(min_length=3, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")]
Email = Annotated[
    str,
    msgspec.Meta(
        min_length=3,
        max_length=254,
        pattern=r"^[^@\s\x00-\x1f]+@[^@\s\x00-\x1f]+\.[^@\s\x00-\x1f]+$",
    ),
]
Password = Annotated[str, msgspec.Meta(min_length=8, max_length=128)]
LoginName = Annotated[str, msgspec.Meta(min_length=1, max_length=254)]
LoginPassword = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
ReviewerLevel = Annotated[int, msgspec.Meta(ge=1, le=4)]


class UserRegister(msgspec.Struct):
    username: Username
    email: Email
    password: Password


class UserLogin(msgspec.Struct):
    """``username`` may also be the account's email."""

    username: LoginName
    password: LoginPassword


class ReviewerStatusUpdate(msgspec.Struct):
    is_reviewer: bool
    reviewer_level: ReviewerLevel | None = None


class Registered(msgspec.Struct):
    user_id: int
    user: UserProfile


class LoggedIn(msgspec.Struct):
    user: UserProfile
    token: str
    expires_at: datetime


class LoggedOut(msgspec.Struct):
    revoked: bool


__all__ = [
    "LoggedIn",
    "LoggedOut",
    "Registered",
    "ReviewerStatusUpdate",
    "UserLogin",
    "UserProfile",
    "UserPublic",
    "UserRegister",
]
