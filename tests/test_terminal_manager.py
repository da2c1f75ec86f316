"""The terminal manager on the local backend: replay, sharing, sizes, backpressure, grace."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from shared.execution.base import ExecutionBackend
from shared.execution.terminal import (
    CLOSE_SLOW_CLIENT,
    TerminalClient,
    TerminalConfig,
    TerminalManager,
    strip_terminal_queries,
)
from tests.conformance.backends import local_bwrap

pytestmark = pytest.mark.anyio


async def receive_until(client: TerminalClient, marker: str, within: float = 15) -> str:
    out = ""
    with anyio.fail_after(within):
        while marker not in out:
            text = await client.receive()
            if text is None:
                raise AssertionError(f"client closed before {marker!r}: {out[-300:]!r}")
            out += text
    return out


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[ExecutionBackend]:
    async with local_bwrap(tmp_path) as instance:
        yield instance


@contextlib.asynccontextmanager
async def manager_for(
    backend: ExecutionBackend, **config: float
) -> AsyncIterator[tuple[TerminalManager, uuid.UUID]]:
    session_id = uuid.uuid4()
    await backend.ensure_started(session_id, 1, [])
    async with anyio.create_task_group() as tg:
        manager = TerminalManager(backend, tg, TerminalConfig(**config))  # type: ignore[arg-type]
        yield manager, session_id
        await manager.aclose()


def test_replay_strips_sequences_that_make_a_terminal_answer() -> None:
    text = (
        "a\x1b[6nb\x1b[cc\x1b[>cd\x1b[5ne\x1b]10;?\x07f\x1b]11;?\x1b\\g\x1bP$qm\x1b\\h"
        "\x1b[>0qi\x1b[18tj\x05k\x1b[31mred\x1b[0m\x1b]0;title\x07"
    )
    assert strip_terminal_queries(text) == "abcdefghijk\x1b[31mred\x1b[0m\x1b]0;title\x07"


async def test_reattach_gets_the_same_shell_and_a_replay(backend: ExecutionBackend) -> None:
    async with manager_for(backend) as (manager, session_id):
        first = await manager.attach(session_id, 80, 24)
        await first.write(b"X=kept; printf 'Q\\033[6nQ'; echo MAR''K1\n")
        await receive_until(first, "MARK1")
        await manager.detach(first)
        assert manager.active_connections(session_id) == 0
        second = await manager.attach(session_id, 80, 24)
        replay = await second.receive()
        assert replay is not None and "MARK1" in replay and "\x1b[6n" not in replay
        await second.write(b"echo $X-MAR''K2\n")
        await receive_until(second, "kept-MARK2")


async def test_clients_share_a_shell_and_the_smallest_size_wins(
    backend: ExecutionBackend,
) -> None:
    async with manager_for(backend) as (manager, session_id):
        big = await manager.attach(session_id, 200, 60)
        small = await manager.attach(session_id, 100, 30)
        assert manager.active_connections(session_id) == 2
        await big.write(b"stty size; echo SI''ZE\n")
        for client in (big, small):
            assert "30 100" in await receive_until(client, "SIZE")
        await manager.detach(small)
        await big.write(b"stty size; echo SI''Z2\n")
        assert "60 200" in await receive_until(big, "SIZ2")


async def test_utf8_is_never_split_between_chunks(backend: ExecutionBackend) -> None:
    async with manager_for(backend) as (manager, session_id):
        client = await manager.attach(session_id, 80, 24)
        # 3-byte characters in an odd-sized stream: PTY reads split them all the time.
        await client.write(b"python3 -c \"print('\xe2\x9c\x93' * 50001)\"; echo DO''NE\n")
        out = await receive_until(client, "DONE")
        assert "\ufffd" not in out and out.count("\u2713") >= 50001


async def test_a_stalled_client_is_detached_so_the_other_keeps_going(
    backend: ExecutionBackend,
) -> None:
    async with manager_for(backend, slow_client_seconds=0.5) as (manager, session_id):
        stalled = await manager.attach(session_id, 80, 24)
        reader = await manager.attach(session_id, 80, 24)
        await reader.write(b"seq 1 400000; echo FL''OOD\n")
        await receive_until(reader, "FLOOD", within=30)  # stalled never reads
        assert stalled.closed and stalled.close_code == CLOSE_SLOW_CLIENT
        assert manager.active_connections(session_id) == 1


async def test_a_lone_slow_client_holds_the_shell_without_buffering(
    backend: ExecutionBackend,
) -> None:
    async with manager_for(backend, slow_client_seconds=0.2) as (manager, session_id):
        client = await manager.attach(session_id, 80, 24)
        client.pause()
        await client.write(b"yes flood | head -c 20000000; echo END''ED\n")
        with anyio.fail_after(20):  # the flood fills this client's queue, then the pump waits
            while not client.full:  # noqa: ASYNC110 - polling the manager's state
                await anyio.sleep(0.01)
        assert not client.closed  # alone: it is never dropped for being slow
        queued = sum(len(t) for t in client._queue)
        assert queued <= 96 * 1024  # bounded queue: the PTY, not us, holds the rest
        client.resume()
        total = 0
        with anyio.fail_after(60):
            while True:
                text = await client.receive()
                assert text is not None
                total += len(text)
                if "ENDED" in text:
                    break
        assert total >= 20_000_000


async def test_an_orphaned_shell_closes_after_the_grace_period(
    backend: ExecutionBackend,
) -> None:
    async with manager_for(backend, grace_seconds=0.2) as (manager, session_id):
        client = await manager.attach(session_id, 80, 24)
        await client.write(b"echo UP''\n")
        await receive_until(client, "UP")
        await manager.detach(client)
        with anyio.fail_after(10):
            while manager.sessions():  # noqa: ASYNC110 - polling the manager's state
                await anyio.sleep(0.02)
        fresh = await manager.attach(session_id, 80, 24)
        first = await fresh.receive()
        assert first is not None and "UP" not in first  # a new shell: nothing to replay


async def test_closing_a_session_tells_every_client_why(backend: ExecutionBackend) -> None:
    async with manager_for(backend) as (manager, session_id):
        clients = [await manager.attach(session_id, 80, 24) for _ in range(2)]
        assert await manager.close_session(session_id, 1001, "workspace shut down") == 2
        for client in clients:
            with anyio.fail_after(5):
                while await client.receive() is not None:
                    pass
            assert client.close_code == 1001 and client.close_reason == "workspace shut down"


async def test_exit_reports_the_code_and_the_next_attach_starts_a_new_shell(
    backend: ExecutionBackend,
) -> None:
    async with manager_for(backend) as (manager, session_id):
        client = await manager.attach(session_id, 80, 24)
        await client.write(b"exit 7\n")
        with anyio.fail_after(10):
            while await client.receive() is not None:
                pass
        assert client.exit_code == 7
        again = await manager.attach(session_id, 80, 24)
        await again.write(b"echo AG''AIN\n")
        await receive_until(again, "AGAIN")
