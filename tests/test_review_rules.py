"""The review state machine, called as the routes call it (no gateway): which moves exist,
who may make them, two reviewers claiming at once, and a reviewer who stops reviewing.

Real PostgreSQL (the ``database`` fixture); users are made in the account store, workspaces
and reviews through the services. The HTTP shapes of the same rules are in test_reviews.py.
"""

from __future__ import annotations

from collections.abc import Awaitable
from uuid import UUID

import anyio
import msgspec
import pytest

from functions.reviews import service as reviews
from functions.reviews.schemas import Review, ReviewCreate, ReviewUpdate, StatusChange
from functions.sessions import service as sessions
from functions.sessions.schemas import SessionCreate
from functions.users import service as users
from functions.users.schemas import ReviewerStatusUpdate
from shared import access, account_store
from shared.auth import AuthUser
from shared.config import QuotaSettings, Settings
from shared.envelope import utc_now
from shared.errors import BadRequest, Conflict, DomainError, Forbidden, NotFound
from tests.helpers import unique_name

pytestmark = pytest.mark.anyio

STATUSES = ("pending", "in_review", "approved", "rejected", "requires_changes")
SETTINGS = Settings(quotas=QuotaSettings(sessions_per_user=10_000))


async def person(*, reviewer: bool = False) -> AuthUser:
    name = unique_name("rv")
    row = await account_store.insert_user(name, f"{name}@example.com", "no password", utc_now())
    user = AuthUser(**dict(row), token_hash="unused")
    return await reviewing(user, True) if reviewer else user


async def reviewing(user: AuthUser, on: bool) -> AuthUser:
    """The user after turning reviewing on or off (as their next request sees them)."""
    profile = await users.set_reviewer_status(user, ReviewerStatusUpdate(is_reviewer=on))
    return AuthUser(**msgspec.structs.asdict(profile), token_hash=user.token_hash)


async def submitted(owner: AuthUser, assigned_to: AuthUser | None = None) -> Review:
    workspace = await sessions.create(owner, SessionCreate(name="ws"), SETTINGS)
    assignee = assigned_to.id if assigned_to else None
    return await reviews.create(
        owner, ReviewCreate(session_id=workspace.id, title="Please look", assigned_to=assignee)
    )


async def move(user: AuthUser, review: Review, status: str) -> Review:
    return await reviews.change_status(user, review.id, StatusChange(status=status))


async def at(status: str, owner: AuthUser, reviewer: AuthUser) -> Review:
    """A fresh review of ``owner``'s, brought to ``status`` by ``reviewer``."""
    review = await submitted(owner)
    if status == "pending":
        return review
    review = await move(reviewer, review, "in_review")
    return review if status == "in_review" else await move(reviewer, review, status)


async def refused(call: Awaitable[object]) -> type[DomainError] | None:
    try:
        await call
    except DomainError as exc:
        return type(exc)
    return None


async def test_every_move_outside_the_table_is_a_conflict_whoever_asks(database: None) -> None:
    owner, reviewer = await person(reviewer=True), await person(reviewer=True)
    for start in STATUSES:
        review = await at(start, owner, reviewer)
        for target in STATUSES:
            if target == start or (start, target) in reviews.TRANSITIONS:
                continue
            for who in (owner, reviewer):
                assert await refused(move(who, review, target)) is Conflict, (start, target)
        current = await reviews.get(owner, review.id)
        assert current.status == start  # nothing moved


async def test_each_move_of_the_table_is_made_by_its_party_and_recorded(database: None) -> None:
    owner, reviewer = await person(reviewer=True), await person(reviewer=True)
    for (start, target), party in reviews.TRANSITIONS.items():
        review = await at(start, owner, reviewer)
        who, other = (owner, reviewer) if party == "submitter" else (reviewer, owner)
        assert await refused(move(other, review, target)) is Forbidden, (start, target)
        moved = await move(who, review, target)
        assert moved.status == target
        history, total = await reviews.history(owner, review.id, 0, 100)
        assert (history[-1].from_status, history[-1].to_status) == (start, target)
        assert history[-1].actor_id == who.id and len(history) == total


async def test_a_claim_assigns_the_review_and_a_decision_stamps_it(database: None) -> None:
    owner, reviewer = await person(reviewer=True), await person(reviewer=True)
    review = await submitted(owner)
    claimed = await move(reviewer, review, "in_review")
    assert claimed.assigned_to == reviewer.id and claimed.reviewed_at is None
    asked = await move(reviewer, claimed, "requires_changes")
    assert asked.reviewed_at is not None
    again = await move(owner, asked, "pending")
    assert again.assigned_to == reviewer.id  # the reviewer stays for the next round
    assert again.reviewed_at == asked.reviewed_at  # the last decision is kept
    history, _ = await reviews.history(owner, review.id, 0, 100)
    assert [entry.action for entry in history] == ["created", "status", "status", "status"]
    assert history[1].changes["assigned_to"] == {"from": None, "to": reviewer.id}


async def test_who_may_not_move_a_review(database: None) -> None:
    owner, reviewer = await person(reviewer=True), await person(reviewer=True)
    outsider, layman = await person(reviewer=True), await person()
    review = await submitted(owner)
    assert await refused(move(owner, review, "in_review")) is Forbidden  # their own
    assert await refused(move(layman, review, "in_review")) is NotFound  # cannot see it
    assigned = await submitted(owner, assigned_to=reviewer)
    assert await refused(move(outsider, assigned, "in_review")) is NotFound  # someone else's
    claimed = await move(reviewer, assigned, "in_review")
    assert await refused(move(owner, claimed, "approved")) is Forbidden
    assert await refused(move(outsider, claimed, "approved")) is NotFound


