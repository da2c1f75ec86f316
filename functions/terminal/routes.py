"""The terminal function: ``WS /api/terminal/ws/{session_id}`` (relayed to the environment's
agent), the shell's state and size over HTTP.

The socket is accepted first so that refusals carry their close code and reason, which
browsers only see after the handshake: 4401 without valid credentials (the login cookie,
``Authorization: Bearer``, or a single-use ``?ticket=``; a login token is never accepted in
the URL), 4404 for a workspace that does not exist or is not visible, 4403 for a reviewer
(read-only), 4429 over a quota, 1013 while the database is unavailable, 1011 when the
execution environment cannot be started or reached.
"""

from __future__ import annotations

import logging
from uuid import UUID

from litestar import Controller, WebSocket, get, post, websocket

from functions.terminal.relay import CHANNEL_PROTOCOL, Relay, clamp_size
from functions.terminal.schemas import TerminalResize, TerminalState
from shared import tickets
from shared.access import owned_session, session_access
from shared.auth import (
    AuthUser,
    hash_token,
    token_from_connection,
    user_for_token,
    user_for_token_hash,
)
from shared.config import HttpSettings, Settings
from shared.envelope import Envelope, ok
from shared.errors import Conflict, database_unavailable, error_responses
from shared.execution.base import ExecutionError, ExecutionState
from shared.execution.relays import CLOSE_UNAUTHENTICATED
from shared.execution.relays import Relay as RelayRecord
from shared.execution.runtime import ExecutionRuntime, QuotaReached

log = logging.getLogger(__name__)

CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_OVER_QUOTA = 4429
CLOSE_TRY_AGAIN = 1013
CLOSE_INTERNAL = 1011


async def _caller(
    socket: WebSocket, session_id: UUID, http: HttpSettings
) -> tuple[AuthUser | None, str | None]:
    """The user and the hash of the login token behind this connection: a single-use
    ticket, or the login cookie / bearer header."""
    ticket = socket.query_params.get("ticket")
    if ticket:
        redeemed = await tickets.redeem(ticket, session_id)
        if redeemed is None:
            return None, None
        user_id, token_hash = redeemed
        user = await user_for_token_hash(token_hash)
        return (user, token_hash) if user is not None and user.id == user_id else (None, None)
    token = token_from_connection(socket, http)
    user = await user_for_token(token)
    return user, (hash_token(token) if user is not None and token else None)


@websocket("/api/terminal/ws/{session_id:uuid}")
async def terminal_socket(
    socket: WebSocket, session_id: UUID, runtime: ExecutionRuntime | None, settings: Settings
) -> None:
    try:
        await _serve(socket, session_id, runtime, settings.http)
    except Exception:
        # Litestar would close with 4500 and log nothing: say it in the log, 1011 on the wire.
        log.exception("terminal of %s failed", session_id)
        try:
            await socket.close(CLOSE_INTERNAL, "internal error")
        except Exception:  # noqa: BLE001 - already closed
            pass


async def _serve(
    socket: WebSocket, session_id: UUID, runtime: ExecutionRuntime | None, http: HttpSettings
) -> None:
    channel = CHANNEL_PROTOCOL in (socket.scope.get("subprotocols") or [])
    await socket.accept(subprotocols=CHANNEL_PROTOCOL if channel else None)
    try:
        user, token_hash = await _caller(socket, session_id, http)
        access = await session_access(session_id, user) if user is not None else None
    except Exception as exc:
        if not database_unavailable(exc):
            raise
        log.warning("terminal for %s refused: the database is unavailable (%r)", session_id, exc)
        await socket.close(CLOSE_TRY_AGAIN, "the database is unavailable; try again shortly")
        return
    if user is None:
        await socket.close(CLOSE_UNAUTHENTICATED, "authentication required")
        return
    if access is None or not (access.is_owner or access.can_review):
        await socket.close(CLOSE_NOT_FOUND, "workspace not found")
        return
    if not access.is_owner:
        await socket.close(CLOSE_FORBIDDEN, "only the owner may open the terminal")
        return
    if runtime is None:
        await socket.close(CLOSE_INTERNAL, "execution is not available here")
        return

    cols = clamp_size(socket.query_params.get("cols"), 80)
    rows = clamp_size(socket.query_params.get("rows"), 24)
    if channel:
        await Relay.send_control(socket, {"type": "status", "state": "starting"})

    async def close(code: int, reason: str) -> None:
        pass  # still starting: the relay takes over this callback once it runs

    # Registered before the environment starts, so no reaper takes it while it does.
    record = RelayRecord(session_id, token_hash, close)
    runtime.relays.register(record)
    try:
        await _relay(socket, runtime, session_id, user.id, cols, rows, channel, record)
    finally:
        runtime.relays.unregister(record)


