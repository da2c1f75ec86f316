"""The idle reaper: environments with no terminal attached stop after the idle timeout,
after a final sync; environments in use are left alone."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import running_platform
from tests.helpers import Platform, User, eventually, new_user, new_workspace
from tests.terminal_client import Terminal, open_terminal, opened_shell

pytestmark = pytest.mark.anyio

IDLE_SECONDS = 1.5


@pytest.fixture(scope="module")
def quick_reaper(database_url: str) -> Iterator[Platform]:
    with running_platform(database_url, {"EXECUTION_IDLE_SECONDS": str(IDLE_SECONDS)}) as platform:
        yield platform


@pytest.fixture
def owner(quick_reaper: Platform) -> User:
    with httpx.Client(base_url=quick_reaper.base_url, timeout=30) as api:
        return new_user(api)


def execution_state(owner: User, workspace: str) -> str:
    status = owner.client.get(f"/api/workspace/{workspace}/status")
    assert status.status_code == 200, status.text
    return status.json()["data"]["execution"]["state"]


async def test_an_environment_left_alone_is_stopped_and_its_files_kept(
    quick_reaper: Platform, owner: User
) -> None:
    workspace = new_workspace(owner)
    async with opened_shell(quick_reaper, owner, workspace) as term:
        await term.run("echo left > behind.txt")
    await eventually(
        lambda: execution_state(owner, workspace) == "stopped", "the idle environment stopped", 30
    )
    saved = owner.client.get(f"/api/workspace/{workspace}/files/behind.txt")
    assert saved.status_code == 200 and saved.json()["data"]["content"] == "left\n"


async def test_an_environment_with_a_terminal_attached_is_not_reaped(
    quick_reaper: Platform, owner: User
) -> None:
    attached, witness = new_workspace(owner), new_workspace(owner)
    async with opened_shell(quick_reaper, owner, attached) as term:
        async with open_terminal(quick_reaper, owner, witness) as other:
            await Terminal(other).ready()
        # The witness, left alone after the attached shell went quiet, is reaped once an idle
        # timeout has passed: the attached one, quiet for longer still, was due as well.
        await eventually(
            lambda: execution_state(owner, witness) == "stopped", "the witness reaped", 30
        )
        assert execution_state(owner, attached) == "running"
        assert await term.run("echo still here") == "still here"
