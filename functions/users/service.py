"""Accounts: registration, login and logout, the reviewer flag, the list of reviewers.

Registration and login are rate limited in PostgreSQL (``shared.rate_limit``) and hash on the
bounded password pool (``shared.auth``).
"""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from functions.users.schemas import LoggedIn, Registered, ReviewerStatusUpdate, UserRegister
from shared import db
from shared.access import release_reviews
from shared.auth import AuthUser, hash_password, new_token, verify_password
from shared.config import AuthSettings
from shared.envelope import utc_now
from shared.errors import Conflict, Unauthorized, Unavailable
from shared.rate_limit import RateLimiter
from shared.schemas import UserProfile, UserPublic, public_user

_PROFILE_COLUMNS = "id, username, email, is_reviewer, reviewer_level, created_at, updated_at"
_WRONG_CREDENTIALS = "Invalid username or password"
_TOO_MANY_FAILURES = "Too many failed logins; try again later"
_TOO_MANY_REGISTRATIONS = "Too many registrations from this address; try again later"


def profile(row: object) -> UserProfile:
    return UserProfile(**{key: row[key] for key in UserProfile.__struct_fields__})  # type: ignore[index]


async def register(data: UserRegister, address: str, settings: AuthSettings) -> Registered:
    # Cheap checks first: the per-address limit, then whether the name or email is taken;
    # only then the expensive hash (a flood of taken names never reaches the hash pool).
    limiter = RateLimiter(settings.register_window_seconds, _TOO_MANY_REGISTRATIONS)
    await limiter.reserve({f"register-addr:{address}": settings.register_max_per_address})
    async with db.connection() as conn:
        taken = await conn.fetchrow(
            "SELECT bool_or(username_key = $1) AS username, bool_or(email_key = $2) AS email "
            "FROM users WHERE username_key = $1 OR email_key = $2",
            data.username.lower(),
            data.email.lower(),
        )
    if taken["username"]:
        raise Conflict("username: already registered")
    if taken["email"]:
        raise Conflict("email: already registered")
    password_hash = await hash_password(data.password, settings)
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
    except asyncpg.UniqueViolationError as exc:  # registered by someone else meanwhile
        field = "email" if "email" in (exc.constraint_name or "") else "username"
        raise Conflict(f"{field}: already registered") from None
    user = profile(row)
    return Registered(user_id=user.id, user=user)


async def login(username: str, password: str, address: str, settings: AuthSettings) -> LoggedIn:
    """Every attempt is admitted by the limiter BEFORE the password is checked, so parallel
    guesses cannot outrun the count; a success takes its attempt back and clears the
    account's failures."""
    key = username.strip().lower()
    async with db.connection() as conn:
        row = await conn.fetchrow(
            f"SELECT {_PROFILE_COLUMNS}, password_hash FROM users "
            f"WHERE username_key = $1 OR email_key = $1 ORDER BY (username_key = $1) DESC LIMIT 1",
            key,
        )
    # Per account (its username and email share one count), else per name tried.
    user_key = f"login-user:{row['id']}" if row else f"login-user:{key[:320]}"
    limiter = RateLimiter(settings.login_window_seconds, _TOO_MANY_FAILURES)
    attempt = await limiter.reserve(
        {
            user_key: settings.login_max_failures,
            f"login-addr:{address}": settings.login_max_failures_per_address,
        }
    )
    try:
        verified = await verify_password(row["password_hash"] if row else None, password, settings)
    except Unavailable:
        await limiter.release(attempt)  # never evaluated: it must not count
        raise
    if not verified:
        raise Unauthorized(_WRONG_CREDENTIALS)  # the attempt stays counted as a failure
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
        await limiter.release(attempt)
        await limiter.clear(user_key)
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
    now = utc_now()
    async with db.transaction(), db.connection() as conn:
        row = await conn.fetchrow(
            f"UPDATE users SET is_reviewer = $2, reviewer_level = $3, updated_at = $4 "
            f"WHERE id = $1 RETURNING {_PROFILE_COLUMNS}",
            user.id,
            data.is_reviewer,
            level,
            now,
        )
        if not data.is_reviewer:
            # Reading a workspace as its reviewer needs the flag; nobody waits on a reviewer
            # who left: their open reviews go back to the pool.
            await release_reviews(user.id, now)
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
