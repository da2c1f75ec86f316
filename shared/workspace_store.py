"""The durable copy of every workspace: files and directories in PostgreSQL (the
``workspace_files`` table).

Every change to one workspace runs in one transaction under that workspace's advisory lock,
so API writes, deletes and sync-backs from execution environments (on any replica) never
interleave, and a failed request leaves nothing half-written. Parents are created implicitly;
a file never sits where a directory is (or the other way round); quotas are checked before
anything is written.

The editor's file read is one statement (token, access and the row at once; its save is
``file_save``); everything else goes through Piccolo's builder.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Iterable, Mapping
from contextvars import ContextVar
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from piccolo.query.functions.aggregate import Count, Sum
from piccolo.querystring import QueryString

from shared import db, session_store
from shared.account_store import live_token
from shared.config import WorkspaceSettings
from shared.envelope import utc_now
from shared.errors import Conflict, NotFound, TooLarge
from shared.execution.locks import KeyedLock
from shared.paths import name_of, parents_of
from shared.query import Alias, in_subtree
from shared.review_store import reviewer_reads
from shared.tables import LoginToken, User, WorkspaceFile
from shared.tables import Session as Sessions

_BATCH = 1000  # rows per multi-row statement (PostgreSQL takes at most 32767 parameters)


class FileMeta(msgspec.Struct):
    name: str
    path: str
    type: str  # "file" | "directory"
    size: int
    modified: datetime
    version: int


class StoredFile(msgspec.Struct):
    path: str
    type: str
    content: bytes
    size: int
    modified: datetime
    version: int


META = (
    WorkspaceFile.path,
    WorkspaceFile.type,
    WorkspaceFile.size,
    WorkspaceFile.version,
    WorkspaceFile.updated_at,
)


def meta(row: Mapping[str, Any]) -> FileMeta:
    return FileMeta(
        name=name_of(row["path"]),
        path=row["path"],
        type=row["type"],
        size=row["size"],
        modified=row["updated_at"],
        version=row["version"],
    )


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def lock_key(session_id: UUID) -> int:
    """The advisory lock every change to one workspace takes (API writes, syncs, pushes)."""
    return db.advisory_key("workspace", session_id)


async def lock(session_id: UUID) -> None:
    """Take this workspace's advisory lock for the current transaction."""
    await db.lock(lock_key(session_id))


# Callers of this process waiting for a workspace queue here, holding no database connection
# (sixteen requests for one busy workspace would otherwise hold the whole pool while they
# wait in PostgreSQL); a task already holding the workspace goes straight through.
_queue = KeyedLock()
_held: ContextVar[frozenset[UUID]] = ContextVar("workspaces_held", default=frozenset())


@contextlib.asynccontextmanager
async def exclusive(session_id: UUID) -> AsyncIterator[None]:
    """Hold the workspace's lock across several transactions and calls to its environment
    (a sync reads the environment, writes the database, pushes into the environment). The
    lock is a session-level one on a pinned connection, released on the way out; if that
    fails the connection is dropped, which releases it too. Re-entrant within a task."""
    held = _held.get()
    if session_id in held:  # this task holds it already, in PostgreSQL too
        yield
        return
    async with _queue.hold(session_id):
        token = _held.set(held | {session_id})
        try:
            async with _advisory(session_id):
                yield
        finally:
            _held.reset(token)


@contextlib.asynccontextmanager
async def _advisory(session_id: UUID) -> AsyncIterator[None]:
    """The workspace's lock among every process: a session-level advisory lock."""
    key = lock_key(session_id)
    async with db.pinned() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", key)
        try:
            yield
        finally:
            try:
                await conn.execute("SELECT pg_advisory_unlock($1)", key)
            except BaseException:
                conn.terminate()
                raise


# ---- reads -----------------------------------------------------------------------------------

_OF = WorkspaceFile.session_id


async def contents(session_id: UUID, paths: list[str]) -> dict[str, tuple[bytes, int]]:
    """(content, version) of the given files."""
    if not paths:
        return {}
    rows = await WorkspaceFile.select(
        WorkspaceFile.path, WorkspaceFile.content, WorkspaceFile.version
    ).where((_OF == session_id) & WorkspaceFile.path.is_in(paths) & (WorkspaceFile.type == "file"))
    return {row["path"]: (bytes(row["content"] or b""), row["version"]) for row in rows}


async def list_files(session_id: UUID) -> list[FileMeta]:
    rows = await WorkspaceFile.select(*META).where(_OF == session_id).order_by(WorkspaceFile.path)
    return [meta(row) for row in rows]


