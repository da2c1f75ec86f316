"""Routes of the sessions function: /api/postgres_sessions/*, /api/sessions/*,
/api/session_workspace/*."""

from __future__ import annotations

from uuid import UUID

from litestar import Controller, Request, delete, get, post, put

from functions.sessions import service
from functions.sessions.schemas import (
    FileContentBody,
    LegacySession,
    LegacySessionCreate,
    Session,
    SessionCreate,
    SessionDeleted,
    SessionUpdate,
    SessionWorkspace,
)
from shared.auth import AuthUser
from shared.config import Settings
from shared.content import decode_content
from shared.envelope import Envelope, ListEnvelope, ok, ok_list
from shared.errors import error_responses
from shared.execution.runtime import ExecutionRuntime
from shared.paths import url_path
from shared.schemas import LIMIT, SKIP
from shared.workspace_store import FileMeta


class SessionsController(Controller):
    path = "/api/postgres_sessions"
    tags = ["sessions"]

    @post("/", operation_id="create_session", status_code=201, responses=error_responses(429))
    async def create(
        self, user: AuthUser, data: SessionCreate, settings: Settings
    ) -> Envelope[Session]:
        """Create a workspace owned by the caller (429 once they own MAX_SESSIONS_PER_USER)."""
        return ok(await service.create(user, data, settings), "Session created")

    @get("/", operation_id="list_sessions")
    async def list(
        self,
        user: AuthUser,
        skip: int = SKIP,
        limit: int = LIMIT,
    ) -> ListEnvelope[Session]:
        """The caller's workspaces, newest first."""
        items, total = await service.list_own(user, skip, limit)
        return ok_list(items, total, "Sessions")

    @get("/{session_id:uuid}", operation_id="get_session", responses=error_responses(404))
    async def get(self, user: AuthUser, session_id: UUID) -> Envelope[Session]:
        """One workspace (its owner, or the reviewer of its open review)."""
        return ok(await service.get(user, session_id), "Session")

    @put("/{session_id:uuid}", operation_id="update_session", responses=error_responses(403, 404))
    async def update(
        self, user: AuthUser, session_id: UUID, data: SessionUpdate
    ) -> Envelope[Session]:
        """Rename or (de)activate a workspace; owner only."""
        return ok(await service.update(user, session_id, data), "Session updated")

    @delete(
        "/{session_id:uuid}",
        operation_id="delete_session",
        status_code=200,
        responses=error_responses(403, 404),
    )
    async def delete(
        self, user: AuthUser, session_id: UUID, runtime: ExecutionRuntime | None
    ) -> Envelope[SessionDeleted]:
        """Delete a workspace, its files and reviews, and stop its execution environment."""
        await service.delete(runtime, user, session_id)
        return ok(SessionDeleted(id=session_id, deleted=True), "Session deleted")


class LegacySessionsController(Controller):
    path = "/api/sessions"
    tags = ["sessions (legacy)"]

    @post(
        "/",
        operation_id="create_legacy_session",
        status_code=201,
        responses=error_responses(413, 429),
    )
    async def create(
        self, user: AuthUser, data: LegacySessionCreate, settings: Settings
    ) -> Envelope[LegacySession]:
        """Create a workspace whose main.py holds ``code``."""
        session = await service.create_legacy(user, data, settings)
        return ok(session, "Session created")

    @get("/{session_id:uuid}", operation_id="get_legacy_session", responses=error_responses(404))
    async def get(
        self, user: AuthUser, session_id: UUID, runtime: ExecutionRuntime | None
    ) -> Envelope[LegacySession]:
        """A workspace as one file: ``code`` is its main.py."""
        return ok(await service.get_legacy(runtime, user, session_id), "Session")


class SessionWorkspaceController(Controller):
    path = "/api/session_workspace"
    tags = ["sessions"]

    @get("/{session_id:uuid}", operation_id="get_session_workspace", responses=error_responses(404))
    async def get(
        self,
        user: AuthUser,
        session_id: UUID,
        runtime: ExecutionRuntime | None,
        include_content: bool = False,
    ) -> Envelope[SessionWorkspace]:
        """A workspace with every file's metadata (and content with ``include_content=true``)."""
        view = await service.workspace_view(runtime, user, session_id, include_content)
        return ok(view, "Session workspace")

    @post(
        "/{session_id:uuid}/files/{filename:path}",
        operation_id="write_session_file",
        status_code=200,
        responses=error_responses(403, 404, 409, 413),
    )
    async def write_file(
        self,
        request: Request,
        user: AuthUser,
        session_id: UUID,
        filename: str,
        data: FileContentBody,
        runtime: ExecutionRuntime | None,
        settings: Settings,
    ) -> Envelope[FileMeta]:
        """Create or replace one file of the workspace."""
        path = url_path(request, filename, "filename")
        content = decode_content(data.content, data.encoding)
        meta = await service.write_workspace_file(
            runtime, user, session_id, path, content, settings
        )
        return ok(meta, "File saved")
