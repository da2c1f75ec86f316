"""Hostile workspace paths: every one is refused with 400 and nothing is written.

Body paths (POST .../files) are plain JSON strings. URL paths (GET/PUT/DELETE .../files/{path})
are sent as raw request targets, byte for byte: httpx (like browsers) would otherwise resolve
"../" and "./" segments before sending, so the server would never see them. The server checks
the path exactly as the client wrote it (percent-escapes decoded) rather than the router's
normalized copy, which collapses "//" and would turn "files//etc/passwd" into "etc/passwd".

The workspace under attack holds files at the places a normalized hostile path would land
("x", "etc/passwd", "a/b"), so a request that was quietly normalized instead of refused would
read, replace or delete one of them, and the unchanged listing (paths and versions) shows none did.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers import Platform, User, assert_error, new_user, new_workspace

SEED = {
    "x": "top",
    "etc/passwd": "root:x:0:0",
    "a/b": "inner",
    "a/x": "inner x",
    "keep.txt": "kept",
}

OVERLONG_COMPONENT = "c" * 256
OVERLONG_PATH = "/".join(["p" * 200] * 6)  # 1205 bytes, every component fine
TOO_DEEP = "/".join(["d"] * 33)

HOSTILE_BODY_PATHS = [
    "../x",
    "a/../../x",
    "a/../x",
    "..",
    ".",
    "./x",
    "a/.",
    "a/./b",
    "/etc/passwd",
    "/",
    "//x",
    "a//b",
    "",
    "a\\b",
    "..\\x",
    "a\x00b",
    "\x00",
    "a\x01b",
    "a\nb",
    "a\rb",
    "a\tb",
    "a\x1bb",
    "a\x7fb",
    "a\u202eb",  # right-to-left override: a name that displays as something else
    "a\u2028b",  # line separator
    OVERLONG_COMPONENT,
    OVERLONG_PATH,
    TOO_DEEP,
]

# What follows ".../files/" in the raw request target.
HOSTILE_URL_PATHS = [
    "../x",
    "a/../../x",
    "a/../x",
    "..",
    ".",
    "a/./b",
    "a/%2e/b",
    "..%2Fx",
    "..%2fx",
    "%2e%2e%2fx",
    "%2E%2E/x",
    "%2e%2e",
    "%2e",
    "a/%2e%2e/%2e%2e/x",
    "/etc/passwd",
    "%2Fetc%2Fpasswd",
    "a//b",
    "a%2F%2Fb",
    "a%5Cb",
    "..%5Cx",
    "a%00b",
    "%00",
    "a%01b",
    "a%0Ab",
    "a%0Db",
    "a%09b",
    "a%7Fb",
    "a%E2%80%AEb",
    "%FF",  # not UTF-8
    "a%C0%AFb",  # overlong UTF-8 encoding of "/"
    OVERLONG_COMPONENT,
    OVERLONG_PATH,
    TOO_DEEP,
]


def files_url(workspace: str) -> str:
    return f"/api/workspace/{workspace}/files"


def raw_request(
    user: User, method: str, target: str, json: dict[str, Any] | None = None
) -> httpx.Response:
    """Send ``target`` as the request line's path exactly as written (no dot-segment removal)."""
    request = user.client.build_request(
        method, target, json=json, extensions={"target": target.encode("ascii")}
    )
    return user.client.send(request)


def snapshot(user: User, workspace: str) -> dict[str, tuple[str, int, int]]:
    response = user.client.get(files_url(workspace))
    assert response.status_code == 200, response.text
    return {e["path"]: (e["type"], e["version"], e["size"]) for e in response.json()["data"]}


class Target:
    def __init__(self, owner: User, workspace: str) -> None:
        self.owner = owner
        self.workspace = workspace
        self.before = snapshot(owner, workspace)

    def assert_untouched(self) -> None:
        assert snapshot(self.owner, self.workspace) == self.before


@pytest.fixture(scope="module")
def target(platform: Platform) -> Iterator[Target]:
    with httpx.Client(base_url=platform.base_url, timeout=30) as api:
        owner = new_user(api)
        workspace = new_workspace(owner)
        for entry in snapshot(owner, workspace):
            if "/" not in entry:
                owner.client.delete(f"{files_url(workspace)}/{entry}")
        for path, content in SEED.items():
            response = owner.client.put(f"{files_url(workspace)}/{path}", json={"content": content})
            assert response.status_code == 200, response.text
        yield Target(owner, workspace)


@pytest.mark.parametrize("path", HOSTILE_BODY_PATHS, ids=repr)
@pytest.mark.parametrize("kind", ["file", "directory"])
def test_a_hostile_body_path_is_refused_with_400_and_nothing_is_written(
    target: Target, path: str, kind: str
) -> None:
    body: dict[str, Any] = {"path": path, "type": kind}
    if kind == "file":
        body["content"] = "pwned"
    error = assert_error(target.owner.client.post(files_url(target.workspace), json=body), 400)
    assert error["error"].startswith("path:"), error
    target.assert_untouched()


@pytest.mark.parametrize("suffix", HOSTILE_URL_PATHS, ids=repr)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_a_hostile_url_path_is_refused_with_400_and_nothing_is_read_or_written(
    target: Target, suffix: str, method: str
) -> None:
    url = f"{files_url(target.workspace)}/{suffix}"
    body = {"content": "pwned"} if method == "PUT" else None
    response = raw_request(target.owner, method, url, body)
    error = assert_error(response, 400)
    assert error["error"].startswith("file_path:"), error
    assert "root:x" not in response.text and "inner" not in response.text
    target.assert_untouched()


def test_a_lone_surrogate_in_a_body_path_is_400(target: Target) -> None:
    response = target.owner.client.post(
        files_url(target.workspace),
        content=b'{"path": "a\\ud800b", "content": "x"}',
        headers={"content-type": "application/json"},
    )
    assert_error(response, 400)
    target.assert_untouched()


def test_traversal_that_a_client_resolves_before_sending_never_reaches_the_files(
    target: Target,
) -> None:
    # httpx resolves "files/../../x" to ".../workspace/x" itself: that is no file route, so the
    # router answers 404; "files/a/.." becomes "files/", where PUT is not a method (405).
    owner, workspace = target.owner, target.workspace
    assert_error(owner.client.get(f"{files_url(workspace)}/../../x"), 404)
    assert_error(owner.client.put(f"{files_url(workspace)}/../../x", json={"content": "p"}), 404)
    assert_error(owner.client.delete(f"{files_url(workspace)}/../../x"), 404)
    assert_error(owner.client.put(f"{files_url(workspace)}/a/..", json={"content": "p"}), 405)
    target.assert_untouched()


@pytest.mark.parametrize(
    "path",
    [
        "/".join(["d"] * 32),
        "n" * 255,
        "/".join(["p" * 200] * 5) + "/" + "q" * 19,  # exactly 1024 bytes
        "...",
        ".hidden",
        "a..b",
        "with space.txt",
        "ünï/名前.txt",
        "trailing-dot.",
        "%2e%2e",  # in a JSON body, percent signs are just characters
    ],
)
def test_paths_just_inside_the_limits_are_accepted(api: httpx.Client, path: str) -> None:
    owner = new_user(api)
    workspace = new_workspace(owner)
    assert len(path.encode()) <= 1024
    response = owner.client.post(files_url(workspace), json={"path": path, "content": "ok"})
    assert response.status_code == 201, response.text
    assert response.json()["data"]["path"] == path
    assert path in snapshot(owner, workspace)
