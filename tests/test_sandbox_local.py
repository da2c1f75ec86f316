"""The local backend's own rules: configuration, refusing to run unsandboxed, the bwrap
command line, file operations a user cannot turn against the host, unsandboxed mode."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from shared.config import ExecutionSettings, SandboxSettings, Settings
from shared.execution.agent_client import AgentClient, client_for
from shared.execution.base import ExecutionBackend, ExecutionError, WorkspaceEntry
from shared.execution.local import LocalBackend
from shared.execution.local_sandbox import limits_argv, sandbox_argv
from tests.conformance.backends import local_bwrap, sandbox_root, started_local

pytestmark = pytest.mark.anyio


def test_settings_read_every_execution_variable_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "DATA_DIR": "/srv/platform",
            "EXECUTION_SANDBOX": "none",
            "SANDBOX_MAX_PROCESSES": "64",
            "SANDBOX_MAX_MEMORY_MB": "512",
            "SANDBOX_MAX_FILE_MB": "10",
            "SANDBOX_MAX_OPEN_FILES": "256",
            "SANDBOX_CPU_SECONDS": "60",
            "SANDBOX_WARM_SPARES": "0",
            "EXECUTION_IDLE_SECONDS": "60",
            "MAX_ENVIRONMENTS_PER_USER": "2",
        }
    )
    sandbox = settings.execution.sandbox
    assert sandbox.root == Path("/srv/platform/sandboxes")  # DATA_DIR is honoured
    assert (sandbox.isolation, sandbox.max_memory_mb, sandbox.max_file_mb) == ("none", 512, 10)
    assert (sandbox.max_open_files, sandbox.cpu_seconds, sandbox.warm_spares) == (256, 60, 0)
    assert sandbox.limits.max_processes == 64
    assert settings.execution.idle_seconds == 60 and settings.quotas.environments_per_user == 2
    assert Settings.from_env({}).execution == ExecutionSettings(
        sandbox=SandboxSettings(root=Settings().data_dir / "sandboxes")
    )
    with pytest.raises(ValueError, match="EXECUTION_SANDBOX"):
        Settings.from_env({"EXECUTION_SANDBOX": "docker"})
    with pytest.raises(ValueError, match="SANDBOX_MAX_FILE_MB"):
        Settings.from_env({"SANDBOX_MAX_FILE_MB": "lots"})


def test_without_bwrap_the_backend_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap anywhere
    with pytest.raises(ExecutionError, match="EXECUTION_SANDBOX=none"):
        LocalBackend(SandboxSettings(root=tmp_path / "s"))
    with caplog.at_level(logging.WARNING):
        LocalBackend(SandboxSettings(root=tmp_path / "s", isolation="none"))
    assert "UNSANDBOXED" in caplog.text


def test_the_sandbox_command_line_isolates_everything() -> None:
    config = SandboxSettings(max_memory_mb=300)
    argv = sandbox_argv(config, 10, 11, 12, 13)
    for flag in ("--unshare-all", "--unshare-user", "--new-session", "--disable-userns",
                 "--clearenv"):  # fmt: skip
        assert flag in argv
    assert "--die-with-parent" not in argv  # environments outlive the server that started them
    joined = " ".join(argv)
    assert "--uid 1000 --gid 1000" in joined and "--hostname sandbox" in joined
    assert "--bind-fd 10 /workspace" in joined and "--info-fd 13" in joined
    assert "--proc /proc" in joined and "--dev /dev" in joined
    assert "--tmpfs /tmp" in joined and "--tmpfs /dev/shm" in joined  # both sized
    assert joined.endswith("--remount-ro / --")  # bwrap's root is read-only, after every mount
    assert "/root" not in argv and "/etc/shadow" not in joined and "/home" not in argv
    assert "--ro-bind /etc " not in joined  # only an allowlist of /etc
    assert "--setenv TERM xterm-256color" in joined and "--setenv HOME /workspace" in joined
    limits = " ".join(limits_argv(config))
    assert f"--as={300 * 1024 * 1024}:" in limits and "--nproc=" in limits


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[ExecutionBackend]:
    async with local_bwrap(tmp_path) as instance:
        yield instance


async def test_file_operations_never_follow_symlinks_planted_in_the_workspace(
    backend: ExecutionBackend,
) -> None:
    session_id = uuid.uuid4()
    endpoint, _ = await backend.ensure_started(session_id, 1)
    agent: AgentClient = client_for(endpoint)
    await agent.materialize([WorkspaceEntry("keep.txt", "file", b"k")])
    assert isinstance(backend, LocalBackend)
    # The session's own slot (a warm spare may sit beside it).
    workspace = (backend.root / "sessions" / str(session_id)).resolve() / "workspace"
    outside = Path(tempfile.mkdtemp(prefix="cep-outside-"))
    try:
        (outside / "host-secret").write_text("host data\n")
        # What a user could plant: links to paths outside (the agent sees only the sandbox).
        os.symlink(outside / "host-secret", workspace / "file-link")
        os.symlink(outside, workspace / "dir-link")
        with pytest.raises(ExecutionError):
            await agent.write_file("dir-link/evil.txt", b"x", None)
        await agent.write_file("file-link", b"overwritten", None)
        await agent.delete_path("dir-link/host-secret", None)
        assert (outside / "host-secret").read_text() == "host data\n"
        assert not (outside / "evil.txt").exists()
        assert (workspace / "file-link").read_bytes() == b"overwritten"  # the link was replaced
        assert not (workspace / "file-link").is_symlink()
        os.symlink(outside / "host-secret", workspace / "leak")
        got = await agent.read_files(["leak", "dir-link/host-secret", "keep.txt"], 1 << 20)
        assert got == {"keep.txt": b"k"}
        os.mkfifo(workspace / "fifo")  # reading a FIFO must not hang the agent
        with anyio.fail_after(5):
            assert await agent.read_files(["fifo"], 1 << 20) == {}
            scan = await agent.scan([], 1 << 20, 100)
        assert ("fifo", "special file") in scan.skipped
        await backend.stop(session_id)
    finally:
        shutil.rmtree(outside, ignore_errors=True)


async def test_sandboxes_start_under_a_data_dir_too_deep_for_a_socket_address() -> None:
    # A socket address holds 107 bytes of path; the agent's socket sits below the slot.
    with sandbox_root("cep-deep-") as top:
        root = top / ("a-rather-long-directory-name-" * 4) / "sandboxes"
        root.mkdir(parents=True)
        os.chmod(root.parent, 0o711)
        async with started_local(root, warm_spares=0) as backend:
            endpoint, started = await backend.ensure_started(uuid.uuid4(), 1)
            assert started and len(endpoint.address) > 120, endpoint.address
            agent = client_for(endpoint)
            await agent.materialize([WorkspaceEntry("deep.txt", "file", b"D")])
            assert await agent.read_files(["deep.txt"], 1 << 20) == {"deep.txt": b"D"}


async def test_a_spare_left_half_claimed_by_a_killed_server_is_freed() -> None:
    with sandbox_root("cep-halfclaim-") as root:
        async with started_local(root / "sandboxes", warm_spares=0) as backend:
            await backend.ensure_started(uuid.uuid4(), 1)
            (slot_dir,) = (backend.root / "slots").iterdir()
            # What a kill between the claim file and its record in meta.json leaves: a running
            # slot nobody owns and nobody can claim.
            meta = json.loads((slot_dir / "meta.json").read_text())
            for key in ("session_id", "owner_id", "claimed_at"):
                meta.pop(key)
            (slot_dir / "meta.json").write_text(json.dumps(meta))
            for link in (backend.root / "sessions").iterdir():
                link.unlink()
            long_ago = time.time() - 3600
            os.utime(slot_dir / "claim", (long_ago, long_ago))
            await anyio.to_thread.run_sync(backend._tidy)
            assert list((backend.root / "slots").iterdir()) == []


async def test_unsandboxed_mode_runs_a_plain_shell(tmp_path: Path) -> None:
    with sandbox_root("cep-plain-") as root:
        async with started_local(root / "s", isolation="none", warm_spares=0) as backend:
            session_id = uuid.uuid4()
            endpoint, started = await backend.ensure_started(session_id, 1)
            assert started
            agent = client_for(endpoint)
            await agent.materialize([WorkspaceEntry("a.txt", "file", b"A")])
            viewer = await agent.attach(80, 24)
            await viewer.write(b"cat a.txt; echo; echo EN''D\n")
            out = b""
            with anyio.fail_after(15):
                while b"END" not in out:
                    item = await viewer.next()
                    assert item is not None
                    out += item if isinstance(item, bytes) else b""
            assert b"A\r\n" in out
