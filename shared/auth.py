"""Authentication: argon2id passwords, opaque login tokens stored as hashes, the login limiter.

A token is 256 random bits shown to the client once; PostgreSQL keeps only its sha256, with an
expiry and a revocation time, so every replica of every function validates it with one query
and a logout revokes it everywhere. Requests carry it as the HttpOnly cookie, as
``Authorization: Bearer``, or (WebSocket only) as ``?token=``.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

import anyio
import msgspec
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from litestar.connection import ASGIConnection

from shared import db
from shared.config import get_settings
from shared.envelope import utc_now
from shared.errors import RateLimited, Unauthorized

_hasher = PasswordHasher()  # argon2id with the library's RFC 9106 defaults
# Verifying against this when the user does not exist keeps both failures equally slow.
_DUMMY_HASH = _hasher.hash("not a real password, only for timing")


class AuthUser(msgspec.Struct, frozen=True):
    id: int
    username: str
    email: str
    is_reviewer: bool
    reviewer_level: int | None
    created_at: datetime
    updated_at: datetime
    token_hash: str


async def hash_password(password: str) -> str:
    return await anyio.to_thread.run_sync(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    return await anyio.to_thread.run_sync(check)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh opaque token and the hash that is stored."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


def token_from_connection(connection: ASGIConnection, allow_query: bool = False) -> str | None:
    header = connection.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    if allow_query:
        query_token = connection.query_params.get("token")
        if query_token:
            return query_token
    return connection.cookies.get(get_settings().cookie_name) or None


UNAUTHORIZED_MESSAGE = "A valid login token is required (cookie or Authorization: Bearer)"

_USER_BY_TOKEN = """
SELECT u.id, u.username, u.email, u.is_reviewer, u.reviewer_level, u.created_at, u.updated_at
FROM login_tokens t JOIN users u ON u.id = t.user_id
WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND t.expires_at > now()
"""


def presented_token_hash(token: str | None) -> str | None:
    """The hash to look a presented token up by; None when it cannot be one of ours."""
    if not token or len(token) > 512:
        return None
    return hash_token(token)


async def user_for_token(token: str | None) -> AuthUser | None:
    token_hash = presented_token_hash(token)
    if token_hash is None:
        return None
    return await user_for_token_hash(token_hash)


async def user_for_token_hash(token_hash: str) -> AuthUser | None:
    """The user of a live login, by the hash of its token."""
    async with db.connection() as conn:
        row = await conn.fetchrow(_USER_BY_TOKEN, token_hash)
    if row is None:
        return None
    return AuthUser(**dict(row), token_hash=token_hash)


async def valid_token_hashes(token_hashes: Iterable[str]) -> set[str]:
    """Which of these token hashes still belong to a live login (not revoked, not expired)."""
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT token_hash FROM login_tokens WHERE token_hash = ANY($1::text[]) "
            "AND revoked_at IS NULL AND expires_at > now()",
            list(token_hashes),
        )
    return {row["token_hash"] for row in rows}


def client_address(connection: ASGIConnection) -> str:
    """The caller's address; the first X-Forwarded-For hop when proxies are trusted."""
    if get_settings().trust_proxy_headers:
        forwarded = connection.headers.get("x-forwarded-for")
        if forwarded:
            return forwarded.split(",")[0].strip()[:64]
    return connection.client.host if connection.client else "unknown"


async def current_user(request: ASGIConnection) -> AuthUser:
    """Dependency: the authenticated caller, or 401."""
    user = await user_for_token(token_from_connection(request))
    if user is None:
        raise Unauthorized(UNAUTHORIZED_MESSAGE)
    return user


class LoginLimiter:
    """Failed logins per username and per client address, counted in PostgreSQL.

    Kept in the database so every replica sees the same count; rows older than the window
    are pruned as new failures arrive.
    """

    def __init__(self, per_user: int, per_address: int, window_seconds: int) -> None:
        self.limits = {"user": per_user, "addr": per_address}
        self.window = timedelta(seconds=window_seconds)

    @staticmethod
    def keys(username: str, address: str) -> list[str]:
        return [f"user:{username.strip().lower()[:320]}", f"addr:{address}"]

    async def check(self, keys: list[str]) -> None:
        since = utc_now() - self.window
        async with db.connection() as conn:
            rows = await conn.fetch(
                "SELECT key, count(*) AS failures, min(created_at) AS oldest FROM login_failures "
                "WHERE key = ANY($1::text[]) AND created_at > $2 GROUP BY key",
                keys,
                since,
            )
        for row in rows:
            if row["failures"] >= self.limits[row["key"].split(":", 1)[0]]:
                retry = (row["oldest"] + self.window - utc_now()).total_seconds()
                raise RateLimited(
                    "Too many failed logins; try again later", retry_after=int(retry) + 1
                )

    async def record_failure(self, keys: list[str]) -> None:
        now = utc_now()
        async with db.connection() as conn:
            await conn.execute(
                "DELETE FROM login_failures WHERE created_at < $1", now - self.window
            )
            await conn.executemany(
                "INSERT INTO login_failures (key, created_at) VALUES ($1, $2)",
                [(key, now) for key in keys],
            )
