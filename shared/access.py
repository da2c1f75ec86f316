"""Who may see and change a workspace.

The owner reads and writes. The reviewer ASSIGNED to an open review of the workspace (at
submission or by claiming it) reads only, and only while they are a reviewer; an unassigned
pending review opens nothing until someone claims it. Everybody else gets 404, so the
existence of another user's workspace is never revealed.

``review_store.reviewer_reads`` is the one definition of "may read this workspace as its
reviewer"; every query that decides access (here, and the one-query file read and save of
``workspace_store``) embeds it.
"""

from __future__ import annotations

from uuid import UUID

from shared import db
from shared.account_store import live_token
from shared.auth import UNAUTHORIZED_MESSAGE, AuthUser, presented_token_hash
from shared.errors import Forbidden, NotFound, Unauthorized
from shared.query import Alias
from shared.review_store import reviewer_reads
from shared.schemas import Session
from shared.tables import LoginToken, User
from shared.tables import Session as Sessions
from shared.workspace_store import lock_key


class SessionAccess(Session, frozen=True):
    """A workspace as its caller may see it, and what they may do with it."""

    is_owner: bool
    can_review: bool


NOT_FOUND_MESSAGE = "Workspace not found"
READ_ONLY_MESSAGE = "Only the owner of this workspace may change it; reviewers read only"

_s, _t, _u = Alias(Sessions, "s"), Alias(LoginToken, "t"), Alias(User, "u")
_SESSION_COLUMNS = ", ".join(getattr(_s, name) for name in Session.__struct_fields__)

_ACCESS = f"""
SELECT {_SESSION_COLUMNS},
       {_s.user_id} = $2 AS is_owner,
       {reviewer_reads(_s.id, "$2", "$3::boolean")} AS can_review
FROM {_s} WHERE {_s.id} = $1
"""

# The same, taking the workspace's advisory lock for the transaction in the same round trip
# (evaluated only when the workspace exists): writers check and lock at once.
_ACCESS_LOCKED = _ACCESS.replace(
    "SELECT ", "SELECT pg_advisory_xact_lock($4) IS NULL AS locked, ", 1
)


async def session_access(
    session_id: UUID, user: AuthUser, *, lock: bool = False
) -> SessionAccess | None:
    if lock:
        row = await db.fetchrow(
            _ACCESS_LOCKED, session_id, user.id, user.is_reviewer, lock_key(session_id)
        )
    else:
        row = await db.fetchrow(_ACCESS, session_id, user.id, user.is_reviewer)
    if row is None:
        return None
    return SessionAccess(**{name: row[name] for name in SessionAccess.__struct_fields__})


async def readable_session(session_id: UUID, user: AuthUser) -> SessionAccess:
    """The workspace if the caller may read it (owner or its reviewer), else 404."""
    access = await session_access(session_id, user)
    if access is None or not (access.is_owner or access.can_review):
        raise NotFound(NOT_FOUND_MESSAGE)
    return access


async def owned_session(session_id: UUID, user: AuthUser, *, lock: bool = False) -> SessionAccess:
    """The workspace if the caller owns it; 403 for its reviewer (who can see it), else 404.

    With ``lock`` (inside a transaction) the workspace's advisory lock is taken by the same
    query, as ``workspace_store.lock`` would.
    """
    access = await session_access(session_id, user, lock=lock)
    if access is None or not (access.is_owner or access.can_review):
        raise NotFound(NOT_FOUND_MESSAGE)
    if not access.is_owner:
        raise Forbidden(READ_ONLY_MESSAGE)
    return access


def access_by_token(token_hash: str, session_id: str) -> str:
    """SQL: the access of the holder of a login token (by its hash) to a workspace (both SQL
    expressions): one row ``(found, is_owner, can_review)`` when the token is live, none
    otherwise; ``found`` is whether the workspace exists."""
    return f"""
SELECT {_s.id} IS NOT NULL AS found,
       coalesce({_s.user_id} = {_t.user_id}, false) AS is_owner,
       coalesce({reviewer_reads(_s.id, _t.user_id, _u.is_reviewer)},
                false) AS can_review
FROM {_t}
JOIN {_u} ON {_u.id} = {_t.user_id}
LEFT JOIN {_s} ON {_s.id} = {session_id}
WHERE {_t.token_hash} = {token_hash} AND {live_token(_t)}
"""


# The same with the workspace's advisory lock, in one round trip (taken for a live token only).
_OWNER_BY_TOKEN_LOCKED = access_by_token("$1", "$2").replace(
    "SELECT ", "SELECT pg_advisory_xact_lock($3) IS NULL AS locked, ", 1
)


def check_owner(row: object) -> None:
    """401 / 404 / 403 from a row of ``access_by_token`` (None: the token is not live), with
    the same rules as ``owned_session``."""
    if row is None:
        raise Unauthorized(UNAUTHORIZED_MESSAGE)
    if not row["found"] or not (row["is_owner"] or row["can_review"]):  # type: ignore[index]
        raise NotFound(NOT_FOUND_MESSAGE)
    if not row["is_owner"]:  # type: ignore[index]
        raise Forbidden(READ_ONLY_MESSAGE)


async def lock_owned_session(session_id: UUID, token: str | None) -> None:
    """``owned_session`` plus the workspace lock for the holder of ``token``, in one query.

    Inside a transaction. 401 for a missing or invalid token, then the same 404 / 403 rules as
    ``owned_session``.
    """
    token_hash = presented_token_hash(token)
    if token_hash is None:
        raise Unauthorized(UNAUTHORIZED_MESSAGE)
    row = await db.fetchrow(_OWNER_BY_TOKEN_LOCKED, token_hash, session_id, lock_key(session_id))
    check_owner(row)
