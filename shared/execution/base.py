"""The one interface every execution backend implements (local bubblewrap, Kubernetes pods).

A backend owns environments, one per session: it starts (or finds) them, materializes the
workspace files into them, opens shells inside them, moves single files in and out, scans
what changed, and stops them. Everything above it (the terminal manager with its ring
buffer and backpressure, the sync engine that writes back to PostgreSQL, the idle reaper)
is backend-independent and talks only to this interface.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable
from uuid import UUID

import attrs


class ExecutionState(enum.StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"


@attrs.frozen
class EnvironmentStatus:
    """What the workspace status endpoint reports under ``execution``."""

    state: ExecutionState
    backend: str
    since: datetime | None = None
    message: str | None = None  # e.g. why the last start failed


@attrs.frozen
class WorkspaceEntry:
    """One entry to materialize: a directory (content None) or a file with its bytes."""

    path: str  # relative POSIX path, already validated
    type: str  # "file" | "directory"
    content: bytes | None = None


@attrs.frozen
class ScannedEntry:
    """One entry found inside a running environment by ``scan``."""

    path: str
    type: str  # "file" | "directory"
    size: int = 0
    sha256: str | None = None  # hex digest for files, None for directories


@attrs.frozen
class ScanResult:
    entries: tuple[ScannedEntry, ...]
    # Paths the scan saw but did not report, with why: ignored names, too large, too many.
    skipped: tuple[tuple[str, str], ...] = ()


class ExecutionError(Exception):
    """An environment could not be started or reached; the message is safe to show a user."""


@runtime_checkable
class Shell(Protocol):
    """A PTY running bash inside an environment. Reads are pulled, so the caller sets the pace."""

    async def read(self, max_bytes: int = 65536) -> bytes:
        """The next chunk of output; b"" once the shell has exited."""

    async def write(self, data: bytes) -> None: ...

    async def resize(self, cols: int, rows: int) -> None: ...

    async def close(self) -> None:
        """End the shell (idempotent)."""

    @property
    def exit_code(self) -> int | None: ...


@runtime_checkable
class ExecutionBackend(Protocol):
    name: str  # "local" | "kubernetes"

    async def ensure_started(
        self, session_id: UUID, owner_id: int, files: Iterable[WorkspaceEntry]
    ) -> bool:
        """Start the session's environment with ``files`` materialized, or find it running.

        Returns True when it was started now (files materialized), False when it was already
        running (``files`` ignored). Raises ExecutionError with a user-safe message on failure,
        leaving nothing behind.
        """

    async def status(self, session_id: UUID) -> EnvironmentStatus: ...

    async def running_sessions(self) -> Sequence[UUID]:
        """Every session with a live environment (any replica's, for shared backends)."""

    async def open_shell(self, session_id: UUID, cols: int, rows: int) -> Shell:
        """A new bash on a PTY in the running environment (TERM=xterm-256color, cwd /workspace)."""

    async def write_file(self, session_id: UUID, path: str, content: bytes) -> None:
        """Write one file (parents created) into a running environment; no-op when stopped."""

    async def make_directory(self, session_id: UUID, path: str) -> None: ...

    async def delete_path(self, session_id: UUID, path: str) -> None:
        """Remove a file or a directory tree in a running environment; no-op when absent."""

    async def scan(
        self, session_id: UUID, ignore: Sequence[str], max_file_bytes: int, max_entries: int
    ) -> ScanResult:
        """Every file and directory under /workspace with sizes and sha256 digests.

        ``ignore`` holds names like ".venv/" (a directory anywhere) or "*.pyc"; files over
        ``max_file_bytes`` and entries past ``max_entries`` are reported in ``skipped``.
        """

    async def read_files(self, session_id: UUID, paths: Sequence[str]) -> dict[str, bytes]:
        """The bytes of the given files; a path that vanished meanwhile is left out."""

    async def stop(self, session_id: UUID) -> bool:
        """Stop the environment and free everything it held. True if one was running."""

    async def aclose(self) -> None:
        """Release the backend's own resources at process shutdown (environments stay)."""
