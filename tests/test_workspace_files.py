"""The workspace file API as an editor uses it: files and directories, binary content, ETag and
If-Match, recursive delete, status, default files, shutdown, who may read and who may write,
size limits and quotas, and failed requests that leave nothing behind."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import running_platform
from tests.helpers import ALLOWED_ORIGIN, User, assert_error, new_user, new_workspace

MIB = 1024 * 1024
META_FIELDS = {"name", "path", "type", "size", "modified", "version"}


def files_url(workspace: str, path: str = "") -> str:
    return f"/api/workspace/{workspace}/files" + (f"/{path}" if path else "")


def listing(user: User, workspace: str) -> list[dict[str, Any]]:
    response = user.client.get(files_url(workspace))
    assert response.status_code == 200, response.text
    return response.json()["data"]


def tree(user: User, workspace: str) -> dict[str, tuple[str, int]]:
    """path -> (type, version) of every entry."""
    return {entry["path"]: (entry["type"], entry["version"]) for entry in listing(user, workspace)}


def create(
    user: User, workspace: str, path: str, content: str = "", **extra: Any
) -> httpx.Response:
    return user.client.post(files_url(workspace), json={"path": path, "content": content, **extra})


def read(user: User, workspace: str, path: str) -> dict[str, Any]:
    response = user.client.get(files_url(workspace, path))
    assert response.status_code == 200, response.text
    return response.json()["data"]


def empty_workspace(user: User) -> str:
    """A workspace with no entries at all (whatever a new session starts with is removed)."""
    workspace = new_workspace(user)
    for entry in listing(user, workspace):
        if "/" not in entry["path"]:
            assert user.client.delete(files_url(workspace, entry["path"])).status_code == 200
    assert listing(user, workspace) == []
    return workspace


@pytest.fixture
def owner(api: httpx.Client) -> User:
    return new_user(api)


@pytest.fixture
def workspace(owner: User) -> str:
    return empty_workspace(owner)


# ---- creating and listing ------------------------------------------------------------------


def test_creating_a_nested_file_creates_its_parent_directories(owner: User, workspace: str) -> None:
    response = create(owner, workspace, "src/pkg/mod.py", "x = 1\n")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["success"] is True and body["timestamp"].endswith("Z")
    meta = body["data"]
    assert set(meta) == META_FIELDS
    assert meta["name"] == "mod.py" and meta["path"] == "src/pkg/mod.py"
    assert meta["type"] == "file" and meta["size"] == 6 and meta["version"] == 1
    assert meta["modified"].endswith("Z")
    assert tree(owner, workspace) == {
        "src": ("directory", 1),
        "src/pkg": ("directory", 1),
        "src/pkg/mod.py": ("file", 1),
    }


def test_listing_returns_every_entry_recursively_sorted_by_path_with_a_count(
    owner: User, workspace: str
) -> None:
    for path in ["b.txt", "a/z.txt", "a/b/c.txt", "a.txt", "c/d/e/f.txt"]:
        assert create(owner, workspace, path, path).status_code == 201
    body = owner.client.get(files_url(workspace)).json()
    paths = [entry["path"] for entry in body["data"]]
    assert paths == sorted(paths)
    assert set(paths) == {
        "a",
        "a.txt",
        "a/b",
        "a/b/c.txt",
        "a/z.txt",
        "b.txt",
        "c",
        "c/d",
        "c/d/e",
        "c/d/e/f.txt",
    }
    assert body["count"] == len(paths) == 10
    for entry in body["data"]:
        assert set(entry) == META_FIELDS
        assert entry["name"] == entry["path"].rsplit("/", 1)[-1]


def test_creating_a_directory_explicitly(owner: User, workspace: str) -> None:
    response = create(owner, workspace, "docs/api", type="directory")
    assert response.status_code == 201
    assert response.json()["data"]["type"] == "directory"
    assert tree(owner, workspace) == {"docs": ("directory", 1), "docs/api": ("directory", 1)}


def test_a_directory_cannot_have_content(owner: User, workspace: str) -> None:
    error = assert_error(create(owner, workspace, "d", "text", type="directory"), 400)
    assert "content" in error["error"]
    assert listing(owner, workspace) == []


def test_creating_an_existing_path_is_409_and_keeps_the_file(owner: User, workspace: str) -> None:
    assert create(owner, workspace, "a.txt", "first").status_code == 201
    assert_error(create(owner, workspace, "a.txt", "second"), 409)
    assert_error(create(owner, workspace, "a.txt", type="directory"), 409)
    assert read(owner, workspace, "a.txt")["content"] == "first"
    assert create(owner, workspace, "d", type="directory").status_code == 201
    assert_error(create(owner, workspace, "d", type="directory"), 409)
    assert_error(create(owner, workspace, "d", "file over a directory"), 409)


def test_a_file_cannot_be_the_parent_of_anything(owner: User, workspace: str) -> None:
    assert create(owner, workspace, "a.txt", "file").status_code == 201
    before = tree(owner, workspace)
    assert_error(create(owner, workspace, "a.txt/b.txt", "x"), 409)
    assert_error(create(owner, workspace, "a.txt/b/c.txt", "x"), 409)
    assert_error(create(owner, workspace, "a.txt/d", type="directory"), 409)
    assert_error(owner.client.put(files_url(workspace, "a.txt/b.txt"), json={"content": "x"}), 409)
    assert tree(owner, workspace) == before


def test_a_request_body_path_with_percent_signs_is_taken_literally(
    owner: User, workspace: str
) -> None:
    # Only URLs are percent-decoded; in JSON "%2e%2e%2f" is an ordinary (odd) file name.
    assert create(owner, workspace, "%2e%2e%2fx", "literal").status_code == 201
    assert [entry["path"] for entry in listing(owner, workspace)] == ["%2e%2e%2fx"]
    assert read(owner, workspace, "%252e%252e%252fx")["content"] == "literal"


# ---- reading -------------------------------------------------------------------------------


def test_reading_a_file_returns_its_content_and_an_etag_of_its_version(
    owner: User, workspace: str
) -> None:
    assert create(owner, workspace, "dir/hello.py", "print('hi')\n").status_code == 201
    response = owner.client.get(files_url(workspace, "dir/hello.py"))
    assert response.status_code == 200
    data = response.json()["data"]
    assert data == {
        "path": "dir/hello.py",
        "content": "print('hi')\n",
        "encoding": "utf-8",
        "size": 12,
        "modified": data["modified"],
        "version": 1,
    }
    assert data["modified"].endswith("Z")
    assert response.headers["etag"] == '"1"'


def test_multibyte_utf8_text_comes_back_as_utf8(owner: User, workspace: str) -> None:
    text = "héllo ✓ 🐍\n"
    assert create(owner, workspace, "ünïcode/名前.txt", text).status_code == 201
    data = read(owner, workspace, "ünïcode/名前.txt")
    assert data["content"] == text and data["encoding"] == "utf-8"
    assert data["size"] == len(text.encode("utf-8"))


def test_binary_content_round_trips_byte_for_byte_as_base64(owner: User, workspace: str) -> None:
    blob = bytes(range(256)) * 4 + b"\xff\xfe\x00\x80"
    encoded = base64.b64encode(blob).decode()
    response = create(owner, workspace, "bin/blob.dat", encoded, encoding="base64")
    assert response.status_code == 201 and response.json()["data"]["size"] == len(blob)
    data = read(owner, workspace, "bin/blob.dat")
    assert data["encoding"] == "base64" and data["size"] == len(blob)
    assert base64.b64decode(data["content"]) == blob
    # Replacing through PUT round-trips too.
    other = b"\x89PNG\r\n\x1a\n" + bytes(range(255, -1, -1))
    put = owner.client.put(
        files_url(workspace, "bin/blob.dat"),
        json={"content": base64.b64encode(other).decode(), "encoding": "base64"},
    )
    assert put.status_code == 200
    assert base64.b64decode(read(owner, workspace, "bin/blob.dat")["content"]) == other


def test_base64_of_utf8_text_is_stored_as_that_text(owner: User, workspace: str) -> None:
    encoded = base64.b64encode(b"plain text").decode()
    assert create(owner, workspace, "t.txt", encoded, encoding="base64").status_code == 201
    data = read(owner, workspace, "t.txt")
    assert data["content"] == "plain text" and data["encoding"] == "utf-8"


def test_an_empty_file_is_a_file(owner: User, workspace: str) -> None:
    assert create(owner, workspace, "empty").status_code == 201
    data = read(owner, workspace, "empty")
    assert data["content"] == "" and data["size"] == 0 and data["encoding"] == "utf-8"


def test_reading_a_directory_is_400_naming_it(owner: User, workspace: str) -> None:
    assert create(owner, workspace, "src/main.py", "").status_code == 201
    error = assert_error(owner.client.get(files_url(workspace, "src")), 400)
    assert "directory" in error["error"]


def test_reading_a_missing_file_is_404(owner: User, workspace: str) -> None:
    assert_error(owner.client.get(files_url(workspace, "nope.txt")), 404)
    assert_error(owner.client.get(files_url(workspace, "no/such/dir/file.txt")), 404)


def test_a_read_answers_alike_whether_or_not_it_carries_an_origin(
    api: httpx.Client, owner: User, workspace: str
) -> None:
    """A read without an Origin is answered below the framework (the editor's hot path), one
    with an Origin by the documented handler, which adds the CORS headers: for every outcome,
    the two answers are the same."""
    assert create(owner, workspace, "a.py", "print('hi')\n").status_code == 201
    blob = base64.b64encode(bytes(range(256))).decode()
    assert create(owner, workspace, "bin.dat", blob, encoding="base64").status_code == 201
    assert create(owner, workspace, "dir/x.txt", "x").status_code == 201
    stranger = new_user(api)
    by_cookie = httpx.Client(base_url=str(api.base_url), timeout=30)
    by_cookie.cookies.set("cep_token", owner.token)
    forged = httpx.Client(
        base_url=str(api.base_url), timeout=30, headers={"Authorization": "Bearer forged"}
    )
    cases = [
        (owner.client, "a.py", 200),
        (owner.client, "bin.dat", 200),
        (by_cookie, "a.py", 200),
        (owner.client, "dir", 400),
        (owner.client, "a//b", 400),
        (owner.client, "..%2Fa.py", 400),
        (owner.client, "missing.txt", 404),
        (stranger.client, "a.py", 404),
        (api, "a.py", 401),
        (forged, "a.py", 401),
    ]
    try:
        for client, path, status in cases:
            plain = client.get(files_url(workspace, path))
            cross = client.get(files_url(workspace, path), headers={"Origin": ALLOWED_ORIGIN})
            assert "access-control-allow-origin" not in plain.headers
            assert cross.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
            assert plain.status_code == cross.status_code == status, (path, plain.text)
            assert _untimed(plain.json()) == _untimed(cross.json()), path
            for name in ("content-type", "content-length", "etag"):
                assert plain.headers.get(name) == cross.headers.get(name), (path, name)
    finally:
        by_cookie.close()
        forged.close()


def _untimed(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key != "timestamp"}


# ---- replacing, If-Match -------------------------------------------------------------------


def test_put_creates_a_file_then_replaces_it_bumping_the_version(
    owner: User, workspace: str
) -> None:
    first = owner.client.put(files_url(workspace, "deep/er/notes.md"), json={"content": "one"})
    assert first.status_code == 200, first.text
    assert first.json()["message"] == "File created"
    assert first.json()["data"]["version"] == 1 and first.headers["etag"] == '"1"'
    assert tree(owner, workspace)["deep/er"] == ("directory", 1)
    second = owner.client.put(files_url(workspace, "deep/er/notes.md"), json={"content": "two!"})
    assert second.status_code == 200
    assert second.json()["message"] == "File updated"
    meta = second.json()["data"]
    assert set(meta) == META_FIELDS
    assert meta["version"] == 2 and meta["size"] == 4 and second.headers["etag"] == '"2"'
    assert read(owner, workspace, "deep/er/notes.md")["content"] == "two!"


def test_put_with_the_current_etag_succeeds_and_a_stale_one_is_412(
    owner: User, workspace: str
) -> None:
    url = files_url(workspace, "f.txt")
    etag = owner.client.put(url, json={"content": "v1"}).headers["etag"]
    newer = owner.client.put(url, json={"content": "v2"}, headers={"If-Match": etag})
    assert newer.status_code == 200 and newer.headers["etag"] == '"2"'
    error = assert_error(
        owner.client.put(url, json={"content": "lost"}, headers={"If-Match": etag}), 412
    )
    assert "If-Match" in error["error"]
    assert read(owner, workspace, "f.txt")["content"] == "v2"
    assert read(owner, workspace, "f.txt")["version"] == 2
    listed = owner.client.put(url, json={"content": "v3"}, headers={"If-Match": '"7", "2"'})
    assert listed.status_code == 200


@pytest.mark.parametrize("tag", ['W/"1"', '"01x"', "garbage", '"2"', ""])
def test_if_match_that_names_no_current_version_is_412(
    owner: User, workspace: str, tag: str
) -> None:
    url = files_url(workspace, "f.txt")
    assert owner.client.put(url, json={"content": "v1"}).status_code == 200
    assert_error(owner.client.put(url, json={"content": "x"}, headers={"If-Match": tag}), 412)
    assert read(owner, workspace, "f.txt")["content"] == "v1"


def test_if_match_star_replaces_an_existing_file_but_never_creates_one(
    owner: User, workspace: str
) -> None:
    assert_error(
        owner.client.put(
            files_url(workspace, "new.txt"), json={"content": "x"}, headers={"If-Match": "*"}
        ),
        412,
    )
    assert_error(
        owner.client.put(
            files_url(workspace, "a/new.txt"), json={"content": "x"}, headers={"If-Match": '"1"'}
        ),
        412,
    )
    assert listing(owner, workspace) == []
    assert create(owner, workspace, "new.txt", "x").status_code == 201
    replaced = owner.client.put(
        files_url(workspace, "new.txt"), json={"content": "y"}, headers={"If-Match": "*"}
    )
    assert replaced.status_code == 200 and replaced.json()["data"]["version"] == 2


def test_put_on_a_directory_is_409(owner: User, workspace: str) -> None:
    assert create(owner, workspace, "d", type="directory").status_code == 201
    assert_error(owner.client.put(files_url(workspace, "d"), json={"content": "x"}), 409)
    assert tree(owner, workspace) == {"d": ("directory", 1)}


# ---- deleting ------------------------------------------------------------------------------


def test_deleting_a_directory_removes_everything_under_it_and_nothing_else(
    owner: User, workspace: str
) -> None:
    for path in ["a/b/c.txt", "a/d.txt", "ab.txt", "a.b/e.txt"]:
        assert create(owner, workspace, path, "x").status_code == 201
    response = owner.client.delete(files_url(workspace, "a"))
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {"path": "a", "deleted_entries": 4}
    assert set(tree(owner, workspace)) == {"ab.txt", "a.b", "a.b/e.txt"}


def test_deleting_a_file_keeps_its_directory(owner: User, workspace: str) -> None:
    assert create(owner, workspace, "a/b.txt", "x").status_code == 201
    response = owner.client.delete(files_url(workspace, "a/b.txt"))
    assert response.status_code == 200
    assert response.json()["data"] == {"path": "a/b.txt", "deleted_entries": 1}
    assert tree(owner, workspace) == {"a": ("directory", 1)}
    assert_error(owner.client.get(files_url(workspace, "a/b.txt")), 404)


def test_deleting_a_missing_path_is_404(owner: User, workspace: str) -> None:
    assert_error(owner.client.delete(files_url(workspace, "ghost")), 404)
    assert_error(owner.client.delete(files_url(workspace, "ghost/inside")), 404)


# ---- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"path": "x", "type": "symlink"}, "type"),
        ({"path": "x", "encoding": "latin-1"}, "encoding"),
        ({"path": "x", "content": 5}, "content"),
        ({"content": "x"}, "path"),
        ({"path": "x", "content": "%%%not base64", "encoding": "base64"}, "content"),
        ({"path": "x", "content": "YWJj=", "encoding": "base64"}, "content"),
    ],
)
def test_invalid_create_bodies_are_400_naming_the_field(
    owner: User, workspace: str, body: dict[str, Any], field: str
) -> None:
    error = assert_error(owner.client.post(files_url(workspace), json=body), 400)
    assert field in error["error"]
    assert listing(owner, workspace) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "content"),
        ({"content": None}, "content"),
        ({"content": "x", "encoding": "utf-16"}, "encoding"),
        ({"content": "not base64!", "encoding": "base64"}, "content"),
    ],
)
def test_invalid_put_bodies_are_400_naming_the_field(
    owner: User, workspace: str, body: dict[str, Any], field: str
) -> None:
    error = assert_error(owner.client.put(files_url(workspace, "a/f.txt"), json=body), 400)
    assert field in error["error"]
    assert listing(owner, workspace) == []


def test_a_malformed_workspace_id_is_400(owner: User) -> None:
    for url in [
        "/api/workspace/not-a-uuid/files",
        "/api/workspace/not-a-uuid/files/a.txt",
        "/api/workspace/123/status",
    ]:
        assert "workspace_id" in assert_error(owner.client.get(url), 400)["error"]
    assert_error(owner.client.post("/workspace/not-a-uuid/shutdown"), 400)


def test_an_unknown_workspace_is_404(owner: User) -> None:
    ghost = str(uuid.uuid4())
    assert_error(owner.client.get(files_url(ghost)), 404)
    assert_error(owner.client.get(files_url(ghost, "main.py")), 404)
    assert_error(owner.client.put(files_url(ghost, "main.py"), json={"content": ""}), 404)
    assert_error(owner.client.post(f"/workspace/{ghost}/shutdown"), 404)


# ---- size limits ---------------------------------------------------------------------------


def test_a_file_of_exactly_1_mib_is_accepted(owner: User, workspace: str) -> None:
    assert create(owner, workspace, "big.txt", "x" * MIB).status_code == 201
    assert read(owner, workspace, "big.txt")["size"] == MIB


def test_a_file_over_1_mib_is_413_whichever_way_it_comes_and_nothing_is_written(
    owner: User, workspace: str
) -> None:
    too_big = "x" * (MIB + 1)
    assert_error(create(owner, workspace, "dir/big.txt", too_big), 413)
    assert_error(
        owner.client.put(files_url(workspace, "dir/big.txt"), json={"content": too_big}), 413
    )
    as_base64 = base64.b64encode(b"\x00" * (MIB + 1)).decode()
    assert_error(create(owner, workspace, "dir/big.bin", as_base64, encoding="base64"), 413)
    # Multi-byte characters count as bytes: 350k three-byte characters are over 1 MiB.
    assert_error(create(owner, workspace, "dir/wide.txt", "✓" * 350_000), 413)
    assert listing(owner, workspace) == []


# ---- status, defaults, shutdown ------------------------------------------------------------


def test_status_of_an_empty_workspace_says_it_is_uninitialized_and_stopped(
    owner: User, workspace: str
) -> None:
    response = owner.client.get(f"/api/workspace/{workspace}/status")
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["status"] == "uninitialized" and data["initialized"] is False
    assert data["file_count"] == 0 and data["directory_count"] == 0
    assert data["execution"]["state"] == "stopped"
    assert isinstance(data["execution"]["backend"], str) and data["execution"]["backend"]
    assert data["active_connections"] == 0
    assert data["sync_skipped"] == [] and data["last_synced_at"] is None
    assert isinstance(data["message"], str) and data["message"]


def test_status_counts_files_and_directories(owner: User, workspace: str) -> None:
    for path in ["a/b/c.txt", "a/d.txt", "e.txt"]:
        assert create(owner, workspace, path, "x").status_code == 201
    data = owner.client.get(f"/api/workspace/{workspace}/status").json()["data"]
    assert data["status"] == "ready" and data["initialized"] is True
    assert data["file_count"] == 3 and data["directory_count"] == 2


def test_ensure_defaults_creates_main_py_and_requirements_once(owner: User, workspace: str) -> None:
    url = f"/api/workspace/{workspace}/ensure-defaults"
    first = owner.client.post(url)
    assert first.status_code == 200, first.text
    assert sorted(first.json()["data"]["files_created"]) == ["main.py", "requirements.txt"]
    main = read(owner, workspace, "main.py")
    assert "print(" in main["content"] and main["version"] == 1
    assert read(owner, workspace, "requirements.txt")["encoding"] == "utf-8"
    again = owner.client.post(url)
    assert again.status_code == 200 and again.json()["data"]["files_created"] == []
    assert tree(owner, workspace) == {"main.py": ("file", 1), "requirements.txt": ("file", 1)}


def test_ensure_defaults_never_touches_an_existing_main_py(owner: User, workspace: str) -> None:
    assert create(owner, workspace, "main.py", "print('mine')\n").status_code == 201
    response = owner.client.post(f"/api/workspace/{workspace}/ensure-defaults")
    assert response.json()["data"]["files_created"] == ["requirements.txt"]
    main = read(owner, workspace, "main.py")
    assert main["content"] == "print('mine')\n" and main["version"] == 1


def test_shutdown_without_a_running_environment_is_clean_and_idempotent(
    owner: User, workspace: str
) -> None:
    assert create(owner, workspace, "keep.txt", "kept").status_code == 201
    for _ in range(2):
        response = owner.client.post(f"/workspace/{workspace}/shutdown")
        assert response.status_code == 200, response.text
        assert response.json()["data"] == {
            "workspace_id": workspace,
            "session_id": workspace,
            "active_connections": 0,
            "container_cleaned": True,
            "message": None,
        }
    assert read(owner, workspace, "keep.txt")["content"] == "kept"
    status = owner.client.get(f"/api/workspace/{workspace}/status").json()["data"]
    assert status["execution"]["state"] == "stopped"


# ---- who may do what -----------------------------------------------------------------------


def every_request(workspace: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    """(method, url, json) for every endpoint of the workspace function."""
    return [
        ("GET", files_url(workspace), None),
        ("POST", files_url(workspace), {"path": "intruder.txt", "content": "x"}),
        ("GET", files_url(workspace, "src/app.py"), None),
        ("PUT", files_url(workspace, "src/app.py"), {"content": "overwritten"}),
        ("PUT", files_url(workspace, "src/new.py"), {"content": "planted"}),
        ("DELETE", files_url(workspace, "src/app.py"), None),
        ("DELETE", files_url(workspace, "src"), None),
        ("GET", f"/api/workspace/{workspace}/status", None),
        ("POST", f"/api/workspace/{workspace}/ensure-defaults", None),
        ("POST", f"/workspace/{workspace}/shutdown", None),
    ]


def populated_workspace(owner: User) -> str:
    workspace = empty_workspace(owner)
    assert create(owner, workspace, "src/app.py", "secret = 42\n").status_code == 201
    return workspace


def test_another_user_gets_404_at_every_endpoint_and_nothing_changes(
    api: httpx.Client, owner: User
) -> None:
    workspace = populated_workspace(owner)
    before = tree(owner, workspace)
    stranger = new_user(api)
    for method, url, body in every_request(workspace):
        response = stranger.client.request(method, url, json=body)
        error = assert_error(response, 404)
        assert "secret" not in response.text and error["error"] == "Workspace not found"
    assert tree(owner, workspace) == before
    assert read(owner, workspace, "src/app.py")["content"] == "secret = 42\n"


def test_an_unassigned_reviewer_without_a_review_gets_404_too(
    api: httpx.Client, owner: User
) -> None:
    workspace = populated_workspace(owner)
    reviewer = new_user(api, reviewer=True)
    for method, url, body in every_request(workspace):
        assert_error(reviewer.client.request(method, url, json=body), 404)


def test_anonymous_requests_are_401(api: httpx.Client, owner: User) -> None:
    workspace = populated_workspace(owner)
    before = tree(owner, workspace)
    for method, url, body in every_request(workspace):
        assert_error(api.request(method, url, json=body), 401)
    assert tree(owner, workspace) == before


def test_the_reviewer_of_an_open_review_reads_but_cannot_write(
    api: httpx.Client, owner: User
) -> None:
    workspace = populated_workspace(owner)
    reviewer = new_user(api, reviewer=True)
    review = owner.client.post(
        "/api/reviews/",
        json={"session_id": workspace, "title": "Please review", "assigned_to": reviewer.id},
    )
    assert review.status_code == 201, review.text
    before = tree(owner, workspace)
    writes = 0
    for method, url, body in every_request(workspace):
        response = reviewer.client.request(method, url, json=body)
        if method == "GET":
            assert response.status_code == 200, (url, response.text)
        else:
            assert_error(response, 403)
            writes += 1
    assert writes == 7
    assert reviewer.client.get(files_url(workspace, "src/app.py")).json()["data"]["content"] == (
        "secret = 42\n"
    )
    assert tree(owner, workspace) == before
    # Another reviewer, not assigned, still sees nothing.
    other = new_user(api, reviewer=True)
    assert_error(other.client.get(files_url(workspace)), 404)


# ---- quotas (a second platform with small limits) ------------------------------------------


@pytest.fixture(scope="module")
def small_platform(database_url: str) -> Iterator[httpx.Client]:
    with running_platform(
        database_url,
        extra_env={
            "MAX_WORKSPACE_ENTRIES": "10",
            "MAX_WORKSPACE_BYTES": "4096",
            "MAX_FILE_BYTES": "3000",
        },
    ) as running:
        with httpx.Client(base_url=running.base_url, timeout=30) as client:
            yield client


def test_the_entry_quota_is_413_and_a_refused_nested_write_creates_no_parents(
    small_platform: httpx.Client,
) -> None:
    owner = new_user(small_platform)
    workspace = empty_workspace(owner)
    for index in range(8):
        assert create(owner, workspace, f"f{index}.txt", "x").status_code == 201
    before = tree(owner, workspace)
    # Three new directories and a file would make 12 entries.
    assert (
        "at most 10" in assert_error(create(owner, workspace, "d1/d2/d3/f.txt", "x"), 413)["error"]
    )
    assert_error(owner.client.put(files_url(workspace, "d1/d2/f.txt"), json={"content": "x"}), 413)
    assert_error(create(owner, workspace, "d1/d2/d3", type="directory"), 413)
    assert tree(owner, workspace) == before
    # Exactly up to the limit is fine, and replacing a file adds no entry.
    assert create(owner, workspace, "d1/f.txt", "x").status_code == 201
    assert (
        owner.client.put(files_url(workspace, "f0.txt"), json={"content": "y"}).status_code == 200
    )
    assert_error(create(owner, workspace, "one-more.txt", "x"), 413)
    assert_error(owner.client.post(f"/api/workspace/{workspace}/ensure-defaults"), 413)
    assert len(listing(owner, workspace)) == 10


def test_the_byte_quota_counts_replacements_by_their_difference(
    small_platform: httpx.Client,
) -> None:
    owner = new_user(small_platform)
    workspace = empty_workspace(owner)
    assert create(owner, workspace, "a.txt", "a" * 2500).status_code == 201
    assert_error(create(owner, workspace, "b/b.txt", "b" * 2000), 413)
    assert set(tree(owner, workspace)) == {"a.txt"}
    # Growing a.txt to 3000 keeps the workspace at 3000 bytes: fine. 1500 more is not.
    assert (
        owner.client.put(files_url(workspace, "a.txt"), json={"content": "a" * 3000}).status_code
        == 200
    )
    assert_error(owner.client.put(files_url(workspace, "c.txt"), json={"content": "c" * 1500}), 413)
    assert read(owner, workspace, "a.txt")["size"] == 3000
    # The per-file limit is configurable too.
    assert_error(owner.client.put(files_url(workspace, "a.txt"), json={"content": "a" * 3001}), 413)
