"""The terminal WebSockets this process relays to agents, as the runtime keeps track of them:
for the per-session quota, for the idle reaper (which environments have a terminal attached,
recorded for every replica in ``sessions.terminal_seen_at``) and to end the terminals of a
login that was logged out or expired, within seconds."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from uuid import UUID

import anyio
import attrs

from shared import session_store
from shared.auth import valid_token_hashes

log = logging.getLogger(__name__)

TOKEN_CHECK_SECONDS = 2.0
CLOSE_UNAUTHENTICATED = 4401


@attrs.define(eq=False)
class Relay:
    """One WebSocket this process relays to an agent."""

    session_id: UUID
    token_hash: str | None  # the login token it was opened with: it dies with the token
    close: Callable[[int, str], Awaitable[None]]


class Relays:
    def __init__(self) -> None:
        self._by_session: dict[UUID, set[Relay]] = {}

    def register(self, relay: Relay) -> None:
        self._by_session.setdefault(relay.session_id, set()).add(relay)

    def unregister(self, relay: Relay) -> None:
        relays = self._by_session.get(relay.session_id)
        if relays is not None:
            relays.discard(relay)
            if not relays:
                del self._by_session[relay.session_id]

    def count(self, session_id: UUID) -> int:
        return len(self._by_session.get(session_id, ()))

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._by_session

    async def close_session(self, session_id: UUID, code: int, reason: str) -> None:
        for relay in list(self._by_session.get(session_id, ())):
            with contextlib.suppress(Exception):
                await relay.close(code, reason)

    async def close_everything(self, code: int, reason: str) -> None:
        for session_id in list(self._by_session):
            await self.close_session(session_id, code, reason)

    async def close_logged_out(self) -> None:
        """Forever: every few seconds, one query for the logins behind every relay; the
        terminals of a logout or an expiry end with 4401."""
        while True:
            await anyio.sleep(TOKEN_CHECK_SECONDS)
            relays = [r for rs in self._by_session.values() for r in rs if r.token_hash]
            if not relays:
                continue
            try:
                valid = await valid_token_hashes({r.token_hash for r in relays if r.token_hash})
            except Exception as exc:
                log.info("could not check terminal tokens: %r", exc)
                continue
            for relay in relays:
                if relay.token_hash not in valid:
                    with contextlib.suppress(Exception):
                        await relay.close(CLOSE_UNAUTHENTICATED, "logged out or expired")

    async def heartbeats(self, every: float) -> None:
        """Forever: record which environments this process has terminals on (the reaper of
        whichever replica leads reads it)."""
        every = min(30.0, max(0.05, every))
        while True:
            attached = list(self._by_session)
            if attached:
                try:
                    await session_store.mark_terminals_seen(attached)
                except Exception as exc:
                    log.info("could not record attached terminals: %r", exc)
            await anyio.sleep(every)
