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

import hashlib
import secrets
from datetime import timedelta
from uuid import UUID

from shared import db
from shared.envelope import utc_now

TICKET_TTL_SECONDS = 60
_MAX_TICKET_CHARS = 128  # anything longer is not one of ours; not worth hashing


def _hash(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


async def issue(user_id: int, session_id: UUID, token_hash: str) -> str:
    """A fresh ticket for ``user_id`` to open the terminal of ``session_id``; shown once.

    The caller has checked that the user owns the session. Expired tickets are pruned here.
    """
    ticket = secrets.token_urlsafe(32)
    now = utc_now()
    async with db.connection() as conn:
        await conn.execute("DELETE FROM terminal_tickets WHERE expires_at <= $1", now)
        await conn.execute(
            "INSERT INTO terminal_tickets (ticket_hash, user_id, session_id, token_hash, "
            "expires_at) VALUES ($1, $2, $3, $4, $5)",
            _hash(ticket),
            user_id,
            session_id,
            token_hash,
            now + timedelta(seconds=TICKET_TTL_SECONDS),
        )
    return ticket


# Consumed whatever the outcome (a ticket tried for the wrong session is spent too), then
# honoured only for its session, before its expiry, while its login is still valid.
_REDEEM = """
WITH used AS (
    DELETE FROM terminal_tickets WHERE ticket_hash = $1
    RETURNING user_id, session_id, token_hash, expires_at
)
SELECT used.user_id, used.token_hash
FROM used
JOIN login_tokens t ON t.token_hash = used.token_hash
WHERE used.session_id = $2 AND used.expires_at > now()
  AND t.revoked_at IS NULL AND t.expires_at > now()
"""


async def redeem(ticket: str | None, session_id: UUID) -> tuple[int, str] | None:
    """``(user_id, token_hash)`` of a valid ticket for ``session_id``, else None.

    Atomic and single-use: of two redemptions racing for one ticket, one gets it. The caller
    still checks that the user owns the session (ownership may have changed since issue).
    """
    if not ticket or len(ticket) > _MAX_TICKET_CHARS:
        return None
    async with db.connection() as conn:
        row = await conn.fetchrow(_REDEEM, _hash(ticket), session_id)
    return (row["user_id"], row["token_hash"]) if row else None
