"""Where the file API meets running environments, for functions that do not own the runtime.

The execution runtime installs itself here when it starts in this process (the terminal and
workspace functions, and the gateway that serves everything). Elsewhere (the sessions
function alone in its own pod) these are no-ops and running environments catch up through
their periodic sync and the idle reaper, which also stops environments of deleted sessions.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

_active: Any = None


def install(runtime: Any) -> None:
    """Called by the runtime on start (with itself) and on close (with None)."""
    global _active
    _active = runtime


async def before_read(session_id: UUID) -> None:
    """Bring the database copy up to date with a running environment before it is read."""
    if _active is not None:
        await _active.sync_back(session_id)


async def after_write(session_id: UUID, path: str, content: bytes) -> None:
    """Push a file just committed to the database into a running environment."""
    if _active is not None:
        await _active.file_written(session_id, path, content)


async def environment_gone(session_id: UUID) -> None:
    """The session was deleted: stop its environment without syncing."""
    if _active is not None:
        await _active.session_deleted(session_id)
