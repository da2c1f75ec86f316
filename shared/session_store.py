"""Sessions (= workspaces) in PostgreSQL: the ``sessions`` table.

The home of every query on it: creating within the owner's quota, listing, renaming,
deleting, marking a change (``touch``), and what the execution layer records there (the last
sync's outcome, the last time a terminal was attached).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from shared import db
from shared.envelope import utc_now
from shared.query import Alias, names, page
from shared.tables import Session

COLUMNS = (
    Session.id,
    Session.user_id,
    Session.name,
    Session.language,
    Session.is_active,
    Session.created_at,
    Session.updated_at,
)


async def create_within_quota(
    user_id: int, name: str, language: str, now: datetime, quota: int
) -> dict[str, Any] | None:
    """A new session of ``user_id``, unless they own ``quota`` already (None)."""
    async with db.transaction():
        # One creator per user at a time, so parallel creates cannot overshoot the quota;
        # the count runs after the lock, so it sees every session a concurrent create made.
        await db.lock(db.advisory_key("sessions-of", user_id))
        if await Session.count().where(Session.user_id == user_id) >= quota:
            return None
        session = Session(
            id=uuid.uuid4(),
            user_id=user_id,
            name=name,
            language=language,
            is_active=True,
            created_at=now,
            updated_at=now,
            sync_skipped="[]",
            last_synced_at=None,
        )
        rows = await Session.insert(session).returning(*COLUMNS)
    return rows[0]


async def owned_by(user_id: int, skip: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """The sessions of ``user_id``, newest first."""
    condition = Session.user_id == user_id
    query = (
        Session.select(*COLUMNS)
        .where(condition)
        .order_by(Session.created_at, ascending=False)
        .order_by(Session.id)
    )
    return await page(query, Session.count().where(condition), skip, limit)


async def update(
    session_id: UUID, name: str | None, is_active: bool | None, now: datetime
) -> dict[str, Any] | None:
    """Rename or (de)activate (None: unchanged); the session as it is now."""
    values: dict[Any, Any] = {Session.updated_at: now}
    if name is not None:
        values[Session.name] = name
    if is_active is not None:
        values[Session.is_active] = is_active
    rows = await Session.update(values).where(Session.id == session_id).returning(*COLUMNS)
    return rows[0] if rows else None


async def delete(session_id: UUID) -> None:
    """The session, and with it (by cascade) its files, reviews and tickets."""
    await Session.delete().where(Session.id == session_id)


async def touch(session_id: UUID, now: datetime) -> None:
    """Something in the workspace changed at ``now``."""
    await Session.update({Session.updated_at: now}).where(Session.id == session_id)


def touch_sql(session_id: str, now: str) -> str:
    """``touch`` as SQL, for a statement that does it along with its change (the
    arguments are SQL expressions)."""
    sessions = Alias(Session)
    changed = names(Session.updated_at)
    return f"UPDATE {sessions} SET {changed} = {now} WHERE {sessions.id} = {session_id}"


# The workspace status lists the latest conflicts only (a shell and an API writing the same
# file in a loop would otherwise grow the row without end).
KEPT_CONFLICTS = 100

_s = Alias(Session)
_RECORD_SYNC = f"""
UPDATE {_s} SET {names(Session.sync_skipped)} = $2::jsonb, {names(Session.last_synced_at)} = $3,
    {names(Session.sync_error)} = NULL, {names(Session.sync_failed_at)} = NULL,
    {names(Session.sync_conflicts)} = CASE WHEN $4::jsonb = '[]'::jsonb
        THEN {_s.sync_conflicts}
        ELSE jsonb_path_query_array(coalesce({_s.sync_conflicts}, '[]'::jsonb) || $4::jsonb,
                                    '$[last - {KEPT_CONFLICTS - 1} to last]') END
WHERE {_s.id} = $1
"""


async def record_sync(
    session_id: UUID,
    now: datetime,
    skipped: Sequence[tuple[str, str]],
    conflicts: Sequence[tuple[str, str]],
) -> None:
    """A sync from the environment worked: what it could not bring back (replacing the last
    list) and the paths it kept aside (added to the list, whose last ``KEPT_CONFLICTS``
    stay); a failure recorded earlier is cleared."""
    await db.execute(
        _RECORD_SYNC,
        session_id,
        json.dumps([{"path": p, "reason": r} for p, r in skipped]),
        now,
        json.dumps([{"path": p, "kept_as": k} for p, k in conflicts]),
    )


async def record_sync_failure(session_id: UUID, message: str, now: datetime) -> None:
    """The last sync failed: why (shown in the workspace status until one succeeds)."""
    await Session.update({Session.sync_error: message[:500], Session.sync_failed_at: now}).where(
        Session.id == session_id
    )


async def sync_state(session_id: UUID) -> dict[str, Any] | None:
    """What the workspace status shows of the last syncs; None for a deleted session."""
    row = await (
        Session.select(
            Session.sync_skipped,
            Session.last_synced_at,
            Session.sync_error,
            Session.sync_failed_at,
            Session.sync_conflicts,
        )
        .where(Session.id == session_id)
        .first()
    )
    if row is not None:
        for key in ("sync_skipped", "sync_conflicts"):
            row[key] = json.loads(row[key] or "[]")
    return row


async def mark_terminals_seen(session_ids: Sequence[UUID]) -> None:
    """These sessions have a terminal attached right now (the idle reaper of every replica
    reads it)."""
    if session_ids:
        await Session.update({Session.terminal_seen_at: utc_now()}).where(
            Session.id.is_in(list(session_ids))
        )


async def terminals_seen(session_ids: Sequence[UUID]) -> dict[UUID, datetime | None]:
    """When each of these sessions last had a terminal attached (absent: deleted)."""
    if not session_ids:
        return {}
    rows = await Session.select(Session.id, Session.terminal_seen_at).where(
        Session.id.is_in(list(session_ids))
    )
    return {row["id"]: row["terminal_seen_at"] for row in rows}
