"""Request and response types of the reviews function."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from shared.schemas import PositiveInt

Priority = Literal["low", "medium", "high", "urgent"]
Status = Literal["pending", "in_review", "approved", "rejected", "requires_changes"]
# A title must say something: 1..200 characters, at least one of them not blank.
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"\S")]
Description = Annotated[str, msgspec.Meta(max_length=10_000)]
Comment = Annotated[str, msgspec.Meta(max_length=10_000)]


class ReviewCreate(msgspec.Struct):
    session_id: UUID
    title: Title
    description: Description = ""
    priority: Priority = "medium"
    assigned_to: PositiveInt | None = None


class ReviewUpdate(msgspec.Struct):
    """Only the fields present change; ``assigned_to: null`` unassigns."""

    title: Title | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    priority: Priority | UnsetType = UNSET
    assigned_to: PositiveInt | None | UnsetType = UNSET


class StatusChange(msgspec.Struct):
    status: Status
    comment: Comment = ""


class Review(msgspec.Struct):
    """A review request; ``submitted_by`` and ``assigned_to`` are user ids."""

    id: int
    session_id: UUID
    title: str
    description: str
    priority: Priority
    status: Status
    submitted_by: int
    assigned_to: int | None
    created_at: datetime
    updated_at: datetime
    reviewed_at: datetime | None


class HistoryEntry(msgspec.Struct):
    """One change of a review: ``action`` is created, updated or status.

    ``changes`` maps each changed field to ``{"from": old, "to": new}`` (for ``created``, the
    initial values as ``{"to": value}``).
    """

    id: int
    review_id: int
    actor_id: int
    action: Literal["created", "updated", "status"]
    from_status: Status | None
    to_status: Status | None
    comment: str
    changes: dict[str, Any]
    created_at: datetime


class SessionReviewStatus(msgspec.Struct):
    """The review state of one workspace as the caller sees it (camelCase as the contract says)."""

    reviewRequest: Review | None  # noqa: N815 - the contract's field name
    isReviewer: bool  # noqa: N815
    canSubmitForReview: bool  # noqa: N815


class ReviewStats(msgspec.Struct):
    total_pending: int
    total_in_review: int
    total_approved: int
    total_rejected: int
    total_requires_changes: int
    my_pending_reviews: int
    my_assigned_reviews: int
