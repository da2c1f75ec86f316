"""The durable copy of every workspace: files and directories in PostgreSQL.

Every change to one workspace runs in one transaction under that workspace's advisory lock,
so API writes, deletes and sync-backs from execution environments (on any replica) never
interleave, and a failed request leaves nothing half-written. Parents are created implicitly;
a file never sits where a directory is (or the other way round); quotas are checked before
anything is written.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import datetime
from uuid import UUID

import msgspec

from shared import db
from shared.config import Settings
from shared.envelope import utc_now
from shared.errors import Conflict, NotFound, TooLarge
from shared.paths import name_of, parents_of


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


def meta(row: Mapping[str, object]) -> FileMeta:
    return FileMeta(
        name=name_of(row["path"]),  # type: ignore[arg-type]
        path=row["path"],  # type: ignore[arg-type]
        type=row["type"],  # type: ignore[arg-type]
        size=row["size"],  # type: ignore[arg-type]
        modified=row["updated_at"],  # type: ignore[arg-type]
        version=row["version"],  # type: ignore[arg-type]
    )


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


_META_COLUMNS = "path, type, size, version, updated_at"


# The rows at the given paths plus one row (path NULL) with the workspace's usage: one trip.
_ENTRIES_AND_USAGE = """
(SELECT path, type, size, version, NULL::bigint AS entries, NULL::bigint AS bytes
   FROM workspace_files WHERE session_id = $1 AND path = ANY($2::text[]) ORDER BY path)
UNION ALL
(SELECT NULL, NULL, NULL, NULL, count(*), coalesce(sum(size), 0)
   FROM workspace_files WHERE session_id = $1)
"""

# Create or replace a file and touch its workspace in one statement.
_UPSERT_FILE = f"""
WITH written AS (
    INSERT INTO workspace_files
        (session_id, path, type, content, size, sha256, version, created_at, updated_at)
    VALUES ($1, $2, 'file', $3, $4, $5, 1, $6, $6)
    ON CONFLICT (session_id, path) DO UPDATE SET content = EXCLUDED.content,
        size = EXCLUDED.size, sha256 = EXCLUDED.sha256,
        version = workspace_files.version + 1, updated_at = EXCLUDED.updated_at
    RETURNING {_META_COLUMNS}
), touched AS (
    UPDATE sessions SET updated_at = $6 WHERE id = $1
)
SELECT * FROM written
"""


# Replace an existing file if the workspace stays within its byte quota, and touch the
# workspace; no row when the file does not exist (or is a directory) or the quota says no.
_REPLACE_FILE = f"""
WITH replaced AS (
    UPDATE workspace_files f
    SET content = $3, size = $4, sha256 = $5, version = f.version + 1, updated_at = $6
    WHERE f.session_id = $1 AND f.path = $2 AND f.type = 'file'
      AND ($4 <= f.size OR (
          SELECT coalesce(sum(size), 0) FROM workspace_files WHERE session_id = $1
      ) - f.size + $4 <= $7)
    RETURNING {_META_COLUMNS}
), touched AS (
    UPDATE sessions SET updated_at = $6 WHERE id = $1 AND EXISTS (SELECT 1 FROM replaced)
)
SELECT * FROM replaced
"""


def lock_key(session_id: UUID) -> int:
    """The advisory lock every change to one workspace takes (API writes, syncs, pushes)."""
    return db.advisory_key("workspace", session_id)


async def lock(session_id: UUID) -> None:
    """Take this workspace's advisory lock for the current transaction."""
    async with db.connection() as conn:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(session_id))


@contextlib.asynccontextmanager
async def exclusive(session_id: UUID) -> AsyncIterator[None]:
    """Hold the workspace's lock across several transactions and calls to its environment
    (a sync reads the environment, writes the database, pushes into the environment). The
    lock is a session-level one on a pinned connection, released on the way out; if that
    fails the connection is dropped, which releases it too."""
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


async def contents(session_id: UUID, paths: list[str]) -> dict[str, tuple[bytes, int]]:
    """(content, version) of the given files."""
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT path, content, version FROM workspace_files "
            "WHERE session_id = $1 AND path = ANY($2::text[]) AND type = 'file'",
            session_id,
            paths,
        )
    return {row["path"]: (bytes(row["content"] or b""), row["version"]) for row in rows}


