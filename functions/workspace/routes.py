"""Routes of the workspace function: /api/workspace/* (files, status, defaults) and
/workspace/{id}/shutdown (no /api prefix, as the original platform had it)."""

from __future__ import annotations

import re
from typing import Annotated
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.connection import ASGIConnection
from litestar.datastructures import ResponseHeader
from litestar.params import Parameter
from litestar.types import Receive, Scope, Send

from functions.workspace import service
from functions.workspace.schemas import (
    DefaultsEnsured,
    FileContent,
    FileCreate,
    FileMeta,
    FileWrite,
    PathDeleted,
    ShutdownResult,
    WorkspaceStatus,
)
from shared import workspace_service
from shared.app_factory import app_settings
from shared.auth import AuthUser, token_from_connection
from shared.config import Settings
from shared.envelope import Envelope, ListEnvelope, ok, ok_list
from shared.errors import error_responses, send_error
from shared.execution.runtime import ExecutionRuntime, running_runtime
from shared.paths import normalize_path, url_path

_ETAG = ResponseHeader(
    name="ETag", description='The file\'s version, quoted: "3"', documentation_only=True
)
IfMatch = Annotated[
    str | None,
    Parameter(
        header="If-Match",
        required=False,
        description='Replace only if the file\'s version is still this one ("3"); "*" = it exists',
    ),
]


class WorkspaceController(Controller):
    path = "/api/workspace/{workspace_id:str}"  # str, so a malformed id is a 400, not a 404
    tags = ["workspace"]

    @get("/files", operation_id="list_workspace_files", responses=error_responses(404))
    async def list_files(
        self, workspace_id: UUID, user: AuthUser, runtime: ExecutionRuntime | None
    ) -> ListEnvelope[FileMeta]:
        """Every file and directory of the workspace, recursively, sorted by path (unpaginated:
        an editor needs the whole tree, and a workspace holds at most a few thousand entries)."""
        items = await service.list_files(runtime, workspace_id, user)
        return ok_list(items, len(items), "Workspace files")

    @post(
        "/files",
        operation_id="create_workspace_file",
        status_code=201,
        responses=error_responses(403, 404, 409, 413),
    )
    async def create_file(
        self,
        workspace_id: UUID,
        user: AuthUser,
        data: FileCreate,
        runtime: ExecutionRuntime | None,
        settings: Settings,
    ) -> Envelope[FileMeta]:
        """Create a file (``content`` in ``encoding``) or a directory; parents are created
        implicitly. Anything already at ``path`` -> 409; a file where a parent should be -> 409."""
        path = normalize_path(data.path, "path")
        meta = await service.create_entry(runtime, settings, workspace_id, user, data, path)
        return ok(meta, "Directory created" if meta.type == "directory" else "File created")

    @get(
        "/files/{file_path:path}",
        operation_id="read_workspace_file",
        responses=error_responses(401, 404),
        response_headers=[_ETAG],
    )
    async def read_file(
        self,
        request: Request,
        workspace_id: UUID,
        file_path: str,
        runtime: ExecutionRuntime | None,
    ) -> Response[Envelope[FileContent]]:
        """A file's content: UTF-8 text as is, other bytes base64 (``encoding: "base64"``).
        ETag carries its version. A directory's path -> 400 (list the workspace instead)."""
        envelope, etag = await _read_file(request, workspace_id, file_path, runtime)
        return Response(envelope, headers={"ETag": etag})

    @put(
        "/files/{file_path:path}",
        operation_id="write_workspace_file",
        status_code=200,
        responses=error_responses(401, 403, 404, 409, 412, 413),
        response_headers=[_ETAG],
    )
    async def write_file(
        self,
        request: Request,
        workspace_id: UUID,
        file_path: str,
        data: FileWrite,
        runtime: ExecutionRuntime | None,
        if_match: IfMatch = None,
    ) -> Response[Envelope[FileMeta]]:
        """Create or replace a file (200 either way; the message says which). With If-Match,
        only while the file is still at that version (412 otherwise)."""
        path = url_path(request, file_path, "file_path")
        settings = app_settings(request)
        token = token_from_connection(request, settings.http)
        meta, created = await service.write_file(
            runtime, settings, workspace_id, token, path, data, if_match
        )
        return Response(
            ok(meta, "File created" if created else "File updated"),
            headers={"ETag": workspace_service.etag(meta.version)},
        )

    @delete(
        "/files/{file_path:path}",
        operation_id="delete_workspace_file",
        status_code=200,
        responses=error_responses(403, 404),
    )
    async def delete_file(
        self,
        request: Request,
        workspace_id: UUID,
        file_path: str,
        user: AuthUser,
        runtime: ExecutionRuntime | None,
    ) -> Envelope[PathDeleted]:
        """Delete a file, or a directory and everything under it."""
        path = url_path(request, file_path, "file_path")
        return ok(await service.delete_entry(runtime, workspace_id, user, path), "Deleted")

    @get("/status", operation_id="workspace_status", responses=error_responses(404))
    async def status(
        self, workspace_id: UUID, user: AuthUser, runtime: ExecutionRuntime | None
    ) -> Envelope[WorkspaceStatus]:
        """Files, the execution environment, attached terminals, and what the last sync from
        the environment had to skip (``sync_skipped``) and when it ran."""
        return ok(await service.workspace_status(runtime, workspace_id, user), "Workspace status")

    @post(
        "/ensure-defaults",
        operation_id="ensure_workspace_defaults",
        status_code=200,
        responses=error_responses(403, 404, 413),
    )
    async def ensure_defaults(
        self,
        workspace_id: UUID,
        user: AuthUser,
        runtime: ExecutionRuntime | None,
        settings: Settings,
    ) -> Envelope[DefaultsEnsured]:
        """Create ``main.py`` (hello world) and ``requirements.txt`` where nothing is at those
        paths; existing files are left alone, so calling it again creates nothing."""
        result = await service.ensure_defaults(runtime, settings, workspace_id, user)
        return ok(result, "Default files ensured")


