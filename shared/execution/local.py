"""The ``local`` execution backend: a bubblewrap sandbox per session on this host.

An environment is the session's host directory (``EXECUTION_ROOT/<session-id>``, bound at
``/workspace``) plus the shells running in it; each shell is its own bwrap invocation (own
pid namespace, no network, read-only system directories, uid 1000 inside) under resource
limits. When the server runs as root each session runs as its own unprivileged host uid,
because the kernel does not enforce RLIMIT_NPROC for root: that is what contains a fork
bomb. Environments live in this process only: after a restart the directory is wiped and
rebuilt from the database copy on the next start.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import anyio
import anyio.to_thread
import attrs

from shared.execution.base import (
    EnvironmentStatus,
    ExecutionError,
    ExecutionState,
    ScanResult,
    Shell,
    WorkspaceEntry,
)
from shared.execution.local_files import UnsafePath, WorkspaceDir
from shared.execution.local_pty import PtyShell, spawn_shell

log = logging.getLogger(__name__)

HOST_UID_RANGE = 65536


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{key} must be an integer, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{key} must be positive, got {value}")
    return value


@attrs.frozen
class LocalSandboxConfig:
    """Settings of the local backend, read from the environment by ``from_env``."""

    root: Path = Path(".data/sandboxes")
    sandbox: str = "bwrap"  # "bwrap" | "none" (unsandboxed, only when asked explicitly)
    max_processes: int = 256
    max_memory_mb: int = 1024  # address space per process
    max_file_mb: int = 100
    max_open_files: int = 1024
    cpu_seconds: int = 3600  # per process
    max_tmp_mb: int = 256  # the private /tmp is a tmpfs: RAM, so bounded
    host_uid_base: int = 100000  # root only: session uids are base .. base+65535

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LocalSandboxConfig:
        sandbox = env.get("EXECUTION_SANDBOX", "bwrap").strip().lower() or "bwrap"
        if sandbox not in ("bwrap", "none"):
            raise ValueError(f"EXECUTION_SANDBOX must be 'bwrap' or 'none', got {sandbox!r}")
        return cls(
            root=Path(env.get("EXECUTION_ROOT", "").strip() or ".data/sandboxes"),
            sandbox=sandbox,
            max_processes=_int(env, "SANDBOX_MAX_PROCESSES", 256),
            max_memory_mb=_int(env, "SANDBOX_MAX_MEMORY_MB", 1024),
            max_file_mb=_int(env, "SANDBOX_MAX_FILE_MB", 100),
            max_open_files=_int(env, "SANDBOX_MAX_OPEN_FILES", 1024),
            cpu_seconds=_int(env, "SANDBOX_CPU_SECONDS", 3600),
            max_tmp_mb=_int(env, "SANDBOX_MAX_TMP_MB", 256),
            host_uid_base=_int(env, "SANDBOX_HOST_UID_BASE", 100000),
        )


@attrs.define(eq=False)
class _Environment:
    workspace: WorkspaceDir
    owner_id: int
    state: ExecutionState
    since: datetime
    shells: set[PtyShell] = attrs.field(factory=set)


class LocalBackend:
    """``ExecutionBackend`` running bubblewrap sandboxes on this host."""

    name = "local"

    def __init__(self, config: LocalSandboxConfig | None = None) -> None:
        self.config = config or LocalSandboxConfig()
        if self.config.sandbox == "bwrap":
            if shutil.which("bwrap") is None:
                raise ExecutionError(
                    "bubblewrap (bwrap) is not installed; install it or set "
                    "EXECUTION_SANDBOX=none to run terminals unsandboxed"
                )
        else:
            log.warning(
                "EXECUTION_SANDBOX=none: terminals run UNSANDBOXED as the server's user, "
                "with the host's files and network"
            )
        self.root = self.config.root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o711)
        if os.geteuid() == 0 and self.config.sandbox == "bwrap":
            _check_searchable(self.root)
        self._envs: dict[UUID, _Environment] = {}
        self._locks: dict[UUID, anyio.Lock] = {}

    def host_uid(self, session_id: UUID) -> int | None:
        """The unprivileged host uid a session's sandbox runs as (None: the server's own)."""
        if os.geteuid() != 0 or self.config.sandbox == "none":
            return None
        return self.config.host_uid_base + session_id.int % HOST_UID_RANGE

    def _lock(self, session_id: UUID) -> anyio.Lock:
        return self._locks.setdefault(session_id, anyio.Lock())

    def _running(self, session_id: UUID) -> _Environment | None:
        env = self._envs.get(session_id)
        return env if env is not None and env.state is ExecutionState.RUNNING else None

    async def ensure_started(
        self, session_id: UUID, owner_id: int, files: Iterable[WorkspaceEntry]
    ) -> bool:
        async with self._lock(session_id):
            if self._running(session_id) is not None:
                return False
            workspace = WorkspaceDir(self.root / str(session_id), self.host_uid(session_id))
            env = _Environment(workspace, owner_id, ExecutionState.STARTING, _now())
            self._envs[session_id] = env
            entries = list(files)
            try:
                await anyio.to_thread.run_sync(workspace.reset, entries)
            except Exception as exc:
                log.exception("materializing workspace %s failed", session_id)
                self._envs.pop(session_id, None)
                await anyio.to_thread.run_sync(workspace.remove)
                raise ExecutionError("could not prepare the workspace directory") from exc
            env.state = ExecutionState.RUNNING
            env.since = _now()
            return True

    async def status(self, session_id: UUID) -> EnvironmentStatus:
        env = self._envs.get(session_id)
        if env is None:
            return EnvironmentStatus(state=ExecutionState.STOPPED, backend=self.name)
        return EnvironmentStatus(state=env.state, backend=self.name, since=env.since)

    async def running_sessions(self) -> Sequence[UUID]:
        return [sid for sid, env in self._envs.items() if env.state is ExecutionState.RUNNING]

    async def open_shell(self, session_id: UUID, cols: int, rows: int) -> Shell:
        env = self._running(session_id)
        if env is None:
            raise ExecutionError("the execution environment is not running")
        try:
            shell = spawn_shell(
                self.config, env.workspace.root, env.workspace.owner_uid, cols, rows
            )
        except OSError as exc:
            log.exception("starting a shell for %s failed", session_id)
            raise ExecutionError("could not start a shell") from exc
        env.shells.add(shell)
        return _TrackedShell(shell, env.shells)

    async def write_file(self, session_id: UUID, path: str, content: bytes) -> None:
        env = self._running(session_id)
        if env is not None:
            try:
                await anyio.to_thread.run_sync(env.workspace.write_file, path, content)
            except UnsafePath:
                raise ExecutionError(f"{path}: a symlink or file in the way") from None

    async def make_directory(self, session_id: UUID, path: str) -> None:
        env = self._running(session_id)
        if env is not None:
            try:
                await anyio.to_thread.run_sync(env.workspace.make_directory, path)
            except UnsafePath:
                raise ExecutionError(f"{path}: a symlink or file in the way") from None

    async def delete_path(self, session_id: UUID, path: str) -> None:
        env = self._running(session_id)
        if env is not None:
            await anyio.to_thread.run_sync(env.workspace.delete_path, path)

    async def scan(
        self, session_id: UUID, ignore: Sequence[str], max_file_bytes: int, max_entries: int
    ) -> ScanResult:
        env = self._running(session_id)
        if env is None:
            return ScanResult(entries=())
        return await anyio.to_thread.run_sync(
            env.workspace.scan, list(ignore), max_file_bytes, max_entries
        )

    async def read_files(self, session_id: UUID, paths: Sequence[str]) -> dict[str, bytes]:
        env = self._running(session_id)
        if env is None:
            return {}
        limit = self.config.max_file_mb * 1024 * 1024
        return await anyio.to_thread.run_sync(env.workspace.read_files, list(paths), limit)

    async def stop(self, session_id: UUID) -> bool:
        async with self._lock(session_id):
            env = self._envs.pop(session_id, None)
            if env is None:
                return False
            for shell in list(env.shells):
                await shell.close()
            env.shells.clear()
            await anyio.to_thread.run_sync(env.workspace.remove)
            return True

    async def aclose(self) -> None:
        # A process going away takes its sandboxes with it (--die-with-parent); close the
        # shells explicitly so nothing lingers in tests that reuse the process.
        for env in list(self._envs.values()):
            for shell in list(env.shells):
                await shell.close()
            env.shells.clear()


class _TrackedShell:
    """A PtyShell that leaves its environment's shell set once closed or exited."""

    def __init__(self, shell: PtyShell, registry: set[PtyShell]) -> None:
        self._shell = shell
        self._registry = registry

    @property
    def exit_code(self) -> int | None:
        return self._shell.exit_code

    async def read(self, max_bytes: int = 65536) -> bytes:
        data = await self._shell.read(max_bytes)
        if not data:
            self._registry.discard(self._shell)
        return data

    async def write(self, data: bytes) -> None:
        await self._shell.write(data)

    async def resize(self, cols: int, rows: int) -> None:
        await self._shell.resize(cols, rows)

    async def close(self) -> None:
        await self._shell.close()
        self._registry.discard(self._shell)


def _check_searchable(root: Path) -> None:
    """bwrap runs as the session's host uid and resolves the workspace by path, so every
    parent of the sandbox root must be searchable (o+x) by other users."""
    for parent in root.parents:
        if not os.stat(parent).st_mode & 0o001:
            raise ExecutionError(
                f"EXECUTION_ROOT {root}: {parent} is not searchable by other users "
                "(the sandboxes run as unprivileged uids); chmod o+x it or choose another root"
            )


def _now() -> datetime:
    return datetime.now(UTC)
