"""A shell in an execution pod: bash on a TTY over the exec WebSocket, pulled by ``read()``."""

from __future__ import annotations

import json

import anyio

from shared.execution.base import ExecutionError
from shared.execution.k8s_exec import RESIZE, STDERR, STDIN, STDOUT, ExecStream

# How long one blocking read waits in its worker thread before handing control back, so a
# cancelled read() returns promptly.
READ_SLICE_S = 0.25

SHELL_COMMAND = [
    "/bin/sh",
    "-c",
    "cd /workspace && exec env TERM=xterm-256color HOME=/workspace bash -l",
]


class KubernetesShell:
    """Implements ``Shell``. Holds at most one WebSocket frame of output, so the reader sets
    the pace: a client that stops reading stops the pod's output through TCP backpressure."""

    def __init__(self, stream: ExecStream, limiter: anyio.CapacityLimiter) -> None:
        self._stream = stream
        self._limiter = limiter
        self._pending = b""
        self._eof = False
        self._closed = False

    @property
    def exit_code(self) -> int | None:
        return self._stream.exit_code

    async def read(self, max_bytes: int = 65536) -> bytes:
        while not self._pending:
            if self._eof or self._closed:
                return b""
            await anyio.to_thread.run_sync(self._fill, limiter=self._limiter)
        chunk, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        return chunk

    def _fill(self) -> None:
        """Wait up to READ_SLICE_S for one frame, kept on self (worker thread). Storing it
        here rather than returning it means a read() cancelled meanwhile loses no output."""
        try:
            frame = self._stream.read_frame(READ_SLICE_S)
        except EOFError:
            self._eof = True
            return
        if frame is not None and frame[0] in (STDOUT, STDERR):
            self._pending = frame[1]

    async def write(self, data: bytes) -> None:
        if data and not (self._closed or self._eof):
            await self._send(STDIN, data)

    async def resize(self, cols: int, rows: int) -> None:
        if self._closed or self._eof:
            return
        size = json.dumps({"Width": max(1, int(cols)), "Height": max(1, int(rows))}).encode()
        await self._send(RESIZE, size)

    async def _send(self, channel: int, data: bytes) -> None:
        try:
            await anyio.to_thread.run_sync(self._stream.send, channel, data, limiter=self._limiter)
        except ExecutionError:
            pass  # the connection is gone; read() reports the end

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._stream.close, limiter=self._limiter)
