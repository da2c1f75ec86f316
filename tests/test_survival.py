"""The environment agent outlives the server: a gateway killed with ``kill -9``, two gateways
on one data directory, restarts. Shells and their programs keep running, clients reconnect to
the same shell and get its output replayed, and nothing a sandbox holds on the host (its
processes, mounts, loop devices, uid leases, cgroups) outlives the platforms that stop it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.conftest import start_platform
from tests.helpers import (
    Platform,
    SandboxTrace,
    User,
    eventually,
    new_user,
    new_workspace,
    sandbox_slots,
    session_slot,
)
from tests.terminal_client import Terminal, open_terminal, opened_shell

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(240)]


@pytest.fixture
def lease_dir() -> Iterator[Path]:
    """uid leases of this test's sandboxes only (other test runs share the host's)."""
    path = Path(tempfile.mkdtemp(prefix="cep-uids-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Gateways:
    """Gateways started by one test, on one DATA_DIR; all stopped (sandboxes destroyed) at
    the end even when the test fails."""

    def __init__(self, database_url: str, lease_dir: Path) -> None:
        self.database_url = database_url
        self.env = {"SANDBOX_UID_LEASE_DIR": str(lease_dir)}
        self.started: list[Platform] = []

    def start(self) -> Platform:
        if self.started:
            self.env["DATA_DIR"] = str(self.started[0].data_dir)
        platform = start_platform(self.database_url, self.env)
        self.started.append(platform)
        return platform

    @property
    def data_dir(self) -> Path:
        return self.started[0].data_dir

    def stop_all(self) -> None:
        for platform in self.started:
            platform.stop(keep_environments=True)
        if self.started:
            self.started[-1].stop()  # destroys every sandbox of the shared DATA_DIR
        for platform in self.started:
            shutil.rmtree(platform.workdir, ignore_errors=True)


@pytest.fixture
def gateways(database_url: str, lease_dir: Path) -> Iterator[Gateways]:
    started = Gateways(database_url, lease_dir)
    try:
        yield started
    finally:
        started.stop_all()


def owner_on(platform: Platform) -> User:
    with httpx.Client(base_url=platform.base_url, timeout=30) as api:
        return new_user(api)


def use(user: User, platform: Platform) -> User:
    """Point the user's client at another gateway (the login token is in the database)."""
    user.client.base_url = httpx.URL(platform.base_url)
    return user


def numbered(text: str, prefix: str) -> list[int]:
    """The numbers of the output lines ``<prefix><n>`` in terminal text, in order."""
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)  # bash's bracketed-paste toggles
    return [int(n) for n in re.findall(rf"(?m)^\r?{prefix}(\d+)\r$", plain)]


async def test_a_program_survives_a_kill_9_of_the_gateway_and_replays_every_line(
    gateways: Gateways,
) -> None:
    first = gateways.start()
    owner = owner_on(first)
    workspace = new_workspace(owner)
    async with opened_shell(first, owner, workspace) as term:
        shell = await term.run("MARK=m$RANDOM$RANDOM; echo $MARK $$")
        await term.send("for i in $(seq 100); do echo n$i; sleep 0.1; done; echo FIN''ISHED\n")
        await term.until("n5\r\n")
        first.kill()
        await term.closed()  # the connection drops with the gateway

    second = gateways.start()
    use(owner, second)
    async with open_terminal(second, owner, workspace) as ws:
        term = Terminal(ws)
        await term.until("FINISHED\r\n", within=60)
        # The replay and what followed it: every line once, in order, none lost or doubled.
        assert numbered(term.text, "n") == list(range(1, 101))
        assert await term.run("echo $MARK $$") == shell  # the same shell, not a new one


async def test_two_gateways_share_one_shell_and_killing_one_does_not_end_it(
    gateways: Gateways,
) -> None:
    one, two = gateways.start(), gateways.start()
    owner = owner_on(one)
    workspace = new_workspace(owner)
    async with open_terminal(one, owner, workspace) as ws_one:
        through_one = Terminal(ws_one)
        await through_one.ready()
        shell = await through_one.run("echo $$")
        async with open_terminal(two, owner, workspace) as ws_two:
            through_two = Terminal(ws_two)
            await through_two.until("$ ")
            # Input through either gateway is typed into the same shell; both see the output.
            await through_one.send("echo one-says-$((6*7))\n")
            await through_two.until("one-says-42")
            await through_two.send("echo two-says-$((6*8))\n")
            await through_one.until("two-says-48")

            one.kill()
            await through_one.closed()
            assert await through_two.run("echo $$") == shell
            assert await through_two.run("echo still-$((1+1))") == "still-2"
        status = use(owner, two).client.get(f"/api/workspace/{workspace}/status")
        assert status.json()["data"]["execution"]["state"] == "running"