async def test_two_reviewers_claiming_at_once_one_wins(database: None) -> None:
    owner = await person()
    first, second = await person(reviewer=True), await person(reviewer=True)
    review = await submitted(owner)
    outcomes: dict[int, type[DomainError] | None] = {}

    async def claim(user: AuthUser) -> None:
        outcomes[user.id] = await refused(move(user, review, "in_review"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(claim, first)
        tg.start_soon(claim, second)
    winners = [user_id for user_id, outcome in outcomes.items() if outcome is None]
    assert len(winners) == 1 and sorted(map(str, outcomes.values())) == sorted(
        ["None", str(NotFound)]
    )
    after = await reviews.get(owner, review.id)
    assert after.status == "in_review" and after.assigned_to == winners[0]
    history, _ = await reviews.history(owner, review.id, 0, 100)
    assert [entry.to_status for entry in history] == ["pending", "in_review"]


async def test_a_reviewer_who_stops_hands_back_every_open_review(database: None) -> None:
    owner, reviewer = await person(), await person(reviewer=True)
    in_review = await move(reviewer, await submitted(owner), "in_review")
    waiting = await submitted(owner, assigned_to=reviewer)
    changes_asked = await move(
        reviewer, await move(reviewer, await submitted(owner), "in_review"), "requires_changes"
    )
    approved = await move(
        reviewer, await move(reviewer, await submitted(owner), "in_review"), "approved"
    )
    assert (await access.readable_session(in_review.session_id, reviewer)).can_review

    reviewer = await reviewing(reviewer, False)

    after = {r.id: await reviews.get(owner, r.id) for r in (in_review, waiting, changes_asked)}
    assert after[in_review.id].status == "pending"  # back in the pool, for anyone to claim
    assert after[waiting.id].status == "pending"
    assert after[changes_asked.id].status == "requires_changes"
    assert all(review.assigned_to is None for review in after.values())
    assert (await reviews.get(owner, approved.id)).assigned_to == reviewer.id  # closed: kept
    history, _ = await reviews.history(owner, in_review.id, 0, 100)
    assert (history[-1].action, history[-1].from_status, history[-1].to_status) == (
        "status",
        "in_review",
        "pending",
    )
    assert history[-1].comment == "The reviewer stopped reviewing"
    waiting_history, _ = await reviews.history(owner, waiting.id, 0, 100)
    assert waiting_history[-1].action == "updated"
    assert waiting_history[-1].changes == {"assigned_to": {"from": reviewer.id, "to": None}}
    with pytest.raises(NotFound):
        await access.readable_session(in_review.session_id, reviewer)


async def test_edits_are_the_submitters_while_the_review_is_open(database: None) -> None:
    owner, reviewer, layman = await person(), await person(reviewer=True), await person()
    review = await submitted(owner)
    with pytest.raises(BadRequest, match="assigned_to"):
        await reviews.update(owner, review.id, ReviewUpdate(assigned_to=layman.id))
    with pytest.raises(BadRequest, match="assigned_to"):
        await reviews.update(owner, review.id, ReviewUpdate(assigned_to=owner.id))
    claimed = await move(reviewer, review, "in_review")
    with pytest.raises(Forbidden):
        await reviews.update(reviewer, claimed.id, ReviewUpdate(title="mine now"))
    with pytest.raises(Conflict, match="unassigned"):
        await reviews.update(owner, claimed.id, ReviewUpdate(assigned_to=None))
    unchanged = await reviews.update(owner, claimed.id, ReviewUpdate(title=claimed.title))
    assert unchanged == claimed  # nothing changed, nothing recorded
    history, _ = await reviews.history(owner, review.id, 0, 100)
    assert [entry.action for entry in history] == ["created", "status"]
    closed = await move(reviewer, claimed, "rejected")
    with pytest.raises(Conflict, match="rejected"):
        await reviews.update(owner, closed.id, ReviewUpdate(title="again"))


async def test_one_open_review_per_workspace(database: None) -> None:
    owner, reviewer = await person(), await person(reviewer=True)
    review = await submitted(owner)
    again = ReviewCreate(session_id=review.session_id, title="Twice")
    with pytest.raises(Conflict):
        await reviews.create(owner, again)
    await move(reviewer, await move(reviewer, review, "in_review"), "approved")
    assert (await reviews.create(owner, again)).status == "pending"


async def test_stats_count_what_the_caller_may_see(database: None) -> None:
    owner, reviewer = await person(), await person(reviewer=True)
    await submitted(owner)
    claimed = await move(reviewer, await submitted(owner), "in_review")
    await move(reviewer, claimed, "approved")
    await submitted(owner, assigned_to=reviewer)
    mine = await reviews.stats(owner)
    assert (mine.total_pending, mine.total_approved, mine.my_pending_reviews) == (2, 1, 2)
    theirs = await reviews.stats(reviewer)
    assert theirs.my_assigned_reviews == 1 and theirs.total_approved == 1
    assert theirs.total_pending >= 2  # every unassigned pending review is theirs to see
    session = (await reviews.session_status(owner, UUID(str(claimed.session_id)))).reviewRequest
    assert session is not None and session.status == "approved"
