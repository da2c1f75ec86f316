"""Reviews in PostgreSQL: review requests and their history (``review_requests``,
``review_history``).

The home of every query on these tables and of the rules the rest of the platform reads:
which statuses are open (``OPEN_STATUSES``), who may see a review (``visible_to``), who
reads a workspace as its reviewer (``reviewer_reads``, embedded by every query that decides
access to a workspace), and what happens to a reviewer's reviews when they stop reviewing
(``release_reviews``). The state machine itself is the reviews function's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from piccolo.columns.combination import Combinable, WhereRaw
from piccolo.query import OrderByRaw
from piccolo.querystring import QueryString

from shared import db
from shared.query import Alias, page
from shared.tables import ReviewHistory, ReviewRequest

OPEN_STATUSES = ("pending", "in_review", "requires_changes")
# Open and waiting for its reviewer (not for the submitter's changes).
AWAITING_REVIEWER = ("pending", "in_review")

COLUMNS = (
    ReviewRequest.id,
    ReviewRequest.session_id,
    ReviewRequest.title,
    ReviewRequest.description,
    ReviewRequest.priority,
    ReviewRequest.status,
    ReviewRequest.submitted_by,
    ReviewRequest.assigned_to,
    ReviewRequest.created_at,
    ReviewRequest.updated_at,
    ReviewRequest.reviewed_at,
)
HISTORY_COLUMNS = (
    ReviewHistory.id,
    ReviewHistory.review_id,
    ReviewHistory.actor_id,
    ReviewHistory.action,
    ReviewHistory.from_status,
    ReviewHistory.to_status,
    ReviewHistory.comment,
    ReviewHistory.changes,
    ReviewHistory.created_at,
)


def _sql_list(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{value}'" for value in values) + ")"


_r = Alias(ReviewRequest, "r")
_requests = Alias(ReviewRequest)  # named as Piccolo's own queries name it
_OPEN_SQL = f"{_requests.status} IN {_sql_list(OPEN_STATUSES)}"
_OPEN = WhereRaw(_OPEN_SQL)


def reviewer_reads(session: str, user: str, is_reviewer: str) -> str:
    """SQL: the user (an id expression) may read the session (an id expression) as the
    reviewer assigned to one of its open reviews; ``is_reviewer`` is their current flag."""
    return (
        f"({is_reviewer} AND EXISTS (SELECT 1 FROM {_r}\n"
        f"    WHERE {_r.session_id} = {session} AND {_r.assigned_to} = {user}\n"
        f"    AND {_r.status} IN {_sql_list(OPEN_STATUSES)}))"
    )


def visible_to(user_id: int, is_reviewer: bool) -> Combinable:
    """The reviews a user may see: those they submitted, those assigned to them (in any
    status) and, for a reviewer, the unassigned pending ones anybody may claim."""
    mine = (ReviewRequest.submitted_by == user_id) | (ReviewRequest.assigned_to == user_id)
    if not is_reviewer:
        return mine
    claimable = ReviewRequest.assigned_to.is_null() & (ReviewRequest.status == "pending")
    return mine | claimable


async def visible(
    review_id: int, user_id: int, is_reviewer: bool, *, for_update: bool = False
) -> dict[str, Any] | None:
    """The review if the user may see it (locked for this transaction with ``for_update``)."""
    query = ReviewRequest.select(*COLUMNS).where(
        (ReviewRequest.id == review_id) & visible_to(user_id, is_reviewer)
    )
    if for_update:
        query = query.lock_rows("UPDATE", of=(ReviewRequest,))
    return await query.first()


async def insert(
    session_id: UUID,
    title: str,
    description: str,
    priority: str,
    submitted_by: int,
    assigned_to: int | None,
    now: datetime,
) -> dict[str, Any]:
    """A new pending review; asyncpg's UniqueViolationError while the session has an open one."""
    review = ReviewRequest(
        session_id=session_id,
        title=title,
        description=description,
        priority=priority,
        status="pending",
        submitted_by=submitted_by,
        assigned_to=assigned_to,
        created_at=now,
        updated_at=now,
        reviewed_at=None,
    )
    rows = await ReviewRequest.insert(review).returning(*COLUMNS)
    return rows[0]


