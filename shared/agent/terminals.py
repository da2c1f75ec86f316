"""The agent's live shells: a PTY per terminal, its replay ring, its viewers, its pace.

A terminal is a bash on a PTY plus the viewers attached to it (one connection each from the
platform, one per WebSocket). Output is read from the PTY only while every viewer has room
in its bounded send buffer, so the shell runs exactly as fast as the slowest viewer takes
output and no buffer grows; a viewer that takes nothing for ``slow_seconds`` while others
watch is detached (4008) so it cannot freeze the shell for them. With no viewer the PTY is
drained into the ring only, so programs do not stall while nobody watches; after
``grace_seconds`` without a viewer the shell is closed. The ring keeps the last output for
reattaching viewers, replayed without the sequences that make a terminal answer.
"""

from __future__ import annotations

import asyncio
import codecs
import errno
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .protocol import encode_data, encode_json
from .viewers import Viewer, set_size, strip_terminal_queries

READ_CHUNK = 64 * 1024
RING_CHARS = 64 * 1024
CLOSE_SLOW_VIEWER = 4008
EXIT_DRAIN_SECONDS = 0.5


class Terminal:
    def __init__(
        self,
        manager: TerminalManager,
        name: str,
        cols: int,
        rows: int,
    ) -> None:
        self.manager = manager
        self.name = name
        self.viewers: list[Viewer] = []
        self.size = (cols, rows)
        self.exit_code: int | None = None
        self.ended = False
        self.ever_attached = False
        self.idle_since: float | None = time.monotonic()
        self.last_output = time.monotonic()
        self._ring: deque[str] = deque()
        self._ring_len = 0
        self._ring_trimmed = False
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._reading = False
        self._room_task: asyncio.Task[None] | None = None
        self._grace: asyncio.TimerHandle | None = None
        self._eof = False
        self.pid, self.fd = self._spawn(cols, rows)
        os.set_blocking(self.fd, False)
        self._loop = asyncio.get_running_loop()
        self._resume_reading()

    def _spawn(self, cols: int, rows: int) -> tuple[int, int]:
        pid, fd = os.forkpty()
        if pid == 0:  # the child: become the shell (forkpty made the PTY our terminal)
            try:
                os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # the shell gets its PTY only
                os.chdir(self.manager.workdir)
                os.execve(self.manager.shell[0], self.manager.shell, self.manager.shell_env)
            finally:
                os._exit(127)
        set_size(fd, cols, rows)
        self.manager.on_child(pid, self._child_exited)
        return pid, fd

    # -- output --------------------------------------------------------------------------

    def _resume_reading(self) -> None:
        if not self._reading and not self.ended:
            self._reading = True
            self._loop.add_reader(self.fd, self._readable)

    def _pause_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self.fd)

    def _readable(self) -> None:
        chunks: list[bytes] = []
        size = 0
        while size < READ_CHUNK:
            try:
                chunk = os.read(self.fd, READ_CHUNK - size)
            except BlockingIOError:
                break
            except OSError as exc:  # EIO: every slave fd closed, the shell is gone
                if exc.errno != errno.EIO:
                    raise
                chunk = b""
            if not chunk:
                self._pause_reading()
                self._output(b"".join(chunks), final=True)
                self._eof = True
                if self.exit_code is not None:
                    self._finish(1000, "shell exited")
                return
            chunks.append(chunk)
            size += len(chunk)
        self._output(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        if any(v.full for v in self.viewers):
            self._pause_reading()
            if self._room_task is None:
                self._room_task = asyncio.ensure_future(self._wait_for_room())

    def _output(self, data: bytes, final: bool = False) -> None:
        # The incremental decoder keeps a split multi-byte sequence for the next chunk, so
        # no frame ever ends inside a character.
        text = self._decoder.decode(data, final)
        if not text:
            return
        self.last_output = time.monotonic()
        self._remember(text)
        frame = encode_data(text.encode())
        for viewer in self.viewers:
            viewer.send(frame)

    def _remember(self, text: str) -> None:
        limit = self.manager.ring_chars
        self._ring.append(text)
        self._ring_len += len(text)
        while self._ring_len > limit:
            excess = self._ring_len - limit
            head = self._ring[0]
            if len(head) <= excess:
                self._ring.popleft()
                self._ring_len -= len(head)
            else:
                self._ring[0] = head[excess:]
                self._ring_len -= excess
            self._ring_trimmed = True

    def replay(self) -> str:
        text = "".join(self._ring)
        if self._ring_trimmed:  # the ring starts mid-line, maybe mid-sequence: skip that line
            cut = text.find("\n")
            text = text[cut + 1 :] if cut >= 0 else ""
        return strip_terminal_queries(text)

    async def _wait_for_room(self) -> None:
        """Until no viewer is full: wait for drains, detaching viewers too slow for others."""
        slow = self.manager.slow_seconds
        try:
            while not self.ended:
                full = [v for v in self.viewers if v.full]
                if not full:
                    break
                for viewer in full:
                    if viewer.full_since is None:
                        viewer.full_since = time.monotonic()
                timeout = None
                if len(self.viewers) > 1:
                    now = time.monotonic()
                    for viewer in full:
                        waited = now - (viewer.full_since or now)
                        if waited >= slow:
                            self.detach(viewer, CLOSE_SLOW_VIEWER, "viewer too slow")
                        else:
                            timeout = min(timeout or slow, slow - waited)
                    full = [v for v in self.viewers if v.full]
                    if not full:
                        break
                waits = [asyncio.ensure_future(v.room()) for v in full]
                done, pending = await asyncio.wait(
                    waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                for task in pending:
                    task.cancel()
                for task in done:
                    if task.exception() is not None:  # that viewer went away
                        for viewer in full:
                            if viewer.writer.is_closing():
                                self.detach(viewer, 1000, "gone")
            for viewer in self.viewers:
                viewer.full_since = None
        finally:
            self._room_task = None
            self._resume_reading()

    # -- input and size ------------------------------------------------------------------

    async def write(self, data: bytes) -> None:
        """Type ``data`` into the shell, waiting while the PTY's input buffer is full."""
        view = memoryview(data)
        while view and not self.ended:
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:
                waiter = self._loop.create_future()
                self._loop.add_writer(self.fd, waiter.set_result, None)
                try:
                    await waiter
                finally:
                    self._loop.remove_writer(self.fd)
            except OSError:
                return

    def apply_size(self) -> None:
        if not self.viewers or self.ended:
            return
        size = (min(v.cols for v in self.viewers), min(v.rows for v in self.viewers))
        if size != self.size:
            self.size = size
            set_size(self.fd, *size)  # the kernel sends SIGWINCH to the foreground job

    def resize_all(self, cols: int, rows: int) -> None:
        for viewer in self.viewers:
            viewer.cols, viewer.rows = cols, rows
        if not self.viewers and not self.ended:
            self.size = (cols, rows)
            set_size(self.fd, cols, rows)
        self.apply_size()

    # -- viewers -------------------------------------------------------------------------

    def attach(self, viewer: Viewer) -> None:
        viewer.send(encode_json({"event": "ready"}))
        replay = self.replay()
        if replay:
            viewer.send(encode_data(replay.encode()))
        self.viewers.append(viewer)
        self.ever_attached = True
        self.idle_since = None
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        self.apply_size()

    def flow(self, viewer: Viewer, paused: bool) -> None:
        """A viewer's client paused or resumed its output (xterm.js flow control)."""
        if paused:
            viewer.pause()
            if self._room_task is None and not self.ended:
                self._pause_reading()
                self._room_task = asyncio.ensure_future(self._wait_for_room())
        else:
            viewer.resume()

    def detach(self, viewer: Viewer, code: int, reason: str) -> None:
        viewer.close(code, reason)
        if viewer not in self.viewers:
            return
        self.viewers.remove(viewer)
        if self.viewers:
            self.apply_size()  # the smallest remaining viewer may be larger
        elif not self.ended:
            self.idle_since = time.monotonic()
            self._grace = self._loop.call_later(self.manager.grace_seconds, self._orphaned)
        if self._room_task is None:
            self._resume_reading()

    def _orphaned(self) -> None:
        self._grace = None
        if not self.viewers:
            self.close(1001, "idle")

    # -- the end -------------------------------------------------------------------------

    def close(self, code: int, reason: str) -> None:
        """End the shell (its whole process group) and every viewer with ``code``."""
        if not self.ended:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._finish(code, reason)

    def _child_exited(self, code: int) -> None:
        if self.ended:
            return
        self.exit_code = code
        if self._eof:
            self._finish(1000, "shell exited")
        else:
            # The PTY may still hold the last output: drain it, but a background job that
            # keeps the terminal open must not keep the ended shell's viewers waiting.
            self._loop.call_later(EXIT_DRAIN_SECONDS, self._finish, 1000, "shell exited")

    def _finish(self, code: int, reason: str) -> None:
        if self.ended:
            return
        self.ended = True
        self._pause_reading()
        if self._grace is not None:
            self._grace.cancel()
        if self._room_task is not None:
            self._room_task.cancel()
        for viewer in list(self.viewers):
            if self.exit_code is not None:
                viewer.send(encode_json({"event": "exit", "code": self.exit_code}))
            viewer.close(code, reason)
        self.viewers.clear()
        try:
            os.close(self.fd)
        except OSError:
            pass
        self.manager.ended(self)

    def describe(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "name": self.name,
            "pid": self.pid,
            "viewers": len(self.viewers),
            "cols": self.size[0],
            "rows": self.size[1],
            "idle_seconds": 0.0 if self.idle_since is None else round(now - self.idle_since, 3),
            "output_age_seconds": round(now - self.last_output, 3),
            "exit_code": self.exit_code,
        }


class TerminalManager:
    """Every terminal of this environment, by name ("main" is the platform's one shell)."""

    def __init__(
        self,
        workdir: str,
        shell: list[str],
        shell_env: dict[str, str],
        grace_seconds: float,
        slow_seconds: float,
        ring_chars: int = RING_CHARS,
    ) -> None:
        self.workdir = workdir
        self.shell = shell
        self.shell_env = shell_env
        self.grace_seconds = grace_seconds
        self.slow_seconds = slow_seconds
        self.ring_chars = ring_chars
        self.terminals: dict[str, Terminal] = {}
        self._children: dict[int, Callable[[int], None]] = {}
        self._exited: dict[int, int] = {}

    def attach(self, name: str, viewer: Viewer) -> Terminal:
        terminal = self.terminals.get(name)
        if terminal is None or terminal.ended:
            terminal = Terminal(self, name, viewer.cols, viewer.rows)
            self.terminals[name] = terminal
        terminal.attach(viewer)
        return terminal

    def prespawn(self, name: str, cols: int, rows: int) -> None:
        if name not in self.terminals:
            self.terminals[name] = Terminal(self, name, cols, rows)

    def restart_idle(self, name: str) -> None:
        """End a shell nobody has attached to yet, so the next attach starts a fresh one."""
        terminal = self.terminals.get(name)
        if terminal is not None and not terminal.viewers and not terminal.ever_attached:
            terminal.close(1000, "restarted")

    def ended(self, terminal: Terminal) -> None:
        if self.terminals.get(terminal.name) is terminal:
            del self.terminals[terminal.name]

    def close_all(self, code: int, reason: str) -> None:
        for terminal in list(self.terminals.values()):
            terminal.close(code, reason)

    # -- children: one SIGCHLD handler reaps everything (the agent may be PID 1) ----------

    def on_child(self, pid: int, callback: Callable[[int], None]) -> None:
        if pid in self._exited:
            callback(self._exited.pop(pid))
        else:
            self._children[pid] = callback

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            code = code if code >= 0 else 128 - code
            callback = self._children.pop(pid, None)
            if callback is not None:
                callback(code)
            elif len(self._exited) < 1024:
                self._exited[pid] = code  # a shell whose callback is not registered yet
