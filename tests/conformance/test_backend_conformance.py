"""What every execution backend does, run against each entry of ``backends.BACKENDS``.

The shell is driven the way a user drives it; waits are for output to appear, never sleeps.
Markers are split in the typed command (``echo EN""D``) so the echoed command line never
matches what is waited for.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator

import anyio
import pytest

from shared.execution.base import (
    ExecutionBackend,
    ExecutionError,
    ExecutionState,
    Shell,
    WorkspaceEntry,
)

pytestmark = pytest.mark.anyio

IGNORE = (".venv/", "__pycache__/", "node_modules/", ".git/", "*.pyc")
BINARY = bytes(range(256)) * 4 + b"\x00\xff\xfe"
UTF8 = "héllo wörld ✓ 日本語 🐍\n".encode()


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


@pytest.fixture
async def session(backend: ExecutionBackend) -> AsyncIterator[uuid.UUID]:
    session_id = uuid.uuid4()
    files = [
        WorkspaceEntry("main.py", "file", b"print('hello from main')\n"),
        WorkspaceEntry("text/utf8.txt", "file", UTF8),
        WorkspaceEntry("data/blob.bin", "file", BINARY),
        WorkspaceEntry("empty", "directory"),
    ]
    assert await backend.ensure_started(session_id, 1, files) is True
    yield session_id
    await backend.stop(session_id)


@pytest.fixture
async def shell(backend: ExecutionBackend, session: uuid.UUID) -> AsyncIterator[Shell]:
    opened = await backend.open_shell(session, 120, 40)
    await read_until(opened, b"$ ")
    yield opened
    await opened.close()


async def test_status_moves_from_stopped_to_running_and_back(backend: ExecutionBackend) -> None:
    session_id = uuid.uuid4()
    assert (await backend.status(session_id)).state is ExecutionState.STOPPED
    await backend.ensure_started(session_id, 1, [])
    status = await backend.status(session_id)
    assert status.state is ExecutionState.RUNNING
    assert status.backend == backend.name and status.since is not None
    assert session_id in await backend.running_sessions()
    assert await backend.stop(session_id) is True
    assert (await backend.status(session_id)).state is ExecutionState.STOPPED
    assert session_id not in await backend.running_sessions()
    assert await backend.stop(session_id) is False


async def test_ensure_started_twice_is_the_same_environment(
    backend: ExecutionBackend, session: uuid.UUID, shell: Shell
) -> None:
    await run(shell, "echo kept > made-in-shell.txt")
    again = [WorkspaceEntry("other.txt", "file", b"ignored")]
    assert await backend.ensure_started(session, 1, again) is False
    assert await run(shell, "cat made-in-shell.txt; ls other.txt 2>/dev/null | wc -l") == "kept\n0"


async def test_shell_runs_python_on_the_workspace_files(shell: Shell) -> None:
    assert await run(shell, "python3 main.py") == "hello from main"
    assert await run(shell, "pwd; echo $HOME; echo $TERM") == (
        "/workspace\n/workspace\nxterm-256color"
    )


async def test_materialized_files_are_byte_exact(
    backend: ExecutionBackend, session: uuid.UUID, shell: Shell
) -> None:
    digest = hashlib.sha256(BINARY).hexdigest()
    assert await run(shell, "sha256sum data/blob.bin | cut -c1-64") == digest
    assert await run(shell, "cat text/utf8.txt") == UTF8.decode().strip()
    assert await run(shell, "test -d empty && echo dir") == "dir"
    got = await backend.read_files(session, ["data/blob.bin", "text/utf8.txt", "missing"])
    assert got == {"data/blob.bin": BINARY, "text/utf8.txt": UTF8}


async def test_write_file_is_visible_in_the_shell(
    backend: ExecutionBackend, session: uuid.UUID, shell: Shell
) -> None:
    await backend.write_file(session, "new/deep/file.txt", "ünïcode\n".encode())
    await backend.write_file(session, "main.py", b"print('replaced')\n")
    await backend.make_directory(session, "made/by/api")
    assert await run(shell, "cat new/deep/file.txt") == "ünïcode"
    assert await run(shell, "python3 main.py") == "replaced"
    assert await run(shell, "test -d made/by/api && echo yes") == "yes"
    await backend.delete_path(session, "new")
    await backend.delete_path(session, "does/not/exist")
    assert await run(shell, "ls new 2>&1 >/dev/null | wc -l") == "1"


async def test_changes_made_in_the_shell_are_seen_by_scan(
    backend: ExecutionBackend, session: uuid.UUID, shell: Shell
) -> None:
    before = {e.path: e for e in (await backend.scan(session, IGNORE, 1 << 20, 1000)).entries}
    assert before["data/blob.bin"].sha256 == hashlib.sha256(BINARY).hexdigest()
    assert before["empty"].type == "directory" and before["data"].type == "directory"

    await run(
        shell,
        "printf 'created\\n' > created.txt && echo more >> main.py && "
        "mv text/utf8.txt text/renamed.txt && rm data/blob.bin && mkdir -p fresh/dir && "
        "head -c 3000 /dev/urandom > fresh/random.bin",
    )
    after = {e.path: e for e in (await backend.scan(session, IGNORE, 1 << 20, 1000)).entries}
    assert "created.txt" in after and "fresh/dir" in after and "text/renamed.txt" in after
    assert "text/utf8.txt" not in after and "data/blob.bin" not in after
    assert after["main.py"].sha256 != before["main.py"].sha256
    assert after["text/renamed.txt"].sha256 == before["text/utf8.txt"].sha256
    got = await backend.read_files(session, ["created.txt", "fresh/random.bin", "main.py"])
    assert got["created.txt"] == b"created\n"
    assert hashlib.sha256(got["fresh/random.bin"]).hexdigest() == after["fresh/random.bin"].sha256
    assert got["main.py"].endswith(b"more\n")


async def test_rescanning_an_unchanged_tree_gives_the_same_result(
    backend: ExecutionBackend, session: uuid.UUID
) -> None:
    first = await backend.scan(session, IGNORE, 1 << 20, 1000)
    second = await backend.scan(session, IGNORE, 1 << 20, 1000)
    assert first == second


async def test_ignored_oversized_and_excess_entries_are_reported_as_skipped(
    backend: ExecutionBackend, session: uuid.UUID, shell: Shell
) -> None:
    await run(
        shell,
        "mkdir -p .venv/lib sub/__pycache__ && touch .venv/lib/x.py sub/__pycache__/m.pyc "
        "stray.pyc && head -c 5000 /dev/zero > big.bin && ln -s /etc/hostname link",
    )
    result = await backend.scan(session, IGNORE, 4096, 1000)
    skipped = dict(result.skipped)
    paths = {e.path for e in result.entries}
    assert skipped[".venv"] == "ignored" and skipped["sub/__pycache__"] == "ignored"
    assert skipped["stray.pyc"] == "ignored"
    assert skipped["big.bin"] == "too large" and "big.bin" not in paths
    assert skipped["link"] == "symlink" and "link" not in paths
    assert not any(p.startswith(".venv") or "__pycache__" in p for p in paths)

    few = await backend.scan(session, IGNORE, 1 << 20, 3)
    assert len(few.entries) == 3
    assert any(reason == "too many entries" for _, reason in few.skipped)


async def test_resize_changes_stty_size(backend: ExecutionBackend, shell: Shell) -> None:
    assert await run(shell, "stty size") == "40 120"
    await shell.resize(91, 17)
    assert await run(shell, "stty size") == "17 91"


async def test_output_is_pulled_not_lost(shell: Shell) -> None:
    # 2 MB through the PTY, read at our own pace: every line arrives, in order.
    out = await run(shell, "seq 1 300000 | tail -c 2000000 | wc -l; seq 1 300000 | tail -n 1")
    assert out.split("\n")[-1] == "300000"


async def test_stop_ends_shells_and_everything_in_them(
    backend: ExecutionBackend, session: uuid.UUID, shell: Shell
) -> None:
    await run(shell, "sleep 1000 & disown")
    second = await backend.open_shell(session, 80, 24)
    await read_until(second, b"$ ")
    assert await backend.stop(session) is True
    for opened in (shell, second):
        with anyio.fail_after(15):
            while await opened.read():
                pass
    with pytest.raises(ExecutionError):
        await backend.open_shell(session, 80, 24)
    # A new start is a fresh environment built from the files it is given.
    assert await backend.ensure_started(session, 1, [WorkspaceEntry("only.txt", "file", b"x")])
    fresh = await backend.open_shell(session, 80, 24)
    await read_until(fresh, b"$ ")
    assert await run(fresh, "ls") == "only.txt"
    await fresh.close()


async def test_exit_ends_the_shell_with_its_code(
    backend: ExecutionBackend, session: uuid.UUID
) -> None:
    opened = await backend.open_shell(session, 80, 24)
    await read_until(opened, b"$ ")
    await opened.write(b"exit 3\n")
    with anyio.fail_after(15):
        while await opened.read():
            pass
    assert opened.exit_code == 3
