"""Who may see and change a workspace (DESIGN.md section 3).

The owner reads and writes. A reviewer of an open review of the workspace (assigned to them,
or unassigned and pending while they are a reviewer) reads only. Everybody else gets 404, so
the existence of another user's workspace is never revealed.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

from shared import db
from shared.auth import AuthUser
from shared.errors import Forbidden, NotFound

OPEN_REVIEW_STATUSES = ("pending", "in_review", "requires_changes")


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


_ACCESS = """
SELECT s.id, s.user_id, s.name, s.language, s.is_active, s.created_at, s.updated_at,
       s.user_id = $2 AS is_owner,
       EXISTS (
           SELECT 1 FROM review_requests r
           WHERE r.session_id = s.id
             AND r.status IN ('pending', 'in_review', 'requires_changes')
             AND (r.assigned_to = $2 OR (r.assigned_to IS NULL AND r.status = 'pending' AND $3))
       ) AS can_review
FROM sessions s WHERE s.id = $1
"""

NOT_FOUND_MESSAGE = "Workspace not found"


async def session_access(session_id: UUID, user: AuthUser) -> SessionAccess | None:
    async with db.connection() as conn:
        row = await conn.fetchrow(_ACCESS, session_id, user.id, user.is_reviewer)
    return SessionAccess(**dict(row)) if row else None


async def readable_session(session_id: UUID, user: AuthUser) -> SessionAccess:
    """The workspace if the caller may read it (owner or its reviewer), else 404."""
    access = await session_access(session_id, user)
    if access is None or not (access.is_owner or access.can_review):
        raise NotFound(NOT_FOUND_MESSAGE)
    return access


async def owned_session(session_id: UUID, user: AuthUser) -> SessionAccess:
    """The workspace if the caller owns it; 403 for its reviewer (who can see it), else 404."""
    access = await session_access(session_id, user)
    if access is None or not (access.is_owner or access.can_review):
        raise NotFound(NOT_FOUND_MESSAGE)
    if not access.is_owner:
        raise Forbidden("Only the owner of this workspace may change it; reviewers read only")
    return access
