"""What a terminal user cannot do: reach the network or the host, be root, exhaust the server.

Through the gateway with real bubblewrap sandboxes; assertions are on what a user observes.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest

from tests.helpers import TEST_WORKSPACE_MB, Platform, User, new_user, new_workspace
from tests.terminal_client import Terminal, open_terminal, opened_shell

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def owner(api: httpx.Client) -> User:
    return new_user(api)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_the_sandbox_is_unprivileged_offline_and_sees_no_host_files(
    platform: Platform, owner: User
) -> None:
    workspace = new_workspace(owner)
    async with opened_shell(platform, owner, workspace) as term:
        assert await term.run("id -u") != "0"
        assert await term.run("hostname") == "sandbox"
        for path in ("/etc/shadow", "/root", str(ROOT / ".data"), str(ROOT), "/home"):
            assert await term.run(f"ls -d {path} >/dev/null 2>&1 && echo SEEN || echo hidden") == (
                "hidden"
            ), path
        offline = await term.run(
            "python3 -c 'import socket; socket.create_connection((\"1.1.1.1\", 80), timeout=3)'"
            " >/dev/null 2>&1 && echo ONLINE || echo offline; "
            "getent hosts example.com >/dev/null && echo RESOLVED || echo noresolve"
        )
        assert offline == "offline\nnoresolve"
        assert await term.run("touch /usr/x 2>/dev/null && echo WROTE || echo readonly") == (
            "readonly"
        )
        assert await term.run("ls /proc | grep -c '^[0-9]'") in {"3", "4", "5", "6"}


async def test_a_fork_bomb_is_contained(platform: Platform, api: httpx.Client, owner: User) -> None:
    bombed, other = new_workspace(owner), new_workspace(owner)
    async with open_terminal(platform, owner, bombed) as ws:
        bomb = Terminal(ws)
        await bomb.ready()
        await bomb.send("bomb() { bomb | bomb & }; bomb\n")
        await bomb.until("Resource temporarily unavailable")  # the process limit bites
        async with open_terminal(platform, owner, other) as ws2:
            neighbour = Terminal(ws2)
            await neighbour.ready()
            assert await neighbour.run("echo $((6 * 7))", within=30) == "42"
        async with httpx.AsyncClient(base_url=platform.base_url) as client:
            assert (await client.get("/api/health/", timeout=10)).status_code == 200
        shutdown = owner.client.post(f"/workspace/{bombed}/shutdown")
        assert shutdown.json()["data"]["container_cleaned"] is True
        assert await bomb.closed(within=30) == 1001


async def test_a_memory_bomb_is_contained(platform: Platform, owner: User) -> None:
    workspace = new_workspace(owner)
    server_before = rss_kib(platform.process.pid)
    async with opened_shell(platform, owner, workspace) as term:
        out = await term.run(
            "python3 -c 'b = bytearray(8 * 1024 ** 3)' 2>&1 | tail -1; "
            "python3 -c '\nx = []\nwhile True: x.append(bytearray(50 * 1024 ** 2))' 2>&1 | tail -1",
            within=60,
        )
        assert out == "MemoryError\nMemoryError"
        assert await term.run("head -c 400M /dev/zero > /tmp/big; echo $?") != "0"
        assert await term.run("echo alive") == "alive"  # the shell itself survived
    assert rss_kib(platform.process.pid) - server_before < 32 * 1024


async def test_a_flood_in_one_session_does_not_stall_another(
    platform: Platform, owner: User
) -> None:
    flooding, quiet = new_workspace(owner), new_workspace(owner)
    async with open_terminal(platform, owner, flooding) as ws_flood:
        flood = Terminal(ws_flood)
        await flood.ready()
        server_before = rss_kib(platform.process.pid)
        await flood.send("yes 0123456789abcdef | head -c 50000000; echo FLOOD''DONE\n")
        # Nobody reads the flood for now: TCP backpressure reaches the shell.
        async with open_terminal(platform, owner, quiet) as ws_quiet:
            other = Terminal(ws_quiet)
            await other.ready()
            for i in range(20):
                assert await other.run(f"echo {i}-ok", within=10) == f"{i}-ok"
        assert "FLOOD" + "DONE" not in flood.text  # the flood really was in progress
        grown = rss_kib(platform.process.pid) - server_before
        assert grown < 16 * 1024, f"server grew {grown} KiB during a stalled flood"
        await flood.until("FLOODDONE", within=120)
        assert flood.received >= 50_000_000


async def test_a_slow_second_viewer_is_dropped_with_4008(platform: Platform, owner: User) -> None:
    workspace = new_workspace(owner)
    async with open_terminal(platform, owner, workspace) as ws_fast:
        fast = Terminal(ws_fast)
        await fast.ready()
        async with open_terminal(platform, owner, workspace) as ws_slow:
            slow = Terminal(ws_slow)
            await slow.until("$ ")
            await slow.control({"type": "pause"})
            await slow.control({"type": "ping"})  # answered in order: the pause is in effect
            with anyio.fail_after(10):
                while {"type": "pong"} not in slow.controls:
                    assert await slow.frame()
            await fast.send("yes paused-viewer | head -c 20000000; echo SLOW''DONE\n")
            with anyio.fail_after(60):
                await fast.until("SLOWDONE", within=60)
            assert await slow.closed() == 4008


async def test_every_tmpfs_has_a_size_and_the_root_is_read_only(
    platform: Platform, owner: User
) -> None:
    workspace = new_workspace(owner)
    async with opened_shell(platform, owner, workspace) as term:
        sizes = await term.run("df -k --output=target,size /tmp /dev/shm | tail -n +2")
        found = {line.split()[0]: int(line.split()[1]) for line in sizes.splitlines()}
        assert found == {"/tmp": 256 * 1024, "/dev/shm": 64 * 1024}, found
        for place in ("/", "/dev", "/etc"):
            written = await term.run(f"touch {place}/x 2>/dev/null && echo WROTE || echo refused")
            assert written == "refused", place
        out = await term.run("head -c 80M /dev/zero > /dev/shm/big; echo $?; rm -f /dev/shm/big")
        assert out.splitlines()[-1] != "0"  # past its size: ENOSPC inside this sandbox only
        # /workspace is a filesystem of its own, of SANDBOX_WORKSPACE_MB.
        workspace_kib = int(await term.run("df -k --output=size /workspace | tail -1"))
        assert 0.85 * TEST_WORKSPACE_MB * 1024 < workspace_kib <= TEST_WORKSPACE_MB * 1024
