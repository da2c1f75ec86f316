"""A restart of the platform: terminals are told to reconnect, and nothing is lost."""

from __future__ import annotations

import signal

import anyio
import httpx
import pytest

from tests.conftest import running_platform
from tests.helpers import new_user, new_workspace
from tests.terminal_client import Terminal, open_terminal, opened_shell

pytestmark = pytest.mark.anyio


async def test_a_restart_closes_terminals_with_1012_and_keeps_files_made_in_the_shell(
    database_url: str,
) -> None:
    with running_platform(database_url) as first:
        with httpx.Client(base_url=first.base_url, timeout=30) as api:
            owner = new_user(api)
        workspace = new_workspace(owner)
        async with opened_shell(first, owner, workspace) as term:
            # Written in the shell right before the restart, never read through the API.
            await term.run("mkdir -p notes && printf 'kept\\n' > notes/todo.txt")
            first.process.send_signal(signal.SIGTERM)
            assert await term.closed() == 1012  # "service restart": clients reconnect
        await anyio.to_thread.run_sync(first.process.wait, 30)

    with running_platform(database_url) as second:
        owner.client.base_url = httpx.URL(second.base_url)
        saved = owner.client.get(f"/api/workspace/{workspace}/files/notes/todo.txt")
        assert saved.status_code == 200, saved.text
        assert saved.json()["data"]["content"] == "kept\n"
        async with open_terminal(second, owner, workspace) as ws:  # starts from the database
            term = Terminal(ws)
            await term.ready()
            assert await term.run("cat notes/todo.txt") == "kept"