def spare_slots(data_dir: Path) -> list[str]:
    """Warm spares: slots whose sandbox is started and not claimed by a session."""
    return [
        slot
        for slot, meta in sandbox_slots(data_dir).items()
        if meta.get("pid") and not (data_dir / "sandboxes" / "slots" / slot / "claim").exists()
    ]


async def test_a_restart_finds_every_environment_reuses_the_spare_and_leaks_nothing(
    gateways: Gateways, lease_dir: Path
) -> None:
    first = gateways.start()
    owner = owner_on(first)
    workspaces = [new_workspace(owner, f"live{i}") for i in range(2)]
    shells: dict[str, str] = {}
    for workspace in workspaces:
        async with opened_shell(first, owner, workspace) as term:
            shells[workspace] = await term.run(f"NAME={workspace[:8]}; echo $NAME $$")
    data_dir = gateways.data_dir
    await eventually(lambda: len(spare_slots(data_dir)) == 1, "the spare refilled", 30)
    (spare,) = spare_slots(data_dir)
    trace = SandboxTrace(data_dir, lease_dir)
    trace.observe()
    first.kill()

    second = gateways.start()
    use(owner, second)
    for workspace in workspaces:
        status = owner.client.get(f"/api/workspace/{workspace}/status")
        assert status.json()["data"]["execution"]["state"] == "running", status.text
        async with open_terminal(second, owner, workspace) as ws:
            term = Terminal(ws)
            await term.until(shells[workspace])  # the replay of the shell left running
            assert await term.run("echo $NAME $$") == shells[workspace]
    # The dead gateway's warm spare serves the next workspace instead of leaking.
    fresh = new_workspace(owner, "fresh")
    async with open_terminal(second, owner, fresh) as ws:
        await Terminal(ws).ready()
    assert session_slot(data_dir, fresh) == spare
    await eventually(lambda: len(spare_slots(data_dir)) == 1, "one spare", 30)
    trace.observe()

    gateways.stop_all()
    assert trace.leftovers() == []


# The watcher of kill_while_a_sandbox_is_half_made: its own process (no GIL shared with the
# test's event loop) at a raised priority, so the few milliseconds of the window are not
# lost to the other tests running meanwhile.
_HALF_MADE_WATCHER = """
import os, signal, sys, time
slots, pid, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
while time.monotonic() < deadline:
    for slot in os.scandir(slots):
        made = os.path.exists(slot.path + "/workspace")
        if made and not os.path.exists(slot.path + "/meta.json"):
            os.kill(pid, signal.SIGKILL)
            print(slot.name)
            sys.exit(0)
"""


def kill_while_a_sandbox_is_half_made(platform: Platform, within: float = 8) -> str | None:
    """``kill -9`` the gateway the moment a slot has its workspace but no meta.json yet (a
    sandbox being made); the slot's id, or None when no such moment came."""
    slots = platform.data_dir / "sandboxes" / "slots"
    watcher = subprocess.run(
        [sys.executable, "-c", _HALF_MADE_WATCHER, str(slots), str(platform.process.pid),
         str(within)],
        capture_output=True, text=True, timeout=within + 30, check=True,
        preexec_fn=lambda: os.nice(-10),
    )  # fmt: skip
    if not watcher.stdout.strip():
        return None
    platform.kill()  # reaps it
    return watcher.stdout.strip()


async def _watch_for_a_half_made_sandbox(platform: Platform, caught: list[str | None]) -> None:
    caught.append(await anyio.to_thread.run_sync(kill_while_a_sandbox_is_half_made, platform))


async def test_a_sandbox_half_made_by_a_killed_gateway_is_cleaned_at_the_next_start(
    gateways: Gateways, lease_dir: Path
) -> None:
    first = gateways.start()
    trace = SandboxTrace(first.data_dir, lease_dir)
    orphan = None
    for attempt in range(8):  # each terminal takes the spare and makes the keeper refill
        await eventually(lambda: len(spare_slots(first.data_dir)) == 1, "one spare", 30)
        owner = owner_on(first)  # a user of its own: environments per user are limited
        workspace = new_workspace(owner, f"take{attempt}")
        caught: list[str | None] = []
        # Watching from before the spare is taken: the refill it starts is never missed.
        async with anyio.create_task_group() as group:
            group.start_soon(_watch_for_a_half_made_sandbox, first, caught)
            try:
                async with opened_shell(first, owner, workspace):
                    pass
            except (OSError, ConnectionClosed):
                if first.process.poll() is None:
                    raise  # not the kill this test makes
        orphan = caught[0]
        if orphan is not None:
            break
    assert orphan is not None, "never caught a sandbox being made"
    trace.observe()  # its uid lease (the only record of its uid) is on disk already

    second = gateways.start()
    await eventually(
        lambda: orphan not in sandbox_slots(second.data_dir), "the orphan slot removed", 30
    )
    gateways.stop_all()
    assert trace.leftovers() == []
