"""The local backend's own rules: configuration, refusing to run unsandboxed, the bwrap
command line, and file operations a user inside cannot turn against the host."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from shared.execution.base import ExecutionBackend, ExecutionError, WorkspaceEntry
from shared.execution.local import LocalBackend, LocalSandboxConfig
from shared.execution.local_pty import limits_argv, sandbox_argv
from tests.conformance.backends import local_bwrap
from tests.conformance.test_backend_conformance import read_until, run

pytestmark = pytest.mark.anyio


def test_config_reads_every_setting_from_the_environment() -> None:
    config = LocalSandboxConfig.from_env(
        {
            "EXECUTION_ROOT": "/srv/sandboxes",
            "EXECUTION_SANDBOX": "none",
            "SANDBOX_MAX_PROCESSES": "64",
            "SANDBOX_MAX_MEMORY_MB": "512",
            "SANDBOX_MAX_FILE_MB": "10",
            "SANDBOX_MAX_OPEN_FILES": "256",
            "SANDBOX_CPU_SECONDS": "60",
        }
    )
    assert config == LocalSandboxConfig(
        root=Path("/srv/sandboxes"),
        sandbox="none",
        max_processes=64,
        max_memory_mb=512,
        max_file_mb=10,
        max_open_files=256,
        cpu_seconds=60,
    )
    assert LocalSandboxConfig.from_env({}) == LocalSandboxConfig()
    with pytest.raises(ValueError, match="EXECUTION_SANDBOX"):
        LocalSandboxConfig.from_env({"EXECUTION_SANDBOX": "docker"})
    with pytest.raises(ValueError, match="SANDBOX_MAX_PROCESSES"):
        LocalSandboxConfig.from_env({"SANDBOX_MAX_PROCESSES": "lots"})


def test_without_bwrap_the_backend_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap anywhere
    with pytest.raises(ExecutionError, match="EXECUTION_SANDBOX=none"):
        LocalBackend(LocalSandboxConfig(root=tmp_path / "s"))
    with caplog.at_level(logging.WARNING):
        LocalBackend(LocalSandboxConfig(root=tmp_path / "s", sandbox="none"))
    assert "UNSANDBOXED" in caplog.text


def test_the_sandbox_command_line_isolates_everything() -> None:
    config = LocalSandboxConfig(max_processes=77, max_memory_mb=300)
    argv = sandbox_argv(config, 10, 11, 12)
    for flag in ("--unshare-all", "--unshare-user", "--die-with-parent", "--new-session",
                 "--disable-userns", "--clearenv"):  # fmt: skip
        assert flag in argv
    joined = " ".join(argv)
    assert "--uid 1000 --gid 1000" in joined and "--hostname sandbox" in joined
    assert "--bind-fd 10 /workspace" in joined and "--tmpfs /tmp" in joined
    assert "--proc /proc" in joined and "--dev /dev" in joined
    assert "/root" not in argv and "/etc/shadow" not in joined and "/home" not in argv
    assert "--ro-bind /etc " not in joined  # only an allowlist of /etc
    assert "--setenv TERM xterm-256color" in joined and "--setenv HOME /workspace" in joined
    limits = " ".join(limits_argv(config))
    assert "--nproc=77:77" in limits and f"--as={300 * 1024 * 1024}:" in limits


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[ExecutionBackend]:
    async with local_bwrap(tmp_path) as instance:
        yield instance


async def test_api_writes_never_follow_symlinks_planted_in_the_sandbox(
    backend: ExecutionBackend, tmp_path: Path
) -> None:
    target = tmp_path / "host-secret"
    target.write_text("host data\n")
    session_id = uuid.uuid4()
    await backend.ensure_started(session_id, 1, [WorkspaceEntry("keep.txt", "file", b"k")])
    assert isinstance(backend, LocalBackend)
    root = backend.root / str(session_id)
    # What a user could plant: links to host paths the server (root) can reach.
    os.symlink(target, root / "file-link")
    os.symlink(tmp_path, root / "dir-link")
    with pytest.raises(ExecutionError):
        await backend.write_file(session_id, "dir-link/evil.txt", b"x")
    await backend.write_file(session_id, "file-link", b"overwritten")
    await backend.delete_path(session_id, "dir-link/host-secret")
    assert target.read_text() == "host data\n" and not (tmp_path / "evil.txt").exists()
    assert (root / "file-link").read_bytes() == b"overwritten"  # the link itself was replaced
    assert not (root / "file-link").is_symlink()
    os.symlink(target, root / "leak")
    got = await backend.read_files(session_id, ["leak", "dir-link/host-secret", "keep.txt"])
    assert got == {"keep.txt": b"k"}
    os.mkfifo(root / "fifo")  # reading a FIFO must not hang the server
    with anyio.fail_after(5):
        assert await backend.read_files(session_id, ["fifo"]) == {}
        scan = await backend.scan(session_id, [], 1 << 20, 100)
    assert ("fifo", "special file") in scan.skipped
    await backend.stop(session_id)


@pytest.mark.skipif(os.geteuid() != 0, reason="per-session host uids are used under root")
async def test_a_fork_bomb_stays_within_the_session_process_limit(tmp_path: Path) -> None:
    root = Path(tempfile.mkdtemp(prefix="cep-bomb-"))  # reachable by the sandbox uids
    os.chmod(root, 0o711)
    backend = LocalBackend(LocalSandboxConfig(root=root / "s", max_processes=40))
    session_id = uuid.uuid4()
    uid = backend.host_uid(session_id)
    assert uid is not None and uid != 0

    def count() -> int:
        out = subprocess.run(["pgrep", "-c", "-u", str(uid)], capture_output=True, text=True)
        return int(out.stdout.strip() or 0)

    try:
        await backend.ensure_started(session_id, 1, [])
        shell = await backend.open_shell(session_id, 80, 24)
        await read_until(shell, b"$ ")
        await shell.write(b"bomb() { bomb | bomb & }; bomb\n")
        await read_until(shell, b"Resource temporarily unavailable")
        assert count() <= 40
        assert await backend.stop(session_id)
        with anyio.fail_after(10):
            while count():  # noqa: ASYNC110 - the kernel tears the pid namespace down
                await anyio.sleep(0.05)
    finally:
        await backend.aclose()
        shutil.rmtree(root, ignore_errors=True)


async def test_unsandboxed_mode_runs_a_plain_shell(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    backend = LocalBackend(LocalSandboxConfig(root=root, sandbox="none"))
    session_id = uuid.uuid4()
    await backend.ensure_started(session_id, 1, [WorkspaceEntry("a.txt", "file", b"A")])
    shell = await backend.open_shell(session_id, 80, 24)
    try:
        assert await run(shell, "cat a.txt") == "A"
    finally:
        await backend.stop(session_id)
