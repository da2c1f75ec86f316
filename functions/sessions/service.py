"""Sessions (= workspaces): create, list, rename, deactivate, delete; the legacy single-file
view over main.py; and the session-plus-files view of the editor."""

from __future__ import annotations

from uuid import UUID

import msgspec

from functions.sessions.schemas import (
    LegacySession,
    LegacySessionCreate,
    Session,
    SessionCreate,
    SessionUpdate,
    SessionWorkspace,
    WorkspaceFileView,
)
from shared import db, session_store, workspace_service, workspace_store
from shared.access import SessionAccess, owned_session, readable_session
from shared.auth import AuthUser
from shared.config import Settings
from shared.content import encode_content
from shared.envelope import utc_now
from shared.errors import NotFound, OverQuota
from shared.execution.runtime import ExecutionRuntime
from shared.schemas import from_row
from shared.workspace_store import FileMeta

MAIN_FILE = "main.py"


def _from_access(access: SessionAccess) -> Session:
    return from_row(Session, msgspec.structs.asdict(access))


async def create(user: AuthUser, data: SessionCreate, settings: Settings) -> Session:
    """A new workspace, unless the caller already owns ``MAX_SESSIONS_PER_USER`` (429)."""
    limit = settings.quotas.sessions_per_user
    row = await session_store.create_within_quota(
        user.id, data.name or "Untitled workspace", data.language, utc_now(), limit
    )
    if row is None:
        raise OverQuota(f"you own {limit} workspaces, the most allowed; delete one first")
    return from_row(Session, row)


async def list_own(user: AuthUser, skip: int, limit: int) -> tuple[list[Session], int]:
    rows, total = await session_store.owned_by(user.id, skip, limit)
    return [from_row(Session, row) for row in rows], total


async def get(user: AuthUser, session_id: UUID) -> Session:
    return _from_access(await readable_session(session_id, user))


async def update(user: AuthUser, session_id: UUID, data: SessionUpdate) -> Session:
    await owned_session(session_id, user)
    row = await session_store.update(session_id, data.name, data.is_active, utc_now())
    if row is None:  # deleted meanwhile
        raise NotFound("Workspace not found")
    return from_row(Session, row)


async def delete(runtime: ExecutionRuntime | None, user: AuthUser, session_id: UUID) -> None:
    """Delete the session with its files and reviews, and stop its environment unsynced (a
    process without the runtime leaves that to the cluster's idle reaper)."""
    await owned_session(session_id, user)
    await session_store.delete(session_id)
    if runtime is not None and runtime.backend is not None:
        await runtime.session_deleted(session_id)


async def create_legacy(
    user: AuthUser, data: LegacySessionCreate, settings: Settings
) -> LegacySession:
    async with db.transaction():
        session = await create(
            user, SessionCreate(name=data.name, language=data.language), settings
        )
        await workspace_store.write_file(
            session.id, MAIN_FILE, data.code.encode(), settings.workspace
        )
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
    content, _ = (await workspace_store.contents(session_id, [MAIN_FILE])).get(MAIN_FILE, (b"", 0))
    code = content.decode("utf-8", errors="replace")
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
