"""One terminal viewer (a connection from the platform, one per WebSocket) as the agent
sees it: output goes out through its transport, bounded; its client may pause it; and the
replay a reattaching viewer gets never holds a sequence that makes a terminal answer."""

from __future__ import annotations

import asyncio
import fcntl
import re
import struct
import termios
import time

from .protocol import encode_json

VIEWER_HIGH_WATER = 64 * 1024  # a viewer is "full" past this many unsent bytes

# Sequences that make a terminal answer (DSR, DA1/DA2/DA3, XTVERSION, DECRQM, window
# reports, OSC colour/clipboard queries, DECRQSS/XTGETTCAP, ENQ). Replayed, they would make
# the reattaching terminal type its answers into the shell.
_QUERY = re.compile(
    r"\x1b\[[?>=]?[0-9;]*[cn]"  # DA, DA2, DA3, DSR (5n, 6n, ?6n ...)
    r"|\x1b\[>[0-9;]*q"  # XTVERSION
    r"|\x1b\[[?]?[0-9;]*\$p"  # DECRQM
    r"|\x1b\[[0-9;]*t"  # window ops and reports
    r"|\x1b\][0-9]+;[^\x07\x1b]*\?(?:\x07|\x1b\\)"  # OSC 4/10/11/12/52 ... queries
    r"|\x1bP[$+]q[^\x1b]*\x1b\\"  # DECRQSS, XTGETTCAP
    r"|\x05"  # ENQ (answerback)
)


def strip_terminal_queries(text: str) -> str:
    """``text`` without the sequences that would make a terminal send a reply."""
    return _QUERY.sub("", text)


def set_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class Viewer:
    """One attached connection: output goes out through its transport, bounded."""

    def __init__(self, writer: asyncio.StreamWriter, cols: int, rows: int) -> None:
        self.writer = writer
        self.cols = cols
        self.rows = rows
        self.full_since: float | None = None
        self.closed = False
        self._resumed = asyncio.Event()
        self._resumed.set()
        writer.transport.set_write_buffer_limits(high=VIEWER_HIGH_WATER)

    @property
    def full(self) -> bool:
        """No room for output: its buffer is full, or its client asked for a pause (flow
        control), which the slow-viewer rule treats alike."""
        return (
            not self._resumed.is_set()
            or self.writer.transport.get_write_buffer_size() >= VIEWER_HIGH_WATER
        )

    def pause(self) -> None:
        self._resumed.clear()
        if self.full_since is None:
            self.full_since = time.monotonic()

    def resume(self) -> None:
        self._resumed.set()

    async def room(self) -> None:
        """Until this viewer can take output again."""
        while not self.closed:
            await self._resumed.wait()
            if self.writer.transport.get_write_buffer_size() < VIEWER_HIGH_WATER:
                return
            await self.writer.drain()

    def send(self, frame: bytes) -> None:
        if self.closed or self.writer.is_closing():
            return
        self.writer.write(frame)
        if self.full and self.full_since is None:
            self.full_since = time.monotonic()

    def close(self, code: int, reason: str) -> None:
        """Say why and hang up (the event still reaches a viewer that drains its backlog)."""
        if self.closed:
            return
        self.closed = True
        if not self.writer.is_closing():
            self.writer.write(encode_json({"event": "close", "code": code, "reason": reason}))
            self.writer.close()