async def list_with_content(session_id: UUID) -> list[StoredFile]:
    rows = await (
        WorkspaceFile.select(*META, WorkspaceFile.content)
        .where(_OF == session_id)
        .order_by(WorkspaceFile.path)
    )
    return [
        StoredFile(
            path=row["path"],
            type=row["type"],
            content=bytes(row["content"] or b""),
            size=row["size"],
            modified=row["updated_at"],
            version=row["version"],
        )
        for row in rows
    ]


async def inventory(session_id: UUID) -> dict[str, tuple[str, str | None, int]]:
    """path -> (type, sha256, size) of every entry: what a sync compares against."""
    rows = await WorkspaceFile.select(
        WorkspaceFile.path, WorkspaceFile.type, WorkspaceFile.sha256, WorkspaceFile.size
    ).where(_OF == session_id)
    return {row["path"]: (row["type"], row["sha256"], row["size"]) for row in rows}


async def version_of(session_id: UUID, path: str) -> int | None:
    """The version of the file or directory at ``path``; None when nothing is there."""
    row = await (
        WorkspaceFile.select(WorkspaceFile.version)
        .where((_OF == session_id) & (WorkspaceFile.path == path))
        .first()
    )
    return row["version"] if row else None


async def counts(session_id: UUID) -> tuple[int, int]:
    """How many files and directories the workspace holds."""
    rows = await (
        WorkspaceFile.select(WorkspaceFile.type, Count())
        .where(_OF == session_id)
        .group_by(WorkspaceFile.type)
    )
    found = {row["type"]: row["count"] for row in rows}
    return found.get("file", 0), found.get("directory", 0)


async def _usage(session_id: UUID) -> tuple[int, int]:
    """(entries, bytes) the workspace holds: what its quotas count."""
    row = (
        await WorkspaceFile.select(Count(), Sum(WorkspaceFile.size))
        .where(_OF == session_id)
        .first()
    )
    return row["count"], row["sum"] or 0  # type: ignore[index]


_f, _s, _t, _u = (
    Alias(WorkspaceFile, "f"),
    Alias(Sessions, "s"),
    Alias(LoginToken, "t"),
    Alias(User, "u"),
)

# Token, access and the file row in one round trip: the editor's hottest request.
# No row: the token is not live; is_owner NULL: no such workspace.
_READ_FILE = f"""
SELECT coalesce({_s.user_id} = {_t.user_id}, false) AS is_owner,
       coalesce({reviewer_reads(_s.id, _t.user_id, _u.is_reviewer)}, false) AS can_review,
       {_f.type}, {_f.content}, {_f.size}, {_f.version}, {_f.updated_at}
FROM {_t}
JOIN {_u} ON {_u.id} = {_t.user_id}
LEFT JOIN {_s} ON {_s.id} = $2
LEFT JOIN {_f} ON {_f.session_id} = {_s.id} AND {_f.path} = $3
WHERE {_t.token_hash} = $1 AND {live_token(_t)}
"""


async def read_for_token(token_hash: str, session_id: UUID, path: str) -> Any:
    """The row at ``path`` with the caller's access (``is_owner``, ``can_review``), for the
    holder of a login token by its hash; None when the token is not live. ``type`` is None
    when nothing is at ``path``."""
    return await db.fetchrow(_READ_FILE, token_hash, session_id, path)


# ---- writes ----------------------------------------------------------------------------------


def check_file_size(size: int, limits: WorkspaceSettings) -> None:
    if size > limits.max_file_bytes:
        raise TooLarge(f"content: {size} bytes is over the {limits.max_file_bytes}-byte limit")


def _check_quota(
    usage: tuple[int, int], added_entries: int, added_bytes: int, limits: WorkspaceSettings
) -> None:
    entries, total = usage
    if added_entries > 0 and entries + added_entries > limits.max_entries:
        raise TooLarge(f"workspace: at most {limits.max_entries} files and directories")
    if added_bytes > 0 and total + added_bytes > limits.max_bytes:
        raise TooLarge(f"workspace: at most {limits.max_bytes} bytes in all")


async def write_file(
    session_id: UUID,
    path: str,
    content: bytes,
    limits: WorkspaceSettings,
    *,
    create_only: bool = False,
    locked: bool = False,
) -> tuple[FileMeta, bool]:
    """Create or replace a file (parents implicitly). Returns its metadata and whether it is new.

    Must run inside a transaction: it takes the workspace lock (unless the caller ``locked``
    it already, e.g. with ``access.owned_session(..., lock=True)``).
    """
    check_file_size(len(content), limits)
    if not locked:
        await lock(session_id)
    now = utc_now()
    parents = parents_of(path)
    existing = await _entries(session_id, [*parents, path])
    for parent in parents:
        if parent in existing and existing[parent]["type"] != "directory":
            raise Conflict(f"path: '{parent}' is a file, so it cannot hold '{path}'")
    current = existing.get(path)
    if current is not None and current["type"] == "directory":
        raise Conflict(f"path: '{path}' is a directory")
    if current is not None and create_only:
        raise Conflict(f"path: '{path}' already exists")
    missing = [parent for parent in parents if parent not in existing]
    added_bytes = len(content) - (current["size"] if current is not None else 0)
    _check_quota(await _usage(session_id), len(missing) + (current is None), added_bytes, limits)
    await _insert_directories(session_id, missing, now)
    (row,) = await _upsert_files(session_id, {path: content}, now)
    await session_store.touch(session_id, now)
    return meta(row), current is None


