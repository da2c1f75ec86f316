"""Review requests: submitting a workspace for review, the review state machine, its history.

Decisions (DESIGN.md section 4 leaves these open; the README's review section repeats them):

- Visibility. A caller sees a review they submitted, one assigned to them (in any status), and,
  when they are a reviewer, any unassigned pending review. Everything else is 404, at every
  endpoint, so another user's reviews are never revealed. Seeing a review is not reading its
  workspace: only the reviewer assigned to an open review reads the files (``shared.access``),
  so an unassigned pending review is metadata until a reviewer claims it.
- Leaving. A reviewer who turns reviewer status off hands back every open review assigned to
  them (the users function does it, through ``shared.review_store.release_reviews``): in_review
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
from shared import account_store, db, review_store
from shared.access import owned_session, readable_session
from shared.auth import AuthUser
from shared.envelope import utc_now
from shared.errors import BadRequest, Conflict, Forbidden, NotFound
from shared.schemas import from_row

NOT_FOUND_MESSAGE = "Review not found"
CLOSED_STATUSES = ("approved", "rejected")
DECISIONS = ("approved", "rejected", "requires_changes")
EDITABLE = ("title", "description", "priority", "assigned_to")

# (from, to) -> who may make the move.
TRANSITIONS: dict[tuple[str, str], str] = {
    ("pending", "in_review"): "reviewer",
    ("in_review", "approved"): "reviewer",
    ("in_review", "rejected"): "reviewer",
    ("in_review", "requires_changes"): "reviewer",
    ("requires_changes", "pending"): "submitter",
}


async def _check_assignee(assignee: int, submitter: int) -> None:
    """``assigned_to`` must name a reviewer who is not the submitter (400 otherwise)."""
    if assignee == submitter:
        raise BadRequest("assigned_to: a review cannot be assigned to its submitter")
    if not await account_store.is_reviewer(assignee):
        # One message whether the user is missing or not a reviewer: ids are not probed here.
        raise BadRequest(f"assigned_to: user {assignee} is not a reviewer")


async def _visible(review_id: int, user: AuthUser, *, for_update: bool = False) -> Review:
    """The review if the caller may see it (locked for this transaction with ``for_update``);
    else 404."""
    row = await review_store.visible(review_id, user.id, user.is_reviewer, for_update=for_update)
    if row is None:
        raise NotFound(NOT_FOUND_MESSAGE)
    return from_row(Review, row)


async def create(user: AuthUser, data: ReviewCreate) -> Review:
    await owned_session(data.session_id, user)  # 404 unseen, 403 for its reviewer
    now = utc_now()
    try:
        async with db.transaction():
            if data.assigned_to is not None:
                await _check_assignee(data.assigned_to, user.id)
            review = from_row(
                Review,
                await review_store.insert(
                    data.session_id,
                    data.title,
                    data.description,
                    data.priority,
                    user.id,
                    data.assigned_to,
                    now,
                ),
            )
            initial = {field: getattr(data, field) for field in EDITABLE}
            await review_store.record(
                review.id,
                user.id,
                "created",
                {key: {"to": value} for key, value in initial.items()},
                now,
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
    filters = {"status": status, "priority": priority, "assigned_to": assigned_to,
               "submitted_by": submitted_by}  # fmt: skip
    rows, total = await review_store.page_visible(
        user.id,
        user.is_reviewer,
        {name: value for name, value in filters.items() if value is not None},
        skip,
        limit,
    )
    return [from_row(Review, row) for row in rows], total


async def get(user: AuthUser, review_id: int) -> Review:
    return await _visible(review_id, user)


async def update(user: AuthUser, review_id: int, data: ReviewUpdate) -> Review:
    async with db.transaction():
        review = await _visible(review_id, user, for_update=True)
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
                await _check_assignee(data.assigned_to, review.submitted_by)
        changes: dict[str, Any] = {}
        for field in EDITABLE:
            new = getattr(data, field)
            old = getattr(review, field)
            if new is not msgspec.UNSET and new != old:
                changes[field] = {"from": old, "to": new}
        if not changes:
            return review
        now = utc_now()
        row = await review_store.update(
            review.id, {field: change["to"] for field, change in changes.items()}, now
        )
        await review_store.record(review.id, user.id, "updated", changes, now)
    return from_row(Review, row)


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
    async with db.transaction():
        review = await _visible(review_id, user, for_update=True)
        _check_transition(review, data.status, user)
        now = utc_now()
        changes: dict[str, Any] = {"status": {"from": review.status, "to": data.status}}
        assignee = review.assigned_to
        if data.status == "in_review" and assignee is None:
            assignee = user.id  # claiming an unassigned review makes it the claimer's
            changes["assigned_to"] = {"from": None, "to": user.id}
        reviewed_at = now if data.status in DECISIONS else review.reviewed_at
        row = await review_store.update(
            review.id,
            {"status": data.status, "assigned_to": assignee, "reviewed_at": reviewed_at},
            now,
        )
        await review_store.record(
            review.id,
            user.id,
            "status",
            changes,
            now,
            from_status=review.status,
            to_status=data.status,
            comment=data.comment,
        )
    return from_row(Review, row)


async def history(
    user: AuthUser, review_id: int, skip: int, limit: int
) -> tuple[list[HistoryEntry], int]:
    await get(user, review_id)  # 404 unless visible
    rows, total = await review_store.history_page(review_id, skip, limit)
    return [from_row(HistoryEntry, row) for row in rows], total


async def session_status(user: AuthUser, session_id: UUID) -> SessionReviewStatus:
    access = await readable_session(session_id, user)  # 404 unless owner or its reviewer
    row = await review_store.latest_of_session(session_id)
    review = from_row(Review, row) if row else None
    has_open = review is not None and review.status in review_store.OPEN_STATUSES
    return SessionReviewStatus(
        reviewRequest=review,
        isReviewer=access.can_review and not access.is_owner,
        canSubmitForReview=access.is_owner and not has_open,
    )


async def stats(user: AuthUser) -> ReviewStats:
    return from_row(ReviewStats, await review_store.stats(user.id, user.is_reviewer))
