"""Sessions (= workspaces): CRUD, ownership, the legacy single-file view, the editor's view."""

from __future__ import annotations

import base64
import uuid

import httpx
import pytest

from tests.helpers import assert_error, new_user, new_workspace


@pytest.fixture
def owner(api: httpx.Client):
    return new_user(api)


@pytest.fixture
def stranger(api: httpx.Client):
    return new_user(api)


def test_create_session_defaults_to_python_and_active(owner) -> None:
    response = owner.client.post("/api/postgres_sessions/", json={})
    assert response.status_code == 201
    session = response.json()["data"]
    assert set(session) == {
        "id",
        "user_id",
        "name",
        "language",
        "is_active",
        "created_at",
        "updated_at",
    }
    uuid.UUID(session["id"])
    assert session["user_id"] == owner.id and session["language"] == "python"
    assert session["is_active"] is True and session["created_at"].endswith("Z")


@pytest.mark.parametrize(
    "body",
    [
        {"name": ""},
        {"name": "x" * 256},
        {"language": ""},
        {"language": "Py Thon"},
        {"name": 5},
        {"language": "x" * 33},
    ],
)
def test_create_session_rejects_invalid_fields(owner, body) -> None:
    field = next(iter(body))
    assert (
        field in assert_error(owner.client.post("/api/postgres_sessions/", json=body), 400)["error"]
    )


def test_list_shows_only_the_callers_sessions_with_count_and_pagination(owner, stranger) -> None:
    mine = [new_workspace(owner, f"mine-{i}") for i in range(3)]
    new_workspace(stranger, "theirs")
    page = owner.client.get("/api/postgres_sessions/", params={"limit": 2}).json()
    assert page["count"] == 3 and len(page["data"]) == 2
    everything = owner.client.get(
        "/api/postgres_sessions/", params={"skip": 0, "limit": 100}
    ).json()["data"]
    assert {s["id"] for s in everything} == set(mine)
    assert owner.client.get("/api/postgres_sessions/", params={"skip": 3}).json()["data"] == []
    assert_error(owner.client.get("/api/postgres_sessions/", params={"limit": 0}), 400)
    assert_error(owner.client.get("/api/postgres_sessions/", params={"limit": "many"}), 400)


def test_get_update_and_delete_a_session(owner) -> None:
    session_id = new_workspace(owner, "before")
    assert (
        owner.client.get(f"/api/postgres_sessions/{session_id}").json()["data"]["name"] == "before"
    )
    updated = owner.client.put(
        f"/api/postgres_sessions/{session_id}", json={"name": "after", "is_active": False}
    )
    assert updated.status_code == 200
    data = updated.json()["data"]
    assert data["name"] == "after" and data["is_active"] is False
    assert data["updated_at"] >= data["created_at"]
    deleted = owner.client.delete(f"/api/postgres_sessions/{session_id}")
    assert deleted.status_code == 200 and deleted.json()["data"] == {
        "id": session_id,
        "deleted": True,
    }
    assert_error(owner.client.get(f"/api/postgres_sessions/{session_id}"), 404)
    assert_error(owner.client.delete(f"/api/postgres_sessions/{session_id}"), 404)


def test_another_user_is_refused_at_every_session_endpoint_and_nothing_changes(
    owner, stranger
) -> None:
    session_id = new_workspace(owner, "private")
    other = stranger.client
    assert_error(other.get(f"/api/postgres_sessions/{session_id}"), 404)
    assert_error(other.put(f"/api/postgres_sessions/{session_id}", json={"name": "mine now"}), 404)
    assert_error(other.delete(f"/api/postgres_sessions/{session_id}"), 404)
    assert_error(other.get(f"/api/sessions/{session_id}"), 404)
    assert_error(other.get(f"/api/session_workspace/{session_id}"), 404)
    assert_error(
        other.post(f"/api/session_workspace/{session_id}/files/x.py", json={"content": "pwned"}),
        404,
    )
    assert session_id not in other.get("/api/postgres_sessions/").text
    assert (
        owner.client.get(f"/api/postgres_sessions/{session_id}").json()["data"]["name"] == "private"
    )
    files = owner.client.get(f"/api/session_workspace/{session_id}").json()["data"]
    assert files["file_count"] == 0


