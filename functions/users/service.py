"""Accounts: registration, login and logout, the reviewer flag, the list of reviewers.

Registration and login are rate limited in PostgreSQL (``shared.rate_limit``) and hash on the
bounded password pool (``shared.auth``).
"""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import msgspec

from functions.users.schemas import LoggedIn, Registered, ReviewerStatusUpdate, UserRegister
from shared import account_store, db, review_store
from shared.auth import AuthUser, hash_password, new_token, verify_password
from shared.config import AuthSettings
from shared.envelope import utc_now
from shared.errors import Conflict, Unauthorized, Unavailable
from shared.rate_limit import RateLimiter
from shared.schemas import UserProfile, UserPublic, from_row

_WRONG_CREDENTIALS = "Invalid username or password"
_TOO_MANY_FAILURES = "Too many failed logins; try again later"
_TOO_MANY_REGISTRATIONS = "Too many registrations from this address; try again later"


async def register(data: UserRegister, address: str, settings: AuthSettings) -> Registered:
    # Cheap checks first: the per-address limit, then whether the name or email is taken;
    # only then the expensive hash (a flood of taken names never reaches the hash pool).
    limiter = RateLimiter(settings.register_window_seconds, _TOO_MANY_REGISTRATIONS)
    await limiter.reserve({f"register-addr:{address}": settings.register_max_per_address})
    username_taken, email_taken = await account_store.taken(
        data.username.lower(), data.email.lower()
    )
    if username_taken:
        raise Conflict("username: already registered")
    if email_taken:
        raise Conflict("email: already registered")
    password_hash = await hash_password(data.password, settings)
    try:
        row = await account_store.insert_user(data.username, data.email, password_hash, utc_now())
    except asyncpg.UniqueViolationError as exc:  # registered by someone else meanwhile
        field = "email" if "email" in (exc.constraint_name or "") else "username"
        raise Conflict(f"{field}: already registered") from None
    user = from_row(UserProfile, row)
    return Registered(user_id=user.id, user=user)


async def login(username: str, password: str, address: str, settings: AuthSettings) -> LoggedIn:
    """Every attempt is admitted by the limiter BEFORE the password is checked, so parallel
    guesses cannot outrun the count; a success takes its attempt back and clears the
    account's failures."""
    key = username.strip().lower()
    row = await account_store.user_for_login(key)
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
    async with db.transaction():
        await account_store.insert_token(row["id"], token_hash, now, expires_at)
        await limiter.release(attempt)
        await limiter.clear(user_key)
    return LoggedIn(user=from_row(UserProfile, row), token=token, expires_at=expires_at)


async def logout(user: AuthUser) -> bool:
    return await account_store.revoke_token(user.token_hash, utc_now())


async def me(user: AuthUser) -> UserProfile:
    return from_row(UserProfile, msgspec.structs.asdict(user))


async def set_reviewer_status(user: AuthUser, data: ReviewerStatusUpdate) -> UserProfile:
    # Off clears the level; on without a level means level 1.
    level = (data.reviewer_level or 1) if data.is_reviewer else None
    now = utc_now()
    async with db.transaction():
        row = await account_store.set_reviewer(user.id, data.is_reviewer, level, now)
        if not data.is_reviewer:
            # Reading a workspace as its reviewer needs the flag; nobody waits on a reviewer
            # who left: their open reviews go back to the pool.
            await review_store.release_reviews(user.id, now)
    return from_row(UserProfile, row)


async def reviewers(skip: int, limit: int) -> tuple[list[UserPublic], int]:
    rows, total = await account_store.reviewers(skip, limit)
    return [from_row(UserPublic, row) for row in rows], total
