"""The editor's save: one SQL function call per save, and concurrent saves committed together.

Saving a file that exists is the platform's hottest write. As a transaction of its own it
costs four round trips (BEGIN; token, access and lock; the update; COMMIT). Here it is one
call of ``platform_save_file``, a PL/pgSQL function, and the saves that arrive while others
are on their way to the database go together in one statement: one transaction, one commit
for all of them (group commit). Each is answered once that commit is durable, like any other
(``synchronous_commit`` stays on). Measured on the 2-core dev box with asyncpg alone, 32
clients saving 4 KiB into 32 workspaces: 4,000 saves/s one call each, 11,000-12,000 grouped
(a bare one-row upsert: 8,500); and through bench/http.py, grouped with 8 statements in
flight 60-67% of one upsert per request, with 2 in flight 93% (1: 107%, but one slow
statement would hold every save): hence hand-written SQL here, and ``IN_FLIGHT``.

The function checks the token (``account_store.live_token``), that the caller owns the
workspace (or, for the 403/404 choice, reads it as its reviewer: ``review_store.
reviewer_reads``), takes the workspace's lock if it is free, replaces the file if it exists,
If-Match agrees and the workspace stays within its byte quota, and touches the workspace
(``session_store.touch_sql``). Its body is built here from those definitions; a migration
installs it (its text frozen there) and test_file_save.py fails when what is installed
differs from what this module builds, so a change to a rule ships with a migration that
installs the function again. What it does not do (a new file, a directory in the way, the
quota, a workspace whose lock another transaction holds) it leaves to the full write path
(outcome ``slow``), so a group never waits for anybody's lock.
"""

from __future__ import annotations

import asyncio
import re
import weakref
from datetime import datetime
from typing import Any
from uuid import UUID

import attrs

from shared import db, session_store
from shared.access import NOT_FOUND_MESSAGE, READ_ONLY_MESSAGE
from shared.account_store import live_token
from shared.auth import UNAUTHORIZED_MESSAGE
from shared.config import WorkspaceSettings
from shared.envelope import utc_now
from shared.errors import Forbidden, NotFound, PreconditionFailed, Unauthorized
from shared.paths import name_of
from shared.query import Alias, names
from shared.review_store import reviewer_reads
from shared.tables import LoginToken, User, WorkspaceFile
from shared.tables import Session as Sessions
from shared.workspace_store import FileMeta, check_file_size, lock_key, sha256

FUNCTION = "platform_save_file"
GROUP_MAX = 64  # saves in one statement
IN_FLIGHT = 2  # statements at once: fewer, larger groups cost the database least
_ENTITY_TAG = re.compile(r'"(\d{1,10})"|(\d{1,10})', re.ASCII)


@attrs.frozen
class IfMatch:
    """An If-Match header: ``versions`` None for ``*`` (any version, the file must exist)."""

    header: str
    versions: tuple[int, ...] | None

    @classmethod
    def parse(cls, header: str) -> IfMatch:
        """RFC 9110 strong comparison: weak tags (W/"1") never match; a bare number is
        accepted as a tag."""
        header = header.strip()
        if header == "*":
            return cls(header, None)
        versions = []
        for tag in header.split(","):
            match = _ENTITY_TAG.fullmatch(tag.strip())
            if match:
                versions.append(int(match.group(1) or match.group(2)))
        return cls(header, tuple(versions))

    def allows(self, current_version: int | None) -> bool:
        if current_version is None:
            return False
        return self.versions is None or current_version in self.versions

    def refusal(self, current_version: int | None) -> PreconditionFailed:
        found = "no file" if current_version is None else f"version {current_version}"
        return PreconditionFailed(f"If-Match: {self.header[:64]!r} does not match ({found})")


_f, _w = Alias(WorkspaceFile, "f"), Alias(WorkspaceFile, "w")
_s, _t, _u = Alias(Sessions, "s"), Alias(LoginToken, "t"), Alias(User, "u")


