"""The reviews function as a client sees it: submitting, the state machine, visibility, history.

Every test creates its own users and workspaces through the public API. Reviewers also see
other tests' unassigned pending reviews, so numbers a reviewer sees are compared before/after.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import httpx
import pytest

from tests.helpers import User, assert_error, new_user, new_workspace

STATUSES = ("pending", "in_review", "approved", "rejected", "requires_changes")
ALLOWED = {
    ("pending", "in_review"),
    ("in_review", "approved"),
    ("in_review", "rejected"),
    ("in_review", "requires_changes"),
    ("requires_changes", "pending"),
}
REVIEW_FIELDS = {
    "id",
    "session_id",
    "title",
    "description",
    "priority",
    "status",
    "submitted_by",
    "assigned_to",
    "created_at",
    "updated_at",
    "reviewed_at",
}


def submit(user: User, workspace_id: str, **fields: Any) -> httpx.Response:
    body = {"session_id": workspace_id, "title": "Please review", **fields}
    return user.client.post("/api/reviews/", json=body)


def create_review(user: User, **fields: Any) -> dict[str, Any]:
    """A fresh workspace of ``user`` submitted for review; returns the review."""
    response = submit(user, new_workspace(user), **fields)
    assert response.status_code == 201, response.text
    return response.json()["data"]


def move(user: User, review_id: int, status: str, comment: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"status": status}
    if comment is not None:
        body["comment"] = comment
    return user.client.put(f"/api/reviews/{review_id}/status", json=body)


def moved(user: User, review_id: int, status: str, comment: str | None = None) -> dict[str, Any]:
    response = move(user, review_id, status, comment)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["status"] == status
    return response.json()["data"]


def history(user: User, review_id: int) -> list[dict[str, Any]]:
    response = user.client.get(f"/api/reviews/{review_id}/history")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == len(body["data"])
    return body["data"]


def listed_ids(user: User, **params: Any) -> list[int]:
    response = user.client.get("/api/reviews/", params=params)
    assert response.status_code == 200, response.text
    return [review["id"] for review in response.json()["data"]]


def stats(user: User) -> dict[str, int]:
    response = user.client.get("/api/reviews/stats/overview")
    assert response.status_code == 200, response.text
    return response.json()["data"]


def review_in(state: str, submitter: User, reviewer: User) -> dict[str, Any]:
    """A review of ``submitter`` assigned to ``reviewer``, brought to ``state`` legally."""
    review = create_review(submitter, assigned_to=reviewer.id)
    path = {
        "pending": [],
        "in_review": [(reviewer, "in_review")],
        "approved": [(reviewer, "in_review"), (reviewer, "approved")],
        "rejected": [(reviewer, "in_review"), (reviewer, "rejected")],
        "requires_changes": [(reviewer, "in_review"), (reviewer, "requires_changes")],
    }[state]
    for actor, status in path:
        review = moved(actor, review["id"], status)
    return review


@pytest.fixture
def owner(api: httpx.Client) -> User:
    return new_user(api)


@pytest.fixture
def reviewer(api: httpx.Client) -> User:
    return new_user(api, reviewer=True)


@pytest.fixture
def stranger(api: httpx.Client) -> User:
    """A second, ordinary user."""
    return new_user(api)


@pytest.fixture
def other_reviewer(api: httpx.Client) -> User:
    """A reviewer who is not assigned to the reviews at hand."""
    return new_user(api, reviewer=True)


# --- creating -------------------------------------------------------------------------------


def test_owner_submits_a_workspace_for_review(owner: User) -> None:
    session_id = new_workspace(owner)
    response = submit(owner, session_id, title="Check my parser", description="The tricky bit")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["success"] is True and body["timestamp"].endswith("Z")
    review = body["data"]
    assert set(review) == REVIEW_FIELDS
    assert review["session_id"] == session_id
    assert review["title"] == "Check my parser"
    assert review["description"] == "The tricky bit"
    assert review["priority"] == "medium"
    assert review["status"] == "pending"
    assert review["submitted_by"] == owner.id
    assert review["assigned_to"] is None
    assert review["reviewed_at"] is None
    assert review["created_at"].endswith("Z") and review["updated_at"].endswith("Z")


def test_owner_may_name_the_reviewer_and_priority(owner: User, reviewer: User) -> None:
    review = create_review(owner, assigned_to=reviewer.id, priority="urgent")
    assert review["assigned_to"] == reviewer.id
    assert review["priority"] == "urgent"


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": None}, "title"),
        ({"priority": "critical"}, "priority"),
        ({"description": "x" * 10_001}, "description"),
        ({"assigned_to": 0}, "assigned_to"),
        ({"assigned_to": "someone"}, "assigned_to"),
        ({"session_id": "not-a-uuid"}, "session_id"),
    ],
)
def test_invalid_submission_is_refused_naming_the_field(
    owner: User, fields: dict[str, Any], named: str
) -> None:
    response = submit(owner, new_workspace(owner), **fields)
    body = assert_error(response, 400)
    assert named in body["error"]


def test_submission_without_a_title_is_refused(owner: User) -> None:
    response = owner.client.post("/api/reviews/", json={"session_id": new_workspace(owner)})
    assert "title" in assert_error(response, 400)["error"]


def test_assigned_to_must_be_a_reviewer(owner: User, stranger: User) -> None:
    session_id = new_workspace(owner)
    not_reviewer = submit(owner, session_id, assigned_to=stranger.id)
    assert "assigned_to" in assert_error(not_reviewer, 400)["error"]
    missing = submit(owner, session_id, assigned_to=2_000_000_000)
    assert "assigned_to" in assert_error(missing, 400)["error"]
    assert listed_ids(owner) == []  # nothing was written


def test_submitter_cannot_assign_their_review_to_themselves(api: httpx.Client) -> None:
    reviewing_owner = new_user(api, reviewer=True)
    response = submit(
        reviewing_owner, new_workspace(reviewing_owner), assigned_to=reviewing_owner.id
    )
    assert "assigned_to" in assert_error(response, 400)["error"]


def test_a_workspace_has_at_most_one_open_review(owner: User, reviewer: User) -> None:
    session_id = new_workspace(owner)
    first = submit(owner, session_id, assigned_to=reviewer.id).json()["data"]
    assert_error(submit(owner, session_id), 409)
    moved(reviewer, first["id"], "in_review")
    assert_error(submit(owner, session_id), 409)
    moved(reviewer, first["id"], "requires_changes")
    assert_error(submit(owner, session_id), 409)
    moved(owner, first["id"], "pending")
    moved(reviewer, first["id"], "in_review")
    moved(reviewer, first["id"], "rejected")
    second = submit(owner, session_id, title="Second round")
    assert second.status_code == 201, second.text


def test_nobody_submits_a_workspace_they_cannot_see(owner: User, stranger: User) -> None:
    session_id = new_workspace(owner)
    assert_error(submit(stranger, session_id), 404)
    assert_error(submit(stranger, str(uuid.uuid4())), 404)


def test_reviewer_of_a_workspace_cannot_submit_it(owner: User, reviewer: User) -> None:
    review = create_review(owner, assigned_to=reviewer.id)
    moved(reviewer, review["id"], "in_review")
    moved(reviewer, review["id"], "approved")
    # The reviewer can see the workspace only while a review of it is open.
    second = create_review(owner, assigned_to=reviewer.id)
    assert_error(submit(reviewer, second["session_id"]), 403)
    assert_error(submit(reviewer, review["session_id"]), 404)


# --- reading --------------------------------------------------------------------------------


def test_get_review_by_its_submitter_and_its_reviewer(owner: User, reviewer: User) -> None:
    review = create_review(owner, assigned_to=reviewer.id)
    for user in (owner, reviewer):
        response = user.client.get(f"/api/reviews/{review['id']}")
        assert response.status_code == 200, response.text
        assert response.json()["data"] == review


def test_any_reviewer_sees_an_unassigned_pending_review(owner: User, other_reviewer: User) -> None:
    review = create_review(owner)
    assert other_reviewer.client.get(f"/api/reviews/{review['id']}").status_code == 200
    assert review["id"] in listed_ids(other_reviewer, limit=100, submitted_by=owner.id)


def test_unknown_or_malformed_review_ids(owner: User) -> None:
    assert_error(owner.client.get("/api/reviews/2000000000"), 404)
    assert_error(owner.client.get("/api/reviews/0"), 400)
    assert_error(owner.client.get("/api/reviews/99999999999"), 400)
    assert owner.client.get("/api/reviews/abc").status_code in (400, 404)


def test_second_user_and_unassigned_reviewer_are_refused_everywhere(
    owner: User, reviewer: User, stranger: User, other_reviewer: User
) -> None:
    review = create_review(owner, assigned_to=reviewer.id)
    rid = review["id"]
    for outsider in (stranger, other_reviewer):
        assert_error(outsider.client.get(f"/api/reviews/{rid}"), 404)
        assert_error(outsider.client.put(f"/api/reviews/{rid}", json={"title": "Mine now"}), 404)
        assert_error(move(outsider, rid, "in_review"), 404)
        assert_error(outsider.client.get(f"/api/reviews/{rid}/history"), 404)
        assert_error(
            outsider.client.get(f"/api/reviews/session/{review['session_id']}/status"), 404
        )
        assert_error(submit(outsider, review["session_id"]), 404)
        assert rid not in listed_ids(outsider, limit=100)
        assert rid not in listed_ids(outsider, submitted_by=owner.id)
        assert (
            outsider.client.get(f"/api/workspace/{review['session_id']}/files").status_code == 404
        )
    assert stats(stranger)["total_pending"] == 0
    # Nothing the outsiders tried changed anything.
    assert owner.client.get(f"/api/reviews/{rid}").json()["data"] == review
    assert len(history(owner, rid)) == 1


def test_every_endpoint_needs_authentication(api: httpx.Client) -> None:
    sid = str(uuid.uuid4())
    for method, path, body in [
        ("POST", "/api/reviews/", {"session_id": sid, "title": "t"}),
        ("GET", "/api/reviews/", None),
        ("GET", "/api/reviews/1", None),
        ("PUT", "/api/reviews/1", {"title": "t"}),
        ("PUT", "/api/reviews/1/status", {"status": "approved"}),
        ("GET", "/api/reviews/1/history", None),
        ("GET", f"/api/reviews/session/{sid}/status", None),
        ("GET", "/api/reviews/stats/overview", None),
    ]:
        assert_error(api.request(method, path, json=body), 401)


# --- listing --------------------------------------------------------------------------------


def test_list_shows_own_and_assigned_reviews_with_filters_and_count(
    owner: User, reviewer: User, stranger: User
) -> None:
    low = create_review(owner, priority="low", assigned_to=reviewer.id)
    high = create_review(owner, priority="high", assigned_to=reviewer.id)
    unassigned = create_review(owner, priority="high")
    theirs = create_review(stranger, assigned_to=reviewer.id)
    moved(reviewer, high["id"], "in_review")

    response = owner.client.get("/api/reviews/")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    newest_first = [unassigned["id"], high["id"], low["id"]]
    assert [r["id"] for r in body["data"]] == newest_first

    assert listed_ids(owner, priority="high") == [unassigned["id"], high["id"]]
    assert listed_ids(owner, status="in_review") == [high["id"]]
    assert listed_ids(owner, assigned_to=reviewer.id) == [high["id"], low["id"]]
    assert listed_ids(owner, status="approved") == []
    assert listed_ids(reviewer, assigned_to=reviewer.id) == [theirs["id"], high["id"], low["id"]]
    assert listed_ids(reviewer, submitted_by=stranger.id) == [theirs["id"]]
    pending_of_owner = listed_ids(reviewer, submitted_by=owner.id, status="pending")
    assert pending_of_owner == [unassigned["id"], low["id"]]

    page = owner.client.get("/api/reviews/", params={"limit": 1, "skip": 1}).json()
    assert page["count"] == 3 and [r["id"] for r in page["data"]] == [high["id"]]
    beyond = owner.client.get("/api/reviews/", params={"skip": 10}).json()
    assert beyond["count"] == 3 and beyond["data"] == []
    assert listed_ids(stranger) == [theirs["id"]]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"skip": -1}, "skip"),
        ({"status": "done"}, "status"),
        ({"priority": "whenever"}, "priority"),
        ({"assigned_to": 0}, "assigned_to"),
        ({"submitted_by": "me"}, "submitted_by"),
    ],
)
def test_list_refuses_invalid_filters(owner: User, params: dict[str, Any], named: str) -> None:
    body = assert_error(owner.client.get("/api/reviews/", params=params), 400)
    assert named in body["error"]


# --- editing --------------------------------------------------------------------------------


def test_submitter_edits_an_open_review_and_history_records_it(owner: User, reviewer: User) -> None:
    review = create_review(owner)
    response = owner.client.put(
        f"/api/reviews/{review['id']}",
        json={"title": "Sharper title", "priority": "high", "assigned_to": reviewer.id},
    )
    assert response.status_code == 200, response.text
    updated = response.json()["data"]
    assert (updated["title"], updated["priority"], updated["assigned_to"]) == (
        "Sharper title",
        "high",
        reviewer.id,
    )
    assert updated["description"] == review["description"]
    assert updated["updated_at"] >= review["updated_at"]
    entry = history(owner, review["id"])[-1]
    assert entry["action"] == "updated" and entry["actor_id"] == owner.id
    assert entry["changes"] == {
        "title": {"from": "Please review", "to": "Sharper title"},
        "priority": {"from": "medium", "to": "high"},
        "assigned_to": {"from": None, "to": reviewer.id},
    }
    unassigned = owner.client.put(f"/api/reviews/{review['id']}", json={"assigned_to": None})
    assert unassigned.json()["data"]["assigned_to"] is None


def test_an_edit_that_changes_nothing_records_nothing(owner: User) -> None:
    review = create_review(owner)
    for body in ({}, {"title": review["title"]}):
        response = owner.client.put(f"/api/reviews/{review['id']}", json=body)
        assert response.status_code == 200 and response.json()["data"] == review
    assert [entry["action"] for entry in history(owner, review["id"])] == ["created"]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"title": ""}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": None}, "title"),
        ({"priority": "asap"}, "priority"),
        ({"description": "x" * 10_001}, "description"),
        ({"assigned_to": -3}, "assigned_to"),
    ],
)
def test_invalid_edit_is_refused_naming_the_field(
    owner: User, body: dict[str, Any], named: str
) -> None:
    review = create_review(owner)
    response = owner.client.put(f"/api/reviews/{review['id']}", json=body)
    assert named in assert_error(response, 400)["error"]


def test_edit_cannot_assign_a_non_reviewer_or_the_submitter(
    api: httpx.Client, stranger: User
) -> None:
    reviewing_owner = new_user(api, reviewer=True)
    review = create_review(reviewing_owner)
    for assignee in (stranger.id, reviewing_owner.id):
        response = reviewing_owner.client.put(
            f"/api/reviews/{review['id']}", json={"assigned_to": assignee}
        )
        assert "assigned_to" in assert_error(response, 400)["error"]


def test_only_the_submitter_edits(owner: User, reviewer: User) -> None:
    review = create_review(owner, assigned_to=reviewer.id)
    assert_error(reviewer.client.put(f"/api/reviews/{review['id']}", json={"title": "Hijack"}), 403)


@pytest.mark.parametrize("state", ["approved", "rejected"])
def test_a_decided_review_can_no_longer_be_edited(owner: User, reviewer: User, state: str) -> None:
    review = review_in(state, owner, reviewer)
    assert_error(owner.client.put(f"/api/reviews/{review['id']}", json={"title": "Too late"}), 409)


def test_a_review_in_progress_is_handed_over_but_never_unassigned(
    owner: User, reviewer: User, other_reviewer: User
) -> None:
    review = review_in("in_review", owner, reviewer)
    assert_error(owner.client.put(f"/api/reviews/{review['id']}", json={"assigned_to": None}), 409)
    handed = owner.client.put(
        f"/api/reviews/{review['id']}", json={"assigned_to": other_reviewer.id}
    )
    assert handed.status_code == 200 and handed.json()["data"]["assigned_to"] == other_reviewer.id
    assert_error(reviewer.client.get(f"/api/reviews/{review['id']}"), 404)
    moved(other_reviewer, review["id"], "approved")


# --- the state machine ----------------------------------------------------------------------


def test_full_review_cycle_with_claim_resubmission_and_history(owner: User, reviewer: User) -> None:
    review = create_review(owner)
    claimed = moved(reviewer, review["id"], "in_review", "Looking now")
    assert claimed["assigned_to"] == reviewer.id  # claiming assigns
    assert claimed["reviewed_at"] is None
    asked = moved(reviewer, review["id"], "requires_changes", "Add tests")
    assert asked["reviewed_at"] is not None
    resubmitted = moved(owner, review["id"], "pending", "Tests added")
    assert resubmitted["assigned_to"] == reviewer.id  # the same reviewer takes the next round
    moved(reviewer, review["id"], "in_review")
    approved = moved(reviewer, review["id"], "approved", "Ship it")
    assert approved["reviewed_at"] >= asked["reviewed_at"]

    entries = history(owner, review["id"])
    assert history(reviewer, review["id"]) == entries
    assert [(e["action"], e["from_status"], e["to_status"], e["actor_id"]) for e in entries] == [
        ("created", None, "pending", owner.id),
        ("status", "pending", "in_review", reviewer.id),
        ("status", "in_review", "requires_changes", reviewer.id),
        ("status", "requires_changes", "pending", owner.id),
        ("status", "pending", "in_review", reviewer.id),
        ("status", "in_review", "approved", reviewer.id),
    ]
    comments = ["", "Looking now", "Add tests", "Tests added", "", "Ship it"]
    assert [e["comment"] for e in entries] == comments
    assert entries[0]["changes"]["title"] == {"to": "Please review"}
    assert entries[1]["changes"]["assigned_to"] == {"from": None, "to": reviewer.id}
    assert all(e["review_id"] == review["id"] and e["created_at"].endswith("Z") for e in entries)


@pytest.mark.parametrize("decision", ["approved", "rejected"])
def test_decisions_set_reviewed_at(owner: User, reviewer: User, decision: str) -> None:
    review = review_in(decision, owner, reviewer)
    assert review["reviewed_at"] is not None and review["reviewed_at"].endswith("Z")


def test_reviewer_cannot_approve_before_claiming(owner: User, reviewer: User) -> None:
    review = create_review(owner, assigned_to=reviewer.id)
    assert "in_review" in assert_error(move(reviewer, review["id"], "approved"), 409)["error"]


@pytest.mark.parametrize("state", STATUSES)
def test_every_illegal_transition_is_a_conflict(owner: User, reviewer: User, state: str) -> None:
    review = review_in(state, owner, reviewer)
    for target in STATUSES:
        if (state, target) in ALLOWED:
            continue
        for actor in (reviewer, owner):
            assert_error(move(actor, review["id"], target), 409)
    assert owner.client.get(f"/api/reviews/{review['id']}").json()["data"]["status"] == state
    moves_so_far = {"pending": 0, "in_review": 1}.get(state, 2)
    assert len(history(owner, review["id"])) == 1 + moves_so_far  # refusals record nothing


def test_reviewer_cannot_claim_their_own_submission(api: httpx.Client) -> None:
    reviewing_owner = new_user(api, reviewer=True)
    review = create_review(reviewing_owner)
    assert_error(move(reviewing_owner, review["id"], "in_review"), 403)


def test_non_reviewer_cannot_claim(owner: User, stranger: User) -> None:
    review = create_review(owner)
    assert_error(move(owner, review["id"], "in_review"), 403)
    assert_error(move(stranger, review["id"], "in_review"), 404)


def test_submitter_cannot_decide_and_reviewer_cannot_resubmit(owner: User, reviewer: User) -> None:
    review = review_in("in_review", owner, reviewer)
    for decision in ("approved", "rejected", "requires_changes"):
        assert_error(move(owner, review["id"], decision), 403)
    moved(reviewer, review["id"], "requires_changes")
    assert_error(move(reviewer, review["id"], "pending"), 403)


def test_an_assignee_who_stopped_reviewing_can_no_longer_decide(
    owner: User, reviewer: User
) -> None:
    review = review_in("in_review", owner, reviewer)
    off = reviewer.client.put("/api/users/me/reviewer-status", json={"is_reviewer": False})
    assert off.status_code == 200
    # The review was handed back, so it is no longer theirs to see or decide.
    assert_error(move(reviewer, review["id"], "approved"), 404)


def test_turning_reviewer_status_off_hands_back_every_open_review(
    owner: User, reviewer: User, other_reviewer: User
) -> None:
    claimed = review_in("in_review", owner, reviewer)
    waiting = review_in("pending", owner, reviewer)
    changes = review_in("requires_changes", owner, reviewer)
    decided = review_in("approved", owner, reviewer)
    off = reviewer.client.put("/api/users/me/reviewer-status", json={"is_reviewer": False})
    assert off.status_code == 200

    def now(review: dict[str, Any]) -> dict[str, Any]:
        return owner.client.get(f"/api/reviews/{review['id']}").json()["data"]

    assert (now(claimed)["status"], now(claimed)["assigned_to"]) == ("pending", None)
    assert (now(waiting)["status"], now(waiting)["assigned_to"]) == ("pending", None)
    assert (now(changes)["status"], now(changes)["assigned_to"]) == ("requires_changes", None)
    assert now(decided) == decided  # a closed review keeps who decided it
    last = history(owner, claimed["id"])[-1]
    assert (last["action"], last["from_status"], last["to_status"]) == (
        "status",
        "in_review",
        "pending",
    )
    assert last["actor_id"] == reviewer.id
    assert last["changes"]["assigned_to"] == {"from": reviewer.id, "to": None}
    assert history(owner, waiting["id"])[-1]["changes"] == {
        "assigned_to": {"from": reviewer.id, "to": None}
    }
    # Nobody waits on the reviewer who left: another one claims the handed-back review.
    assert_error(reviewer.client.get(f"/api/workspace/{claimed['session_id']}/files"), 404)
    moved(other_reviewer, claimed["id"], "in_review")
    files = other_reviewer.client.get(f"/api/workspace/{claimed['session_id']}/files")
    assert files.status_code == 200, files.text


def test_a_claimed_review_disappears_for_other_reviewers(
    owner: User, reviewer: User, other_reviewer: User
) -> None:
    review = create_review(owner)
    moved(reviewer, review["id"], "in_review")
    assert_error(other_reviewer.client.get(f"/api/reviews/{review['id']}"), 404)
    assert_error(move(other_reviewer, review["id"], "approved"), 404)


def test_two_reviewers_claiming_at_once_one_wins(
    owner: User, reviewer: User, other_reviewer: User
) -> None:
    review = create_review(owner)
    results: dict[int, int] = {}

    def claim(user: User) -> None:
        results[user.id] = move(user, review["id"], "in_review").status_code

    threads = [threading.Thread(target=claim, args=(user,)) for user in (reviewer, other_reviewer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results.values()) == [200, 404]
    winner = next(uid for uid, code in results.items() if code == 200)
    assert owner.client.get(f"/api/reviews/{review['id']}").json()["data"]["assigned_to"] == winner
    assert len(history(owner, review["id"])) == 2


@pytest.mark.parametrize(
    "body",
    [{"status": "done"}, {}, {"status": None}, {"status": "approved", "comment": "x" * 10_001}],
)
def test_invalid_status_change_is_refused(
    owner: User, reviewer: User, body: dict[str, Any]
) -> None:
    review = review_in("in_review", owner, reviewer)
    response = reviewer.client.put(f"/api/reviews/{review['id']}/status", json=body)
    error = assert_error(response, 400)["error"]
    assert "status" in error or "comment" in error


# --- per-session status, stats, the reviewer's view of the files ----------------------------


def test_session_review_status_for_owner_and_reviewer(
    owner: User, reviewer: User, other_reviewer: User, stranger: User
) -> None:
    session_id = new_workspace(owner)
    path = f"/api/reviews/session/{session_id}/status"

    fresh = owner.client.get(path)
    assert fresh.status_code == 200, fresh.text
    nothing_yet = {"reviewRequest": None, "isReviewer": False, "canSubmitForReview": True}
    assert fresh.json()["data"] == nothing_yet
    assert_error(reviewer.client.get(path), 404)

    review = submit(owner, session_id).json()["data"]
    assert owner.client.get(path).json()["data"] == {
        "reviewRequest": review,
        "isReviewer": False,
        "canSubmitForReview": False,
    }
    # Unassigned and pending: reviewers see the review, not the workspace, until one claims it.
    assert_error(other_reviewer.client.get(path), 404)
    assert_error(stranger.client.get(path), 404)

    moved(reviewer, review["id"], "in_review")
    assert reviewer.client.get(path).json()["data"]["isReviewer"] is True
    assert_error(other_reviewer.client.get(path), 404)
    approved = moved(reviewer, review["id"], "approved")

    after = owner.client.get(path).json()["data"]
    assert after == {"reviewRequest": approved, "isReviewer": False, "canSubmitForReview": True}
    # The review is closed: the workspace is private again.
    assert_error(reviewer.client.get(path), 404)
    assert_error(owner.client.get(f"/api/reviews/session/{uuid.uuid4()}/status"), 404)
    assert owner.client.get("/api/reviews/session/not-a-uuid/status").status_code in (400, 404)


def test_stats_count_what_the_caller_may_see(owner: User, reviewer: User, stranger: User) -> None:
    reviewer_before = stats(reviewer)
    review_in("pending", owner, reviewer)
    review_in("in_review", owner, reviewer)
    review_in("approved", owner, reviewer)
    review_in("rejected", owner, reviewer)
    review_in("requires_changes", owner, reviewer)
    create_review(owner)  # unassigned pending: every reviewer sees it
    create_review(stranger)  # not the owner's business

    assert stats(owner) == {
        "total_pending": 2,
        "total_in_review": 1,
        "total_approved": 1,
        "total_rejected": 1,
        "total_requires_changes": 1,
        "my_pending_reviews": 4,
        "my_assigned_reviews": 0,
    }
    after = stats(reviewer)
    delta = {key: after[key] - reviewer_before[key] for key in after}
    assert delta == {
        "total_pending": 3,  # its assigned one and both unassigned ones
        "total_in_review": 1,
        "total_approved": 1,
        "total_rejected": 1,
        "total_requires_changes": 1,
        "my_pending_reviews": 0,
        "my_assigned_reviews": 2,
    }
    assert stats(stranger)["total_pending"] == 1 and stats(stranger)["my_pending_reviews"] == 1


def test_assigned_reviewer_reads_the_workspace_files_only_while_the_review_is_open(
    owner: User, reviewer: User, stranger: User
) -> None:
    session_id = new_workspace(owner)
    created = owner.client.post(
        f"/api/workspace/{session_id}/files",
        json={"path": "src/app.py", "content": "print('hi')\n"},
    )
    assert created.status_code == 201, created.text
    files = f"/api/workspace/{session_id}/files"
    assert_error(reviewer.client.get(files), 404)

    review = submit(owner, session_id, assigned_to=reviewer.id).json()["data"]
    listing = reviewer.client.get(files)
    assert listing.status_code == 200, listing.text
    assert "src/app.py" in [entry["path"] for entry in listing.json()["data"]]
    content = reviewer.client.get(f"{files}/src/app.py")
    assert content.status_code == 200 and content.json()["data"]["content"] == "print('hi')\n"
    assert_error(reviewer.client.put(f"{files}/src/app.py", json={"content": "hacked"}), 403)
    assert_error(stranger.client.get(files), 404)

    moved(reviewer, review["id"], "in_review")
    assert reviewer.client.get(files).status_code == 200
    moved(reviewer, review["id"], "approved")
    assert_error(reviewer.client.get(files), 404)
    assert owner.client.get(f"{files}/src/app.py").json()["data"]["content"] == "print('hi')\n"


def test_an_unassigned_pending_review_is_metadata_only_until_claimed(
    owner: User, reviewer: User, other_reviewer: User
) -> None:
    session_id = new_workspace(owner)
    created = owner.client.post(
        f"/api/workspace/{session_id}/files", json={"path": "secret.py", "content": "k = 1\n"}
    )
    assert created.status_code == 201, created.text
    review = submit(owner, session_id).json()["data"]
    assert review["id"] in listed_ids(reviewer, limit=100, submitted_by=owner.id)
    assert reviewer.client.get(f"/api/reviews/{review['id']}").status_code == 200
    for url in (
        f"/api/workspace/{session_id}/files",
        f"/api/workspace/{session_id}/files/secret.py",
        f"/api/workspace/{session_id}/status",
        f"/api/postgres_sessions/{session_id}",
        f"/api/sessions/{session_id}",
        f"/api/session_workspace/{session_id}?include_content=true",
        f"/api/reviews/session/{session_id}/status",
    ):
        response = reviewer.client.get(url)
        assert_error(response, 404)
        assert "k = 1" not in response.text

    moved(reviewer, review["id"], "in_review")
    content = reviewer.client.get(f"/api/workspace/{session_id}/files/secret.py")
    assert content.status_code == 200 and content.json()["data"]["content"] == "k = 1\n"
    assert_error(other_reviewer.client.get(f"/api/workspace/{session_id}/files/secret.py"), 404)


def test_history_pages_and_validates_like_every_list(owner: User, reviewer: User) -> None:
    review = review_in("requires_changes", owner, reviewer)
    page = owner.client.get(f"/api/reviews/{review['id']}/history", params={"skip": 1, "limit": 1})
    assert page.status_code == 200, page.text
    body = page.json()
    assert body["count"] == 3
    assert [e["to_status"] for e in body["data"]] == ["in_review"]
    for params in ({"limit": 0}, {"limit": 101}, {"skip": -1}):
        path = f"/api/reviews/{review['id']}/history"
        assert_error(owner.client.get(path, params=params), 400)
    assert_error(owner.client.get("/api/reviews/2000000000/history"), 404)
