"""The editor's save in one statement (``shared.file_save``), called directly on a real
database: the function its migration installed is the one the current rules build, and it
answers as the full write path does. The same saves over HTTP are in test_workspace_files.py.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import anyio
import pytest

from functions.reviews import service as reviews
from functions.reviews.schemas import ReviewCreate, StatusChange
from functions.sessions import service as sessions
from functions.sessions.schemas import SessionCreate
from functions.users import service as users
from functions.users.schemas import ReviewerStatusUpdate
from shared import account_store, db, file_save, workspace_store
from shared.auth import AuthUser, new_token, user_for_token_hash
from shared.config import Settings, WorkspaceSettings
from shared.envelope import utc_now
from shared.errors import Forbidden, NotFound, PreconditionFailed, TooLarge, Unauthorized
from shared.file_save import IfMatch
from tests.helpers import unique_name

pytestmark = pytest.mark.anyio
LIMITS = WorkspaceSettings()


async def logged_in(*, reviewer: bool = False) -> AuthUser:
    name = unique_name("fs")
    row = await account_store.insert_user(name, f"{name}@example.com", "no password", utc_now())
    _, token_hash = new_token()
    await account_store.insert_token(
        row["id"], token_hash, utc_now(), utc_now() + timedelta(hours=1)
    )
    if reviewer:
        await users.set_reviewer_status(
            AuthUser(**dict(row), token_hash=token_hash), ReviewerStatusUpdate(is_reviewer=True)
        )
    user = await user_for_token_hash(token_hash)
    assert user is not None
    return user


async def workspace_with(owner: AuthUser, path: str, content: bytes) -> UUID:
    session = await sessions.create(owner, SessionCreate(name="ws"), Settings())
    async with db.transaction():
        await workspace_store.write_file(session.id, path, content, LIMITS)
    return session.id


async def test_the_installed_function_is_the_one_the_current_rules_build(database: None) -> None:
    async with db.connection() as conn:
        installed = await conn.fetchval(
            "SELECT prosrc FROM pg_proc WHERE proname = $1", file_save.FUNCTION
        )
    # A rule changed without a migration that installs the function again?
    assert installed == file_save.function_body()


async def test_a_save_replaces_the_file_and_moves_its_version(database: None) -> None:
    owner = await logged_in()
    session_id = await workspace_with(owner, "src/main.py", b"print(1)\n")
    saved = await file_save.save(owner.token_hash, session_id, "src/main.py", b"print(2)\n", LIMITS)
    assert saved is not None and (saved.version, saved.size, saved.name) == (2, 9, "main.py")
    assert await workspace_store.contents(session_id, ["src/main.py"]) == {
        "src/main.py": (b"print(2)\n", 2)
    }


async def test_what_a_save_cannot_do_is_left_to_the_full_write_path(database: None) -> None:
    owner = await logged_in()
    session_id = await workspace_with(owner, "src/main.py", b"x")
    assert await file_save.save(owner.token_hash, session_id, "new.py", b"x", LIMITS) is None
    assert await file_save.save(owner.token_hash, session_id, "src", b"x", LIMITS) is None
    small = WorkspaceSettings(max_bytes=10)
    assert (
        await file_save.save(owner.token_hash, session_id, "src/main.py", b"x" * 11, small) is None
    )
    with pytest.raises(TooLarge):
        await file_save.save(
            owner.token_hash, session_id, "src/main.py", b"xx", WorkspaceSettings(max_file_bytes=1)
        )
    assert await workspace_store.version_of(session_id, "src/main.py") == 1  # nothing written


async def test_if_match_names_the_version_a_save_replaces(database: None) -> None:
    owner = await logged_in()
    session_id = await workspace_with(owner, "a.txt", b"one")
    stale, current = IfMatch.parse('"7"'), IfMatch.parse('W/"1", "1"')
    with pytest.raises(PreconditionFailed, match="version 1"):
        await file_save.save(owner.token_hash, session_id, "a.txt", b"two", LIMITS, stale)
    saved = await file_save.save(owner.token_hash, session_id, "a.txt", b"two", LIMITS, current)
    assert saved is not None and saved.version == 2
    with pytest.raises(PreconditionFailed, match="no file"):
        await file_save.save(
            owner.token_hash, session_id, "b.txt", b"x", LIMITS, IfMatch.parse("*")
        )


async def test_only_the_owner_with_a_live_login_saves(database: None) -> None:
    owner, reviewer, stranger = await logged_in(), await logged_in(reviewer=True), await logged_in()
    session_id = await workspace_with(owner, "a.txt", b"one")
    review = await reviews.create(owner, ReviewCreate(session_id=session_id, title="look"))
    await reviews.change_status(reviewer, review.id, StatusChange(status="in_review"))
    with pytest.raises(Forbidden):  # the reviewer sees the workspace, and reads only
        await file_save.save(reviewer.token_hash, session_id, "a.txt", b"mine", LIMITS)
    with pytest.raises(NotFound):  # a stranger does not even see it
        await file_save.save(stranger.token_hash, session_id, "a.txt", b"mine", LIMITS)
    await account_store.revoke_token(owner.token_hash, utc_now())
    with pytest.raises(Unauthorized):
        await file_save.save(owner.token_hash, session_id, "a.txt", b"mine", LIMITS)
    assert await workspace_store.version_of(session_id, "a.txt") == 1


async def test_saves_made_at_once_are_committed_together_and_answered_each_as_alone(
    database: None,
) -> None:
    owner, stranger = await logged_in(), await logged_in()
    workspaces = [await workspace_with(owner, "a.txt", b"0") for _ in range(4)]
    outcomes: list[tuple[UUID, object]] = []

    async def one(k: int) -> None:
        session_id = workspaces[k % 4]
        who = stranger if k % 10 == 9 else owner
        condition = IfMatch.parse('"999"') if k % 10 == 8 else None
        try:
            saved = await file_save.save(
                who.token_hash, session_id, "a.txt", f"{k}".encode(), LIMITS, condition
            )
            outcomes.append((session_id, saved.version if saved else None))
        except (NotFound, PreconditionFailed) as exc:
            outcomes.append((session_id, type(exc)))

    async with anyio.create_task_group() as tg:
        for k in range(40):
            tg.start_soon(one, k)
    assert sum(1 for _, o in outcomes if o is NotFound) == 4
    assert sum(1 for _, o in outcomes if o is PreconditionFailed) == 4
    for session_id in workspaces:
        versions = sorted(o for s, o in outcomes if s == session_id and isinstance(o, int))
        assert versions == list(range(2, 2 + len(versions)))  # one after the other, none lost
        assert await workspace_store.version_of(session_id, "a.txt") == 1 + len(versions)


async def test_a_save_never_waits_for_a_lock_another_transaction_holds(database: None) -> None:
    owner = await logged_in()
    session_id = await workspace_with(owner, "a.txt", b"one")
    holding, release = anyio.Event(), anyio.Event()

    async def hold_the_lock() -> None:
        async with db.transaction():
            await workspace_store.lock(session_id)
            holding.set()
            await release.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(hold_the_lock)
        await holding.wait()
        with anyio.fail_after(5):  # the full write path is the one that waits
            assert (
                await file_save.save(owner.token_hash, session_id, "a.txt", b"two", LIMITS) is None
            )
        release.set()
    saved = await file_save.save(owner.token_hash, session_id, "a.txt", b"two", LIMITS)
    assert saved is not None and saved.version == 2


async def test_the_status_lists_the_latest_conflicts_only(database: None) -> None:
    from shared import session_store

    owner = await logged_in()
    workspace = await workspace_with(owner, "a.txt", b"a")
    kept = session_store.KEPT_CONFLICTS
    for n in range(kept + 20):
        await session_store.record_sync(workspace, utc_now(), [], [("a.txt", f"a.txt.c-{n}")])
    await session_store.record_sync(workspace, utc_now(), [("x", "too large")], [])
    state = await session_store.sync_state(workspace)
    assert state is not None and state["sync_skipped"] == [{"path": "x", "reason": "too large"}]
    listed = [c["kept_as"] for c in state["sync_conflicts"]]
    assert listed == [f"a.txt.c-{n}" for n in range(20, kept + 20)]