def function_body() -> str:
    """The PL/pgSQL body of ``platform_save_file``, from the current rules."""
    return f"""
DECLARE
    v_user integer;
    v_reviewer boolean;
    v_owner integer;
    v_locked boolean;
BEGIN
    SELECT {_t.user_id}, {_u.is_reviewer}, {_s.user_id}, pg_try_advisory_xact_lock(p_lock)
    INTO v_user, v_reviewer, v_owner, v_locked
    FROM {_t} JOIN {_u} ON {_u.id} = {_t.user_id} LEFT JOIN {_s} ON {_s.id} = p_session
    WHERE {_t.token_hash} = p_token_hash AND {live_token(_t)};
    IF NOT FOUND THEN
        outcome := 'unauthorized';
        RETURN;
    END IF;
    IF v_owner IS DISTINCT FROM v_user THEN
        IF v_owner IS NOT NULL AND {reviewer_reads("p_session", "v_user", "v_reviewer")} THEN
            outcome := 'forbidden';
        ELSE
            outcome := 'not_found';
        END IF;
        RETURN;
    END IF;
    IF NOT v_locked THEN
        outcome := 'slow';
        RETURN;
    END IF;
    WITH saved AS (
        UPDATE {_f}
        SET {names(WorkspaceFile.content)} = p_content,
            {names(WorkspaceFile.size)} = octet_length(p_content),
            {names(WorkspaceFile.sha256)} = p_sha256,
            {names(WorkspaceFile.version)} = {_f.version} + 1,
            {names(WorkspaceFile.updated_at)} = p_now
        WHERE {_f.session_id} = p_session AND {_f.path} = p_path AND {_f.type} = 'file'
          AND (NOT p_check OR p_versions IS NULL OR {_f.version} = ANY (p_versions))
          AND (octet_length(p_content) <= {_f.size} OR (
              SELECT coalesce(sum({_w.size}), 0) FROM {_w} WHERE {_w.session_id} = p_session
          ) - {_f.size} + octet_length(p_content) <= p_max_bytes)
        RETURNING {_f.version}
    ), touched AS (
        {session_store.touch_sql("p_session", "p_now")}
          AND EXISTS (SELECT 1 FROM saved)
    )
    SELECT saved.version INTO file_version FROM saved;
    IF FOUND THEN
        outcome := 'saved';
        RETURN;
    END IF;
    SELECT {_f.version} INTO file_version FROM {_f}
    WHERE {_f.session_id} = p_session AND {_f.path} = p_path;
    IF p_check AND (file_version IS NULL
                    OR NOT (p_versions IS NULL OR file_version = ANY (p_versions))) THEN
        outcome := 'precondition';
    ELSE
        outcome := 'slow';
        file_version := NULL;
    END IF;
END
"""


# Saves in one statement: the function once per save, in the order given (sorted by lock
# key); If-Match versions travel as "1,2" text (NULL: any version).
_GROUP = f"""
SELECT saved.outcome, saved.file_version
FROM unnest($1::text[], $2::uuid[], $3::text[], $4::bytea[], $5::text[], $6::bigint[],
            $7::bigint[], $8::boolean[], $9::text[]) WITH ORDINALITY
     AS x(token_hash, session_id, path, content, sha256, max_bytes, lock, checked, versions, n)
CROSS JOIN LATERAL {FUNCTION}(x.token_hash, x.session_id, x.path, x.content, x.sha256, $10,
                              x.max_bytes, x.lock, x.checked,
                              string_to_array(x.versions, ',')::integer[]) saved
ORDER BY x.n
"""

Outcome = tuple[str, int | None, datetime]  # what the function said, the version, when


@attrs.define(eq=False)
class _Save:
    token_hash: str
    session_id: UUID
    path: str
    content: bytes
    max_bytes: int
    if_match: IfMatch | None
    lock: int = attrs.field(init=False)
    answer: asyncio.Future[Outcome] | None = None

    def __attrs_post_init__(self) -> None:
        self.lock = lock_key(self.session_id)


