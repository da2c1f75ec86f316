"""Per-user quotas on execution: environments running at once and terminal connections per
workspace (4429 on the WebSocket, with the reason), and what frees them again."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import httpx
import pytest

from tests.conftest import running_platform
from tests.helpers import Platform, User, new_user, new_workspace
from tests.terminal_client import Terminal, open_terminal

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def capped(database_url: str) -> Iterator[Platform]:
    with running_platform(
        database_url, {"MAX_ENVIRONMENTS_PER_USER": "2", "MAX_TERMINALS_PER_SESSION": "2"}
    ) as running:
        yield running


@pytest.fixture
def owner(capped: Platform) -> User:
    with httpx.Client(base_url=capped.base_url, timeout=30) as api:
        return new_user(api)


async def test_a_user_runs_at_most_the_quota_of_environments_at_once(
    capped: Platform, owner: User
) -> None:
    first, second, third = (new_workspace(owner) for _ in range(3))
    for workspace in (first, second):
        async with open_terminal(capped, owner, workspace) as ws:
            await Terminal(ws).ready()  # the environment keeps running after the socket closes
    async with open_terminal(capped, owner, third) as ws:
        term = Terminal(ws)
        assert await term.closed() == 4429
        assert "at most 2 execution environments" in term.close_reason
        assert any(c["type"] == "error" for c in term.controls)
    with httpx.Client(base_url=capped.base_url, timeout=30) as api:
        other = new_user(api)  # the quota is per user: somebody else is not affected
    async with open_terminal(capped, other, new_workspace(other)) as ws:
        await Terminal(ws).ready()
    assert owner.client.post(f"/workspace/{first}/shutdown").json()["data"]["container_cleaned"]
    async with open_terminal(capped, owner, third) as ws:  # one stopped: room for another
        await Terminal(ws).ready()


async def test_terminals_opened_all_at_once_start_no_more_than_the_quota(
    capped: Platform, owner: User
) -> None:
    workspaces = [new_workspace(owner) for _ in range(6)]
    outcomes: list[object] = []

    async def open_one(workspace: str) -> None:
        async with open_terminal(capped, owner, workspace) as ws:
            term = Terminal(ws)
            try:
                await term.ready()
                outcomes.append("ready")
            except AssertionError:
                outcomes.append(term.close_code)

    async with anyio.create_task_group() as tg:
        for workspace in workspaces:
            tg.start_soon(open_one, workspace)
    assert outcomes.count("ready") == 2 and outcomes.count(4429) == 4, outcomes


async def test_a_workspace_takes_at_most_the_quota_of_terminal_connections(
    capped: Platform, owner: User
) -> None:
    workspace = new_workspace(owner)
    async with (
        open_terminal(capped, owner, workspace) as one,
        open_terminal(capped, owner, workspace, plain=True) as two,
    ):
        await Terminal(one).ready()
        await Terminal(two).until("$ ")
        async with open_terminal(capped, owner, workspace) as three:
            refused = Terminal(three)
            assert await refused.closed() == 4429
            assert "terminal connections" in refused.close_reason
        assert await Terminal(one).run("echo still-two") == "still-two"
    async with open_terminal(capped, owner, workspace) as again:  # the others closed: room
        await Terminal(again).ready()
