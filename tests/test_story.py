"""The whole story a new client lives, reading only the contract: two users and a reviewer,
a workspace with nested and binary files, a review from submission to approval, and every
attempt to cross users refused."""

from __future__ import annotations

import base64

import httpx

from tests.helpers import assert_error, new_user


def test_a_workspace_goes_from_first_file_to_approved_review(api: httpx.Client) -> None:
    alice, mallory = new_user(api), new_user(api)
    reviewer = new_user(api, reviewer=True, level=2)

    workspace = alice.client.post("/api/postgres_sessions/", json={"name": "story"}).json()["data"]
    ws = workspace["id"]
    files = f"/api/workspace/{ws}/files"
    assert (
        alice.client.post(
            files, json={"path": "src/app/main.py", "content": "print('hi')\n"}
        ).status_code
        == 201
    )
    blob = bytes(range(256)) * 4
    binary = {
        "path": "assets/logo.bin",
        "content": base64.b64encode(blob).decode(),
        "encoding": "base64",
    }
    assert alice.client.post(files, json=binary).status_code == 201
    listing = [entry["path"] for entry in alice.client.get(files).json()["data"]]
    assert listing == ["assets", "assets/logo.bin", "src", "src/app", "src/app/main.py"]

    # Before any review, the reviewer sees nothing of it.
    assert_error(reviewer.client.get(files), 404)

    review = alice.client.post(
        "/api/reviews/",
        json={"session_id": ws, "title": "First version", "assigned_to": reviewer.id},
    )
    assert review.status_code == 201, review.text
    review_id = review.json()["data"]["id"]

    # The reviewer reads everything, byte for byte, and may not write.
    got = reviewer.client.get(f"{files}/assets/logo.bin").json()["data"]
    assert got["encoding"] == "base64" and base64.b64decode(got["content"]) == blob
    assert (
        reviewer.client.get(f"{files}/src/app/main.py").json()["data"]["content"] == "print('hi')\n"
    )
    assert_error(reviewer.client.put(f"{files}/src/app/main.py", json={"content": "x"}), 403)

    # Mallory is refused everywhere, and learns nothing.
    for response in (
        mallory.client.get(files),
        mallory.client.get(f"{files}/src/app/main.py"),
        mallory.client.put(f"{files}/src/app/main.py", json={"content": "pwned"}),
        mallory.client.delete(f"{files}/src"),
        mallory.client.get(f"/api/postgres_sessions/{ws}"),
        mallory.client.get(f"/api/reviews/{review_id}"),
        mallory.client.put(f"/api/reviews/{review_id}/status", json={"status": "approved"}),
    ):
        assert_error(response, 404)

    assert (
        reviewer.client.put(
            f"/api/reviews/{review_id}/status", json={"status": "in_review"}
        ).status_code
        == 200
    )
    approved = reviewer.client.put(
        f"/api/reviews/{review_id}/status", json={"status": "approved", "comment": "Ship it"}
    )
    assert approved.status_code == 200
    assert approved.json()["data"]["status"] == "approved"
    assert approved.json()["data"]["reviewed_at"].endswith("Z")
    # Nothing Mallory or the reviewer tried changed a byte.
    assert alice.client.get(f"{files}/src/app/main.py").json()["data"]["content"] == "print('hi')\n"
