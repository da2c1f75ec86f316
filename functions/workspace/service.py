"""Workspace files, status, default files and shutdown (DESIGN.md section 4, Workspace files).

Reads are for the owner and the reviewer of an open review; writes for the owner only.
Every write runs in one transaction through ``shared.workspace_store`` (which holds the
workspace lock, the quotas and the parent rules) and is pushed into a running execution
environment only after that transaction has committed. Before a read of a live workspace,
what changed inside its environment is synced back first, so the API never serves stale files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any
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
    WorkspaceStatus,
)
from shared import db, workspace_store
from shared.access import (
    NOT_FOUND_MESSAGE,
    lock_owned_session,
    owned_session,
    readable_session,
    reviewer_reads,
)
from shared.auth import UNAUTHORIZED_MESSAGE, AuthUser, presented_token_hash, user_for_token
from shared.config import Settings
from shared.content import decode_content, encode_content
from shared.errors import BadRequest, Conflict, NotFound, PreconditionFailed, Unauthorized
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

AccessCheck = Callable[[UUID, AuthUser], Awaitable[Any]]


# ---- If-Match ------------------------------------------------------------------------------

_ENTITY_TAG = re.compile(r'"(\d{1,10})"|(\d{1,10})', re.ASCII)


def if_match_allows(header: str, current_version: int | None) -> bool:
    """RFC 9110 If-Match with strong comparison: ``*`` needs the file to exist, otherwise one
    of the listed tags must name its current version. A bare number is accepted as a tag."""
    header = header.strip()
    if header == "*":
        return current_version is not None
    if current_version is None:
        return False
    for tag in header.split(","):
        match = _ENTITY_TAG.fullmatch(tag.strip())  # weak tags (W/"1") never match strongly
        if match and int(match.group(1) or match.group(2)) == current_version:
            return True
    return False


def etag(version: int) -> str:
    return f'"{version}"'


# ---- syncing live workspaces ---------------------------------------------------------------


async def _catch_up(
    runtime: ExecutionRuntime, session_id: UUID, user: AuthUser, check: AccessCheck
) -> None:
    """Bring back what changed in a live environment before the API touches its files.

    The caller's access is checked first, so nobody else can make a workspace sync; a stopped
    workspace costs no query here (the hot file GET stays one round trip).
    """
    status = await runtime.status(session_id)
    if ExecutionState(status.state) is not ExecutionState.STOPPED:
        await check(session_id, user)
        await runtime.sync_back(session_id)


async def _catch_up_for_token(
    runtime: ExecutionRuntime, session_id: UUID, token: str | None, check: AccessCheck
) -> None:
    """``_catch_up`` for handlers that authenticate inside their own query: the caller is
    looked up separately only when an environment is live."""
    status = await runtime.status(session_id)
    if ExecutionState(status.state) is ExecutionState.STOPPED:
        return
    user = await user_for_token(token)
    if user is None:
        raise Unauthorized(UNAUTHORIZED_MESSAGE)
    await _catch_up(runtime, session_id, user, check)


# ---- reads ---------------------------------------------------------------------------------


async def list_files(runtime: ExecutionRuntime, session_id: UUID, user: AuthUser) -> list[FileMeta]:
    await readable_session(session_id, user)
    await runtime.sync_back(session_id)
    return await workspace_store.list_files(session_id)


# Token, access check and the file row in one round trip: the authenticated GET is benchmarked.
# No row: the token is not valid; is_owner NULL: no such workspace.
_READ_FILE = f"""
SELECT coalesce(s.user_id = t.user_id, false) AS is_owner,
       coalesce({reviewer_reads("s.id", "t.user_id", "u.is_reviewer")}, false) AS can_review,
       f.type, f.content, f.size, f.version, f.updated_at
