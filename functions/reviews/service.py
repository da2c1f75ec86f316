"""Review requests: submitting a workspace for review, the review state machine, its history.

Decisions (DESIGN.md section 4 leaves these open; the README's review section repeats them):

- Visibility. A caller sees a review they submitted, one assigned to them (in any status), and,
  when they are a reviewer, any unassigned pending review. Everything else is 404, at every
  endpoint, so another user's reviews are never revealed. Seeing a review is not reading its
  workspace: only the reviewer assigned to an open review reads the files (``shared.access``),
  so an unassigned pending review is metadata until a reviewer claims it.
- Leaving. A reviewer who turns reviewer status off hands back every open review assigned to
  them (the users function does it, through ``shared.access.release_reviews``): in_review
  goes back to pending, and all of them become unassigned, each recorded in the history.
- State machine. The only transitions are::

      pending ---------> in_review          the assigned reviewer, or any reviewer claiming an
                                            unassigned review (which assigns it to them)
      in_review -------> approved | rejected | requires_changes    its assigned reviewer
      requires_changes -> pending           the submitter (resubmits; the reviewer stays)

  Any other (from, to) pair is 409, whoever asks. A valid transition asked for by the wrong
  party is 403 (e.g. a reviewer claiming their own submission, the submitter approving).
  ``reviewed_at`` records the latest decision (approved, rejected or requires_changes) and is
  kept when the submitter resubmits.
- Editing (PUT /{id}) is the submitter's while the review is open. ``assigned_to`` must be a
  reviewer other than the submitter (400 naming the field); an in-review review can be handed to
  another reviewer but not unassigned (409), since nobody else could then finish it. A PUT that
  changes nothing records nothing.
- History. Creation, every effective edit and every status change add one ``review_history``
  row in the same transaction as the change: ``action`` created|updated|status, the statuses
  (set on created and status entries), the comment, and ``changes`` as
  ``{field: {"from": old, "to": new}}``.
- Per-session status. It needs read access to the workspace (its owner or its assigned
  reviewer). ``isReviewer`` says whether the caller reads it as the reviewer of its open review;
  ``canSubmitForReview`` whether the caller owns the session and it has no open review.
- Stats cover the reviews the caller may see (the visibility rule above).
  ``my_pending_reviews`` counts the caller's own submissions that are still open (pending,
  in_review or requires_changes); ``my_assigned_reviews`` the reviews assigned to the caller
  that wait for the caller (pending or in_review).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from functions.reviews.schemas import (
    HistoryEntry,
    Review,
    ReviewCreate,
    ReviewStats,
    ReviewUpdate,
    SessionReviewStatus,
    StatusChange,
)
from shared import db
from shared.access import OPEN_REVIEW_SQL, OPEN_REVIEW_STATUSES, owned_session, readable_session
from shared.auth import AuthUser
from shared.envelope import utc_now
from shared.errors import BadRequest, Conflict, Forbidden, NotFound

NOT_FOUND_MESSAGE = "Review not found"
CLOSED_STATUSES = ("approved", "rejected")
DECISIONS = ("approved", "rejected", "requires_changes")

# (from, to) -> who may make the move.
TRANSITIONS: dict[tuple[str, str], str] = {
    ("pending", "in_review"): "reviewer",
    ("in_review", "approved"): "reviewer",
    ("in_review", "rejected"): "reviewer",
    ("in_review", "requires_changes"): "reviewer",
    ("requires_changes", "pending"): "submitter",
}

_COLUMNS = (
    "r.id, r.session_id, r.title, r.description, r.priority, r.status, r.submitted_by, "
    "r.assigned_to, r.created_at, r.updated_at, r.reviewed_at"
)
# $1 = the caller's id, $2 = whether the caller is a reviewer.
_VISIBLE = (
    "(r.submitted_by = $1 OR r.assigned_to = $1 "
    "OR ($2 AND r.assigned_to IS NULL AND r.status = 'pending'))"
)


def _review(row: Mapping[str, Any]) -> Review:
    return Review(**{key: row[key] for key in Review.__struct_fields__})


def _history_entry(row: Mapping[str, Any]) -> HistoryEntry:
    changes = row["changes"]
    if isinstance(changes, str | bytes):
        changes = msgspec.json.decode(changes)
    fields = {key: row[key] for key in HistoryEntry.__struct_fields__ if key != "changes"}
    return HistoryEntry(**fields, changes=changes or {})


async def _record(
    conn: asyncpg.Connection,
    review_id: int,
    actor: AuthUser,
    action: str,
    changes: dict[str, Any],
    *,
    from_status: str | None = None,
    to_status: str | None = None,
    comment: str = "",
) -> None:
    await conn.execute(
        "INSERT INTO review_history (review_id, actor_id, action, from_status, to_status, "
        "comment, changes, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8)",
        review_id,
        actor.id,
        action,
        from_status,
        to_status,
        comment,
        msgspec.json.encode(changes).decode(),
        utc_now(),
    )


async def _check_assignee(conn: asyncpg.Connection, assignee: int, submitter: int) -> None:
    """``assigned_to`` must name a reviewer who is not the submitter (400 otherwise)."""
    if assignee == submitter:
        raise BadRequest("assigned_to: a review cannot be assigned to its submitter")
    is_reviewer = await conn.fetchval("SELECT is_reviewer FROM users WHERE id = $1", assignee)
    if not is_reviewer:
        # One message whether the user is missing or not a reviewer: ids are not probed here.
        raise BadRequest(f"assigned_to: user {assignee} is not a reviewer")


async def _visible(
    conn: asyncpg.Connection, review_id: int, user: AuthUser, *, for_update: bool = False
) -> Review:
    """The review if the caller may see it (locked for this transaction with ``for_update``);
    else 404."""
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM review_requests r WHERE r.id = $3 AND {_VISIBLE}{lock}",
        user.id,
        user.is_reviewer,
        review_id,
    )
    if row is None:
        raise NotFound(NOT_FOUND_MESSAGE)
    return _review(row)


async def create(user: AuthUser, data: ReviewCreate) -> Review:
    await owned_session(data.session_id, user)  # 404 unseen, 403 for its reviewer
    now = utc_now()
    try:
        async with db.transaction(), db.connection() as conn:
            if data.assigned_to is not None:
                await _check_assignee(conn, data.assigned_to, user.id)
            row = await conn.fetchrow(
                "INSERT INTO review_requests AS r (session_id, title, description, priority, "
                "status, submitted_by, assigned_to, created_at, updated_at, reviewed_at) "
                f"VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $7, NULL) RETURNING {_COLUMNS}",
                data.session_id,
                data.title,
                data.description,
                data.priority,
                user.id,
                data.assigned_to,
                now,
            )
            review = _review(row)
            initial = {
                "title": data.title,
                "description": data.description,
                "priority": data.priority,
                "assigned_to": data.assigned_to,
            }
            await _record(
                conn,
                review.id,
                user,
                "created",
                {key: {"to": value} for key, value in initial.items()},
                to_status="pending",
            )
    except asyncpg.UniqueViolationError:
        raise Conflict("session_id: this workspace already has an open review") from None
    except asyncpg.ForeignKeyViolationError:
        # The workspace was deleted between the ownership check and the insert.
        raise NotFound("Workspace not found") from None
    return review


async def list_reviews(
    user: AuthUser,
    *,
    status: str | None,
    priority: str | None,
    assigned_to: int | None,
    submitted_by: int | None,
    skip: int,
    limit: int,
) -> tuple[list[Review], int]:
    where = (
        f"{_VISIBLE} AND ($3::text IS NULL OR r.status = $3) "
        "AND ($4::text IS NULL OR r.priority = $4) "
        "AND ($5::int IS NULL OR r.assigned_to = $5) "
        "AND ($6::int IS NULL OR r.submitted_by = $6)"
    )
    args = (user.id, user.is_reviewer, status, priority, assigned_to, submitted_by)
    async with db.connection() as conn:
        rows = await conn.fetch(
            f"SELECT {_COLUMNS}, count(*) OVER () AS total FROM review_requests r WHERE {where} "
            "ORDER BY r.created_at DESC, r.id DESC OFFSET $7 LIMIT $8",
            *args,
            skip,
            limit,
        )
        total = (
            rows[0]["total"]
            if rows
            else await conn.fetchval(f"SELECT count(*) FROM review_requests r WHERE {where}", *args)
        )
    return [_review(row) for row in rows], total


async def get(user: AuthUser, review_id: int) -> Review:
    async with db.connection() as conn:
        return await _visible(conn, review_id, user)


async def update(user: AuthUser, review_id: int, data: ReviewUpdate) -> Review:
    async with db.transaction(), db.connection() as conn:
        review = await _visible(conn, review_id, user, for_update=True)
        if review.submitted_by != user.id:
            raise Forbidden("Only the submitter may edit a review request")
        if review.status in CLOSED_STATUSES:
            raise Conflict(f"status: a review that is {review.status} can no longer be edited")
        if data.assigned_to is not msgspec.UNSET and data.assigned_to != review.assigned_to:
            if data.assigned_to is None:
                if review.status == "in_review":
                    raise Conflict(
                        "assigned_to: a review in progress can be handed to another reviewer "
                        "but not unassigned"
                    )
            else:
                await _check_assignee(conn, data.assigned_to, review.submitted_by)
        changes: dict[str, Any] = {}
        for field in ("title", "description", "priority", "assigned_to"):
            new = getattr(data, field)
            old = getattr(review, field)
            if new is not msgspec.UNSET and new != old:
                changes[field] = {"from": old, "to": new}
        if not changes:
            return review
        merged = {field: change["to"] for field, change in changes.items()}
        row = await conn.fetchrow(
            "UPDATE review_requests AS r SET title = $2, description = $3, priority = $4, "
            f"assigned_to = $5, updated_at = $6 WHERE r.id = $1 RETURNING {_COLUMNS}",
            review.id,
            merged.get("title", review.title),
            merged.get("description", review.description),
            merged.get("priority", review.priority),
            merged.get("assigned_to", review.assigned_to),
            utc_now(),
        )
        await _record(conn, review.id, user, "updated", changes)
    return _review(row)


def _check_transition(review: Review, target: str, user: AuthUser) -> None:
    """409 for a move the state machine lacks, 403 for a valid move by the wrong party."""
    role = TRANSITIONS.get((review.status, target))
    if role is None:
        hint = ""
        if review.status == "pending" and target in DECISIONS:
            hint = "; a reviewer claims it first by moving it to in_review"
        elif review.status in CLOSED_STATUSES:
            hint = "; the review is closed"
        raise Conflict(f"status: cannot move a review from {review.status} to {target}{hint}")
    if role == "submitter":
        if review.submitted_by != user.id:
            raise Forbidden("Only the submitter may resubmit a review for another round")
        return
    if review.submitted_by == user.id:
        raise Forbidden("Nobody may review their own submission")
    if not user.is_reviewer:
        raise Forbidden("Only reviewers may review; turn reviewer status on first")
    if review.assigned_to not in (None, user.id) or (
        review.assigned_to is None and review.status != "pending"
    ):
        raise Forbidden("Only the reviewer assigned to this review may do that")


async def change_status(user: AuthUser, review_id: int, data: StatusChange) -> Review:
    async with db.transaction(), db.connection() as conn:
        review = await _visible(conn, review_id, user, for_update=True)
        _check_transition(review, data.status, user)
        now = utc_now()
        changes: dict[str, Any] = {"status": {"from": review.status, "to": data.status}}
        assignee = review.assigned_to
        if data.status == "in_review" and assignee is None:
            assignee = user.id  # claiming an unassigned review makes it the claimer's
            changes["assigned_to"] = {"from": None, "to": user.id}
        reviewed_at = now if data.status in DECISIONS else review.reviewed_at
        row = await conn.fetchrow(
            "UPDATE review_requests AS r SET status = $2, assigned_to = $3, updated_at = $4, "
            f"reviewed_at = $5 WHERE r.id = $1 RETURNING {_COLUMNS}",
            review.id,
            data.status,
            assignee,
            now,
            reviewed_at,
        )
        await _record(
            conn,
            review.id,
            user,
            "status",
            changes,
            from_status=review.status,
            to_status=data.status,
            comment=data.comment,
        )
    return _review(row)


async def history(
    user: AuthUser, review_id: int, skip: int, limit: int
) -> tuple[list[HistoryEntry], int]:
    await get(user, review_id)  # 404 unless visible
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT id, review_id, actor_id, action, from_status, to_status, comment, changes, "
            "created_at, count(*) OVER () AS total FROM review_history WHERE review_id = $1 "
            "ORDER BY created_at, id OFFSET $2 LIMIT $3",
            review_id,
            skip,
            limit,
        )
        total = (
            rows[0]["total"]
            if rows
            else await conn.fetchval(
                "SELECT count(*) FROM review_history WHERE review_id = $1", review_id
            )
        )
    return [_history_entry(row) for row in rows], total


async def session_status(user: AuthUser, session_id: UUID) -> SessionReviewStatus:
    access = await readable_session(session_id, user)  # 404 unless owner or its reviewer
    async with db.connection() as conn:
        # The open review if there is one, else the latest.
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM review_requests r WHERE r.session_id = $1 "
            f"ORDER BY (r.status IN {OPEN_REVIEW_SQL}) DESC, r.created_at DESC, r.id DESC LIMIT 1",
            session_id,
        )
    review = _review(row) if row else None
    has_open = review is not None and review.status in OPEN_REVIEW_STATUSES
    return SessionReviewStatus(
        reviewRequest=review,
        isReviewer=access.can_review and not access.is_owner,
        canSubmitForReview=access.is_owner and not has_open,
    )


async def stats(user: AuthUser) -> ReviewStats:
    async with db.connection() as conn:
        row = await conn.fetchrow(
            "SELECT "
            "count(*) FILTER (WHERE r.status = 'pending') AS total_pending, "
            "count(*) FILTER (WHERE r.status = 'in_review') AS total_in_review, "
            "count(*) FILTER (WHERE r.status = 'approved') AS total_approved, "
            "count(*) FILTER (WHERE r.status = 'rejected') AS total_rejected, "
            "count(*) FILTER (WHERE r.status = 'requires_changes') AS total_requires_changes, "
            f"count(*) FILTER (WHERE r.submitted_by = $1 AND r.status IN {OPEN_REVIEW_SQL}) "
            "AS my_pending_reviews, "
            "count(*) FILTER (WHERE r.assigned_to = $1 AND r.status IN ('pending', 'in_review')) "
            f"AS my_assigned_reviews FROM review_requests r WHERE {_VISIBLE}",
            user.id,
            user.is_reviewer,
        )
    return ReviewStats(**dict(row))
