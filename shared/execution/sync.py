"""Write what changed inside an execution environment back to PostgreSQL.

One sync is: scan the environment (sizes + sha256), compare with the database copy, read
the changed files, and apply creates, modifications, deletions and new directories (a rename
is a delete plus a create) in ONE transaction under the workspace's advisory lock, the same
lock every API write takes, so syncs from any replica and API writes never interleave.

A per-session *baseline* (what the environment held after materialization, the last sync
or an API push) makes this a three-way merge: a path the environment did not change since
the baseline is never written back, so an API write that committed a moment before it was
pushed into the environment is not reverted by a sync that ran in between, and a file the
API created that the environment has not received yet is not deleted. Without a baseline
(another replica started the environment) the environment's view wins.

What the scan skipped (ignored names, too large, symlinks, over the entry or byte quota) is
recorded in the session's ``sync_skipped`` report and never deleted from the database.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from uuid import UUID

import attrs

from shared import db, workspace_store
from shared.config import Settings
from shared.envelope import utc_now
from shared.execution.base import ExecutionBackend, ScanResult, WorkspaceEntry

log = logging.getLogger(__name__)

DEFAULT_IGNORE = (".venv/", "__pycache__/", "node_modules/", ".git/")

Entry = tuple[str, str | None]  # (type, sha256 or None for directories)


@attrs.frozen
class SyncConfig:
    ignore: tuple[str, ...] = DEFAULT_IGNORE
    max_file_bytes: int = 1024 * 1024
    max_entries: int = 2000
    max_workspace_bytes: int = 50 * 1024 * 1024

    @classmethod
    def from_env(cls, env: Mapping[str, str], settings: Settings) -> SyncConfig:
        raw = env.get("SYNC_IGNORE")
        ignore = DEFAULT_IGNORE if raw is None else tuple(raw.replace(",", " ").split())
        return cls(
            ignore=ignore,
            max_file_bytes=settings.max_file_bytes,
            max_entries=settings.max_workspace_entries,
            max_workspace_bytes=settings.max_workspace_bytes,
        )


@attrs.frozen
class SyncOutcome:
    written: tuple[str, ...]
    directories: tuple[str, ...]
    deleted: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]


def _under(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r + "/") for r in roots)


class SyncEngine:
    def __init__(self, backend: ExecutionBackend, config: SyncConfig) -> None:
        self.backend = backend
        self.config = config
        self._baselines: dict[UUID, dict[str, Entry]] = {}

    # -- baseline bookkeeping (called by the runtime) ----------------------------------------

    def materialized(self, session_id: UUID, entries: Iterable[WorkspaceEntry]) -> None:
        self._baselines[session_id] = {
            e.path: (
                ("file", hashlib.sha256(e.content or b"").hexdigest())
                if e.type == "file"
                else ("directory", None)
            )
            for e in entries
        }

    def pushed_file(self, session_id: UUID, path: str, content: bytes) -> None:
        baseline = self._baselines.get(session_id)
        if baseline is not None:
            self._drop(baseline, path)
            baseline[path] = ("file", hashlib.sha256(content).hexdigest())
            for parent in _parents(path):
                baseline[parent] = ("directory", None)

    def pushed_directory(self, session_id: UUID, path: str) -> None:
        baseline = self._baselines.get(session_id)
        if baseline is not None:
            for parent in [*_parents(path), path]:
                baseline[parent] = ("directory", None)

    def pushed_delete(self, session_id: UUID, path: str) -> None:
        baseline = self._baselines.get(session_id)
        if baseline is not None:
            self._drop(baseline, path)

    def forget(self, session_id: UUID) -> None:
        self._baselines.pop(session_id, None)

    @staticmethod
    def _drop(baseline: dict[str, Entry], path: str) -> None:
        for key in [k for k in baseline if _under(k, [path])]:
            del baseline[key]

    # -- the sync ------------------------------------------------------------------------------

    async def sync_back(self, session_id: UUID) -> SyncOutcome:
        """Bring the environment's changes into the database (the caller checked it runs)."""
        cfg = self.config
        scan = await self.backend.scan(session_id, cfg.ignore, cfg.max_file_bytes, cfg.max_entries)
        scanned, skipped = self._within_quota(scan)
        baseline = self._baselines.get(session_id)
        async with db.transaction():
            await workspace_store.lock(session_id)
            stored = await workspace_store.digests(session_id)
            protected = [path for path, _ in skipped]
            upserts: dict[str, Entry] = {}
            for path, entry in scanned.items():
                if baseline is not None and baseline.get(path) == entry:
                    continue  # unchanged in the environment since we last agreed
                if stored.get(path) != entry:
                    upserts[path] = entry
            deleted: set[str] = set()
            for path in stored:
                if path in scanned or _under(path, protected):
                    continue
                if baseline is not None and path not in baseline:
                    continue  # written through the API, not pushed into the environment yet
                deleted.add(path)
            # A path whose type changed goes away first, then comes back as the other type.
            deleted.update(p for p, e in upserts.items() if p in stored and stored[p][0] != e[0])
            want = [p for p, e in upserts.items() if e[0] == "file"]
            contents = await self.backend.read_files(session_id, want) if want else {}
            files = {p: c for p, c in contents.items() if len(c) <= cfg.max_file_bytes}
            directories = [p for p, e in upserts.items() if e[0] == "directory"]
            await workspace_store.apply_changes(session_id, files, directories, deleted)
            async with db.connection() as conn:
                await conn.execute(
                    "UPDATE sessions SET sync_skipped = $2::jsonb, last_synced_at = $3 "
                    "WHERE id = $1",
                    session_id,
                    json.dumps([{"path": p, "reason": r} for p, r in skipped]),
                    utc_now(),
                )
        # What we now agree on: the scan, with the contents actually read.
        agreed = dict(scanned)
        for path in want:
            if path in files:
                agreed[path] = ("file", hashlib.sha256(files[path]).hexdigest())
            else:
                agreed.pop(path, None)  # vanished meanwhile: look again next time
        self._baselines[session_id] = agreed
        if upserts or deleted:
            log.info(
                "synced %s: %d written, %d directories, %d deleted, %d skipped",
                session_id, len(files), len(directories), len(deleted), len(skipped),
            )  # fmt: skip
        return SyncOutcome(tuple(files), tuple(directories), tuple(sorted(deleted)), skipped)

    def _within_quota(
        self, scan: ScanResult
    ) -> tuple[dict[str, Entry], tuple[tuple[str, str], ...]]:
        """The scanned entries that fit the workspace byte quota, and everything skipped."""
        skipped = list(scan.skipped)
        scanned: dict[str, Entry] = {}
        total = 0
        for entry in scan.entries:
            if entry.type == "file":
                if total + entry.size > self.config.max_workspace_bytes:
                    skipped.append((entry.path, "workspace quota exceeded"))
                    continue
                total += entry.size
                scanned[entry.path] = ("file", entry.sha256)
            else:
                scanned[entry.path] = ("directory", None)
        return scanned, tuple(skipped)


def _parents(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]
