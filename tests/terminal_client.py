"""A WebSocket terminal client for tests, speaking the frame protocol as a browser would."""

from __future__ import annotations

import json
import uuid
from typing import Any

import anyio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.helpers import Platform, User


class Terminal:
    def __init__(self, ws: ClientConnection, keep: int = 1 << 20) -> None:
        self.ws = ws
        self.text = ""  # the last ``keep`` characters received (a flood is not kept whole)
        self.received = 0  # characters received in all
        self._keep = keep
        self.controls: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.close_reason = ""

    async def frame(self) -> bool:
        """Take one frame; False once the connection is closed."""
        try:
            message = await self.ws.recv()
        except ConnectionClosed as exc:
            self.close_code = exc.rcvd.code if exc.rcvd else None
            self.close_reason = exc.rcvd.reason if exc.rcvd else ""
            return False
        if isinstance(message, str):
            self.received += len(message)
            self.text = (self.text + message)[-self._keep :]
        else:
            self.controls.append(json.loads(message))
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

    async def run(self, command: str, within: float = 20) -> str:
        """Run a command; what it printed, with CRLF turned into LF."""
        tag = uuid.uuid4().hex[:8]
        await self.ws.send(f"echo BEG''{tag}; {command}; echo END''{tag}\n")
        out = await self.until(f"END{tag}\r\n", within)
        out = out[out.index(f"BEG{tag}") + len(tag) + 3 : out.rindex(f"END{tag}")]
        return out.replace("\r\n", "\n").strip("\n")

    async def control(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message).encode())

    async def ready(self) -> None:
        """Wait for the status 'ready' and the first prompt."""
        await self.until("$ ")
        assert {"type": "status", "state": "ready"} in self.controls


def terminal_url(platform: Platform, workspace: str, **query: str) -> str:
    params = "&".join(f"{k}={v}" for k, v in query.items())
    return f"{platform.ws_url}/api/terminal/ws/{workspace}" + (f"?{params}" if params else "")


def open_terminal(platform: Platform, user: User | None, workspace: str, **query: str) -> Any:
    """``async with open_terminal(...) as ws:`` a raw connection (bearer auth when a user)."""
    headers = {"Authorization": f"Bearer {user.token}"} if user else {}
    return connect(
        terminal_url(platform, workspace, **query),
        additional_headers=headers,
        max_size=None,
        compression=None,
        open_timeout=20,
    )
