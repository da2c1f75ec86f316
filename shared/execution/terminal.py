"""The one owner of live shells: attach, detach, reattach with replay, backpressure.

Per session there is at most one ``_Terminal``: a shell from the backend, a ring of recent
output for reattaching clients, and one pump task that reads the shell and hands each
chunk to every attached client. Every client has a small bounded queue and the pump only
reads the next chunk once every client has room, so the shell is read exactly as fast as
the slowest client takes output (TCP backpressure reaches the shell) and no buffer grows.
A client that takes nothing for ``slow_client_seconds`` while others are attached is
detached with 4008 so it cannot freeze the shell for them. With no client attached the pump
keeps reading into the ring only, so programs do not stall while nobody watches; after
``grace_seconds`` without a client the shell is closed. Terminals share nothing: one
session's flood never waits on another's.
"""

from __future__ import annotations

import codecs
import logging
import re
from collections import deque
from collections.abc import Callable
from time import monotonic
from uuid import UUID

import anyio
import attrs
from anyio.abc import TaskGroup

from shared.execution.base import ExecutionBackend, Shell

log = logging.getLogger(__name__)

READ_CHUNK = 32 * 1024
CLIENT_QUEUE_CHARS = 64 * 1024  # a client is full past this (plus at most one read chunk)
RING_CHARS = 64 * 1024

CLOSE_SLOW_CLIENT = 4008
CLOSE_GOING_AWAY = 1001

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


@attrs.frozen
class TerminalConfig:
    grace_seconds: float = 300.0
    slow_client_seconds: float = 5.0
    ring_chars: int = RING_CHARS
    read_chunk: int = READ_CHUNK
    queue_chars: int = CLIENT_QUEUE_CHARS


class TerminalClient:
    """One attached viewer (a WebSocket). The route pulls ``receive()`` and sends frames."""

    def __init__(self, terminal: _Terminal, cols: int, rows: int) -> None:
        self._terminal = terminal
        self.session_id = terminal.session_id
        self.cols = cols
        self.rows = rows
        self._queue: deque[str] = deque()
        self._queued = 0
        self._wake = anyio.Event()
        self._paused = False
        self.full_since: float | None = None
        self.closed = False
        self.close_code: int | None = None
        self.close_reason = ""
        self.exit_code: int | None = None  # set when the shell ended

    @property
    def full(self) -> bool:
        return self._queued >= self._terminal.config.queue_chars

    def _put(self, text: str) -> None:
        self._queue.append(text)
        self._queued += len(text)
        if self.full and self.full_since is None:
            self.full_since = monotonic()
        self._wake.set()

    def _finish(self, code: int, reason: str, *, drop_output: bool) -> None:
        if drop_output:
            self._queue.clear()
            self._queued = 0
        self.closed = True
        self.close_code = code
        self.close_reason = reason
        self._wake.set()

    async def receive(self) -> str | None:
        """The output waiting for this client (all of it, as one string), or None once closed."""
        while True:
            if self._queue and not self._paused:
                text = self._queue[0] if len(self._queue) == 1 else "".join(self._queue)
                self._queue.clear()
                self._queued = 0
                self.full_since = None
                self._terminal.changed()
                return text
            if self.closed:
                return None
            self._wake = anyio.Event()
            await self._wake.wait()

    async def write(self, data: bytes) -> None:
        await self._terminal.shell.write(data)

    async def resize(self, cols: int, rows: int) -> None:
        self.cols, self.rows = cols, rows
        await self._terminal.apply_size()

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self._wake.set()


