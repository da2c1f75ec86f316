"""Workspace files, status, default files and shutdown (the workspace function's logic).

Reads are for the owner and the reviewer of an open review; writes for the owner only, and
every write goes through ``shared.workspace_service`` (the one write path, shared with the
sessions function). Before a read of a live workspace, what changed inside its environment
is synced back first, so the API never serves stale files.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from functions.workspace.schemas import (
    DefaultsEnsured,
    ExecutionInfo,
    FileContent,
    FileCreate,
    FileWrite,
    PathDeleted,
    ShutdownResult,
    SkippedEntry,
    SyncConflict,
    WorkspaceStatus,
)
from shared import session_store, workspace_service, workspace_store
from shared.access import NOT_FOUND_MESSAGE, owned_session, readable_session
from shared.auth import UNAUTHORIZED_MESSAGE, AuthUser, presented_token_hash, user_for_token
from shared.config import Settings
from shared.content import decode_content, encode_content
from shared.errors import BadRequest, Conflict, NotFound, Unauthorized
from shared.execution.base import ExecutionState
from shared.execution.runtime import ExecutionRuntime
from shared.workspace_store import FileMeta

DEFAULT_FILES: dict[str, bytes] = {
    "main.py": (
        b'"""Your program starts here: run it with `python3 main.py` in the terminal."""\n'
        b"\n"
        b"\n"
        b"def main() -> None:\n"
        b'    print("Hello, world!")\n'
        b"\n"
        b"\n"
        b'if __name__ == "__main__":\n'
        b"    main()\n"
    ),
    "requirements.txt": (
        b"# Python packages this workspace needs, one per line, e.g.\n# requests==2.32.3\n"
    ),
}


async def _before_read(
    runtime: ExecutionRuntime | None,
    session_id: UUID,
    caller: AuthUser | str | None,
    paths: Sequence[str] = (),
) -> None:
    """Bring back what changed in a live environment before the API reads its files. Read
    access is checked first (``caller`` is the user, or the token of a handler that
    authenticates inside its own query), so nobody else can make a workspace sync; a stopped
    workspace costs no query here (the hot file GET stays one round trip)."""
    if runtime is None or runtime.backend is None:
        return
    if await runtime.endpoint(session_id) is None:
        return
    user = caller if isinstance(caller, AuthUser) else await user_for_token(caller)
    if user is None:
        raise Unauthorized(UNAUTHORIZED_MESSAGE)
    await readable_session(session_id, user)
    await workspace_service.before_read(runtime, session_id, paths)


# ---- reads ---------------------------------------------------------------------------------


async def list_files(
    runtime: ExecutionRuntime | None, session_id: UUID, user: AuthUser
) -> list[FileMeta]:
    await readable_session(session_id, user)
    await _before_read(runtime, session_id, user)
    return await workspace_store.list_files(session_id)


async def read_file(
    runtime: ExecutionRuntime | None, session_id: UUID, token: str | None, path: str
) -> FileContent:
    """A file for the holder of ``token``: authentication, access and the row in one query.

    This is the editor's hottest request, so it does not go through the ``user`` dependency
    (a second round trip); a missing or revoked token is the same 401 as everywhere.
    """
    await _before_read(runtime, session_id, token, [path])
    token_hash = presented_token_hash(token)
    if token_hash is None:
        raise Unauthorized(UNAUTHORIZED_MESSAGE)
    row = await workspace_store.read_for_token(token_hash, session_id, path)
    if row is None:
        raise Unauthorized(UNAUTHORIZED_MESSAGE)
    if not (row["is_owner"] or row["can_review"]):
        raise NotFound(NOT_FOUND_MESSAGE)
    if row["type"] is None:
        raise NotFound(f"path: '{path}' does not exist")
    if row["type"] == "directory":
        raise BadRequest(
            f"path: '{path}' is a directory, not a file; list the workspace's files instead"
        )
    text, encoding = encode_content(bytes(row["content"] or b""))
    return FileContent(
        path=path,
        content=text,
        encoding=encoding,  # type: ignore[arg-type]
        size=row["size"],
        modified=row["updated_at"],
        version=row["version"],
    )


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


async def workspace_status(
    runtime: ExecutionRuntime | None, session_id: UUID, user: AuthUser
) -> WorkspaceStatus:
    await readable_session(session_id, user)
    try:
        await _before_read(runtime, session_id, user)
    except Exception:  # noqa: BLE001 - the status reports a failing sync, it does not fail
        pass
    environment = await runtime.status(session_id) if runtime is not None else None
    row = await session_store.sync_state(session_id)
    if row is None:  # deleted between the access check and now
        raise NotFound(NOT_FOUND_MESSAGE)
    state = ExecutionState(environment.state) if environment else ExecutionState.STOPPED
    files, directories = await workspace_store.counts(session_id)
    initialized = files + directories > 0
    status = state.value if state is not ExecutionState.STOPPED else (
        "ready" if initialized else "uninitialized"
    )  # fmt: skip
    message = (
        f"{_count(files, 'file')} and {_count(directories, 'directory', 'directories')}; "
        f"execution environment {state.value}"
        if initialized
        else f"Workspace is empty (POST .../ensure-defaults adds main.py); "
        f"execution environment {state.value}"
    )
    if environment is not None and environment.message:
        message += f": {environment.message}"
    if row["sync_error"]:
        message += f". {row['sync_error']}"
    return WorkspaceStatus(
        status=status,  # type: ignore[arg-type]
        initialized=initialized,
        message=message,
        file_count=files,
        directory_count=directories,
        execution=ExecutionInfo(
            state=state.value,  # type: ignore[arg-type]
            backend=environment.backend if environment else "none",
            since=environment.since if environment else None,
        ),
        active_connections=runtime.active_connections(session_id) if runtime else 0,
        sync_skipped=[
            SkippedEntry(path=str(item.get("path", "")), reason=str(item.get("reason", "")))
            for item in row["sync_skipped"]
            if isinstance(item, dict)
        ],
        last_synced_at=row["last_synced_at"],
        sync_error=row["sync_error"],
        sync_failed_at=row["sync_failed_at"],
        sync_conflicts=[
            SyncConflict(path=str(item.get("path", "")), kept_as=str(item.get("kept_as", "")))
            for item in row["sync_conflicts"]
            if isinstance(item, dict)
        ],
    )


# ---- writes --------------------------------------------------------------------------------


async def create_entry(
    runtime: ExecutionRuntime | None,
    settings: Settings,
    session_id: UUID,
    user: AuthUser,
    data: FileCreate,
    path: str,
) -> FileMeta:
    """A new file or directory; 409 when anything is already at ``path``."""
    if data.type == "directory":
        if data.content:
            raise BadRequest("content: a directory has no content")
        return await workspace_service.make_directory(runtime, settings, session_id, user, path)
    content = decode_content(data.content, data.encoding)
    meta, _ = await workspace_service.write_file(
        runtime, settings, session_id, path, content, user=user, create_only=True
    )
    return meta


async def write_file(
    runtime: ExecutionRuntime | None,
    settings: Settings,
    session_id: UUID,
    token: str | None,
    path: str,
    data: FileWrite,
    if_match: str | None,
) -> tuple[FileMeta, bool]:
    """Create or replace a file; with If-Match, only if its version still matches (else 412)."""
    content = decode_content(data.content, data.encoding)
    return await workspace_service.write_file(
        runtime, settings, session_id, path, content, token=token, if_match=if_match
    )


async def delete_entry(
    runtime: ExecutionRuntime | None, session_id: UUID, user: AuthUser, path: str
) -> PathDeleted:
    deleted = await workspace_service.delete_path(runtime, session_id, user, path)
    return PathDeleted(path=path, deleted_entries=deleted)


async def ensure_defaults(
    runtime: ExecutionRuntime | None, settings: Settings, session_id: UUID, user: AuthUser
) -> DefaultsEnsured:
    """Create main.py and requirements.txt where nothing is at those paths (idempotent)."""
    await owned_session(session_id, user)
    created: list[str] = []
    for path, content in DEFAULT_FILES.items():
        if await workspace_store.version_of(session_id, path) is not None:
            continue
        try:
            await workspace_service.write_file(
                runtime, settings, session_id, path, content, user=user, create_only=True
            )
        except Conflict:
            continue  # made meanwhile (another request, or the shell)
        created.append(path)
    return DefaultsEnsured(files_created=created)


async def shutdown(
    runtime: ExecutionRuntime | None, session_id: UUID, user: AuthUser
) -> ShutdownResult:
    """Final sync, stop the environment, close its terminals; nothing running is fine too.
    When the final sync fails the environment is kept and ``container_cleaned`` is false."""
    await owned_session(session_id, user)
    closed, cleaned, message = 0, True, None
    if runtime is not None and runtime.backend is not None:
        outcome = await runtime.shutdown(session_id, "workspace shut down by its owner")
        closed, cleaned, message = outcome.closed, outcome.cleaned, outcome.message
    return ShutdownResult(
        workspace_id=session_id,
        session_id=session_id,
        active_connections=closed,
        container_cleaned=cleaned,
        message=message,
    )