async def make_directory(
    session_id: UUID, path: str, limits: WorkspaceSettings
) -> tuple[FileMeta, bool]:
    """Create a directory (and its parents); existing directories are fine, files are not."""
    await lock(session_id)
    wanted = [*parents_of(path), path]
    existing = await _entries(session_id, wanted)
    for candidate in wanted:
        if candidate in existing and existing[candidate]["type"] != "directory":
            raise Conflict(f"path: '{candidate}' is a file")
    if path in existing:
        return meta(existing[path]), False
    missing = [candidate for candidate in wanted if candidate not in existing]
    _check_quota(await _usage(session_id), len(missing), 0, limits)
    now = utc_now()
    await _insert_directories(session_id, missing, now)
    await session_store.touch(session_id, now)
    return meta((await _entries(session_id, [path]))[path]), True


async def delete_path(session_id: UUID, path: str) -> int:
    """Delete a file, or a directory and everything under it. 404 when nothing is there."""
    await lock(session_id)
    gone = await (
        WorkspaceFile.delete()
        .where((_OF == session_id) & in_subtree(WorkspaceFile.path, path))
        .returning(WorkspaceFile.id)
    )
    if not gone:
        raise NotFound(f"path: '{path}' does not exist")
    await session_store.touch(session_id, utc_now())
    return len(gone)


async def apply_changes(
    session_id: UUID,
    files: Mapping[str, bytes],
    directories: Iterable[str],
    deleted: Iterable[str],
) -> None:
    """Write back what changed inside an execution environment, as one set.

    The caller holds the transaction and the workspace lock and has already applied the
    limits; deletions run first so a rename (delete + create) or a file that became a
    directory lands cleanly.
    """
    now = utc_now()
    gone = sorted(set(deleted))
    for start in range(0, len(gone), _BATCH):
        await WorkspaceFile.delete().where(
            (_OF == session_id) & WorkspaceFile.path.is_in(gone[start : start + _BATCH])
        )
    new_directories = sorted(set(directories))
    await _insert_directories(session_id, new_directories, now)
    await _upsert_files(session_id, files, now)
    if gone or new_directories or files:
        await session_store.touch(session_id, now)


async def _entries(session_id: UUID, paths: list[str]) -> dict[str, dict[str, Any]]:
    rows = await WorkspaceFile.select(*META).where(
        (_OF == session_id) & WorkspaceFile.path.is_in(paths)
    )
    return {row["path"]: row for row in rows}


async def _insert_directories(session_id: UUID, paths: list[str], now: datetime) -> None:
    rows = [
        WorkspaceFile(
            session_id=session_id,
            path=path,
            type="directory",
            content=None,
            size=0,
            sha256=None,
            version=1,
            created_at=now,
            updated_at=now,
        )
        for path in paths
    ]
    for start in range(0, len(rows), _BATCH):
        await WorkspaceFile.insert(*rows[start : start + _BATCH]).on_conflict(
            target=(WorkspaceFile.session_id, WorkspaceFile.path), action="DO NOTHING"
        )


_NEXT_VERSION = QueryString(f"{WorkspaceFile._meta.tablename}.version + 1")


async def _upsert_files(
    session_id: UUID, files: Mapping[str, bytes], now: datetime
) -> list[dict[str, Any]]:
    """Create or replace these files (a replaced one gets the next version); their rows."""
    rows = [
        WorkspaceFile(
            session_id=session_id,
            path=path,
            type="file",
            content=content,
            size=len(content),
            sha256=sha256(content),
            version=1,
            created_at=now,
            updated_at=now,
        )
        for path, content in sorted(files.items())
    ]
    written: list[dict[str, Any]] = []
    for start in range(0, len(rows), _BATCH):
        written += await (
            WorkspaceFile.insert(*rows[start : start + _BATCH])
            .on_conflict(
                target=(WorkspaceFile.session_id, WorkspaceFile.path),
                action="DO UPDATE",
                values=[
                    WorkspaceFile.type,
                    WorkspaceFile.content,
                    WorkspaceFile.size,
                    WorkspaceFile.sha256,
                    WorkspaceFile.updated_at,
                    (WorkspaceFile.version, _NEXT_VERSION),
                ],
            )
            .returning(*META)
        )
    return written
