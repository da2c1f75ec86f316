"""Accounts in PostgreSQL: users and their login tokens (``users``, ``login_tokens``).

The home of every query on these two tables and of the rule "a login token is live"
(``live_token``): neither revoked nor expired, checked by the database's clock, so every
replica agrees and a logout ends a login everywhere at once.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from piccolo.columns.combination import WhereRaw

from shared import db
from shared.query import Alias, page
from shared.tables import LoginToken, User

# What a user sees of themselves, and what anybody may see of a user.
PROFILE = (
    User.id,
    User.username,
    User.email,
    User.is_reviewer,
    User.reviewer_level,
    User.created_at,
    User.updated_at,
)
PUBLIC = (User.id, User.username, User.is_reviewer, User.reviewer_level, User.created_at)


def live_token(token: Alias) -> str:
    """SQL: the login token ``token`` is neither revoked nor expired."""
    return f"{token.revoked_at} IS NULL AND {token.expires_at} > now()"


_t, _u = Alias(LoginToken, "t"), Alias(User, "u")
_LIVE = WhereRaw(live_token(Alias(LoginToken)))

# Every authenticated request asks this: one indexed lookup by the token's hash.
_USER_BY_TOKEN = f"""
SELECT {_u(*PROFILE)}
FROM {_t} JOIN {_u} ON {_u.id} = {_t.user_id}
WHERE {_t.token_hash} = $1 AND {live_token(_t)}
"""


async def user_by_token_hash(token_hash: str) -> Any:
    """The profile of the user whose live login has this token hash, else None."""
    return await db.fetchrow(_USER_BY_TOKEN, token_hash)


async def live_token_hashes(token_hashes: Collection[str]) -> set[str]:
    """Those of ``token_hashes`` whose login is still live, in one query."""
    rows = await LoginToken.select(LoginToken.token_hash).where(
        WhereRaw("login_tokens.token_hash = ANY({}::text[])", list(token_hashes)), _LIVE
    )
    return {row["token_hash"] for row in rows}


async def taken(username_key: str, email_key: str) -> tuple[bool, bool]:
    """Whether the (lower-cased) username, and the email, belong to someone already."""
    rows = await User.select(User.username_key, User.email_key).where(
        (User.username_key == username_key) | (User.email_key == email_key)
    )
    return (
        any(row["username_key"] == username_key for row in rows),
        any(row["email_key"] == email_key for row in rows),
    )


async def insert_user(username: str, email: str, password_hash: str, now: datetime) -> Any:
    """A new user's profile; asyncpg's UniqueViolationError when the name or email is taken."""
    user = User(
        username=username,
        username_key=username.lower(),
        email=email,
        email_key=email.lower(),
        password_hash=password_hash,
        is_reviewer=False,
        reviewer_level=None,
        created_at=now,
        updated_at=now,
    )
    rows = await User.insert(user).returning(*PROFILE)
    return rows[0]


async def user_for_login(key: str) -> Any:
    """The profile and password hash of the user whose username, else email, is ``key``
    (lower-cased); None when nobody has it."""
    rows = await User.select(*PROFILE, User.password_hash, User.username_key).where(
        (User.username_key == key) | (User.email_key == key)
    )
    return min(rows, key=lambda row: row["username_key"] != key, default=None)


async def insert_token(user_id: int, token_hash: str, now: datetime, expires_at: datetime) -> None:
    await LoginToken.insert(
        LoginToken(
            user_id=user_id,
            token_hash=token_hash,
            created_at=now,
            expires_at=expires_at,
            revoked_at=None,
        )
    )


async def revoke_token(token_hash: str, now: datetime) -> bool:
    """End the login with this token hash; whether it was live until now."""
    rows = await (
        LoginToken.update({LoginToken.revoked_at: now})
        .where((LoginToken.token_hash == token_hash) & LoginToken.revoked_at.is_null())
        .returning(LoginToken.id)
    )
    return bool(rows)


async def set_reviewer(user_id: int, is_reviewer: bool, level: int | None, now: datetime) -> Any:
    """Turn reviewing on (with a level) or off; the user's profile."""
    rows = await (
        User.update(
            {User.is_reviewer: is_reviewer, User.reviewer_level: level, User.updated_at: now}
        )
        .where(User.id == user_id)
        .returning(*PROFILE)
    )
    return rows[0]


async def is_reviewer(user_id: int) -> bool:
    row = await User.select(User.is_reviewer).where(User.id == user_id).first()
    return bool(row and row["is_reviewer"])


async def reviewers(skip: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Every user who reviews (public view), by id."""
    condition = User.is_reviewer.eq(True)
    query = User.select(*PUBLIC).where(condition).order_by(User.id)
    return await page(query, User.count().where(condition), skip, limit)