class ShutdownController(Controller):
    path = "/workspace/{workspace_id:str}"
    tags = ["workspace"]

    @post(
        "/shutdown",
        operation_id="shutdown_workspace",
        status_code=200,
        responses=error_responses(403, 404),
    )
    async def shutdown(
        self, workspace_id: UUID, user: AuthUser, runtime: ExecutionRuntime | None
    ) -> Envelope[ShutdownResult]:
        """Sync the execution environment's files back, stop it and close its terminals.
        Idempotent: with nothing running it reports ``container_cleaned: true``."""
        result = await service.shutdown(runtime, workspace_id, user)
        return ok(result, "Workspace shut down" if result.container_cleaned else "Workspace kept")


# ---- the editor's hottest request, below the framework ---------------------------------------


async def _read_file(
    connection: ASGIConnection,
    workspace_id: UUID,
    file_path: str,
    runtime: ExecutionRuntime | None,
) -> tuple[Envelope[FileContent], str]:
    """What ``GET .../files/{file_path}`` answers, and the ETag: both ways of serving it."""
    path = url_path(connection, file_path, "file_path")
    token = token_from_connection(connection, app_settings(connection).http)
    content = await service.read_file(runtime, workspace_id, token, path)
    return ok(content, "File content"), workspace_service.etag(content.version)


_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_FILE_URL = re.compile(
    re.escape(WorkspaceController.path.partition("{")[0]) + f"({_UUID})/files/.+", re.DOTALL
)
_JSON = (b"content-type", b"application/json")


async def read_file_lane(scope: Scope, receive: Receive, send: Send) -> bool:
    """``WorkspaceController.read_file`` without Litestar's per-request machinery (its
    signature model, dependency injection and response objects were ~40% of this request's
    CPU in a py-spy profile), for the request an editor makes most: True when answered.

    The same answer (``_read_file``, and errors through the app's exception handlers); the
    web layer's guard (``shared.web_security``) offers it every request without an Origin
    (a cross-origin one needs CORS headers). What it passes over, the documented handler
    answers: another method, an id not in canonical form, a server that sends no raw path.
    """
    if scope["method"] != "GET" or not scope.get("raw_path"):
        return False
    match = _FILE_URL.fullmatch(scope["path"])
    if match is None:
        return False
    connection: ASGIConnection = ASGIConnection(scope, receive, send)
    try:
        envelope, etag = await _read_file(connection, UUID(match[1]), "", running_runtime())
    except Exception as exc:  # noqa: BLE001 - answered as every route's errors are
        await send_error(scope, receive, send, exc)
        return True
    body = msgspec.json.encode(envelope)
    headers = [_JSON, (b"content-length", b"%d" % len(body)), (b"etag", etag.encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return True
