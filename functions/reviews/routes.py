"""Routes of the reviews function: /api/reviews/*.

Static paths (``/stats/overview``, ``/session/{id}/status``) are never taken for a review id:
review ids are typed ``int``, and Litestar's router prefers static segments.
"""

from __future__ import annotations

from uuid import UUID

from litestar import Controller, get, post, put
from litestar.params import Parameter

from functions.reviews import service
from functions.reviews.schemas import (
    HistoryEntry,
    Priority,
    Review,
    ReviewCreate,
    ReviewStats,
    ReviewUpdate,
    SessionReviewStatus,
    Status,
    StatusChange,
)
from shared.auth import AuthUser
from shared.envelope import Envelope, ListEnvelope, ok, ok_list
from shared.errors import error_responses
from shared.schemas import LIMIT, MAX_ID, SKIP, PositiveInt

# Parameter specs, built once (they document the constraints in the OpenAPI too).
REVIEW_ID = Parameter(ge=1, le=MAX_ID, description="The review's id")
ASSIGNED_TO = Parameter(
    default=None, ge=1, le=MAX_ID, description="Only reviews assigned to this user id"
)
SUBMITTED_BY = Parameter(
    default=None, ge=1, le=MAX_ID, description="Only reviews submitted by this user id"
)


class ReviewsController(Controller):
    path = "/api/reviews"
    tags = ["reviews"]

    @post(
        "/", operation_id="create_review", status_code=201, responses=error_responses(403, 404, 409)
    )
    async def create_review(self, user: AuthUser, data: ReviewCreate) -> Envelope[Review]:
        """Submit one of your workspaces for review (one open review per workspace).

        `assigned_to`, when given, must be a reviewer other than you. A reviewer who can see
        the workspace but does not own it gets 403; anybody else 404.
        """
        return ok(await service.create(user, data), "Review request created")

    @get("/", operation_id="list_reviews")
    async def list_reviews(
        self,
        user: AuthUser,
        status: Status | None = None,
        priority: Priority | None = None,
        assigned_to: PositiveInt | None = ASSIGNED_TO,
        submitted_by: PositiveInt | None = SUBMITTED_BY,
        skip: int = SKIP,
        limit: int = LIMIT,
    ) -> ListEnvelope[Review]:
        """Reviews you may see, newest first: submitted by you, assigned to you, and (for
        reviewers) unassigned pending ones. `count` is the total matching the filters."""
        items, total = await service.list_reviews(
            user,
            status=status,
            priority=priority,
            assigned_to=assigned_to,
            submitted_by=submitted_by,
            skip=skip,
            limit=limit,
        )
        return ok_list(items, total, "Review requests")

    @get("/stats/overview", operation_id="review_stats")
    async def stats(self, user: AuthUser) -> Envelope[ReviewStats]:
        """Counts over the reviews you may see, by status; `my_pending_reviews` are your own
        open submissions, `my_assigned_reviews` the pending or in-review ones assigned to you."""
        return ok(await service.stats(user), "Review statistics")

    @get(
        "/session/{session_id:uuid}/status",
        operation_id="session_review_status",
        responses=error_responses(404),
    )
    async def session_status(
        self, user: AuthUser, session_id: UUID
    ) -> Envelope[SessionReviewStatus]:
        """The workspace's open review (else its latest, else null), whether you act as its
        reviewer, and whether you may submit it for review now."""
        return ok(await service.session_status(user, session_id), "Session review status")

    @get("/{review_id:int}", operation_id="get_review", responses=error_responses(404))
    async def get_review(self, user: AuthUser, review_id: int = REVIEW_ID) -> Envelope[Review]:
        """One review you may see."""
        return ok(await service.get(user, review_id), "Review request")

    @put(
        "/{review_id:int}",
        operation_id="update_review",
        responses=error_responses(403, 404, 409),
    )
    async def update_review(
        self, user: AuthUser, data: ReviewUpdate, review_id: int = REVIEW_ID
    ) -> Envelope[Review]:
        """Edit title, description, priority or assignee (submitter only, while open).

        Fields left out stay as they are; `assigned_to: null` unassigns (not while in review).
        """
        return ok(await service.update(user, review_id, data), "Review request updated")

    @put(
        "/{review_id:int}/status",
        operation_id="change_review_status",
        responses=error_responses(403, 404, 409),
    )
    async def change_status(
        self, user: AuthUser, data: StatusChange, review_id: int = REVIEW_ID
    ) -> Envelope[Review]:
        """Move the review through its states: a reviewer claims (pending -> in_review) and
        decides (approved | rejected | requires_changes); the submitter resubmits
        (requires_changes -> pending). Any other move is 409; the wrong party gets 403."""
        return ok(await service.change_status(user, review_id, data), "Review status updated")

    @get(
        "/{review_id:int}/history",
        operation_id="review_history",
        responses=error_responses(404),
    )
    async def history(
        self,
        user: AuthUser,
        review_id: int = REVIEW_ID,
        skip: int = SKIP,
        limit: int = LIMIT,
    ) -> ListEnvelope[HistoryEntry]:
        """Every change of a review you may see, oldest first (an addition to the contract)."""
        items, total = await service.history(user, review_id, skip, limit)
        return ok_list(items, total, "Review history")
