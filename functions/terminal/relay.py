"""One terminal WebSocket relayed to the environment's agent, in either protocol mode.

Plain mode (no subprotocol; what xterm.js's stock AttachAddon speaks): every client frame,
TEXT or BINARY, is terminal input written verbatim; every server frame is TEXT output
(UTF-8, never split inside a character). Nothing else is ever sent; state and errors are
read over HTTP and reported by close codes.

Channel mode (subprotocol ``channel.v1.terminal``): every frame is BINARY and starts with a
channel byte: 0 = terminal data (both ways), 1 = one JSON control message. Client: resize,
ping, pause, resume. Server: status (starting / ready / exited), error, pong. A malformed
control message is answered with an error; it never closes the connection.

Output is read from the agent only as fast as the client takes it (each send awaits the
transport), so the agent's per-viewer buffer fills and its slow-viewer rules apply; a
client's pause/resume is passed to the agent, which holds the output back. The relay
itself holds at most one chunk.
"""

from __future__ import annotations

import codecs
import json
from typing import Any

import anyio
from litestar import WebSocket
from litestar.exceptions import WebSocketDisconnect

from shared.execution.agent_terminal import AgentTerminal

CHANNEL_PROTOCOL = "channel.v1.terminal"
DATA, CONTROL = 0, 1
MIN_SIZE, MAX_SIZE = 2, 1000


def clamp_size(raw: Any, default: int) -> int:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        return default
    return max(MIN_SIZE, min(MAX_SIZE, value))


class Relay:
    def __init__(self, socket: WebSocket, terminal: AgentTerminal, channel: bool) -> None:
        self.socket = socket
        self.terminal = terminal
        self.channel = channel
        self._scope: anyio.CancelScope | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.on_output: Any = None  # called with nothing after each chunk of output

    # -- frames out ----------------------------------------------------------------------

    @staticmethod
    async def send_control(
        socket: WebSocket, message: dict[str, Any], channel: bool = True
    ) -> None:
        """A control message (channel mode only; plain mode has no place for one)."""
        if channel:
            payload = json.dumps(message, separators=(",", ":")).encode()
            await socket.send_bytes(bytes([CONTROL]) + payload)

    async def control(self, message: dict[str, Any]) -> None:
        await self.send_control(self.socket, message, self.channel)

    async def _output(self, text: str) -> None:
        if self.channel:
            await self.socket.send_bytes(bytes([DATA]) + text.encode())
        else:
            await self.socket.send_text(text)

    # -- the relay -----------------------------------------------------------------------

    async def run(self) -> None:
        """Until the client or the shell goes away, or ``close`` is called."""
        try:
            async with anyio.create_task_group() as tg:
                self._scope = tg.cancel_scope
                tg.start_soon(self._pump_output, tg.cancel_scope)
                await self._pump_input()
                tg.cancel_scope.cancel()
        except (WebSocketDisconnect, OSError):
            pass
        finally:
            with anyio.CancelScope(shield=True):
                await self.terminal.close()

    def stop(self, code: int, reason: str) -> None:
        self.close_code, self.close_reason = code, reason
        if self._scope is not None:
            self._scope.cancel()

    async def _pump_output(self, scope: anyio.CancelScope) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            while True:
                item = await self.terminal.next()
                if item is None:
                    break
                if isinstance(item, bytes):
                    text = decoder.decode(item)  # the agent is not trusted to split well
                    if text:
                        await self._output(text)
                        if self.on_output is not None:
                            self.on_output()
                    continue
                event = item.get("event")
                if event == "ready":
                    await self.control({"type": "status", "state": "ready"})
                elif event == "exit":
                    await self.control(
                        {"type": "status", "state": "exited", "code": self.terminal.exit_code}
                    )
            tail = decoder.decode(b"", final=True)
            if tail:
                await self._output(tail)
        except (WebSocketDisconnect, OSError):
            pass
        if self.close_code is None:
            if self.terminal.close_code is not None:
                self.close_code = self.terminal.close_code
                self.close_reason = self.terminal.close_reason
            else:
                self.close_code, self.close_reason = 1011, "lost the execution environment"
        scope.cancel()

    async def _pump_input(self) -> None:
        while True:
            message = await self.socket.receive()
            if message["type"] == "websocket.disconnect":
                self.close_code = self.close_code or 1000
                return
            text, data = message.get("text"), message.get("bytes")
            if not self.channel:
                # Plain mode: everything the client sends is what it typed (xterm.js sends
                # mouse reports as binary frames).
                await self.terminal.write(text.encode() if text is not None else data or b"")
                continue
            if data is None:
                await self.control({"type": "error", "message": "channel mode frames are binary"})
            elif not data:
                await self.control({"type": "error", "message": "empty frame"})
            elif data[0] == DATA:
                await self.terminal.write(data[1:])
            elif data[0] == CONTROL:
                await self._handle_control(data[1:])
            else:
                await self.control({"type": "error", "message": f"unknown channel {data[0]}"})

    async def _handle_control(self, raw: bytes) -> None:
        try:
            message = json.loads(raw)
            kind = message["type"]
        except (ValueError, TypeError, KeyError, RecursionError):
            await self.control({"type": "error", "message": "control messages are JSON objects "
                                "with a type"})  # fmt: skip
            return
        if kind == "resize":
            await self.terminal.resize(
                clamp_size(message.get("cols"), 80), clamp_size(message.get("rows"), 24)
            )
        elif kind == "ping":
            await self.control({"type": "pong"})
        elif kind in ("pause", "resume"):
            # The agent holds the output back (and applies the slow-viewer rule to a
            # client paused too long while others watch); the relay keeps listening.
            await self.terminal.flow(kind == "pause")
        else:
            await self.control(
                {"type": "error", "message": f"unknown control type {str(kind)[:40]!r}"}
            )
