"""Keeping a running environment and the database copy of its workspace in step, both ways.

A sync, holding the workspace's lock (the one every API write takes), scans the environment
(sizes and sha256 digests, through its agent) and merges three ways with the baseline
(``sync_plan``): the environment's changes go into the database in one transaction, the
database's changes the environment has not seen yet are pushed into it conditionally (only
where the environment still holds what the baseline says), and the baseline moves to what
both now agree on. Contents are read from the environment with the size limit enforced while
reading; the workspace quota counts everything stored, including what the scan could not
see. Environment I/O never happens inside a database transaction.

A sync that could not finish (the agent unreachable, its disk full, the database down) raises
``SyncIncomplete``; the runtime retries it with backoff.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Mapping
from uuid import UUID

import attrs

from shared import db, environment_store, session_store, workspace_store
from shared.agent.paths import parents_of
from shared.config import Settings
from shared.envelope import utc_now
from shared.execution.agent_client import OVER_BUDGET, AgentClient, Conflict
from shared.execution.base import ExecutionError, ScanResult, WorkspaceEntry
from shared.execution.sync_plan import Entry, conflict_path, plan_sync, subtree

log = logging.getLogger(__name__)


class SyncIncomplete(ExecutionError):
    """Part of a sync could not be done now; what could be was done. Retry later."""


@attrs.frozen
class SyncOutcome:
    stored: tuple[str, ...] = ()  # written to the database (files and directories)
    deleted: tuple[str, ...] = ()  # removed from the database
    pushed: tuple[str, ...] = ()  # put into the environment
    conflicts: tuple[tuple[str, str], ...] = ()  # (path, where the database's version went)
    skipped: tuple[tuple[str, str], ...] = ()


def expectation(entry: Entry | None) -> dict[str, str]:
    """What a conditional write expects to find, from a baseline entry."""
    if entry is None:
        return {"type": "absent"}
    if entry[0] == "directory":
        return {"type": "directory"}
    return {"type": "file", "sha256": str(entry[1])}


def _sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


class SyncEngine:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ignore = settings.execution.sync_ignore

    # -- starting an environment -----------------------------------------------------------

    async def materialize(self, session_id: UUID, client: AgentClient, fresh: bool = False) -> None:
        """Put the database copy into an environment and record that as the baseline: a
        ``fresh`` one just started, else one found without its files (unless another process
        put them in meanwhile)."""
        async with workspace_store.exclusive(session_id):
            if not fresh and (await client.status()).materialized:
                return
            stored = await workspace_store.list_with_content(session_id)
            entries = [
                WorkspaceEntry(f.path, f.type, f.content if f.type == "file" else None)
                for f in stored
            ]
            await client.materialize(entries)
            async with db.transaction():
                await environment_store.reset_to_database(session_id)
                await _record(session_id, skipped=[])

    # -- the sync ----------------------------------------------------------------------------

    async def sync(self, session_id: UUID, client: AgentClient) -> SyncOutcome:
        settings = self.settings
        async with workspace_store.exclusive(session_id):
            # Scanned under the lock: an API write pushed between a scan and the merge would
            # look like the shell's change (its file "deleted", or stored again as new).
            scan = await client.scan(self.ignore, settings.workspace.max_file_bytes,
                                     settings.workspace.max_entries)  # fmt: skip
            return await self._sync_locked(session_id, client, scan)

    async def _sync_locked(
        self, session_id: UUID, client: AgentClient, scan: ScanResult
    ) -> SyncOutcome:
        settings = self.settings
        env: dict[str, Entry] = {
            e.path: ("file", e.sha256) if e.type == "file" else ("directory", None)
            for e in scan.entries
        }
        skipped = list(scan.skipped)
        inventory = await workspace_store.inventory(session_id)
        stored = {path: (kind, digest) for path, (kind, digest, _) in inventory.items()}
        sizes = {path: size for path, (_, _, size) in inventory.items()}
        base = await environment_store.baseline(session_id)
        plan = plan_sync(stored, base, env, [path for path, _ in skipped])
        if plan.empty:
            await _record(session_id, skipped=skipped)
            return SyncOutcome(skipped=tuple(skipped))

        # What the environment changed: read it now (bounded), outside any transaction. Never
        # more than the whole quota is read (the smallest first, as the quota keeps them):
        # the rest could not be stored anyway, and 2000 hard links to one big file would
        # otherwise be read 2000 times into memory.
        claimed = {e.path: e.size for e in scan.entries}
        wanted = sorted(
            (p for p, e in plan.to_db.items() if e is not None and e[0] == "file"),
            key=lambda path: claimed.get(path, 0),
        )
        problems: dict[str, str] = {}
        limit = settings.workspace.max_file_bytes
        read = (
            await client.read_files(wanted, limit, problems, budget=settings.workspace.max_bytes)
            if wanted
            else {}
        )
        to_db = dict(plan.to_db)
        files: dict[str, bytes] = {}
        for path in wanted:
            if path not in read:  # vanished or grew past the limit since the scan
                to_db.pop(path)
                if problems.get(path) == "too_large":
                    skipped.append((path, "too large"))
                elif problems.get(path) == OVER_BUDGET:
                    skipped.append((path, "workspace quota exceeded"))
                continue
            files[path] = read[path]
            to_db[path] = ("file", _sha(read[path]))  # what was read is what is stored
        files, over = self._within_quota(stored, sizes, to_db, files, plan.conflicts)
        for path in over:
            to_db.pop(path)
            skipped.append((path, "workspace quota exceeded"))

        conflicts: list[tuple[str, str]] = []
        async with db.transaction():
            kept = [p for p in plan.conflicts if p in to_db]
            if kept:
                displaced = await workspace_store.contents(session_id, kept)
                taken = set(stored) | set(env)
                aside: dict[str, bytes] = {}
                for path in kept:
                    if path in displaced:
                        content, version = displaced[path]
                        target = conflict_path(path, version, taken)
                        taken.add(target)
                        aside[target] = content
                        conflicts.append((path, target))
                if aside:
                    await workspace_store.apply_changes(session_id, aside, [], [])
            deletes = [p for p, e in to_db.items() if e is None or (
                p in stored and stored[p][0] != e[0])]  # fmt: skip
            directories = [p for p, e in to_db.items() if e is not None and e[0] == "directory"]
            for path in files:
                directories += [p for p in parents_of(path) if p not in stored and p not in env]
            await workspace_store.apply_changes(session_id, files, directories, deletes)
            await environment_store.update(session_id, {**plan.agreed, **to_db})
            await _record(session_id, skipped=skipped, conflicts=conflicts)

        pushed = await self._push(session_id, client, plan.to_env, base)
        if conflicts:
            log.warning("sync of %s: both sides changed %s", session_id, conflicts)
        if to_db or pushed:
            log.info("synced %s: %d to the database, %d pushed, %d skipped", session_id,
                     len(to_db), len(pushed), len(skipped))  # fmt: skip
        return SyncOutcome(
            stored=tuple(p for p, e in to_db.items() if e is not None),
            deleted=tuple(p for p, e in to_db.items() if e is None),
            pushed=tuple(pushed),
            conflicts=tuple(conflicts),
            skipped=tuple(skipped),
        )

    def _within_quota(
        self,
        stored: Mapping[str, Entry],
        sizes: Mapping[str, int],
        to_db: Mapping[str, Entry | None],
        files: dict[str, bytes],
        kept_aside: Collection[str],
    ) -> tuple[dict[str, bytes], list[str]]:
        """The files that fit the workspace quota, counting everything the database holds
        (also what the scan skipped, and its versions a conflict keeps beside the shell's);
        the rest (largest last) is left out and reported."""
        settings = self.settings
        total = sum(sizes.values())
        entries = len(stored)
        for path, entry in to_db.items():
            if path in kept_aside:
                entries += 1  # the database's version stays, under another name
            elif entry is None or path in files:
                total -= sizes.get(path, 0)
            if entry is None and path in stored:
                entries -= 1
            elif entry is not None and path not in stored:
                entries += 1
        fitting: dict[str, bytes] = {}
        over: list[str] = []
        for path, content in sorted(files.items(), key=lambda item: len(item[1])):
            new = path not in stored
            if total + len(content) > settings.workspace.max_bytes or (
                new and entries > settings.workspace.max_entries
            ):
                over.append(path)
                entries -= 1 if new else 0
                continue
            total += len(content)
            fitting[path] = content
        return fitting, over

    async def _push(
        self,
        session_id: UUID,
        client: AgentClient,
        to_env: Mapping[str, Entry | None],
        base: Mapping[str, Entry],
    ) -> list[str]:
        """Put the database's changes into the environment where it still holds what the
        baseline says; a path the shell changed meanwhile is left for the next sync."""
        if not to_env:
            return []
        wanted = [p for p, e in to_env.items() if e is not None and e[0] == "file"]
        contents = await workspace_store.contents(session_id, wanted) if wanted else {}
        pushed: dict[str, Entry | None] = {}
        gone: list[str] = []
        failure: ExecutionError | None = None
        for path, entry in to_env.items():
            try:
                if entry is None:
                    await client.delete_path(path, subtree(base, path))
                    gone.append(path)
                elif entry[0] == "directory":
                    await client.make_directory(path)
                    pushed[path] = entry
                elif path in contents:
                    content = contents[path][0]
                    digest = await client.write_file(path, content, expectation(base.get(path)))
                    pushed[path] = ("file", digest)
            except Conflict:
                continue  # the shell changed it meanwhile: the next sync brings that back
            except ExecutionError as exc:
                failure = exc  # no space, unreachable: retried with backoff
        if pushed or gone:
            async with db.transaction():
                for path in gone:
                    await environment_store.forget_under(session_id, path)
                await environment_store.update(session_id, pushed)
        if failure is not None:
            raise SyncIncomplete(str(failure)) from failure
        return [*gone, *pushed]


async def _record(
    session_id: UUID,
    *,
    skipped: list[tuple[str, str]],
    conflicts: list[tuple[str, str]] | None = None,
) -> None:
    """The workspace status's view of the last sync, which worked (its error cleared)."""
    await session_store.record_sync(session_id, utc_now(), skipped, conflicts or [])


async def record_failure(session_id: UUID, message: str) -> None:
    """Make a failed sync visible in the workspace status (best effort: the database may be
    what failed)."""
    await session_store.record_sync_failure(session_id, message, utc_now())
