"""The baseline of every running environment: what it held at its last agreement with the
database (the ``environment_files`` table). Written only under the workspace's lock, by the
materialization, syncs and pushes; removed when the environment stops."""

from __future__ import annotations

from collections.abc import Mapping
from uuid import UUID

from shared import db
from shared.query import Alias, in_subtree, names
from shared.tables import EnvironmentFile, WorkspaceFile

Entry = tuple[str, str | None]
_BATCH = 1000  # rows per multi-row statement (PostgreSQL takes at most 32767 parameters)
_OF = EnvironmentFile.session_id
_ENTRY = (EnvironmentFile.path, EnvironmentFile.type, EnvironmentFile.sha256)

_w = Alias(WorkspaceFile, "w")
_COPIED = (WorkspaceFile.session_id, WorkspaceFile.path, WorkspaceFile.type, WorkspaceFile.sha256)
# The database copy, as the environment now holds it: copied inside PostgreSQL.
_COPY_DATABASE = f"""
INSERT INTO {Alias(EnvironmentFile)} ({names(_OF, *_ENTRY)})
SELECT {_w(*_COPIED)} FROM {_w} WHERE {_w.session_id} = $1
"""


async def baseline(session_id: UUID) -> dict[str, Entry]:
    rows = await EnvironmentFile.select(*_ENTRY).where(_OF == session_id)
    return {row["path"]: (row["type"], row["sha256"]) for row in rows}


async def reset_to_database(session_id: UUID) -> None:
    """The environment was just materialized from the database copy: it holds exactly that."""
    await clear(session_id)
    await db.execute(_COPY_DATABASE, session_id)


async def update(session_id: UUID, changes: Mapping[str, Entry | None]) -> None:
    """Set (or, for None, remove) the baseline of the given paths."""
    gone = [path for path, entry in changes.items() if entry is None]
    kept = [
        EnvironmentFile(session_id=session_id, path=path, type=entry[0], sha256=entry[1])
        for path, entry in changes.items()
        if entry is not None
    ]
    for start in range(0, len(gone), _BATCH):
        await EnvironmentFile.delete().where(
            (_OF == session_id) & EnvironmentFile.path.is_in(gone[start : start + _BATCH])
        )
    for start in range(0, len(kept), _BATCH):
        await EnvironmentFile.insert(*kept[start : start + _BATCH]).on_conflict(
            target=(_OF, EnvironmentFile.path),
            action="DO UPDATE",
            values=[EnvironmentFile.type, EnvironmentFile.sha256],
        )


async def forget_under(session_id: UUID, path: str) -> None:
    """``path`` and everything under it left the environment."""
    await EnvironmentFile.delete().where(
        (_OF == session_id) & in_subtree(EnvironmentFile.path, path)
    )


async def clear(session_id: UUID) -> None:
    await EnvironmentFile.delete().where(_OF == session_id)