async def update(review_id: int, changes: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """Set the given fields (by column name) and ``updated_at``; the review as it is now."""
    values: dict[Any, Any] = {
        ReviewRequest._meta.get_column_by_name(name): value for name, value in changes.items()
    }
    values[ReviewRequest.updated_at] = now
    rows = await (
        ReviewRequest.update(values).where(ReviewRequest.id == review_id).returning(*COLUMNS)
    )
    return rows[0]


async def record(
    review_id: int,
    actor_id: int,
    action: str,
    changes: Mapping[str, Any],
    now: datetime,
    *,
    from_status: str | None = None,
    to_status: str | None = None,
    comment: str = "",
) -> None:
    """One history entry: ``action`` created|updated|status, ``changes`` as
    ``{field: {"from": old, "to": new}}``."""
    await ReviewHistory.insert(
        _history(review_id, actor_id, action, changes, now, from_status, to_status, comment)
    )


def _history(
    review_id: int,
    actor_id: int,
    action: str,
    changes: Mapping[str, Any],
    now: datetime,
    from_status: str | None,
    to_status: str | None,
    comment: str,
) -> ReviewHistory:
    return ReviewHistory(
        review_id=review_id,
        actor_id=actor_id,
        action=action,
        from_status=from_status,
        to_status=to_status,
        comment=comment,
        changes=json.dumps(changes),
        created_at=now,
    )


async def release_reviews(user_id: int, now: datetime) -> None:
    """A user stopped reviewing: every open review assigned to them loses its reviewer; an
    in-review one goes back to pending (someone else may claim it), the others just become
    unassigned. One history entry each. Inside the transaction that clears their flag."""
    async with db.transaction():
        held = await (
            ReviewRequest.select(ReviewRequest.id, ReviewRequest.status)
            .where((ReviewRequest.assigned_to == user_id) & _OPEN)
            .lock_rows("UPDATE")
        )
        if not held:
            return
        back = [row["id"] for row in held if row["status"] == "in_review"]
        await ReviewRequest.update(
            {ReviewRequest.assigned_to: None, ReviewRequest.updated_at: now}
        ).where(ReviewRequest.id.is_in([row["id"] for row in held]))
        if back:
            await ReviewRequest.update({ReviewRequest.status: "pending"}).where(
                ReviewRequest.id.is_in(back)
            )
        entries = []
        for row in held:
            changes: dict[str, Any] = {"assigned_to": {"from": user_id, "to": None}}
            before = row["status"]
            after = "pending" if row["id"] in back else before
            moved = after != before
            if moved:
                changes = {"status": {"from": before, "to": after}, **changes}
            entries.append(
                _history(
                    row["id"],
                    user_id,
                    "status" if moved else "updated",
                    changes,
                    now,
                    before if moved else None,
                    after if moved else None,
                    "The reviewer stopped reviewing",
                )
            )
        await ReviewHistory.insert(*entries)


async def page_visible(
    user_id: int,
    is_reviewer: bool,
    filters: Mapping[str, Any],
    skip: int,
    limit: int,
) -> tuple[list[dict[str, Any]], int]:
    """The reviews a user may see matching ``filters`` (column name -> value), newest first."""
    condition = visible_to(user_id, is_reviewer)
    for name, value in filters.items():
        condition = condition & (ReviewRequest._meta.get_column_by_name(name) == value)
    query = (
        ReviewRequest.select(*COLUMNS)
        .where(condition)
        .order_by(ReviewRequest.created_at, ReviewRequest.id, ascending=False)
    )
    return await page(query, ReviewRequest.count().where(condition), skip, limit)


async def history_page(review_id: int, skip: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """A review's history, oldest first."""
    condition = ReviewHistory.review_id == review_id
    query = (
        ReviewHistory.select(*HISTORY_COLUMNS)
        .where(condition)
        .order_by(ReviewHistory.created_at, ReviewHistory.id)
    )
    rows, total = await page(query, ReviewHistory.count().where(condition), skip, limit)
    for row in rows:
        row["changes"] = json.loads(row["changes"] or "{}")
    return rows, total


async def latest_of_session(session_id: UUID) -> dict[str, Any] | None:
    """The session's open review if it has one, else its latest."""
    return await (
        ReviewRequest.select(*COLUMNS)
        .where(ReviewRequest.session_id == session_id)
        .order_by(OrderByRaw(_OPEN_SQL), ascending=False)
        .order_by(ReviewRequest.created_at, ReviewRequest.id, ascending=False)
        .first()
    )


def _count(name: str, condition: str, *args: Any) -> QueryString:
    return QueryString(f"count(*) FILTER (WHERE {condition})", *args, alias=name)


_BY_STATUS = [
    _count(f"total_{value}", f"{_requests.status} = '{value}'")
    for value in ("pending", "in_review", "approved", "rejected", "requires_changes")
]
_MINE_OPEN = f"{_requests.submitted_by} = {{}} AND {_OPEN_SQL}"
_AWAITING_ME = (
    f"{_requests.assigned_to} = {{}} AND {_requests.status} IN {_sql_list(AWAITING_REVIEWER)}"
)


async def stats(user_id: int, is_reviewer: bool) -> dict[str, int]:
    """Counts over the reviews the user may see (``visible_to``), by status and by role."""
    counts = ReviewRequest.select(
        *_BY_STATUS,
        _count("my_pending_reviews", _MINE_OPEN, user_id),
        _count("my_assigned_reviews", _AWAITING_ME, user_id),
    )
    return await counts.where(visible_to(user_id, is_reviewer)).first()  # type: ignore[return-value]
