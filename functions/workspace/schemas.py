"""Request and response types of the workspace function."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from shared.workspace_store import FileMeta

# Paths are validated by shared.paths.normalize_path; this only bounds what is parsed at all.
RawPath = Annotated[str, msgspec.Meta(max_length=4096)]
Encoding = Literal["utf-8", "base64"]
EntryType = Literal["file", "directory"]


class FileCreate(msgspec.Struct):
    """A new file (``content`` in ``encoding``) or directory (no content) at ``path``."""

    path: RawPath
    content: str = ""
    type: EntryType = "file"
    encoding: Encoding = "utf-8"


class FileWrite(msgspec.Struct):
    """The whole new content of a file, in ``encoding``."""

    content: str
    encoding: Encoding = "utf-8"


class FileContent(msgspec.Struct):
    """A file and its content; ``encoding`` is "base64" when the bytes are not UTF-8."""

    path: str
    content: str
    encoding: Encoding
    size: int
    modified: datetime
    version: int


class PathDeleted(msgspec.Struct):
    path: str
    deleted_entries: int  # the file, or the directory and everything under it


class ExecutionInfo(msgspec.Struct):
    state: Literal["stopped", "starting", "running"]
    backend: str
    since: datetime | None


class SkippedEntry(msgspec.Struct):
    """Something inside the execution environment the last sync could not bring back."""

    path: str
    reason: str


class SyncConflict(msgspec.Struct):
    """A file both the environment and the API changed: the environment's version is at
    ``path``, the API's displaced one was kept at ``kept_as``."""

    path: str
    kept_as: str


class WorkspaceStatus(msgspec.Struct):
    status: Literal["uninitialized", "ready", "starting", "running"]
    initialized: bool
    message: str
    file_count: int  # files only
    directory_count: int
    execution: ExecutionInfo
    active_connections: int
    sync_skipped: list[SkippedEntry]
    last_synced_at: datetime | None
    sync_error: str | None = None  # why the last sync failed (None once one succeeds)
    sync_failed_at: datetime | None = None
    sync_conflicts: list[SyncConflict] = msgspec.field(default_factory=list)


class DefaultsEnsured(msgspec.Struct):
    files_created: list[str]


class ShutdownResult(msgspec.Struct):
    workspace_id: UUID
    session_id: UUID
    active_connections: int
    container_cleaned: bool  # false: the final sync failed and the environment was kept
    message: str | None = None  # why it was kept


__all__ = [
    "DefaultsEnsured",
    "ExecutionInfo",
    "FileContent",
    "FileCreate",
    "FileMeta",
    "FileWrite",
    "PathDeleted",
    "ShutdownResult",
    "SkippedEntry",
    "SyncConflict",
    "WorkspaceStatus",
]
