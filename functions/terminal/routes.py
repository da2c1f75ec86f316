"""``WS /api/terminal/ws/{session_id}``: a shell in the session's execution environment.

Frames (DESIGN.md section 4, Terminal): client TEXT = terminal input, written verbatim;
server TEXT = terminal output (UTF-8, never split inside a character); BINARY either way =
one JSON control message. Client: ``resize {cols, rows}``, ``ping``, ``pause``, ``resume``.
Server: ``status {state: starting|ready|exited, code}``, ``error {message}``, ``pong``.

The socket is accepted first so that refusals carry their close code, which browsers only
see after the handshake: 4401 without a valid token (cookie, bearer or ``?token=``), 4404
for a workspace that does not exist or is not visible, 4403 for a reviewer (read-only).
Output goes out as fast as the client takes it (``send`` awaits the transport), and the
terminal manager reads the shell no faster than that.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from uuid import UUID

import anyio
from litestar import WebSocket, websocket
from litestar.di import Provide
from litestar.exceptions import WebSocketDisconnect

from shared.access import session_access
from shared.auth import token_from_connection, user_for_token
from shared.execution.base import ExecutionError
from shared.execution.runtime import ExecutionRuntime, get_runtime
from shared.execution.terminal import TerminalClient

log = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_INTERNAL = 1011
MAX_INPUT_CHARS = 64 * 1024  # one paste per frame; the server caps frames at 1 MiB anyway
MIN_SIZE, MAX_SIZE = 2, 1000


def _size(raw: Any, default: int) -> int:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        return default
    return max(MIN_SIZE, min(MAX_SIZE, value))


async def _control(socket: WebSocket, message: dict[str, Any]) -> None:
    await socket.send_bytes(json.dumps(message, separators=(",", ":")).encode())


@websocket(
    "/api/terminal/ws/{session_id:uuid}",
    dependencies={"runtime": Provide(get_runtime, sync_to_thread=False)},
)
async def terminal_socket(socket: WebSocket, session_id: UUID, runtime: ExecutionRuntime) -> None:
    await socket.accept()
    user = await user_for_token(token_from_connection(socket))
    if user is None:
        await socket.close(CLOSE_UNAUTHENTICATED, "authentication required")
        return
    access = await session_access(session_id, user)
    if access is None or not (access.is_owner or access.can_review):
        await socket.close(CLOSE_NOT_FOUND, "workspace not found")
        return
    if not access.is_owner:
        await socket.close(CLOSE_FORBIDDEN, "only the owner may open the terminal")
        return

    cols = _size(socket.query_params.get("cols"), 80)
    rows = _size(socket.query_params.get("rows"), 24)
    await _control(socket, {"type": "status", "state": "starting"})
    try:
        client = await runtime.open_terminal(session_id, user.id, cols, rows)
    except ExecutionError as exc:
        await _control(socket, {"type": "error", "message": str(exc)})
        await socket.close(CLOSE_INTERNAL, "execution environment unavailable")
        return
    try:
        await _control(socket, {"type": "status", "state": "ready"})
        async with anyio.create_task_group() as tg:
            tg.start_soon(_send_output, socket, client, tg.cancel_scope)
            await _receive_input(socket, client)
            tg.cancel_scope.cancel()
    except (WebSocketDisconnect, OSError):
        pass  # the client went away; the shell stays for the grace period
    finally:
        with anyio.CancelScope(shield=True):
            await runtime.close_terminal(client)


async def _send_output(socket: WebSocket, client: TerminalClient, scope: anyio.CancelScope) -> None:
    try:
        while (text := await client.receive()) is not None:
            await socket.send_text(text)
        if client.exit_code is not None:
            await _control(socket, {"type": "status", "state": "exited", "code": client.exit_code})
        await socket.close(client.close_code or 1000, client.close_reason)
    except (WebSocketDisconnect, OSError):
        pass
    scope.cancel()


async def _receive_input(socket: WebSocket, client: TerminalClient) -> None:
    while True:
        message = await socket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is not None:
            if len(text) > MAX_INPUT_CHARS:
                await _control(socket, {"type": "error", "message": "input frame too large"})
                continue
            await client.write(text.encode("utf-8", errors="replace"))
            continue
        data = message.get("bytes")
        if data is not None:
            await _handle_control(socket, client, data)


async def _handle_control(socket: WebSocket, client: TerminalClient, data: bytes) -> None:
    try:
        message = json.loads(data)
        kind = message["type"]
    except (ValueError, TypeError, KeyError):
        await _control(socket, {"type": "error", "message": "control frames are JSON objects"})
        return
    if kind == "resize":
        await client.resize(
            _size(message.get("cols"), client.cols), _size(message.get("rows"), client.rows)
        )
    elif kind == "ping":
        await _control(socket, {"type": "pong"})
    elif kind == "pause":
        client.pause()
    elif kind == "resume":
        client.resume()
    else:
        await _control(socket, {"type": "error", "message": f"unknown control type {kind!r}"})