async def _run(saves: list[_Save]) -> dict[int, Outcome]:
    """One statement, one transaction (unless inside one already) for all of ``saves``, in
    their order; their outcomes by ``id()``."""
    now = utc_now()
    rows = await db.fetch(
        _GROUP,
        [save.token_hash for save in saves],
        [save.session_id for save in saves],
        [save.path for save in saves],
        [save.content for save in saves],
        [sha256(save.content) for save in saves],
        [save.max_bytes for save in saves],
        [save.lock for save in saves],
        [save.if_match is not None for save in saves],
        [_versions(save.if_match) for save in saves],
        now,
    )
    return {
        id(save): (row["outcome"], row["file_version"], now)
        for save, row in zip(saves, rows, strict=True)
    }


def _versions(if_match: IfMatch | None) -> str | None:
    if if_match is None or if_match.versions is None:
        return None
    return ",".join(map(str, if_match.versions))


class _Group:
    """Group commit: the saves waiting for a statement, and the statements in flight (at
    most ``IN_FLIGHT``). A save goes at once when a statement is free, else with the next
    one, together with every save that arrived meanwhile (up to ``GROUP_MAX``). A save into a
    workspace that a statement in flight is saving into waits for the one after it, so the
    groups of this process never compete for a workspace's lock."""

    def __init__(self) -> None:
        self.waiting: list[_Save] = []
        self.in_flight: list[set[UUID]] = []  # the workspaces of each statement in flight
        self.tasks: set[asyncio.Task[None]] = set()

    async def save(self, save: _Save) -> Outcome:
        save.answer = asyncio.get_running_loop().create_future()
        self.waiting.append(save)
        self._start()
        return await save.answer

    def _start(self) -> None:
        if len(self.in_flight) >= IN_FLIGHT:
            return
        busy = set().union(*self.in_flight)
        batch = [save for save in self.waiting if save.session_id not in busy][:GROUP_MAX]
        if not batch:
            return
        taken = {id(save) for save in batch}
        self.waiting = [save for save in self.waiting if id(save) not in taken]
        workspaces = {save.session_id for save in batch}
        self.in_flight.append(workspaces)
        task = asyncio.get_running_loop().create_task(self._send(batch, workspaces))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _send(self, batch: list[_Save], workspaces: set[UUID]) -> None:
        try:
            outcomes = await _run(batch)
        except BaseException as exc:
            for save in batch:
                if save.answer is not None and not save.answer.done():
                    save.answer.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for save in batch:
                if save.answer is not None and not save.answer.done():
                    save.answer.set_result(outcomes[id(save)])
        finally:
            self.in_flight.remove(workspaces)
            self._start()
            self._start()  # the one that ended may have held back saves for two groups


_groups: weakref.WeakKeyDictionary[Any, _Group] = weakref.WeakKeyDictionary()  # one per pool


async def save(
    token_hash: str,
    session_id: UUID,
    path: str,
    content: bytes,
    limits: WorkspaceSettings,
    if_match: IfMatch | None = None,
) -> FileMeta | None:
    """Replace the file at ``path`` for the holder of a login token (by its hash), committed
    with the saves of others that arrive meanwhile; None when the full write path must decide
    (no file there, a directory, the quota). 401, 404, 403 and 412 as the full path would
    answer. Inside a transaction it runs alone, in it."""
    check_file_size(len(content), limits)
    one = _Save(token_hash, session_id, path, content, limits.max_bytes, if_match)
    pool = db.DB.pool
    if pool is None or db.in_transaction():
        outcome, version, now = (await _run([one]))[id(one)]
    else:
        group = _groups.get(pool)
        if group is None:
            group = _groups[pool] = _Group()
        outcome, version, now = await group.save(one)
    if outcome == "saved":
        return FileMeta(name=name_of(path), path=path, type="file", size=len(content),
                        modified=now, version=version)  # fmt: skip
    if outcome == "slow":
        return None
    if outcome == "precondition":
        assert if_match is not None
        raise if_match.refusal(version)
    if outcome == "unauthorized":
        raise Unauthorized(UNAUTHORIZED_MESSAGE)
    if outcome == "forbidden":
        raise Forbidden(READ_ONLY_MESSAGE)
    raise NotFound(NOT_FOUND_MESSAGE)