async def _relay(
    socket: WebSocket,
    runtime: ExecutionRuntime,
    session_id: UUID,
    owner_id: int,
    cols: int,
    rows: int,
    channel: bool,
    record: RelayRecord,
) -> None:
    try:
        terminal = await runtime.open_terminal(session_id, owner_id, cols, rows)
    except QuotaReached as exc:
        await Relay.send_control(socket, {"type": "error", "message": str(exc)}, channel)
        await socket.close(CLOSE_OVER_QUOTA, str(exc)[:120])
        return
    except ExecutionError as exc:
        log.warning("terminal for %s: %s", session_id, exc)
        await Relay.send_control(socket, {"type": "error", "message": str(exc)}, channel)
        await socket.close(CLOSE_INTERNAL, "execution environment unavailable")
        return
    except Exception as exc:
        if not database_unavailable(exc):
            raise
        log.warning("terminal for %s: the database is unavailable (%r)", session_id, exc)
        await socket.close(CLOSE_TRY_AGAIN, "the database is unavailable; try again shortly")
        return

    relay = Relay(socket, terminal, channel)
    relay.on_output = lambda: runtime.output_seen(session_id)

    async def close(code: int, reason: str) -> None:
        relay.stop(code, reason)

    record.close = close
    try:
        await relay.run()
    finally:
        runtime.output_seen(session_id)  # what the shell wrote before the client left
    try:
        await socket.close(relay.close_code or 1000, relay.close_reason[:120])
    except Exception:  # noqa: BLE001 - the client may be gone already
        pass


class TerminalController(Controller):
    path = "/api/terminal/{session_id:uuid}"
    tags = ["terminal"]

    @get("/", operation_id="terminal_state", responses=error_responses(403, 404))
    async def state(
        self, user: AuthUser, session_id: UUID, runtime: ExecutionRuntime | None
    ) -> Envelope[TerminalState]:
        """The session's environment and shell: state, viewers, size (owner only)."""
        await owned_session(session_id, user)
        return ok(await _state(runtime, session_id), "Terminal state")

    @post(
        "/resize",
        operation_id="resize_terminal",
        status_code=200,
        responses=error_responses(403, 404, 409),
    )
    async def resize(
        self,
        user: AuthUser,
        session_id: UUID,
        data: TerminalResize,
        runtime: ExecutionRuntime | None,
    ) -> Envelope[TerminalState]:
        """Set the shell's size (plain-mode clients have no other way); 409 without a shell."""
        await owned_session(session_id, user)
        endpoint = await runtime.endpoint(session_id) if runtime else None
        if runtime is None or endpoint is None:
            raise Conflict("the terminal is not open: connect to it first")
        if not await runtime.client(endpoint).resize(data.cols, data.rows):
            raise Conflict("the terminal is not open: connect to it first")
        return ok(await _state(runtime, session_id), "Terminal resized")


async def _state(runtime: ExecutionRuntime | None, session_id: UUID) -> TerminalState:
    if runtime is None:
        return TerminalState(state="stopped", since=None, connections=0, cols=None, rows=None)
    status = await runtime.status(session_id)
    state = ExecutionState(status.state)
    connections = runtime.active_connections(session_id)
    cols = rows = None
    endpoint = await runtime.endpoint(session_id) if state is ExecutionState.RUNNING else None
    if endpoint is not None:
        try:
            agent = await runtime.client(endpoint).status()
        except ExecutionError:
            agent = None
        for terminal in agent.terminals if agent else ():
            if terminal.name == "main":
                connections = max(connections, terminal.viewers)
                cols, rows = terminal.cols, terminal.rows
    return TerminalState(
        state=state.value,  # type: ignore[arg-type]
        since=status.since,
        connections=connections,
        cols=cols,
        rows=rows,
    )
