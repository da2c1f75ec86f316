"""Sessions (= workspaces): create, list, rename, deactivate, delete; the legacy single-file
view over main.py; and the session-plus-files view of the editor."""

from __future__ import annotations

import uuid
from uuid import UUID

from functions.sessions.schemas import (
    LegacySession,
    LegacySessionCreate,
    Session,
    SessionCreate,
    SessionUpdate,
    SessionWorkspace,
    WorkspaceFileView,
)
from shared import db, workspace_service, workspace_store
from shared.access import SessionAccess, owned_session, readable_session
from shared.auth import AuthUser
from shared.config import Settings
from shared.content import encode_content
from shared.envelope import utc_now
from shared.errors import OverQuota
from shared.execution.runtime import ExecutionRuntime
from shared.workspace_store import FileMeta

MAIN_FILE = "main.py"
_COLUMNS = "id, user_id, name, language, is_active, created_at, updated_at"


def _session(row: object) -> Session:
    return Session(**{key: row[key] for key in Session.__struct_fields__})  # type: ignore[index]


def _from_access(access: SessionAccess) -> Session:
    return Session(**{key: getattr(access, key) for key in Session.__struct_fields__})


# Inserted only while the owner is under the quota ($6). Run after taking the owner's lock, in
# its own statement, so its snapshot sees every session a concurrent create committed.
_CREATE_WITHIN_QUOTA = f"""
INSERT INTO sessions (id, user_id, name, language, is_active, created_at, updated_at,
                      sync_skipped, last_synced_at)
SELECT $1, $2, $3, $4, true, $5, $5, '[]', NULL
WHERE (SELECT count(*) FROM sessions WHERE user_id = $2) < $6
RETURNING {_COLUMNS}
"""


async def create(user: AuthUser, data: SessionCreate, settings: Settings) -> Session:
    """A new workspace, unless the caller already owns ``MAX_SESSIONS_PER_USER`` (429)."""
    async with db.transaction(), db.connection() as conn:
        # One creator per user at a time, so parallel creates cannot overshoot the quota.
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1)", db.advisory_key("sessions-of", user.id)
        )
        row = await conn.fetchrow(
            _CREATE_WITHIN_QUOTA,
            uuid.uuid4(),
            user.id,
            data.name or "Untitled workspace",
            data.language,
            utc_now(),
            settings.quotas.sessions_per_user,
        )
    if row is None:
        limit = settings.quotas.sessions_per_user
        raise OverQuota(f"you own {limit} workspaces, the most allowed; delete one first")
    return _session(row)


async def list_own(user: AuthUser, skip: int, limit: int) -> tuple[list[Session], int]:
    async with db.connection() as conn:
        rows = await conn.fetch(
            f"SELECT {_COLUMNS}, count(*) OVER () AS total FROM sessions WHERE user_id = $1 "
            f"ORDER BY created_at DESC, id OFFSET $2 LIMIT $3",
            user.id,
            skip,
            limit,
        )
        total = (
            rows[0]["total"]
            if rows
            else await conn.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1", user.id)
        )
    return [_session(row) for row in rows], total


async def get(user: AuthUser, session_id: UUID) -> Session:
    return _from_access(await readable_session(session_id, user))


async def update(user: AuthUser, session_id: UUID, data: SessionUpdate) -> Session:
    await owned_session(session_id, user)
    async with db.connection() as conn:
        row = await conn.fetchrow(
            f"UPDATE sessions SET name = coalesce($2, name), is_active = coalesce($3, is_active), "
            f"updated_at = $4 WHERE id = $1 RETURNING {_COLUMNS}",
            session_id,
            data.name,
            data.is_active,
            utc_now(),
        )
    return _session(row)


async def delete(runtime: ExecutionRuntime | None, user: AuthUser, session_id: UUID) -> None:
    """Delete the session with its files and reviews, and stop its environment unsynced (a
    process without the runtime leaves that to the cluster's idle reaper)."""
    await owned_session(session_id, user)
    async with db.connection() as conn:
        await conn.execute("DELETE FROM sessions WHERE id = $1", session_id)
    if runtime is not None and runtime.backend is not None:
        await runtime.session_deleted(session_id)


async def create_legacy(
    user: AuthUser, data: LegacySessionCreate, settings: Settings
) -> LegacySession:
    async with db.transaction():
        session = await create(
            user, SessionCreate(name=data.name, language=data.language), settings
        )
        await workspace_store.write_file(session.id, MAIN_FILE, data.code.encode(), settings)
    return LegacySession(
        id=session.id,
        code=data.code,
        language=session.language,
        name=session.name,
        created_at=session.created_at,
        updated_at=session.updated_at,
    )


async def get_legacy(
    runtime: ExecutionRuntime | None, user: AuthUser, session_id: UUID
) -> LegacySession:
    access = await readable_session(session_id, user)
    await workspace_service.before_read(runtime, session_id, [MAIN_FILE])
    async with db.connection() as conn:
        content = await conn.fetchval(
            "SELECT content FROM workspace_files WHERE session_id = $1 AND path = $2 "
            "AND type = 'file'",
            session_id,
            MAIN_FILE,
        )
    code = bytes(content or b"").decode("utf-8", errors="replace")
    return LegacySession(
        id=access.id,
        code=code,
        language=access.language,
        name=access.name,
        created_at=access.created_at,
        updated_at=access.updated_at,
    )


async def workspace_view(
    runtime: ExecutionRuntime | None, user: AuthUser, session_id: UUID, include_content: bool
) -> SessionWorkspace:
    access = await readable_session(session_id, user)
    await workspace_service.before_read(runtime, session_id)
    files: list[WorkspaceFileView] = []
    if include_content:
        for stored in await workspace_store.list_with_content(session_id):
            content, encoding = (
                encode_content(stored.content) if stored.type == "file" else (None, None)
            )
            files.append(
                WorkspaceFileView(
                    name=stored.path.rsplit("/", 1)[-1],
                    path=stored.path,
                    type=stored.type,
                    size=stored.size,
                    modified=stored.modified,
                    version=stored.version,
                    content=content,
                    encoding=encoding,
                )
            )
    else:
        files = [
            WorkspaceFileView(**{key: getattr(meta, key) for key in FileMeta.__struct_fields__})
            for meta in await workspace_store.list_files(session_id)
        ]
    return SessionWorkspace(session=_from_access(access), files=files, file_count=len(files))


async def write_workspace_file(
    runtime: ExecutionRuntime | None,
    user: AuthUser,
    session_id: UUID,
    path: str,
    content: bytes,
    settings: Settings,
) -> FileMeta:
    meta, _ = await workspace_service.write_file(
        runtime, settings, session_id, path, content, user=user
    )
    return meta
