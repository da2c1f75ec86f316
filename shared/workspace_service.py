"""Writing workspace files: the one path every function's file write takes.

Access first (owner only; a reviewer of an open review gets 403, anybody else 404), then
the write in one transaction under the workspace's lock (``workspace_store`` holds the
quotas and the parent rules). When the workspace's environment is running, the write goes
through it (``live_files``): the shell's changes to the path are stored first and the write
is pushed into the environment atomically with its commit. A process without the
execution runtime (the sessions function on its own in a cluster) writes the database only;
the environment picks the change up at its next sync.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from uuid import UUID

from shared import db, file_save, workspace_store
from shared.access import lock_owned_session, owned_session
from shared.auth import UNAUTHORIZED_MESSAGE, AuthUser, presented_token_hash, user_for_token
from shared.config import Settings
from shared.errors import Conflict, Unauthorized
from shared.execution import live_files
from shared.execution.runtime import ExecutionRuntime
from shared.file_save import IfMatch
from shared.workspace_store import FileMeta


def etag(version: int) -> str:
    return f'"{version}"'


async def _live(runtime: ExecutionRuntime | None, session_id: UUID) -> bool:
    return (
        runtime is not None
        and runtime.backend is not None
        and (await runtime.endpoint(session_id) is not None)
    )


async def before_read(
    runtime: ExecutionRuntime | None, session_id: UUID, paths: Sequence[str] = ()
) -> None:
    """Bring a live environment's changes in before the API reads (the caller checked
    access). A stopped workspace costs nothing here."""
    if await _live(runtime, session_id):
        assert runtime is not None
        await live_files.catch_up(runtime, session_id, paths)


async def _through(
    runtime: ExecutionRuntime | None,
    session_id: UUID,
    paths: Sequence[str],
    db_write: Callable[[], Awaitable[FileMeta]],
    push: live_files.Push,
) -> FileMeta:
    if runtime is None or runtime.backend is None:
        async with db.transaction():
            return await db_write()
    result, _ = await live_files.write_through(runtime, session_id, paths, db_write, push)
    if not _:
        runtime.schedule_sync(session_id, 0.5)  # it started meanwhile, or refused the push
    return result


async def write_file(
    runtime: ExecutionRuntime | None,
    settings: Settings,
    session_id: UUID,
    path: str,
    content: bytes,
    *,
    user: AuthUser | None = None,
    token: str | None = None,
    if_match: str | None = None,
    create_only: bool = False,
) -> tuple[FileMeta, bool]:
    """Create or replace a file (parents implicitly); with If-Match only while its version
    still matches (412). The caller is ``user``, or the holder of ``token``.

    Replacing a file of a workspace whose environment is stopped (the editor's save) is one
    statement (``file_save``); anything else takes a transaction of its own."""
    condition = IfMatch.parse(if_match) if if_match is not None else None
    live = await _live(runtime, session_id)
    if not live and not create_only:
        token_hash = user.token_hash if user is not None else presented_token_hash(token)
        if token_hash is None:
            raise Unauthorized(UNAUTHORIZED_MESSAGE)
        saved = await file_save.save(
            token_hash, session_id, path, content, settings.workspace, condition
        )
        if saved is not None:
            return saved, False
    if live:
        # Nobody but the owner may make a live environment do anything.
        caller = user or await user_for_token(token)
        if caller is None:
            raise Unauthorized(UNAUTHORIZED_MESSAGE)
        await owned_session(session_id, caller)
    created = False

    async def db_write() -> FileMeta:
        nonlocal created
        if user is not None:
            await owned_session(session_id, user, lock=True)
        else:
            await lock_owned_session(session_id, token)
        if condition is not None:
            current = await workspace_store.version_of(session_id, path)
            if not condition.allows(current):
                raise condition.refusal(current)
        meta, created = await workspace_store.write_file(
            session_id, path, content, settings.workspace, create_only=create_only, locked=True
        )
        return meta

    meta = await _through(
        runtime, session_id, [path], db_write, live_files.push_file(path, content)
    )
    return meta, created


async def make_directory(
    runtime: ExecutionRuntime | None,
    settings: Settings,
    session_id: UUID,
    user: AuthUser,
    path: str,
) -> FileMeta:
    """A new directory (parents implicitly); 409 when anything is already at ``path``."""
    await owned_session(session_id, user)

    async def db_write() -> FileMeta:
        await owned_session(session_id, user, lock=True)
        meta, created = await workspace_store.make_directory(session_id, path, settings.workspace)
        if not created:
            raise Conflict(f"path: '{path}' already exists")
        return meta

    return await _through(runtime, session_id, [], db_write, live_files.push_directory(path))


async def delete_path(
    runtime: ExecutionRuntime | None, session_id: UUID, user: AuthUser, path: str
) -> int:
    """Delete a file, or a directory and everything under it; the number of entries."""
    await owned_session(session_id, user)
    deleted = 0

    async def db_write() -> FileMeta:
        nonlocal deleted
        await owned_session(session_id, user, lock=True)
        deleted = await workspace_store.delete_path(session_id, path)
        return None  # type: ignore[return-value]

    await _through(runtime, session_id, [], db_write, live_files.push_delete(path))
    return deleted
