"""Authentication: argon2id passwords on a bounded pool, opaque login tokens stored as hashes.

A token is 256 random bits shown to the client once; PostgreSQL keeps only its sha256, with an
expiry and a revocation time, so every replica of every function validates it with one query
and a logout revokes it everywhere. Requests carry it as the HttpOnly cookie or as
``Authorization: Bearer``; never in a URL (a terminal opened without the cookie presents a
single-use ticket instead, ``shared.tickets``).

Password hashing costs ~64 MiB and tens of milliseconds of CPU, so it runs on threads of its
own limiter (``PASSWORD_HASH_CONCURRENCY`` at once, ``PASSWORD_HASH_QUEUE`` waiting, 503
beyond): a flood of logins or registrations slows only the requests that hash, never the
file work on the default thread pool.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Awaitable, Callable, Collection
from typing import TypeVar

import anyio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from litestar.connection import ASGIConnection

from shared import account_store
from shared.config import AuthSettings, HttpSettings, Settings
from shared.errors import Forbidden, Unauthorized, Unavailable
from shared.schemas import UserProfile
from shared.web_security import cookie_request_refusal, header

T = TypeVar("T")


@functools.cache
def _hasher(settings: AuthSettings) -> tuple[PasswordHasher, str]:
    """argon2id at the configured cost, and a hash of that cost to verify against when the
    user does not exist (so both failures are equally slow)."""
    hasher = PasswordHasher(
        time_cost=settings.password_hash_time_cost,
        memory_cost=settings.password_hash_memory_kib,
        parallelism=4,
    )
    return hasher, hasher.hash("not a real password, only for timing")


class AuthUser(UserProfile, frozen=True):
    """The caller of a request: their profile, and the hash of the login token they used."""

    token_hash: str


class HashPool:
    """At most ``concurrency`` hashes at once and ``queue`` waiting; beyond that, 503 at once."""

    def __init__(self, concurrency: int, queue: int) -> None:
        self.limiter = anyio.CapacityLimiter(max(1, concurrency))
        self.bound = max(1, concurrency) + max(0, queue)
        self.pending = 0

    async def run(self, work: Callable[[], T]) -> T:
        if self.pending >= self.bound:
            raise Unavailable(
                "Too many password checks at once; try again shortly",
                headers={"Retry-After": "1"},
            )
        self.pending += 1
        try:
            return await anyio.to_thread.run_sync(work, limiter=self.limiter)
        finally:
            self.pending -= 1


@functools.cache
def hash_pool(settings: AuthSettings) -> HashPool:
    """The process's pool for these settings (created on first use, inside the event loop)."""
    return HashPool(settings.password_hash_concurrency, settings.password_hash_queue)


async def hash_password(password: str, settings: AuthSettings) -> str:
    return await hash_pool(settings).run(lambda: _hasher(settings)[0].hash(password))


async def verify_password(password_hash: str | None, password: str, settings: AuthSettings) -> bool:
    def check() -> bool:
        hasher, dummy = _hasher(settings)
        try:
            return hasher.verify(password_hash or dummy, password) and bool(password_hash)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    return await hash_pool(settings).run(check)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh opaque token and the hash that is stored."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None


def token_from_connection(connection: ASGIConnection, http: HttpSettings) -> str | None:
    """The bearer token when there is one, else the login cookie (never the URL).

    A state-changing request that the cookie would authenticate must come from an allowed
    origin (403 otherwise): another site can make a browser send the cookie, not the header.
    """
    bearer = bearer_token(header(connection.scope, b"authorization"))
    if bearer is not None:
        return bearer
    cookie = connection.cookies.get(http.cookie_name) or None
    if cookie is not None:
        refusal = cookie_request_refusal(connection.scope, http)
        if refusal is not None:
            raise Forbidden(refusal)
    return cookie


UNAUTHORIZED_MESSAGE = "A valid login token is required (cookie or Authorization: Bearer)"


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
    row = await account_store.user_by_token_hash(token_hash)
    if row is None:
        return None
    return AuthUser(**dict(row), token_hash=token_hash)


async def valid_token_hashes(token_hashes: Collection[str]) -> set[str]:
    """Those of ``token_hashes`` whose login is still live, in one query: a terminal relay
    calls it every few seconds to close the terminals of a logout."""
    if not token_hashes:
        return set()
    return await account_store.live_token_hashes(token_hashes)


def authenticator(settings: Settings) -> Callable[[ASGIConnection], Awaitable[AuthUser]]:
    """The ``user`` dependency of an app with these settings: the caller, or 401."""

    async def current_user(request: ASGIConnection) -> AuthUser:
        user = await user_for_token(token_from_connection(request, settings.http))
        if user is None:
            raise Unauthorized(UNAUTHORIZED_MESSAGE)
        return user

    return current_user