def test_anonymous_callers_get_401(api: httpx.Client, owner) -> None:
    session_id = new_workspace(owner)
    for method, url in [
        ("POST", "/api/postgres_sessions/"),
        ("GET", "/api/postgres_sessions/"),
        ("GET", f"/api/postgres_sessions/{session_id}"),
        ("DELETE", f"/api/postgres_sessions/{session_id}"),
        ("GET", f"/api/sessions/{session_id}"),
        ("GET", f"/api/session_workspace/{session_id}"),
    ]:
        assert_error(api.request(method, url, json={} if method == "POST" else None), 401)


def test_malformed_and_unknown_session_ids_are_404(owner) -> None:
    assert_error(owner.client.get("/api/postgres_sessions/not-a-uuid"), 404)
    assert_error(owner.client.get(f"/api/postgres_sessions/{uuid.uuid4()}"), 404)


def test_legacy_session_is_a_workspace_whose_main_py_is_the_code(owner) -> None:
    created = owner.client.post("/api/sessions/", json={"code": "print('hi')\n", "name": "legacy"})
    assert created.status_code == 201
    data = created.json()["data"]
    assert (
        data["code"] == "print('hi')\n"
        and data["language"] == "python"
        and data["name"] == "legacy"
    )
    fetched = owner.client.get(f"/api/sessions/{data['id']}").json()["data"]
    assert fetched["code"] == "print('hi')\n"
    view = owner.client.get(
        f"/api/session_workspace/{data['id']}", params={"include_content": "true"}
    ).json()["data"]
    assert [(f["path"], f["content"]) for f in view["files"]] == [("main.py", "print('hi')\n")]
    # The same session appears in the PostgreSQL-sessions view.
    assert owner.client.get(f"/api/postgres_sessions/{data['id']}").status_code == 200


def test_session_workspace_writes_nested_and_binary_files(owner) -> None:
    session_id = new_workspace(owner)
    saved = owner.client.post(
        f"/api/session_workspace/{session_id}/files/pkg/util.py", json={"content": "X = 1\n"}
    )
    assert saved.status_code == 200
    meta = saved.json()["data"]
    assert meta == {
        **meta,
        "name": "util.py",
        "path": "pkg/util.py",
        "type": "file",
        "size": 6,
        "version": 1,
    }
    blob = bytes(range(256))
    owner.client.post(
        f"/api/session_workspace/{session_id}/files/data.bin",
        json={"content": base64.b64encode(blob).decode(), "encoding": "base64"},
    )
    again = owner.client.post(
        f"/api/session_workspace/{session_id}/files/pkg/util.py", json={"content": "X = 2\n"}
    )
    assert again.json()["data"]["version"] == 2
    view = owner.client.get(
        f"/api/session_workspace/{session_id}", params={"include_content": True}
    ).json()["data"]
    assert view["file_count"] == 3
    entries = {f["path"]: f for f in view["files"]}
    assert entries["pkg"]["type"] == "directory"
    assert entries["pkg/util.py"]["content"] == "X = 2\n"
    assert entries["data.bin"]["encoding"] == "base64"
    assert base64.b64decode(entries["data.bin"]["content"]) == blob
    plain = owner.client.get(f"/api/session_workspace/{session_id}").json()["data"]
    assert all("content" not in f for f in plain["files"])


def test_session_workspace_refuses_hostile_names_and_writes_nothing(owner) -> None:
    session_id = new_workspace(owner)
    for name in ["..%2Fescape.py", "a%5Cb.py", "%00.py"]:
        response = owner.client.post(
            f"/api/session_workspace/{session_id}/files/{name}", json={"content": "x"}
        )
        assert response.status_code in (400, 404), (name, response.status_code)
    assert_error(
        owner.client.post(
            f"/api/session_workspace/{session_id}/files/x.py",
            json={"content": "!!", "encoding": "base64"},
        ),
        400,
    )
    assert (
        owner.client.get(f"/api/session_workspace/{session_id}").json()["data"]["file_count"] == 0
    )
