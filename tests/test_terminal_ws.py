"""The terminal end to end: the gateway in a subprocess, real sockets, real bubblewrap."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from tests.helpers import PASSWORD, Platform, User, new_user, new_workspace
from tests.terminal_client import Terminal, open_terminal, opened_shell

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
    async with opened_shell(platform, owner, workspace) as term:
        assert {"type": "status", "state": "starting"} in term.controls
        assert await term.run("python3 main.py") == "Hello, world!"


async def test_files_changed_in_the_shell_appear_through_the_api(
    platform: Platform, owner: User, workspace: str
) -> None:
    async with opened_shell(platform, owner, workspace) as term:
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
    async with opened_shell(platform, owner, workspace) as term:
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
    async with opened_shell(platform, owner, workspace, cols="100", rows="30") as term:
        assert await term.run("stty size") == "30 100"
        await term.control({"type": "resize", "cols": 132, "rows": 43})
        assert await term.run("stty size") == "43 132"
        await term.control({"type": "ping"})
        await term.run("true")
        assert {"type": "pong"} in term.controls


async def test_reconnect_reattaches_to_the_same_shell_and_replays(
    platform: Platform, owner: User, workspace: str
) -> None:
    async with opened_shell(platform, owner, workspace) as term:
        await term.run("SECRET=still-here; echo before-disconnect; printf '\\033[6n'")
    async with open_terminal(platform, owner, workspace) as ws:
        term = Terminal(ws)
        await term.until("before-disconnect")  # the replay comes first
        assert "\x1b[6n" not in term.text  # a replayed query would make xterm.js answer
        assert await term.run("echo $SECRET") == "still-here"


async def test_shutdown_persists_everything_and_closes_the_terminals(
    platform: Platform, owner: User, workspace: str
) -> None:
    async with opened_shell(platform, owner, workspace) as term:
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
    async with opened_shell(platform, owner, workspace) as term:
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


async def test_a_login_token_in_the_url_is_never_accepted(
    platform: Platform, owner: User, workspace: str
) -> None:
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


async def test_plain_mode_sends_only_terminal_output_and_takes_every_frame_as_input(
    platform: Platform, owner: User, workspace: str
) -> None:
    async with open_terminal(platform, owner, workspace, plain=True, cols="91", rows="17") as ws:
        term = Terminal(ws)
        await term.until("$ ")
        assert await term.run("stty size") == "17 91"
        await ws.send(b"echo from-a-binary-frame\n")  # xterm.js sends mouse reports as binary
        await term.until("from-a-binary-frame\r\n")
        # A mouse report reaches the program reading the terminal, byte for byte.
        await term.send("head -c 10 | od -An -tx1; echo OD''-DONE\n")
        await term.until("\n")
        await ws.send(b"\x1b[<0;10;5M\n")
        out = await term.until("OD-DONE\r\n")
        assert "1b 5b 3c 30 3b 31 30 3b 35 4d" in out
        assert await term.run("echo still-fine") == "still-fine"
        assert term.stray == [] and "{" not in term.text.replace("${", "")  # no JSON, ever


async def test_plain_mode_is_resized_and_observed_over_http(
    platform: Platform, owner: User, workspace: str
) -> None:
    async with open_terminal(platform, owner, workspace, plain=True) as ws:
        term = Terminal(ws)
        await term.until("$ ")
        resized = owner.client.post(
            f"/api/terminal/{workspace}/resize", json={"cols": 120, "rows": 40}
        )
        assert resized.status_code == 200, resized.text
        assert await term.run("stty size") == "40 120"
        state = owner.client.get(f"/api/terminal/{workspace}").json()["data"]
        assert state["state"] == "running" and state["connections"] == 1
        assert (state["cols"], state["rows"]) == (120, 40)
    bad = owner.client.post(f"/api/terminal/{workspace}/resize", json={"cols": 0, "rows": 40})
    assert bad.status_code == 400


async def test_the_terminal_state_and_size_belong_to_the_owner(
    platform: Platform, api: httpx.Client, owner: User, workspace: str
) -> None:
    stranger = new_user(api)
    assert stranger.client.get(f"/api/terminal/{workspace}").status_code == 404
    resize = stranger.client.post(
        f"/api/terminal/{workspace}/resize", json={"cols": 80, "rows": 24}
    )
    assert resize.status_code == 404
    stopped = owner.client.get(f"/api/terminal/{workspace}").json()["data"]
    assert stopped == {
        "state": "stopped",
        "since": None,
        "connections": 0,
        "cols": None,
        "rows": None,
    }
    no_shell = owner.client.post(f"/api/terminal/{workspace}/resize", json={"cols": 80, "rows": 24})
    assert no_shell.status_code == 409


async def test_a_malformed_control_message_is_answered_and_the_connection_kept(
    platform: Platform, owner: User, workspace: str
) -> None:
    async with open_terminal(platform, owner, workspace) as ws:
        term = Terminal(ws)
        await term.ready()
        for bad in (b"\x01not json", b"\x01[1,2]", b"\x01{}", b"\x07?", b""):
            await ws.send(bad)
        await ws.send("text frames are not channel frames")
        assert await term.run("echo alive") == "alive"
        errors = [c for c in term.controls if c["type"] == "error"]
        assert len(errors) == 6, term.controls


async def test_a_ticket_opens_the_terminal_once(
    platform: Platform, owner: User, workspace: str
) -> None:
    issued = owner.client.post(f"/api/terminal/{workspace}/ticket")
    assert issued.status_code == 200, issued.text
    ticket = issued.json()["data"]["ticket"]
    async with opened_shell(platform, None, workspace, ticket=ticket) as term:
        assert await term.run("echo with-a-ticket") == "with-a-ticket"
    async with open_terminal(platform, None, workspace, ticket=ticket) as ws:
        assert await Terminal(ws).closed() == 4401  # single use


async def test_a_logout_closes_the_terminals_opened_with_that_login(
    platform: Platform, workspace: str, owner: User
) -> None:
    api = httpx.AsyncClient(base_url=platform.base_url, timeout=30)
    body = {"username": owner.username, "password": PASSWORD}
    login = await api.post("/api/users/login", json=body)
    api.cookies.clear()
    second_login = {"Authorization": f"Bearer {login.json()['data']['token']}"}
    async with (
        open_terminal(platform, owner, workspace) as kept,
        open_terminal(platform, None, workspace, headers=second_login) as doomed,
    ):
        survivor, victim = Terminal(kept), Terminal(doomed)
        await survivor.ready()
        await victim.ready()
        out = await api.post("/api/users/logout", headers=second_login)
        await api.aclose()
        assert out.status_code == 200, out.text
        assert await victim.closed(within=10) == 4401  # within seconds of the logout
        assert await survivor.run("echo other-login-unaffected") == "other-login-unaffected"
