"""Who may see and change a workspace.

The owner reads and writes. The reviewer ASSIGNED to an open review of the workspace (at
submission or by claiming it) reads only, and only while they are a reviewer; an unassigned
pending review opens nothing until someone claims it. Everybody else gets 404, so the
existence of another user's workspace is never revealed.

``reviewer_reads`` is the one definition of "may read this workspace as its reviewer"; every
query that decides access (here and the workspace function's one-query file read) embeds it.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

from shared import db
from shared.auth import UNAUTHORIZED_MESSAGE, AuthUser, presented_token_hash
from shared.errors import Forbidden, NotFound, Unauthorized

OPEN_REVIEW_STATUSES = ("pending", "in_review", "requires_changes")
# The same as SQL: ('pending', 'in_review', 'requires_changes').
OPEN_REVIEW_SQL = "(" + ", ".join(f"'{status}'" for status in OPEN_REVIEW_STATUSES) + ")"


def reviewer_reads(session: str, user: str, is_reviewer: str) -> str:
    """SQL: the user (an id expression) may read the session (an id expression) as the
    reviewer assigned to one of its open reviews; ``is_reviewer`` is their current flag."""
    return (
        f"({is_reviewer} AND EXISTS (SELECT 1 FROM review_requests r "
        f"WHERE r.session_id = {session} AND r.assigned_to = {user} "
        f"AND r.status IN {OPEN_REVIEW_SQL}))"
    )


class SessionAccess(msgspec.Struct, frozen=True):
    id: UUID
    user_id: int
    name: str
    language: str
    is_active: bool
    created_at: datetime
    updated_at: datetime
    is_owner: bool
    can_review: bool


_ACCESS = f"""
SELECT s.id, s.user_id, s.name, s.language, s.is_active, s.created_at, s.updated_at,
       s.user_id = $2 AS is_owner,
       {reviewer_reads("s.id", "$2", "$3::boolean")} AS can_review
FROM sessions s WHERE s.id = $1
"""

NOT_FOUND_MESSAGE = "Workspace not found"
READ_ONLY_MESSAGE = "Only the owner of this workspace may change it; reviewers read only"


# The same, taking the workspace's advisory lock for the transaction in the same round trip
# (evaluated only when the workspace exists): writers check and lock at once.
_ACCESS_LOCKED = _ACCESS.replace(
    "SELECT s.id,", "SELECT pg_advisory_xact_lock($4) IS NULL AS locked, s.id,", 1
)


async def session_access(
    session_id: UUID, user: AuthUser, *, lock: bool = False
) -> SessionAccess | None:
    async with db.connection() as conn:
        if lock:
            key = db.advisory_key("workspace", session_id)
            row = await conn.fetchrow(_ACCESS_LOCKED, session_id, user.id, user.is_reviewer, key)
        else:
            row = await conn.fetchrow(_ACCESS, session_id, user.id, user.is_reviewer)
    if row is None:
        return None
    fields = dict(row)
    fields.pop("locked", None)
    return SessionAccess(**fields)


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


# The caller (by token hash), their access to the workspace and its advisory lock, in one
# round trip. No row: the token is not valid. The lock is taken only for a valid token.
_OWNER_BY_TOKEN_LOCKED = f"""
SELECT pg_advisory_xact_lock($3) IS NULL AS locked,
       s.id IS NOT NULL AS exists,
       coalesce(s.user_id = t.user_id, false) AS is_owner,
       coalesce({reviewer_reads("s.id", "t.user_id", "u.is_reviewer")}, false) AS can_review
FROM login_tokens t
JOIN users u ON u.id = t.user_id
LEFT JOIN sessions s ON s.id = $2
WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND t.expires_at > now()
"""


async def lock_owned_session(session_id: UUID, token: str | None) -> None:
    """``owned_session`` plus the workspace lock for the holder of ``token``, in one query.

    For the hottest write (saving a file). Inside a transaction. 401 for a missing or invalid
    token, then the same 404 / 403 rules as ``owned_session``.
    """
    token_hash = presented_token_hash(token)
    if token_hash is None:
        raise Unauthorized(UNAUTHORIZED_MESSAGE)
    key = db.advisory_key("workspace", session_id)
    async with db.connection() as conn:
        row = await conn.fetchrow(_OWNER_BY_TOKEN_LOCKED, token_hash, session_id, key)
    if row is None:
        raise Unauthorized(UNAUTHORIZED_MESSAGE)
    if not row["exists"] or not (row["is_owner"] or row["can_review"]):
        raise NotFound(NOT_FOUND_MESSAGE)
    if not row["is_owner"]:
        raise Forbidden(READ_ONLY_MESSAGE)


# Every open review assigned to $1 loses its reviewer: an in-review one goes back to pending
# (someone else may claim it), the others just become unassigned. One history row each.
_RELEASE_REVIEWS = f"""
WITH old AS (
    SELECT id, status FROM review_requests
    WHERE assigned_to = $1 AND status IN {OPEN_REVIEW_SQL} FOR UPDATE
), released AS (
    UPDATE review_requests r
    SET status = CASE WHEN old.status = 'in_review' THEN 'pending' ELSE old.status END,
        assigned_to = NULL, updated_at = $2
    FROM old WHERE r.id = old.id
    RETURNING r.id, old.status AS from_status, r.status AS to_status
)
INSERT INTO review_history (review_id, actor_id, action, from_status, to_status, comment,
                            changes, created_at)
SELECT id, $1,
       CASE WHEN from_status <> to_status THEN 'status' ELSE 'updated' END,
       CASE WHEN from_status <> to_status THEN from_status END,
       CASE WHEN from_status <> to_status THEN to_status END,
       'The reviewer stopped reviewing',
       CASE WHEN from_status <> to_status
            THEN jsonb_build_object('status', jsonb_build_object('from', from_status,
                                                                 'to', to_status))
            ELSE '{{}}'::jsonb END
       || jsonb_build_object('assigned_to', jsonb_build_object('from', $1::int, 'to', null)),
       $2
FROM released
"""


async def release_reviews(user_id: int, now: datetime) -> None:
    """A user stopped reviewing: hand back every open review assigned to them (recorded in
    each review's history). Inside the transaction that clears their reviewer flag."""
    async with db.connection() as conn:
        await conn.execute(_RELEASE_REVIEWS, user_id, now)
