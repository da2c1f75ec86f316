"""Terminal tickets: how a client that cannot send the login cookie opens a terminal.

A long-lived login token never travels in a URL (URLs end up in logs and histories). Instead
the client asks for a ticket with its token (``POST /api/terminal/{session_id}/ticket``) and
opens the WebSocket with ``?ticket=``. A ticket is random (256 bits), valid for
``TICKET_TTL_SECONDS`` for one user and one session, used at most once, and stored only as its
sha256 with the hash of the login token it was issued under, so a ticket whose login has
been logged out (or has expired) opens nothing, and the terminal it opened can be closed when
that login ends.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from shared import account_store
from shared.auth import hash_token, new_token
from shared.envelope import utc_now
from shared.tables import TerminalTicket

TICKET_TTL_SECONDS = 60
_MAX_TICKET_CHARS = 128  # anything longer is not one of ours; not worth hashing


async def issue(user_id: int, session_id: UUID, token_hash: str) -> str:
    """A fresh ticket for ``user_id`` to open the terminal of ``session_id``; shown once.

    The caller has checked that the user owns the session. Expired tickets are pruned here.
    """
    ticket, ticket_hash = new_token()  # made and stored like a login token
    now = utc_now()
    await TerminalTicket.delete().where(TerminalTicket.expires_at <= now)
    await TerminalTicket.insert(
        TerminalTicket(
            ticket_hash=ticket_hash,
            user_id=user_id,
            session_id=session_id,
            token_hash=token_hash,
            expires_at=now + timedelta(seconds=TICKET_TTL_SECONDS),
        )
    )
    return ticket


async def redeem(ticket: str | None, session_id: UUID) -> tuple[int, str] | None:
    """``(user_id, token_hash)`` of a valid ticket for ``session_id``, else None.

    Consumed whatever the outcome (a ticket tried for the wrong session is spent too), then
    honoured only for its session, before its expiry, while its login is still live. Atomic
    and single-use: of two redemptions racing for one ticket, one gets it. The caller still
    checks that the user owns the session (ownership may have changed since issue).
    """
    if not ticket or len(ticket) > _MAX_TICKET_CHARS:
        return None
    used = await (
        TerminalTicket.delete()
        .where(TerminalTicket.ticket_hash == hash_token(ticket))
        .returning(
            TerminalTicket.user_id,
            TerminalTicket.session_id,
            TerminalTicket.token_hash,
            TerminalTicket.expires_at,
        )
    )
    if not used or used[0]["session_id"] != session_id or used[0]["expires_at"] <= utc_now():
        return None
    user_id, token_hash = used[0]["user_id"], used[0]["token_hash"]
    if not await account_store.live_token_hashes([token_hash]):
        return None
    return user_id, token_hash
