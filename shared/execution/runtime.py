"""The process's execution runtime: placeholder until the execution runtime lands.

Nothing ever runs here: every environment is "stopped" on the "local" backend, pushes and
sync-backs are no-ops, and a shutdown finds nothing to clean. The real runtime (terminal
manager, sync engine, idle reaper) replaces this module with the same API.
"""

from __future__ import annotations

from uuid import UUID

from shared.execution.base import EnvironmentStatus, ExecutionState


class ExecutionRuntime:
    """Placeholder until the execution runtime lands."""

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def status(self, session_id: UUID) -> EnvironmentStatus:
        return EnvironmentStatus(state=ExecutionState.STOPPED, backend="local")

    def active_connections(self, session_id: UUID) -> int:
        return 0

    async def sync_back(self, session_id: UUID) -> None:
        pass

    async def file_written(self, session_id: UUID, path: str, content: bytes) -> None:
        pass

    async def directory_created(self, session_id: UUID, path: str) -> None:
        pass

    async def path_deleted(self, session_id: UUID, path: str) -> None:
        pass

    async def shutdown(self, session_id: UUID, reason: str) -> tuple[int, bool]:
        return 0, True


_runtime: ExecutionRuntime | None = None


def get_runtime() -> ExecutionRuntime:
    """The process singleton."""
    global _runtime
    if _runtime is None:
        _runtime = ExecutionRuntime()
    return _runtime
