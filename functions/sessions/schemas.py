"""Request and response types of the sessions function (a session IS a workspace)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec

from shared.schemas import Session
from shared.workspace_store import FileMeta

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
Language = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[a-z0-9+#._-]+$")]
Code = Annotated[str, msgspec.Meta(max_length=1024 * 1024)]


class SessionCreate(msgspec.Struct):
    name: Name | None = None
    language: Language = "python"


class SessionUpdate(msgspec.Struct):
    name: Name | None = None
    is_active: bool | None = None


class LegacySessionCreate(msgspec.Struct):
    """The single-file view: ``code`` becomes the workspace's main.py."""

    code: Code = ""
    language: Language = "python"
    name: Name | None = None


class LegacySession(msgspec.Struct):
    id: UUID
    code: str
    language: str
    name: str
    created_at: datetime
    updated_at: datetime


class SessionDeleted(msgspec.Struct):
    id: UUID
    deleted: bool


class WorkspaceFileView(msgspec.Struct, omit_defaults=True):
    """File metadata; with ``include_content`` also the content (base64 when not UTF-8)."""

    name: str
    path: str
    type: str
    size: int
    modified: datetime
    version: int
    content: str | None = None
    encoding: str | None = None


class SessionWorkspace(msgspec.Struct):
    session: Session
    files: list[WorkspaceFileView]
    file_count: int


class FileContentBody(msgspec.Struct):
    content: Code
    encoding: Annotated[str, msgspec.Meta(pattern="^(utf-8|base64)$")] = "utf-8"


__all__ = ["FileMeta", "Session"]