class _Terminal:
    def __init__(
        self,
        manager: TerminalManager,
        session_id: UUID,
        shell: Shell,
        config: TerminalConfig,
    ) -> None:
        self.manager = manager
        self.session_id = session_id
        self.shell = shell
        self.config = config
        self.clients: list[TerminalClient] = []
        self._ring: deque[str] = deque()
        self._ring_len = 0
        self._ring_trimmed = False
        self._changed = anyio.Event()
        self._size: tuple[int, int] | None = None
        self._grace_scope: anyio.CancelScope | None = None
        self._pump_scope = anyio.CancelScope()
        self.generation = 0  # bumped on every attach/detach: a stale grace timer does nothing
        self.finished = False

    def changed(self) -> None:
        self._changed.set()

    def replay(self) -> str:
        text = "".join(self._ring)
        if self._ring_trimmed:  # the ring starts mid-line, maybe mid-sequence: skip that line
            cut = text.find("\n")
            text = text[cut + 1 :] if cut >= 0 else ""
        return strip_terminal_queries(text)

    def _remember(self, text: str) -> None:
        self._ring.append(text)
        self._ring_len += len(text)
        while self._ring_len > self.config.ring_chars:
            excess = self._ring_len - self.config.ring_chars
            head = self._ring[0]
            if len(head) <= excess:
                self._ring.popleft()
                self._ring_len -= len(head)
            else:
                self._ring[0] = head[excess:]
                self._ring_len -= excess
            self._ring_trimmed = True

    async def apply_size(self) -> None:
        if not self.clients:
            return
        size = (min(c.cols for c in self.clients), min(c.rows for c in self.clients))
        if size != self._size:
            self._size = size
            await self.shell.resize(*size)

    async def _wait_for_room(self) -> None:
        slow = self.config.slow_client_seconds
        while True:
            full = [c for c in self.clients if c.full]
            if not full:
                return
            timeout = float("inf")
            if len(self.clients) > 1:
                now = monotonic()
                for client in full:
                    waited = now - (client.full_since or now)
                    if waited >= slow:
                        log.info("detaching a slow terminal client of %s", self.session_id)
                        await self.manager.detach(client, CLOSE_SLOW_CLIENT, "client too slow")
                    else:
                        timeout = min(timeout, slow - waited)
                if not any(c.full for c in self.clients):
                    return
            self._changed = anyio.Event()
            with anyio.move_on_after(timeout):
                await self._changed.wait()

    async def pump(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            with self._pump_scope:
                await self._pump(decoder)
        except Exception:
            log.exception("terminal pump of %s failed", self.session_id)
        finally:
            with anyio.CancelScope(shield=True):
                await self.manager._terminal_ended(self)

    async def _pump(self, decoder: codecs.IncrementalDecoder) -> None:
        while True:
            await self._wait_for_room()
            data = await self.shell.read(self.config.read_chunk)
            if not data:
                break
            # The incremental decoder keeps a split multi-byte sequence for the next
            # chunk, so no text frame ever ends inside a character.
            text = decoder.decode(data)
            if not text:
                continue
            self._remember(text)
            for client in self.clients:
                client._put(text)
            self.manager._output(self.session_id)
        tail = decoder.decode(b"", final=True)
        if tail:
            self._remember(tail)
            for client in self.clients:
                client._put(tail)

    async def grace_timer(self, generation: int) -> None:
        with anyio.CancelScope() as scope:
            self._grace_scope = scope
            await anyio.sleep(self.config.grace_seconds)
            if generation == self.generation and not self.clients and not self.finished:
                log.info("closing the orphaned shell of %s", self.session_id)
                await self.manager.close_session(self.session_id, CLOSE_GOING_AWAY, "idle")
        self._grace_scope = None

    def cancel_grace(self) -> None:
        if self._grace_scope is not None:
            self._grace_scope.cancel()


class TerminalManager:
    """Owns every live shell of this process, keyed by session."""

    def __init__(
        self,
        backend: ExecutionBackend,
        task_group: TaskGroup,
        config: TerminalConfig | None = None,
        on_output: Callable[[UUID], None] | None = None,
    ) -> None:
        self.backend = backend
        self.config = config or TerminalConfig()
        self._tg = task_group
        self._terminals: dict[UUID, _Terminal] = {}
        self._locks: dict[UUID, anyio.Lock] = {}
        self._on_output = on_output
        self.last_output: dict[UUID, float] = {}

    def active_connections(self, session_id: UUID) -> int:
        terminal = self._terminals.get(session_id)
        return len(terminal.clients) if terminal else 0

    def sessions(self) -> list[UUID]:
        return list(self._terminals)

    async def attach(self, session_id: UUID, cols: int, rows: int) -> TerminalClient:
        """Attach a client to the session's shell, opening one in the running environment
        when there is none. The client's first output is the replay of recent output."""
        async with self._locks.setdefault(session_id, anyio.Lock()):
            terminal = self._terminals.get(session_id)
            if terminal is None or terminal.finished:
                shell = await self.backend.open_shell(session_id, cols, rows)
                terminal = _Terminal(self, session_id, shell, self.config)
                terminal._size = (cols, rows)
                self._terminals[session_id] = terminal
                self._tg.start_soon(terminal.pump)
            client = TerminalClient(terminal, cols, rows)
            replay = terminal.replay()
            if replay:
                client._put(replay)
            terminal.clients.append(client)
            terminal.generation += 1
            terminal.cancel_grace()
            terminal.changed()
        await terminal.apply_size()
        return client

    async def detach(self, client: TerminalClient, code: int = 1000, reason: str = "") -> None:
        """Take a client off its shell; the shell stays for the grace period."""
        terminal = client._terminal
        if not client.closed:
            client._finish(code, reason, drop_output=True)
        if client not in terminal.clients:
            return
        terminal.clients.remove(client)
        terminal.changed()
        terminal.generation += 1
        if not terminal.clients:
            if not terminal.finished:
                self._tg.start_soon(terminal.grace_timer, terminal.generation)
        elif not terminal.finished:
            await terminal.apply_size()  # the smallest remaining client may be larger

    async def close_session(self, session_id: UUID, code: int, reason: str) -> int:
        """Close the session's shell and every client (``code`` + ``reason``); returns how
        many clients were attached."""
        terminal = self._terminals.get(session_id)
        if terminal is None:
            return 0
        clients = list(terminal.clients)
        for client in clients:
            client._finish(code, reason, drop_output=False)
        terminal.cancel_grace()
        await terminal.shell.close()
        terminal._pump_scope.cancel()  # it may be waiting for room in a paused client
        return len(clients)

    async def aclose(self) -> None:
        for session_id in list(self._terminals):
            await self.close_session(session_id, 1012, "server restarting")

    def _output(self, session_id: UUID) -> None:
        self.last_output[session_id] = monotonic()
        if self._on_output is not None:
            self._on_output(session_id)

    async def _terminal_ended(self, terminal: _Terminal) -> None:
        terminal.finished = True
        terminal.cancel_grace()
        await terminal.shell.close()
        code = terminal.shell.exit_code
        for client in list(terminal.clients):
            client.exit_code = code
            if not client.closed:
                client._finish(1000, "shell exited", drop_output=False)
        terminal.clients.clear()
        if self._terminals.get(terminal.session_id) is terminal:
            del self._terminals[terminal.session_id]
            self.last_output.pop(terminal.session_id, None)
