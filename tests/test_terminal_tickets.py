"""Terminal tickets and the token-validity check, against the real database.

Users, logins and workspaces are made through the public API of the running platform; the
ticket store (``shared.tickets``) and ``shared.auth.valid_token_hashes``, which the terminal
route and its relay call, are then exercised in this process on the same database.
"""

from __future__ import annotations

from uuid import UUID

import anyio
import httpx
import pytest

from shared import db, tickets
from shared.auth import hash_token, valid_token_hashes
from tests.helpers import User, new_user, new_workspace

pytestmark = pytest.mark.anyio


@pytest.fixture
def owner(api: httpx.Client) -> User:
    return new_user(api)


async def test_a_ticket_opens_its_session_once(database: None, owner: User) -> None:
    session = UUID(new_workspace(owner))
    token_hash = hash_token(owner.token)
    ticket = await tickets.issue(owner.id, session, token_hash)
    assert await tickets.redeem(ticket, session) == (owner.id, token_hash)
    assert await tickets.redeem(ticket, session) is None


async def test_a_ticket_tried_on_another_session_is_refused_and_spent(
    database: None, owner: User
) -> None:
    session, other = UUID(new_workspace(owner)), UUID(new_workspace(owner))
    ticket = await tickets.issue(owner.id, session, hash_token(owner.token))
    assert await tickets.redeem(ticket, other) is None
    assert await tickets.redeem(ticket, session) is None


async def test_parallel_redemptions_of_one_ticket_admit_one(database: None, owner: User) -> None:
    session = UUID(new_workspace(owner))
    ticket = await tickets.issue(owner.id, session, hash_token(owner.token))
    results: list[object] = []

    async def redeem() -> None:
        results.append(await tickets.redeem(ticket, session))

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(redeem)
    assert sum(result is not None for result in results) == 1


async def test_an_expired_ticket_or_one_of_a_logged_out_login_opens_nothing(
    database: None, owner: User
) -> None:
    session = UUID(new_workspace(owner))
    token_hash = hash_token(owner.token)
    expired = await tickets.issue(owner.id, session, token_hash)
    async with db.connection() as conn:  # a minute passes for this ticket
        await conn.execute(
            "UPDATE terminal_tickets SET expires_at = now() - interval '1 second' "
            "WHERE user_id = $1",
            owner.id,
        )
    assert await tickets.redeem(expired, session) is None

    orphan = await tickets.issue(owner.id, session, token_hash)
    assert owner.client.post("/api/users/logout").status_code == 200
    assert await tickets.redeem(orphan, session) is None
    for garbage in (None, "", "x" * 10_000, "not-a-ticket"):
        assert await tickets.redeem(garbage, session) is None


async def test_tickets_are_stored_only_as_hashes(database: None, owner: User) -> None:
    session = UUID(new_workspace(owner))
    ticket = await tickets.issue(owner.id, session, hash_token(owner.token))
    async with db.connection() as conn:
        stored = await conn.fetch(
            "SELECT ticket_hash FROM terminal_tickets WHERE user_id = $1", owner.id
        )
    assert [row["ticket_hash"] for row in stored] == [hash_token(ticket)]


async def test_valid_token_hashes_drops_logged_out_and_unknown_tokens(
    database: None, api: httpx.Client
) -> None:
    staying, leaving = new_user(api), new_user(api)
    assert leaving.client.post("/api/users/logout").status_code == 200
    asked = {hash_token(staying.token), hash_token(leaving.token), hash_token("never issued")}
    assert await valid_token_hashes(asked) == {hash_token(staying.token)}
    assert await valid_token_hashes(set()) == set()
