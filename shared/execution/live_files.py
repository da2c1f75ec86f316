"""API reads and writes of a workspace whose environment is running.

Neither side silently overwrites the other: under the workspace's lock, the path is first
brought up to date from the environment (if the shell changed it since the last agreement,
its version is stored first, so an If-Match names a stale version and gets 412), then the
database write and a conditional push into the environment (only if the file there is
still what was last agreed) commit together. A shell write racing the push makes the push
fail; the transaction rolls back and the whole thing runs again with the shell's version.
When the environment cannot take the push (unreachable, disk full), the database write
stands alone and the push is retried by the next sync.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar
from uuid import UUID

from shared import db, environment_store, workspace_store
from shared.agent.paths import parents_of
from shared.errors import Conflict as ConflictError
from shared.execution.agent_client import AgentClient, Conflict
from shared.execution.base import ExecutionError
from shared.execution.runtime import ExecutionRuntime
from shared.execution.sync import expectation
from shared.execution.sync_plan import Entry, subtree

log = logging.getLogger(__name__)
T = TypeVar("T")
ATTEMPTS = 4  # a shell rewriting the file faster than this many tries gets a 409

Push = Callable[[AgentClient, dict[str, Entry]], Awaitable[dict[str, Entry | None]]]


async def _changed_in_environment(
    runtime: ExecutionRuntime, session_id: UUID, client: AgentClient, paths: Sequence[str]
) -> bool:
    """Whether any of ``paths`` differs in the environment from the baseline."""
    limit = runtime.settings.workspace.max_file_bytes
    found = await client.read_files(list(paths), limit)
    base = await environment_store.baseline(session_id)
    for path in paths:
        here = ("file", hashlib.sha256(found[path]).hexdigest()) if path in found else None
        if base.get(path) != here and not (
            here is None and base.get(path, ("",))[0] == "directory"
        ):
            return True
    return False


async def catch_up(runtime: ExecutionRuntime, session_id: UUID, paths: Sequence[str] = ()) -> None:
    """Before an API read of a live workspace: bring the environment's changes in (only when
    one of ``paths`` changed there; every path when none are given)."""
    endpoint = await runtime.endpoint(session_id)
    if endpoint is None:
        return
    client = runtime.client(endpoint)
    if paths:
        async with workspace_store.exclusive(session_id):
            if await _changed_in_environment(runtime, session_id, client, paths):
                await runtime.sync_back(session_id)
        return
    await runtime.sync_back(session_id)


async def write_through(
    runtime: ExecutionRuntime,
    session_id: UUID,
    paths: Sequence[str],
    db_write: Callable[[], Awaitable[T]],
    push: Push,
) -> tuple[T, bool]:
    """Run ``db_write`` (inside a transaction it shares with ``push``) for a live workspace.
    Returns its result and whether the environment has it. ``paths`` are brought up to date
    from the environment first (every path when empty)."""
    endpoint = await runtime.endpoint(session_id)
    if endpoint is None:
        async with db.transaction():
            return await db_write(), False
    client = runtime.client(endpoint)
    async with workspace_store.exclusive(session_id):
        for _ in range(ATTEMPTS):
            try:
                if not paths or await _changed_in_environment(runtime, session_id, client, paths):
                    await runtime.sync_back(session_id)
                async with db.transaction():
                    result = await db_write()
                    base = await environment_store.baseline(session_id)
                    changes = await push(client, base)
                    await environment_store.update(session_id, changes)
                return result, True
            except Conflict:
                continue  # the shell wrote meanwhile: store its version first, judge again
            except ExecutionError as exc:
                log.warning("%s: the environment did not take an API write (%s); the next "
                            "sync retries", session_id, exc)  # fmt: skip
                async with db.transaction():
                    result = await db_write()
                runtime.schedule_sync(session_id, 1.0)
                return result, False
    raise ConflictError("the file keeps changing in the terminal; try again in a moment")


def push_file(path: str, content: bytes) -> Push:
    async def push(client: AgentClient, base: dict[str, Entry]) -> dict[str, Entry | None]:
        digest = await client.write_file(path, content, expectation(base.get(path)))
        changes: dict[str, Entry | None] = {p: ("directory", None) for p in parents_of(path)}
        changes[path] = ("file", digest)
        return changes

    return push


def push_directory(path: str) -> Push:
    async def push(client: AgentClient, base: dict[str, Entry]) -> dict[str, Entry | None]:
        await client.make_directory(path)
        return {p: ("directory", None) for p in [*parents_of(path), path]}

    return push


def push_delete(path: str) -> Push:
    async def push(client: AgentClient, base: dict[str, Entry]) -> dict[str, Entry | None]:
        await client.delete_path(path, subtree(base, path))
        # What the shell made there meanwhile was kept; without a baseline it syncs back.
        return {p: None for p in base if p == path or p.startswith(path + "/")}

    return push
