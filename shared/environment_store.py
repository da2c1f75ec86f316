"""The baseline of every running environment: what it held at its last agreement with the
database (rows of ``environment_files``). Written only under the workspace's lock, by the
materialization, syncs and pushes; removed when the environment stops."""

from __future__ import annotations

from collections.abc import Mapping
from uuid import UUID

from shared import db

Entry = tuple[str, str | None]


async def baseline(session_id: UUID) -> dict[str, Entry]:
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT path, type, sha256 FROM environment_files WHERE session_id = $1", session_id
        )
    return {row["path"]: (row["type"], row["sha256"]) for row in rows}


async def reset_to_database(session_id: UUID) -> None:
    """The environment was just materialized from the database copy: it holds exactly that."""
    async with db.connection() as conn:
        await conn.execute("DELETE FROM environment_files WHERE session_id = $1", session_id)
        await conn.execute(
            "INSERT INTO environment_files (session_id, path, type, sha256) "
            "SELECT session_id, path, type, sha256 FROM workspace_files WHERE session_id = $1",
            session_id,
        )


async def update(session_id: UUID, changes: Mapping[str, Entry | None]) -> None:
    """Set (or, for None, remove) the baseline of the given paths."""
    gone = [path for path, entry in changes.items() if entry is None]
    kept = [(session_id, path, e[0], e[1]) for path, e in changes.items() if e is not None]
    async with db.connection() as conn:
        if gone:
            await conn.execute(
                "DELETE FROM environment_files WHERE session_id = $1 AND path = ANY($2::text[])",
                session_id,
                gone,
            )
        if kept:
            await conn.executemany(
                "INSERT INTO environment_files (session_id, path, type, sha256) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (session_id, path) "
                "DO UPDATE SET type = EXCLUDED.type, sha256 = EXCLUDED.sha256",
                kept,
            )


async def forget_under(session_id: UUID, path: str) -> None:
    """``path`` and everything under it left the environment."""
    async with db.connection() as conn:
        await conn.execute(
            "DELETE FROM environment_files WHERE session_id = $1 "
            "AND (path = $2 OR starts_with(path, $3))",
            session_id,
            path,
            path + "/",
        )


async def clear(session_id: UUID) -> None:
    async with db.connection() as conn:
        await conn.execute("DELETE FROM environment_files WHERE session_id = $1", session_id)