async def list_files(session_id: UUID) -> list[FileMeta]:
    async with db.connection() as conn:
        rows = await conn.fetch(
            f"SELECT {_META_COLUMNS} FROM workspace_files WHERE session_id = $1 ORDER BY path",
            session_id,
        )
    return [meta(row) for row in rows]


async def list_with_content(session_id: UUID) -> list[StoredFile]:
    async with db.connection() as conn:
        rows = await conn.fetch(
            f"SELECT {_META_COLUMNS}, content FROM workspace_files WHERE session_id = $1 "
            "ORDER BY path",
            session_id,
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
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT path, type, sha256, size FROM workspace_files WHERE session_id = $1",
            session_id,
        )
    return {row["path"]: (row["type"], row["sha256"], row["size"]) for row in rows}


async def version_of(session_id: UUID, path: str) -> int | None:
    """The version of the file or directory at ``path``; None when nothing is there."""
    async with db.connection() as conn:
        return await conn.fetchval(  # type: ignore[no-any-return]
            "SELECT version FROM workspace_files WHERE session_id = $1 AND path = $2",
            session_id,
            path,
        )


def check_file_size(size: int, settings: Settings) -> None:
    if size > settings.workspace.max_file_bytes:
        raise TooLarge(
            f"content: {size} bytes is over the {settings.workspace.max_file_bytes}-byte limit"
        )


async def write_file(
    session_id: UUID,
    path: str,
    content: bytes,
    settings: Settings,
    *,
    create_only: bool = False,
    locked: bool = False,
) -> tuple[FileMeta, bool]:
    """Create or replace a file (parents implicitly). Returns its metadata and whether it is new.

    Must run inside a transaction: it takes the workspace lock (unless the caller ``locked``
    it already, e.g. with ``access.owned_session(..., lock=True)``).
    """
    check_file_size(len(content), settings)
    if not locked:
        await lock(session_id)
    parents = parents_of(path)
    async with db.connection() as conn:
        if not create_only:
            # The editor's save: replacing a file that exists, within the byte quota, is one
            # statement; anything else (new file, directory, quota) takes the full path below.
            row = await conn.fetchrow(
                _REPLACE_FILE,
                session_id,
                path,
                content,
                len(content),
                sha256(content),
                utc_now(),
                settings.workspace.max_bytes,
            )
            if row is not None:
                return meta(row), False
        rows = await conn.fetch(_ENTRIES_AND_USAGE, session_id, [*parents, path])
        usage_row = next(row for row in rows if row["path"] is None)
        existing = {row["path"]: row for row in rows if row["path"] is not None}
        for parent in parents:
            if parent in existing and existing[parent]["type"] != "directory":
                raise Conflict(f"path: '{parent}' is a file, so it cannot hold '{path}'")
        current = existing.get(path)
        if current is not None and current["type"] == "directory":
            raise Conflict(f"path: '{path}' is a directory")
        if current is not None and create_only:
            raise Conflict(f"path: '{path}' already exists")
        missing_parents = [parent for parent in parents if parent not in existing]
        added_entries = len(missing_parents) + (0 if current is not None else 1)
        added_bytes = len(content) - (current["size"] if current is not None else 0)
        _check_quota_of(usage_row, added_entries, added_bytes, settings)
        now = utc_now()
        if missing_parents:
            await _insert_directories(conn, session_id, missing_parents, now)
        row = await conn.fetchrow(
            _UPSERT_FILE, session_id, path, content, len(content), sha256(content), now
        )
    return meta(row), current is None


