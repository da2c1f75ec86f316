"""A WebSocket terminal client for tests, speaking either protocol mode as a browser would.

Channel mode (``channel.v1.terminal``, the default here): binary frames with a channel byte,
0 = terminal data, 1 = a JSON control message. Plain mode: text frames are output, every
client frame is input, nothing else is ever sent.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.helpers import Platform, User

CHANNEL = "channel.v1.terminal"


class Terminal:
    def __init__(self, ws: ClientConnection, keep: int = 1 << 20) -> None:
        self.ws = ws
        self.channel = ws.subprotocol == CHANNEL
        self.text = ""  # the last ``keep`` characters received (a flood is not kept whole)
        self.received = 0  # characters received in all
        self._keep = keep
        self.controls: list[dict[str, Any]] = []
        self.stray: list[Any] = []  # frames that are not what the mode allows
        self.close_code: int | None = None
        self.close_reason = ""

    def _output(self, text: str) -> None:
        self.received += len(text)
        self.text = (self.text + text)[-self._keep :]

    async def frame(self) -> bool:
        """Take one frame; False once the connection is closed."""
        try:
            message = await self.ws.recv()
        except ConnectionClosed as exc:
            self.close_code = exc.rcvd.code if exc.rcvd else None
            self.close_reason = exc.rcvd.reason if exc.rcvd else ""
            return False
        if not self.channel:
            if isinstance(message, str):
                self._output(message)
            else:
                self.stray.append(message)
        elif isinstance(message, str) or not message:
            self.stray.append(message)
        elif message[0] == 0:
            self._output(message[1:].decode())
        elif message[0] == 1:
            self.controls.append(json.loads(message[1:]))
        else:
            self.stray.append(message)
        return True

    async def until(self, marker: str, within: float = 20) -> str:
        """Read until ``marker`` arrives; what arrived meanwhile (its last ``keep`` chars)."""
        start = self.received
        with anyio.fail_after(within):
            while True:
                fresh = self.received - start
                window = self.text[-(min(fresh, self._keep) + len(marker)) :] if fresh else ""
                if marker in window:
                    break
                if not await self.frame():
                    raise AssertionError(f"closed ({self.close_code}) before {marker!r}")
        return self.text[-min(self.received - start, self._keep) :]

    async def closed(self, within: float = 20) -> int | None:
        with anyio.fail_after(within):
            while await self.frame():
                pass
        return self.close_code

    async def send(self, text: str) -> None:
        """Type ``text``."""
        if self.channel:
            await self.ws.send(b"\x00" + text.encode())
        else:
            await self.ws.send(text)

    async def run(self, command: str, within: float = 20) -> str:
        """Run a command; what it printed, with CRLF turned into LF."""
        tag = uuid.uuid4().hex[:8]
        await self.send(f"echo BEG''{tag}; {command}; echo END''{tag}\n")
        out = await self.until(f"END{tag}\r\n", within)
        out = out[out.index(f"BEG{tag}") + len(tag) + 3 : out.rindex(f"END{tag}")]
        return out.replace("\r\n", "\n").strip("\n")

    async def control(self, message: dict[str, Any]) -> None:
        await self.ws.send(b"\x01" + json.dumps(message).encode())

    async def ready(self) -> None:
        """Wait for the first prompt (and, in channel mode, the status 'ready')."""
        await self.until("$ ")
        if self.channel:
            assert {"type": "status", "state": "ready"} in self.controls


def terminal_url(platform: Platform, workspace: str, **query: str) -> str:
    params = "&".join(f"{k}={v}" for k, v in query.items())
    return f"{platform.ws_url}/api/terminal/ws/{workspace}" + (f"?{params}" if params else "")


def open_terminal(
    platform: Platform,
    user: User | None,
    workspace: str,
    *,
    plain: bool = False,
    headers: dict[str, str] | None = None,
    **query: str,
) -> Any:
    """``async with open_terminal(...) as ws:`` a raw connection (bearer auth when a user),
    in channel mode unless ``plain``."""
    sent = {"Authorization": f"Bearer {user.token}"} if user else {}
    sent.update(headers or {})
    return connect(
        terminal_url(platform, workspace, **query),
        additional_headers=sent,
        subprotocols=None if plain else [CHANNEL],  # type: ignore[list-item]
        max_size=None,
        compression=None,
        open_timeout=20,
    )


@asynccontextmanager
async def opened_shell(
    platform: Platform, user: User | None, workspace: str, **options: Any
) -> AsyncIterator[Terminal]:
    """``async with opened_shell(...) as term:`` a terminal (``open_terminal``'s options) at its
    first prompt."""
    async with open_terminal(platform, user, workspace, **options) as ws:
        term = Terminal(ws)
        await term.ready()
        yield term
