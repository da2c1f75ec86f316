"""What every execution backend and its agent do, run against each entry of
``backends.BACKENDS``.

The shell is driven the way a user drives it; waits are for output to appear, never sleeps.
Markers are split in the typed command (``echo EN""D``) so the echoed command line never
matches what is waited for.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import uuid
from collections.abc import AsyncIterator

import anyio
import pytest

from shared.agent import protocol
from shared.execution.agent_client import AgentClient, AgentEndpoint, Conflict, client_for
from shared.execution.agent_terminal import AgentTerminal
from shared.execution.base import ExecutionBackend, ExecutionError, ExecutionState, WorkspaceEntry

pytestmark = pytest.mark.anyio

IGNORE = (".venv/", "__pycache__/", "node_modules/", ".git/", "*.pyc")
BINARY = bytes(range(256)) * 4 + b"\x00\xff\xfe"
UTF8 = "héllo wörld ✓ 日本語 🐍\n".encode()


class Shell:
    """A terminal viewer read like a pipe: output bytes, b"" at the end."""

    def __init__(self, terminal: AgentTerminal) -> None:
        self.terminal = terminal

    async def read(self) -> bytes:
        while True:
            item = await self.terminal.next()
            if item is None:
                return b""
            if isinstance(item, bytes):
                return item

    async def write(self, data: bytes) -> None:
        await self.terminal.write(data)

    @property
    def exit_code(self) -> int | None:
        return self.terminal.exit_code


async def read_until(shell: Shell, marker: bytes, within: float = 15) -> bytes:
    out = b""
    with anyio.fail_after(within):
        while marker not in out:
            chunk = await shell.read()
            if not chunk:
                raise AssertionError(f"shell ended before {marker!r}; got {out[-500:]!r}")
            out += chunk
    return out


async def run(shell: Shell, command: str, within: float = 15) -> str:
    """Run ``command`` and return what it printed (between two markers)."""
    tag = uuid.uuid4().hex[:8]
    await shell.write(f"echo BEG''{tag}; {command}; echo END''{tag}\n".encode())
    out = await read_until(shell, f"END{tag}".encode(), within)
    text = out.decode(errors="replace")
    body = text[text.index(f"BEG{tag}") + len(tag) + 3 : text.rindex(f"END{tag}")]
    return body.replace("\r\n", "\n").strip("\n")


async def start(
    backend: ExecutionBackend, session_id: uuid.UUID, files: list[WorkspaceEntry]
) -> AgentClient:
    endpoint, started = await backend.ensure_started(session_id, 1)
    client = client_for(endpoint)
    if started:
        await client.materialize(files)
    return client


@pytest.fixture
async def session(backend: ExecutionBackend) -> AsyncIterator[uuid.UUID]:
    session_id = uuid.uuid4()
    files = [
        WorkspaceEntry("main.py", "file", b"print('hello from main')\n"),
        WorkspaceEntry("text/utf8.txt", "file", UTF8),
        WorkspaceEntry("data/blob.bin", "file", BINARY),
        WorkspaceEntry("empty", "directory"),
    ]
    await start(backend, session_id, files)
    yield session_id
    await backend.stop(session_id)


@pytest.fixture
async def agent(backend: ExecutionBackend, session: uuid.UUID) -> AgentClient:
    endpoint = await backend.find(session)
    assert endpoint is not None
    return client_for(endpoint)


@pytest.fixture
async def shell(agent: AgentClient) -> AsyncIterator[Shell]:
    opened = Shell(await agent.attach(120, 40))
    await read_until(opened, b"$ ")
    yield opened
    await opened.terminal.close()


async def test_status_moves_from_stopped_to_running_and_back(backend: ExecutionBackend) -> None:
    session_id = uuid.uuid4()
    assert (await backend.status(session_id)).state is ExecutionState.STOPPED
    assert await backend.find(session_id) is None
    await start(backend, session_id, [])
    status = await backend.status(session_id)
    assert status.state is ExecutionState.RUNNING
    assert status.backend == backend.name and status.since is not None
    assert session_id in [e.session_id for e in await backend.running()]
    assert await backend.stop(session_id) is True
    assert (await backend.status(session_id)).state is ExecutionState.STOPPED
    assert session_id not in [e.session_id for e in await backend.running()]
    assert await backend.stop(session_id) is False


async def test_ensure_started_twice_is_the_same_environment(
    backend: ExecutionBackend, session: uuid.UUID, shell: Shell
) -> None:
    await run(shell, "echo kept > made-in-shell.txt")
    endpoint, started = await backend.ensure_started(session, 1)
    assert started is False and endpoint == await backend.find(session)
    assert await run(shell, "cat made-in-shell.txt") == "kept"


async def test_shell_runs_python_on_the_workspace_files(shell: Shell) -> None:
    assert await run(shell, "python3 main.py") == "hello from main"
    assert await run(shell, "pwd; echo $HOME; echo $TERM") == (
        "/workspace\n/workspace\nxterm-256color"
    )


async def test_the_shell_holds_no_descriptor_of_the_agent(shell: Shell) -> None:
    # The agent's listening socket or a connection in a shell's hands would let it accept()
    # the platform's next connection and stand in for the agent.
    held = await run(shell, "for f in /proc/$$/fd/*; do readlink $f; done | grep -c socket")
    assert held == "0", held


async def test_materialized_files_are_byte_exact(agent: AgentClient, shell: Shell) -> None:
    digest = hashlib.sha256(BINARY).hexdigest()
    assert await run(shell, "sha256sum data/blob.bin | cut -c1-64") == digest
    assert await run(shell, "cat text/utf8.txt") == UTF8.decode().strip()
    assert await run(shell, "test -d empty && echo dir") == "dir"
    got = await agent.read_files(["data/blob.bin", "text/utf8.txt", "missing"], 1 << 20)
    assert got == {"data/blob.bin": BINARY, "text/utf8.txt": UTF8}


async def test_writes_are_visible_in_the_shell(agent: AgentClient, shell: Shell) -> None:
    await agent.write_file("new/deep/file.txt", "ünïcode\n".encode(), None)
    await agent.write_file("main.py", b"print('replaced')\n", None)
    await agent.make_directory("made/by/api")
    assert await run(shell, "cat new/deep/file.txt") == "ünïcode"
    assert await run(shell, "python3 main.py") == "replaced"
    assert await run(shell, "test -d made/by/api && echo yes") == "yes"
    assert await agent.delete_path("new", None) == []
    assert await agent.delete_path("does/not/exist", None) == []
    assert await run(shell, "ls new 2>&1 >/dev/null | wc -l") == "1"


async def test_a_conditional_write_refuses_a_file_the_shell_changed(
    agent: AgentClient, shell: Shell
) -> None:
    original = hashlib.sha256(b"print('hello from main')\n").hexdigest()
    await run(shell, "echo '# mine' >> main.py")
    with pytest.raises(Conflict) as refused:
        await agent.write_file("main.py", b"theirs\n", {"type": "file", "sha256": original})
    assert refused.value.current is not None and refused.value.current["sha256"] != original
    assert (await run(shell, "tail -n 1 main.py")) == "# mine"
    with pytest.raises(Conflict):
        await agent.write_file("main.py", b"x", {"type": "absent"})
    current = {"type": "file", "sha256": refused.value.current["sha256"]}
    await agent.write_file("main.py", b"agreed\n", current)
    assert await run(shell, "cat main.py") == "agreed"


async def test_a_conditional_delete_keeps_what_the_shell_made_meanwhile(
    agent: AgentClient, shell: Shell
) -> None:
    expected = {"": "directory", "utf8.txt": hashlib.sha256(UTF8).hexdigest()}
    await run(shell, "echo new > text/fresh.txt")
    kept = await agent.delete_path("text", expected)
    assert kept == ["text/fresh.txt"]
    assert await run(shell, "ls text") == "fresh.txt"


async def test_changes_made_in_the_shell_are_seen_by_scan(agent: AgentClient, shell: Shell) -> None:
    before = {e.path: e for e in (await agent.scan(IGNORE, 1 << 20, 1000)).entries}
    assert before["data/blob.bin"].sha256 == hashlib.sha256(BINARY).hexdigest()
    assert before["empty"].type == "directory" and before["data"].type == "directory"
    await run(
        shell,
        "printf 'created\\n' > created.txt && echo more >> main.py && "
        "mv text/utf8.txt text/renamed.txt && rm data/blob.bin && mkdir -p fresh/dir && "
        "head -c 3000 /dev/urandom > fresh/random.bin",
    )
    after = {e.path: e for e in (await agent.scan(IGNORE, 1 << 20, 1000)).entries}
    assert "created.txt" in after and "fresh/dir" in after and "text/renamed.txt" in after
    assert "text/utf8.txt" not in after and "data/blob.bin" not in after
    assert after["main.py"].sha256 != before["main.py"].sha256
    assert after["text/renamed.txt"].sha256 == before["text/utf8.txt"].sha256
    got = await agent.read_files(["created.txt", "fresh/random.bin", "main.py"], 1 << 20)
    assert got["created.txt"] == b"created\n"
    assert hashlib.sha256(got["fresh/random.bin"]).hexdigest() == after["fresh/random.bin"].sha256
    assert got["main.py"].endswith(b"more\n")


async def test_rescanning_an_unchanged_tree_gives_the_same_result(agent: AgentClient) -> None:
    assert await agent.scan(IGNORE, 1 << 20, 1000) == await agent.scan(IGNORE, 1 << 20, 1000)


async def test_ignored_oversized_odd_and_excess_entries_are_reported_as_skipped(
    agent: AgentClient, shell: Shell
) -> None:
    await run(
        shell,
        "mkdir -p .venv/lib sub/__pycache__ && touch .venv/lib/x.py sub/__pycache__/m.pyc "
        "stray.pyc && head -c 5000 /dev/zero > big.bin && ln -s /etc/hostname link && "
        "touch $'caf\\xe9.txt' && mkfifo pipe && echo fine > after.txt",
    )
    result = await agent.scan(IGNORE, 4096, 1000)
    skipped = dict(result.skipped)
    paths = {e.path for e in result.entries}
    assert skipped[".venv"] == "ignored" and skipped["sub/__pycache__"] == "ignored"
    assert skipped["stray.pyc"] == "ignored"
    assert skipped["big.bin"] == "too large" and "big.bin" not in paths
    assert skipped["link"] == "symlink" and "link" not in paths
    assert skipped["caf\\xe9.txt"] == "invalid path"  # a Latin-1 name, shown escaped
    assert skipped["pipe"] == "special file"
    assert "after.txt" in paths  # one bad entry never stops the rest
    assert not any(p.startswith(".venv") or "__pycache__" in p for p in paths)
    few = await agent.scan(IGNORE, 1 << 20, 3)
    assert len(few.entries) == 3
    assert any(reason == "too many entries" for _, reason in few.skipped)


async def test_reads_are_bounded_when_reading_not_only_when_scanning(
    agent: AgentClient, shell: Shell
) -> None:
    await run(shell, "head -c 1000 /dev/zero > grows.bin")
    scanned = {e.path: e for e in (await agent.scan(IGNORE, 4096, 1000)).entries}
    assert scanned["grows.bin"].size == 1000
    await run(shell, "head -c 100000 /dev/zero >> grows.bin")  # grew after the scan
    assert await agent.read_files(["grows.bin", "main.py"], 4096) == {
        "main.py": b"print('hello from main')\n"
    }


async def test_resize_changes_stty_size(agent: AgentClient, shell: Shell) -> None:
    assert await run(shell, "stty size") == "40 120"
    await shell.terminal.resize(91, 17)
    assert await run(shell, "stty size") == "17 91"
    assert await agent.resize(100, 30) is True
    assert await run(shell, "stty size") == "30 100"


async def test_output_is_pulled_not_lost(shell: Shell) -> None:
    # 2 MB through the PTY, read at our own pace: every line arrives, in order.
    out = await run(shell, "seq 1 300000 | tail -c 2000000 | wc -l; seq 1 300000 | tail -n 1")
    assert out.split("\n")[-1] == "300000"


async def test_a_second_viewer_shares_the_shell_and_gets_the_replay(
    agent: AgentClient, shell: Shell
) -> None:
    await run(shell, "SHARED=yes; echo marker-for-replay")
    second = Shell(await agent.attach(120, 40))
    await read_until(second, b"marker-for-replay")
    assert await run(second, "echo $SHARED") == "yes"
    status = await agent.status()
    assert [t.viewers for t in status.terminals if t.name == "main"] == [2]
    await second.terminal.close()


async def test_stop_ends_shells_and_everything_in_them(
    backend: ExecutionBackend, session: uuid.UUID, agent: AgentClient, shell: Shell
) -> None:
    await run(shell, "sleep 1000 & disown")
    assert await backend.stop(session) is True
    with anyio.fail_after(15):
        while await shell.read():
            pass
    with pytest.raises(ExecutionError):
        await agent.status()
    # A new start is a fresh environment built from the files it is given.
    client = await start(backend, session, [WorkspaceEntry("only.txt", "file", b"x")])
    fresh = Shell(await client.attach(80, 24))
    await read_until(fresh, b"$ ")
    assert await run(fresh, "ls") == "only.txt"
    await fresh.terminal.close()


async def test_exit_ends_the_shell_with_its_code(agent: AgentClient) -> None:
    opened = Shell(await agent.attach(80, 24))
    await read_until(opened, b"$ ")
    await opened.write(b"exit 3\n")
    with anyio.fail_after(15):
        while await opened.read():
            pass
    assert opened.exit_code == 3


async def test_the_agent_refuses_a_wrong_secret_and_survives_garbage(
    agent: AgentClient, shell: Shell
) -> None:
    wrong = AgentClient(AgentEndpoint(agent.endpoint.address, b"not-the-secret-at-all"))
    with pytest.raises(ExecutionError):
        await wrong.status()
    garbage = [
        b"",  # connect and hang up
        b"\x00" * 64,
        protocol.HEADER.pack(protocol.JSON, 1 << 30),  # a frame it must not allocate
        protocol.HEADER.pack(protocol.JSON, 4) + b"[1,2",
        protocol.encode_json({"auth": "0" * 64, "mode": "attach"}),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    for payload in garbage:
        reader, writer = await _raw(agent.endpoint.address)
        if not payload:
            writer.close()
            continue
        writer.write(payload)
        with anyio.fail_after(15):
            await reader.read()  # it hangs up on us
        writer.close()
    assert await run(shell, "echo still-serving") == "still-serving"
    assert (await agent.status()).uptime_seconds > 0


async def _raw(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if address.startswith("unix:"):
        return await asyncio.open_unix_connection(address[5:])
    host, _, port = address.removeprefix("tcp:").rpartition(":")
    return await asyncio.open_connection(host, int(port), family=socket.AF_INET)