async def make_directory(session_id: UUID, path: str, settings: Settings) -> tuple[FileMeta, bool]:
    """Create a directory (and its parents); existing directories are fine, files are not."""
    await lock(session_id)
    parents = parents_of(path)
    async with db.connection() as conn:
        rows = await conn.fetch(
            f"SELECT {_META_COLUMNS} FROM workspace_files "
            "WHERE session_id = $1 AND path = ANY($2::text[])",
            session_id,
            [*parents, path],
        )
        existing = {row["path"]: row for row in rows}
        for candidate in [*parents, path]:
            if candidate in existing and existing[candidate]["type"] != "directory":
                raise Conflict(f"path: '{candidate}' is a file")
        if path in existing:
            return meta(existing[path]), False
        missing = [candidate for candidate in [*parents, path] if candidate not in existing]
        await _check_quota(conn, session_id, len(missing), 0, settings)
        now = utc_now()
        await _insert_directories(conn, session_id, missing, now)
        row = await conn.fetchrow(
            f"SELECT {_META_COLUMNS} FROM workspace_files WHERE session_id = $1 AND path = $2",
            session_id,
            path,
        )
        await conn.execute("UPDATE sessions SET updated_at = $2 WHERE id = $1", session_id, now)
    return meta(row), True


async def delete_path(session_id: UUID, path: str) -> int:
    """Delete a file, or a directory and everything under it. 404 when nothing is there."""
    await lock(session_id)
    async with db.connection() as conn:
        status = await conn.execute(
            "DELETE FROM workspace_files WHERE session_id = $1 "
            "AND (path = $2 OR starts_with(path, $3))",
            session_id,
            path,
            path + "/",
        )
        deleted = int(status.split()[-1])
        if deleted == 0:
            raise NotFound(f"path: '{path}' does not exist")
        await conn.execute(
            "UPDATE sessions SET updated_at = $2 WHERE id = $1", session_id, utc_now()
        )
    return deleted


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
    async with db.connection() as conn:
        gone = sorted(set(deleted))
        if gone:
            await conn.execute(
                "DELETE FROM workspace_files WHERE session_id = $1 AND path = ANY($2::text[])",
                session_id,
                gone,
            )
        new_directories = sorted(set(directories))
        if new_directories:
            await _insert_directories(conn, session_id, new_directories, now)
        if files:
            await conn.executemany(
                "INSERT INTO workspace_files "
                "(session_id, path, type, content, size, sha256, version, created_at, updated_at) "
                "VALUES ($1, $2, 'file', $3, $4, $5, 1, $6, $6) "
                "ON CONFLICT (session_id, path) DO UPDATE SET content = EXCLUDED.content, "
                "size = EXCLUDED.size, sha256 = EXCLUDED.sha256, type = 'file', "
                "version = workspace_files.version + 1, updated_at = EXCLUDED.updated_at",
                [
                    (session_id, path, content, len(content), sha256(content), now)
                    for path, content in sorted(files.items())
                ],
            )
        if gone or new_directories or files:
            await conn.execute("UPDATE sessions SET updated_at = $2 WHERE id = $1", session_id, now)


async def _insert_directories(
    conn: object, session_id: UUID, paths: list[str], now: datetime
) -> None:
    await conn.executemany(  # type: ignore[attr-defined]
        "INSERT INTO workspace_files "
        "(session_id, path, type, content, size, sha256, version, created_at, updated_at) "
        "VALUES ($1, $2, 'directory', NULL, 0, NULL, 1, $3, $3) "
        "ON CONFLICT (session_id, path) DO NOTHING",
        [(session_id, path, now) for path in paths],
    )


async def _check_quota(
    conn: object, session_id: UUID, added_entries: int, added_bytes: int, settings: Settings
) -> None:
    row = await conn.fetchrow(  # type: ignore[attr-defined]
        "SELECT count(*) AS entries, coalesce(sum(size), 0) AS bytes "
        "FROM workspace_files WHERE session_id = $1",
        session_id,
    )
    _check_quota_of(row, added_entries, added_bytes, settings)


def _check_quota_of(
    row: Mapping[str, int], added_entries: int, added_bytes: int, settings: Settings
) -> None:
    if added_entries > 0 and row["entries"] + added_entries > settings.workspace.max_entries:
        raise TooLarge(f"workspace: at most {settings.workspace.max_entries} files and directories")
    if added_bytes > 0 and row["bytes"] + added_bytes > settings.workspace.max_bytes:
        raise TooLarge(f"workspace: at most {settings.workspace.max_bytes} bytes in all")
