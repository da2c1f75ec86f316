"""Accounts: registration, login and logout, the reviewer flag, the list of reviewers."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from functions.users.schemas import LoggedIn, Registered, ReviewerStatusUpdate, UserRegister
from shared import db
from shared.auth import AuthUser, LoginLimiter, hash_password, new_token, verify_password
from shared.config import Settings
from shared.envelope import utc_now
from shared.errors import Conflict, Unauthorized
from shared.schemas import UserProfile, UserPublic, public_user

_PROFILE_COLUMNS = "id, username, email, is_reviewer, reviewer_level, created_at, updated_at"
_WRONG_CREDENTIALS = "Invalid username or password"


def profile(row: object) -> UserProfile:
    return UserProfile(**{key: row[key] for key in UserProfile.__struct_fields__})  # type: ignore[index]


async def register(data: UserRegister) -> Registered:
    password_hash = await hash_password(data.password)
    now = utc_now()
    try:
        async with db.connection() as conn:
            row = await conn.fetchrow(
                f"INSERT INTO users (username, username_key, email, email_key, password_hash, "
                f"is_reviewer, reviewer_level, created_at, updated_at) "
                f"VALUES ($1, $2, $3, $4, $5, false, NULL, $6, $6) RETURNING {_PROFILE_COLUMNS}",
                data.username,
                data.username.lower(),
                data.email,
                data.email.lower(),
                password_hash,
                now,
            )
    except asyncpg.UniqueViolationError as exc:
        field = "email" if "email" in (exc.constraint_name or "") else "username"
        raise Conflict(f"{field}: already registered") from None
    user = profile(row)
    return Registered(user_id=user.id, user=user)


async def login(username: str, password: str, address: str, settings: Settings) -> LoggedIn:
    limiter = LoginLimiter(
        settings.login_max_failures,
        settings.login_max_failures_per_address,
        settings.login_window_seconds,
    )
    keys = limiter.keys(username, address)
    await limiter.check(keys)
    key = username.strip().lower()
    async with db.connection() as conn:
        row = await conn.fetchrow(
            f"SELECT {_PROFILE_COLUMNS}, password_hash FROM users "
            f"WHERE username_key = $1 OR email_key = $1 ORDER BY (username_key = $1) DESC LIMIT 1",
            key,
        )
    if not await verify_password(row["password_hash"] if row else None, password):
        await limiter.record_failure(keys)
        raise Unauthorized(_WRONG_CREDENTIALS)
    token, token_hash = new_token()
    now = utc_now()
    expires_at = now + timedelta(seconds=settings.token_ttl_seconds)
    async with db.transaction(), db.connection() as conn:
        await conn.execute(
            "INSERT INTO login_tokens (user_id, token_hash, created_at, expires_at, revoked_at) "
            "VALUES ($1, $2, $3, $4, NULL)",
            row["id"],
            token_hash,
            now,
            expires_at,
        )
        await conn.execute("DELETE FROM login_failures WHERE key = $1", keys[0])
    return LoggedIn(user=profile(row), token=token, expires_at=expires_at)


async def logout(user: AuthUser) -> bool:
    async with db.connection() as conn:
        status = await conn.execute(
            "UPDATE login_tokens SET revoked_at = $2 WHERE token_hash = $1 AND revoked_at IS NULL",
            user.token_hash,
            utc_now(),
        )
    return status.endswith(" 1")


async def me(user: AuthUser) -> UserProfile:
    return profile({key: getattr(user, key) for key in UserProfile.__struct_fields__})


async def set_reviewer_status(user: AuthUser, data: ReviewerStatusUpdate) -> UserProfile:
    # Off clears the level; on without a level means level 1.
    level = (data.reviewer_level or 1) if data.is_reviewer else None
    async with db.connection() as conn:
        row = await conn.fetchrow(
            f"UPDATE users SET is_reviewer = $2, reviewer_level = $3, updated_at = $4 "
            f"WHERE id = $1 RETURNING {_PROFILE_COLUMNS}",
            user.id,
            data.is_reviewer,
            level,
            utc_now(),
        )
    return profile(row)


async def reviewers(skip: int, limit: int) -> tuple[list[UserPublic], int]:
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT id, username, is_reviewer, reviewer_level, created_at, "
            "count(*) OVER () AS total FROM users WHERE is_reviewer ORDER BY id OFFSET $1 LIMIT $2",
            skip,
            limit,
        )
        total = (
            rows[0]["total"]
            if rows
            else await conn.fetchval("SELECT count(*) FROM users WHERE is_reviewer")
        )
    return [public_user(row) for row in rows], total
