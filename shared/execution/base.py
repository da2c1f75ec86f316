"""The one interface every execution backend implements (local bubblewrap, Kubernetes pods).

A backend owns environments, one per session: it starts (or finds) them and stops them,
and tells how to reach each one's agent, the program inside every environment that owns
its shells and does its file work. Everything above it (the terminal relay, the sync engine
that writes back to PostgreSQL, the idle reaper) is backend-independent and talks only to
this interface and to the agents.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable
from uuid import UUID

import attrs

if TYPE_CHECKING:
    from shared.execution.agent_client import AgentEndpoint


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


@attrs.frozen
class RunningEnvironment:
    session_id: UUID
    owner_id: int
    since: datetime | None = None  # when it started serving its session


@runtime_checkable
class ExecutionBackend(Protocol):
    """Where environments run and how their agents are reached. Everything an environment
    does (shells, files) goes through its agent (``agent_client.AgentClient``)."""

    name: str  # "local" | "kubernetes"
    scope: str  # which environments it sees (one leader runs the background work per scope)

    async def start(self) -> None:
        """Start the backend's own background work (warm spares, the pod watch)."""

    async def ensure_started(self, session_id: UUID, owner_id: int) -> tuple[AgentEndpoint, bool]:
        """The session's agent, starting an environment when none runs. True when it was
        started now: its workspace is empty and the caller materializes the files. Raises
        ExecutionError with a user-safe message on failure, leaving nothing behind."""

    async def find(self, session_id: UUID) -> AgentEndpoint | None:
        """The running environment's agent, or None when it is not running."""

    async def status(self, session_id: UUID) -> EnvironmentStatus: ...

    async def running(self) -> Sequence[RunningEnvironment]:
        """Every live environment (any replica's: backends keep their state where every
        replica sees it, on disk or in the cluster)."""

    async def stop(self, session_id: UUID) -> bool:
        """Stop the environment and free everything it held. True if one was running."""

    async def aclose(self) -> None:
        """Release the backend's own resources at process shutdown (environments stay)."""
