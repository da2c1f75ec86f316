"""The terminal end to end: the gateway in a subprocess, real sockets, real bubblewrap."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from tests.helpers import Platform, User, new_user, new_workspace
from tests.terminal_client import Terminal, open_terminal

pytestmark = pytest.mark.anyio


@pytest.fixture
def owner(api: httpx.Client) -> User:
    return new_user(api)


@pytest.fixture
def workspace(owner: User) -> str:
    ws = new_workspace(owner)
    assert owner.client.post(f"/api/workspace/{ws}/ensure-defaults").status_code == 200
    return ws


def files(user: User, workspace: str) -> dict[str, dict[str, Any]]:
    response = user.client.get(f"/api/workspace/{workspace}/files")
    assert response.status_code == 200, response.text
    return {entry["path"]: entry for entry in response.json()["data"]}


def content(user: User, workspace: str, path: str) -> bytes:
    response = user.client.get(f"/api/workspace/{workspace}/files/{path}")
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    if data["encoding"] == "base64":
        return base64.b64decode(data["content"])
    return data["content"].encode()


async def test_python_main_prints_its_output(
    platform: Platform, owner: User, workspace: str
) -> None:
    async with open_terminal(platform, owner, workspace) as ws:
        term = Terminal(ws)
        await term.ready()
        assert {"type": "status", "state": "starting"} in term.controls
        assert await term.run("python3 main.py") == "Hello, world!"


async def test_files_changed_in_the_shell_appear_through_the_api(
    platform: Platform, owner: User, workspace: str
) -> None:
    async with open_terminal(platform, owner, workspace) as ws:
        term = Terminal(ws)
        await term.ready()
        await term.run(
            "echo 'print(42)' > made.py && printf '\\x00\\xff\\x01' > blob.bin && "
            "echo '# more' >> main.py && mv requirements.txt reqs.txt && mkdir -p pkg/sub && "
            "echo x > gone.txt && rm gone.txt && mkdir .venv && touch .venv/ignored"
        )
        listed = files(owner, workspace)  # the API syncs a running workspace before reading
        assert content(owner, workspace, "made.py") == b"print(42)\n"
        assert content(owner, workspace, "blob.bin") == b"\x00\xff\x01"
        assert content(owner, workspace, "main.py").endswith(b"# more\n")
        assert "reqs.txt" in listed and "requirements.txt" not in listed
        assert listed["pkg/sub"]["type"] == "directory"
        assert "gone.txt" not in listed and ".venv/ignored" not in listed
        status = owner.client.get(f"/api/workspace/{workspace}/status").json()["data"]
        assert {"path": ".venv", "reason": "ignored"} in status["sync_skipped"]
        assert status["execution"]["state"] == "running" and status["active_connections"] == 1


async def test_api_writes_appear_in_the_shell(
    platform: Platform, owner: User, workspace: str
) -> None:
    async with open_terminal(platform, owner, workspace) as ws:
        term = Terminal(ws)
        await term.ready()
        put = owner.client.put(
            f"/api/workspace/{workspace}/files/notes/today.md", json={"content": "héllo\n"}
        )
        assert put.status_code == 200, put.text
        assert await term.run("cat notes/today.md") == "héllo"
        owner.client.delete(f"/api/workspace/{workspace}/files/notes")
        assert await term.run("test -e notes || echo absent") == "absent"
        # The API write is not reverted by the sync that follows the shell's output.
        assert content(owner, workspace, "main.py").startswith(b'"""Your program')


async def test_resize_changes_stty_size(platform: Platform, owner: User, workspace: str) -> None:
    async with open_terminal(platform, owner, workspace, cols="100", rows="30") as ws:
        term = Terminal(ws)
        await term.ready()
        assert await term.run("stty size") == "30 100"
        await term.control({"type": "resize", "cols": 132, "rows": 43})
        assert await term.run("stty size") == "43 132"
        await term.control({"type": "ping"})
        await term.run("true")
        assert {"type": "pong"} in term.controls


async def test_reconnect_reattaches_to_the_same_shell_and_replays(
    platform: Platform, owner: User, workspace: str
) -> None:
    async with open_terminal(platform, owner, workspace) as ws:
        term = Terminal(ws)
        await term.ready()
        await term.run("SECRET=still-here; echo before-disconnect; printf '\\033[6n'")
    async with open_terminal(platform, owner, workspace) as ws:
        term = Terminal(ws)
        await term.until("before-disconnect")  # the replay comes first
        assert "\x1b[6n" not in term.text  # a replayed query would make xterm.js answer
        assert await term.run("echo $SECRET") == "still-here"


async def test_shutdown_persists_everything_and_closes_the_terminals(
    platform: Platform, owner: User, workspace: str
) -> None:
    async with open_terminal(platform, owner, workspace) as ws:
        term = Terminal(ws)
        await term.ready()
        await term.run("echo saved > last-second.txt")
        response = owner.client.post(f"/workspace/{workspace}/shutdown")
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert data["active_connections"] == 1 and data["container_cleaned"] is True
        assert await term.closed() == 1001
    assert content(owner, workspace, "last-second.txt") == b"saved\n"
    status = owner.client.get(f"/api/workspace/{workspace}/status").json()["data"]
    assert status["execution"]["state"] == "stopped"
    again = owner.client.post(f"/workspace/{workspace}/shutdown").json()["data"]
    assert again["active_connections"] == 0 and again["container_cleaned"] is True
    async with open_terminal(platform, owner, workspace) as ws:  # a fresh start from the DB
        term = Terminal(ws)
        await term.ready()
        assert await term.run("cat last-second.txt") == "saved"


async def test_deleting_the_session_stops_its_environment_and_closes_its_terminals(
    platform: Platform, owner: User, workspace: str
) -> None:
    async with open_terminal(platform, owner, workspace) as ws:
        term = Terminal(ws)
        await term.ready()
        await term.run("echo running")
        assert owner.client.delete(f"/api/postgres_sessions/{workspace}").status_code == 200
        assert await term.closed() == 1001
    assert owner.client.get(f"/api/workspace/{workspace}/status").status_code == 404


async def test_anonymous_foreign_and_unknown_are_refused(
    platform: Platform, api: httpx.Client, owner: User, workspace: str
) -> None:
    stranger = new_user(api)
    cases = [
        (None, workspace, {}, 4401),
        (None, workspace, {"token": "not-a-token"}, 4401),
        (stranger, workspace, {}, 4404),
        (owner, "00000000-0000-0000-0000-000000000000", {}, 4404),
    ]
    for user, target, query, code in cases:
        async with open_terminal(platform, user, target, **query) as ws:
            assert await Terminal(ws).closed() == code
    async with open_terminal(platform, None, workspace, token=owner.token) as ws:
        assert await Terminal(ws).closed() == 4401  # a login token never counts in a URL


async def test_a_reviewer_may_not_open_the_terminal(
    platform: Platform, api: httpx.Client, owner: User, workspace: str
) -> None:
    reviewer = new_user(api, reviewer=True)
    review = owner.client.post(
        "/api/reviews/",
        json={"session_id": workspace, "title": "look", "assigned_to": reviewer.id},
    )
    assert review.status_code == 201, review.text
    async with open_terminal(platform, reviewer, workspace) as ws:
        assert await Terminal(ws).closed() == 4403
