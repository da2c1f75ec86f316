"""The agent's terminals, fast: a real agent process on a unix socket (no sandbox around it),
driven through the platform's client exactly as the relay drives it.

Replay without terminal queries, shared shells where the smallest size wins, UTF-8 never
split, slow viewers detached only when others watch, pause/resume, the grace period, exit.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from shared.agent.viewers import strip_terminal_queries
from shared.execution.agent_client import AgentClient, AgentEndpoint
from shared.execution.agent_terminal import AgentTerminal
from tests.helpers import eventually

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"  # what runs the agent inside a sandbox


@contextlib.contextmanager
def agent_process(tmp_path: Path, grace: float = 300, slow: float = 5) -> Iterator[AgentClient]:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "agent.sock"))
    listener.listen(16)
    secret = secrets.token_hex(32)
    read_end, write_end = os.pipe()
    os.write(write_end, secret.encode())
    os.close(write_end)
    env = {"PYTHONPATH": str(ROOT), "TERM": "xterm-256color", "HOME": str(workspace),
           "PATH": "/usr/bin:/bin", "PS1": "$ ", "LANG": "C.UTF-8"}  # fmt: skip
    process = subprocess.Popen(
        [SYSTEM_PYTHON, "-S", "-B", "-P", "-m", "shared.agent",
         "--listen-fd", str(listener.fileno()), "--secret-fd", str(read_end),
         "--workspace", str(workspace),
         "--grace", str(grace), "--slow", str(slow)],
        pass_fds=(listener.fileno(), read_end), env=env, start_new_session=True,
    )  # fmt: skip
    listener.close()
    os.close(read_end)
    try:
        yield AgentClient(AgentEndpoint(f"unix:{tmp_path / 'agent.sock'}", secret.encode()))
    finally:
        os.killpg(process.pid, 9)
        process.wait()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentClient]:
    with agent_process(tmp_path) as client:
        yield client


async def receive_until(viewer: AgentTerminal, marker: str, within: float = 15) -> str:
    out = ""
    with anyio.fail_after(within):
        while marker not in out:
            item = await viewer.next()
            if item is None:
                raise AssertionError(f"viewer closed before {marker!r}: {out[-300:]!r}")
            if isinstance(item, bytes):
                out += item.decode()
    return out


async def drain(viewer: AgentTerminal, within: float = 10) -> None:
    with anyio.fail_after(within):
        while await viewer.next() is not None:
            pass


def test_replay_strips_sequences_that_make_a_terminal_answer() -> None:
    text = (
        "a\x1b[6nb\x1b[cc\x1b[>cd\x1b[5ne\x1b]10;?\x07f\x1b]11;?\x1b\\g\x1bP$qm\x1b\\h"
        "\x1b[>0qi\x1b[18tj\x05k\x1b[31mred\x1b[0m\x1b]0;title\x07"
    )
    assert strip_terminal_queries(text) == "abcdefghijk\x1b[31mred\x1b[0m\x1b]0;title\x07"


async def test_reattach_gets_the_same_shell_and_a_replay(agent: AgentClient) -> None:
    first = await agent.attach(80, 24)
    await first.write(b"X=kept; printf 'Q\\033[6nQ'; echo MAR''K1\n")
    await receive_until(first, "MARK1")
    await first.close()
    second = await agent.attach(80, 24)
    replay = await receive_until(second, "MARK1")
    assert "\x1b[6n" not in replay  # a replayed query would make xterm.js answer it
    await second.write(b"echo $X-MAR''K2\n")
    await receive_until(second, "kept-MARK2")


async def test_viewers_share_a_shell_and_the_smallest_size_wins(agent: AgentClient) -> None:
    big = await agent.attach(200, 60)
    small = await agent.attach(100, 30)
    await big.write(b"stty size; echo SI''ZE\n")
    for viewer in (big, small):
        assert "30 100" in await receive_until(viewer, "SIZE")
    await small.close()

    async def one_viewer() -> bool:
        return [t.viewers for t in (await agent.status()).terminals] == [1]

    await eventually(one_viewer, "one viewer left", 10)
    await big.write(b"stty size; echo SI''Z2\n")
    assert "60 200" in await receive_until(big, "SIZ2")


async def test_utf8_is_never_split_between_frames(agent: AgentClient) -> None:
    viewer = await agent.attach(80, 24)
    # 3-byte characters in an odd-sized stream: PTY reads split them all the time.
    await viewer.write(b"python3 -c \"print('\xe2\x9c\x93' * 50001)\"; echo DO''NE\n")
    chunks: list[bytes] = []
    with anyio.fail_after(20):
        while b"DONE" not in b"".join(chunks[-2:]):
            item = await viewer.next()
            assert item is not None
            if isinstance(item, bytes):
                item.decode()  # every frame decodes on its own
                chunks.append(item)
    assert b"".join(chunks).decode().count("\u2713") >= 50001


async def test_a_stalled_viewer_is_detached_so_the_other_keeps_going(tmp_path: Path) -> None:
    with agent_process(tmp_path, slow=0.5) as agent:
        stalled = await agent.attach(80, 24)
        reader = await agent.attach(80, 24)
        await reader.write(b"seq 1 400000; echo FL''OOD\n")
        await receive_until(reader, "FLOOD", within=30)  # the stalled viewer never reads
        await drain(stalled)
        assert stalled.close_code == 4008


async def test_a_paused_viewer_alone_holds_the_shell_back_and_loses_nothing(
    tmp_path: Path,
) -> None:
    with agent_process(tmp_path, slow=0.2) as agent:
        await _paused_alone(agent)


async def _paused_alone(agent: AgentClient) -> None:
    viewer = await agent.attach(80, 24)
    await viewer.write(b"echo RE''ADY\n")
    await receive_until(viewer, "READY")
    await viewer.flow(paused=True)
    await viewer.write(b"yes flood | head -c 20000000; echo END''ED\n")

    # Held back (nothing read from the shell) for five times the slow-viewer time, by the
    # agent's own clock: alone, the viewer is never dropped for that.
    async def held_back_long() -> bool:
        (terminal,) = (await agent.status()).terminals
        return terminal.output_age_seconds >= 1.0

    await eventually(held_back_long, "the shell held back for 1 s", 20)
    status = await agent.status()
    assert [t.viewers for t in status.terminals] == [1]
    await viewer.flow(paused=False)
    total = 0
    with anyio.fail_after(60):
        while True:
            item = await viewer.next()
            assert item is not None
            if isinstance(item, bytes):
                total += len(item)
                if b"ENDED" in item:
                    break
    assert total >= 20_000_000


async def test_an_orphaned_shell_closes_after_the_grace_period(tmp_path: Path) -> None:
    with agent_process(tmp_path, grace=0.2) as agent:
        viewer = await agent.attach(80, 24)
        await viewer.write(b"echo UP''\n")
        await receive_until(viewer, "UP")
        await viewer.close()

        async def no_terminal() -> bool:
            return not (await agent.status()).terminals

        await eventually(no_terminal, "the orphaned shell closed", 10)
        fresh = await agent.attach(80, 24)
        await fresh.write(b"echo FR''ESH\n")
        first = await receive_until(fresh, "FRESH")
        assert "UP" not in first  # a new shell: nothing to replay


async def test_closing_the_terminal_tells_every_viewer_why(agent: AgentClient) -> None:
    viewers = [await agent.attach(80, 24) for _ in range(2)]
    assert await agent.close_terminal(1001, "workspace shut down") == 2
    for viewer in viewers:
        await drain(viewer)
        assert (viewer.close_code, viewer.close_reason) == (1001, "workspace shut down")


async def test_exit_reports_the_code_and_the_next_attach_starts_a_new_shell(
    agent: AgentClient,
) -> None:
    viewer = await agent.attach(80, 24)
    await viewer.write(b"exit 7\n")
    await drain(viewer)
    assert viewer.exit_code == 7 and viewer.close_code == 1000
    again = await agent.attach(80, 24)
    await again.write(b"echo AG''AIN\n")
    await receive_until(again, "AGAIN")
