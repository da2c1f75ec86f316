"""``POST /api/terminal/{session_id}/ticket``: a single-use ticket to open the terminal.

For clients that cannot send the login cookie with the WebSocket handshake: they ask here
with their token (bearer or cookie) and connect with ``?ticket=`` within a minute.
"""

from __future__ import annotations

from uuid import UUID

import msgspec
from litestar import post

from shared import tickets
from shared.access import owned_session
from shared.auth import AuthUser
from shared.envelope import Envelope, ok
from shared.errors import error_responses


class TerminalTicket(msgspec.Struct):
    ticket: str
    expires_in: int  # seconds


@post(
    "/api/terminal/{session_id:uuid}/ticket",
    operation_id="terminal_ticket",
    status_code=200,
    tags=["terminal"],
    responses=error_responses(403, 404),
)
async def terminal_ticket(user: AuthUser, session_id: UUID) -> Envelope[TerminalTicket]:
    """A ticket for `WS /api/terminal/ws/{session_id}?ticket=...`: single use, valid for 60 s,
    for you and this workspace only. Owner only (its reviewer gets 403, anybody else 404)."""
    await owned_session(session_id, user)
    ticket = await tickets.issue(user.id, session_id, user.token_hash)
    return ok(TerminalTicket(ticket=ticket, expires_in=tickets.TICKET_TTL_SECONDS), "Ticket issued")
