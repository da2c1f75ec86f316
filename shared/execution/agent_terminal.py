"""One terminal viewer's stream to an agent, as the platform's relay uses it: output bytes
and events from the agent (bounded, validated), input, size and flow control to it."""

from __future__ import annotations

import asyncio
from typing import Any

from shared.agent import protocol
from shared.agent.protocol import DATA, JSON, ProtocolError, encode_data, encode_json


class AgentTerminal:
    """One viewer's stream: output and events from the agent, input and size to it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.exit_code: int | None = None
        self.close_code: int | None = None
        self.close_reason = ""

    async def next(self) -> bytes | dict[str, Any] | None:
        """Output bytes, an event dict (``ready``, ``exit``, ``close``), or None at the end.
        Reading is what paces the shell: not calling this holds its output back."""
        try:
            kind, payload = await protocol.read_frame(self._reader, max_json=4096,
                                                      max_data=1 << 20)  # fmt: skip
        except (EOFError, ProtocolError, OSError):
            return None
        if kind == DATA:
            return payload  # type: ignore[no-any-return]
        assert kind == JSON
        event = payload.get("event")
        if event == "exit":
            code = payload.get("code")
            self.exit_code = code if isinstance(code, int) and 0 <= code < 1 << 16 else None
        elif event == "close":
            code = payload.get("code")
            self.close_code = code if isinstance(code, int) and 1000 <= code < 5000 else 1011
            self.close_reason = str(payload.get("reason", ""))[:120]
        return {"event": str(event)[:16]}

    async def write(self, data: bytes) -> None:
        if self._writer.is_closing():
            return
        self._writer.write(encode_data(data))
        try:
            await self._writer.drain()  # a shell not reading its input holds the typist back
        except (ConnectionError, OSError):
            pass

    async def resize(self, cols: int, rows: int) -> None:
        if not self._writer.is_closing():
            self._writer.write(encode_json({"op": "resize", "cols": cols, "rows": rows}))

    async def flow(self, paused: bool) -> None:
        """The client paused (or resumed) taking output: the agent holds it back."""
        if not self._writer.is_closing():
            self._writer.write(encode_json({"op": "pause" if paused else "resume"}))

    async def close(self) -> None:
        self._writer.close()