FROM login_tokens t
JOIN users u ON u.id = t.user_id
LEFT JOIN sessions s ON s.id = $2
LEFT JOIN workspace_files f ON f.session_id = s.id AND f.path = $3
WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND t.expires_at > now()
"""


async def read_file(
    runtime: ExecutionRuntime, session_id: UUID, token: str | None, path: str
) -> FileContent:
    """A file for the holder of ``token``: authentication, access and the row in one query.

    This is the editor's hottest request, so it does not go through the ``user`` dependency
    (a second round trip); a missing or revoked token is the same 401 as everywhere.
    """
    await _catch_up_for_token(runtime, session_id, token, readable_session)
    token_hash = presented_token_hash(token)
    if token_hash is None:
        raise Unauthorized(UNAUTHORIZED_MESSAGE)
    async with db.connection() as conn:
        row = await conn.fetchrow(_READ_FILE, token_hash, session_id, path)
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


def _skipped_entries(raw: object) -> list[SkippedEntry]:
    """The JSONB report of the last sync: [{path, reason}] (or [path, reason] pairs)."""
    if isinstance(raw, (str, bytes)):
        raw = json.loads(raw)
    entries: list[SkippedEntry] = []
    for item in raw or []:  # type: ignore[union-attr]
        if isinstance(item, dict):
            entries.append(
                SkippedEntry(path=str(item.get("path", "")), reason=str(item.get("reason", "")))
            )
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            entries.append(SkippedEntry(path=str(item[0]), reason=str(item[1])))
    return entries


async def workspace_status(
    runtime: ExecutionRuntime, session_id: UUID, user: AuthUser
) -> WorkspaceStatus:
    await readable_session(session_id, user)
    await runtime.sync_back(session_id)
    environment = await runtime.status(session_id)
    async with db.connection() as conn:
        row = await conn.fetchrow(
            "SELECT s.sync_skipped, s.last_synced_at, "
            "(SELECT count(*) FILTER (WHERE type = 'file') FROM workspace_files "
            " WHERE session_id = s.id) AS files, "
            "(SELECT count(*) FILTER (WHERE type = 'directory') FROM workspace_files "
            " WHERE session_id = s.id) AS directories "
            "FROM sessions s WHERE s.id = $1",
            session_id,
        )
    if row is None:  # deleted between the access check and now
        raise NotFound(NOT_FOUND_MESSAGE)
    state = ExecutionState(environment.state)
    files, directories = int(row["files"]), int(row["directories"])
    initialized = files + directories > 0
    if state is not ExecutionState.STOPPED:
        status = state.value
    else:
        status = "ready" if initialized else "uninitialized"
    message = (
        f"{_count(files, 'file')} and {_count(directories, 'directory', 'directories')}; "
        f"execution environment {state.value}"
        if initialized
        else f"Workspace is empty (POST .../ensure-defaults adds main.py); "
        f"execution environment {state.value}"
    )
    if environment.message:
        message += f": {environment.message}"
    return WorkspaceStatus(
        status=status,  # type: ignore[arg-type]
        initialized=initialized,
        message=message,
        file_count=files,
        directory_count=directories,
        execution=ExecutionInfo(
            state=state.value,  # type: ignore[arg-type]
            backend=environment.backend,
            since=environment.since,
        ),
        active_connections=runtime.active_connections(session_id),
        sync_skipped=_skipped_entries(row["sync_skipped"]),
        last_synced_at=row["last_synced_at"],
    )


# ---- writes --------------------------------------------------------------------------------


async def create_entry(
    runtime: ExecutionRuntime,
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
        await _catch_up(runtime, session_id, user, owned_session)
        async with db.transaction():
            await owned_session(session_id, user)
            meta, created = await workspace_store.make_directory(session_id, path, settings)
            if not created:
                raise Conflict(f"path: '{path}' already exists")
        await runtime.directory_created(session_id, path)
        return meta
    content = decode_content(data.content, data.encoding)
    await _catch_up(runtime, session_id, user, owned_session)
    async with db.transaction():
        await owned_session(session_id, user)
        meta, _ = await workspace_store.write_file(
            session_id, path, content, settings, create_only=True
        )
    await runtime.file_written(session_id, path, content)
    return meta


async def write_file(
    runtime: ExecutionRuntime,
    settings: Settings,
    session_id: UUID,
    token: str | None,
    path: str,
    data: FileWrite,
    if_match: str | None,
) -> tuple[FileMeta, bool]:
    """Create or replace a file; with If-Match, only if its version still matches (else 412).

    The editor saves often, so the token, the access check and the workspace lock are one
    round trip (``lock_owned_session``); the lock also keeps the version from moving
    between the If-Match check and the write.
    """
    content = decode_content(data.content, data.encoding)
    await _catch_up_for_token(runtime, session_id, token, owned_session)
    async with db.transaction():
        await lock_owned_session(session_id, token)
        if if_match is not None:
            async with db.connection() as conn:
                current = await conn.fetchval(
                    "SELECT version FROM workspace_files WHERE session_id = $1 AND path = $2",
                    session_id,
                    path,
                )
            if not if_match_allows(if_match, current):
                found = "no file" if current is None else f"version {current}"
                raise PreconditionFailed(f"If-Match: {if_match[:64]!r} does not match ({found})")
        meta, created = await workspace_store.write_file(
            session_id, path, content, settings, locked=True
        )
    await runtime.file_written(session_id, path, content)
    return meta, created


async def delete_entry(
    runtime: ExecutionRuntime, session_id: UUID, user: AuthUser, path: str
) -> PathDeleted:
    await _catch_up(runtime, session_id, user, owned_session)
    async with db.transaction():
        await owned_session(session_id, user)
        deleted = await workspace_store.delete_path(session_id, path)
    await runtime.path_deleted(session_id, path)
    return PathDeleted(path=path, deleted_entries=deleted)


async def ensure_defaults(
    runtime: ExecutionRuntime, settings: Settings, session_id: UUID, user: AuthUser
) -> DefaultsEnsured:
    """Create main.py and requirements.txt where nothing is at those paths (idempotent)."""
    await _catch_up(runtime, session_id, user, owned_session)
    created: list[str] = []
    async with db.transaction():
        await owned_session(session_id, user)
        await workspace_store.lock(session_id)
        async with db.connection() as conn:
            rows = await conn.fetch(
                "SELECT path FROM workspace_files WHERE session_id = $1 AND path = ANY($2::text[])",
                session_id,
                list(DEFAULT_FILES),
            )
        existing = {row["path"] for row in rows}
        for path, content in DEFAULT_FILES.items():
            if path not in existing:
                await workspace_store.write_file(
                    session_id, path, content, settings, create_only=True
                )
                created.append(path)
    for path in created:
        await runtime.file_written(session_id, path, DEFAULT_FILES[path])
    return DefaultsEnsured(files_created=created)


async def shutdown(runtime: ExecutionRuntime, session_id: UUID, user: AuthUser) -> ShutdownResult:
    """Final sync, stop the environment, close its terminals; nothing running is fine too."""
    await owned_session(session_id, user)
    active, cleaned = await runtime.shutdown(session_id, "workspace shut down by its owner")
    return ShutdownResult(
        workspace_id=session_id,
        session_id=session_id,
        active_connections=active,
        container_cleaned=cleaned,
    )
