"""The platform's side of the agent protocol: requests and terminal streams to one agent.

The agent runs as the sandbox user, so nothing it says is trusted: every answer is checked
against what was asked (paths valid and asked for, sizes within the limits, digests
recomputed here, counts bounded) and anything else is an ``ExecutionError`` ("the execution
environment answered something unexpected"). Every wait is bounded by a timeout.

Requests go over a small pool of authenticated connections per agent, one request at a
time each; a terminal viewer gets a connection of its own (``attach``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import socket
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from shared.agent import protocol
from shared.agent.paths import path_problem
from shared.agent.protocol import ProtocolError, encode_data, encode_json
from shared.execution import unix_path
from shared.execution.agent_terminal import AgentTerminal
from shared.execution.base import ExecutionError, ScannedEntry, ScanResult, WorkspaceEntry

log = logging.getLogger(__name__)

_HEX64 = re.compile(r"[0-9a-f]{64}")
UNEXPECTED = "The execution environment answered something unexpected."
UNREACHABLE = "The execution environment is not reachable."
IDLE_CONNECTIONS = 4
READ_BATCH_BYTES = 32 * 1024 * 1024  # paths x max_bytes per read request
OVER_BUDGET = "over_budget"
_CODE = re.compile(
    r"[a-z_]{1,32}"
)  # what an agent's error code may look like  # read_files: not read, the caller's budget was spent


@attrs.frozen
class AgentEndpoint:
    """Where an environment's agent listens (``unix:<path>`` or ``tcp:<host>:<port>``) and
    the secret it proves itself with."""

    address: str
    secret: bytes = attrs.field(repr=False)


class Conflict(Exception):
    """A conditional write or delete found something other than what it expected."""

    def __init__(self, current: dict[str, Any] | None) -> None:
        super().__init__("changed in the environment")
        self.current = current


class NoSpace(ExecutionError):
    """The environment's workspace volume is full."""


@attrs.frozen
class TerminalInfo:
    name: str
    viewers: int
    cols: int
    rows: int
    idle_seconds: float
    output_age_seconds: float  # since the shell last printed (or was last read while held back)
    exit_code: int | None


@attrs.frozen
class AgentStatus:
    uptime_seconds: float
    materialized: bool  # the platform has put the workspace's files into this environment
    terminals: tuple[TerminalInfo, ...]
    free_bytes: int
    total_bytes: int


def _check(condition: bool) -> None:
    if not condition:
        raise ExecutionError(UNEXPECTED)


def _number(value: Any, low: float = 0, high: float = float(1 << 62)) -> Any:
    _check(isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high)
    return value


async def _open(address: str, within: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        async with asyncio.timeout(within):
            if address.startswith("unix:"):
                with unix_path.usable(address[5:]) as path:
                    return await asyncio.open_unix_connection(path, limit=1 << 20)
            host, _, port = address.removeprefix("tcp:").rpartition(":")
            reader, writer = await asyncio.open_connection(host.strip("[]"), int(port),
                                                           limit=1 << 20)  # fmt: skip
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return reader, writer
    except (OSError, TimeoutError, ValueError) as exc:
        log.info("agent at %s unreachable: %r", address, exc)
        raise ExecutionError(UNREACHABLE) from exc


async def connect(
    endpoint: AgentEndpoint, hello: dict[str, Any], within: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """An authenticated connection: read the agent's nonce, answer with the HMAC."""
    reader, writer = await _open(endpoint.address, within)
    try:
        async with asyncio.timeout(within):
            greeting = await protocol.read_json(reader, max_json=4096)
            nonce = greeting.get("nonce")
            _check(greeting.get("hello") == protocol.HELLO and isinstance(nonce, str))
            _check(0 < len(nonce) <= 128)
            writer.write(encode_json({"auth": protocol.mac(endpoint.secret, nonce), **hello}))
            answer = await protocol.read_json(reader, max_json=4096)
            _check(answer.get("ok") is True)
    except (EOFError, ProtocolError, OSError, TimeoutError) as exc:
        writer.close()
        raise ExecutionError(UNREACHABLE) from exc
    except BaseException:
        writer.close()
        raise
    return reader, writer


_clients: OrderedDict[AgentEndpoint, AgentClient] = OrderedDict()
MAX_CLIENTS = 1024


def client_for(endpoint: AgentEndpoint, timeout: float = 10.0) -> AgentClient:
    """A client of one agent whose requests wait at most ``timeout``, sharing the process's
    idle connections to that agent with everything that talks to it (bounded: the least
    recently used agents' are closed)."""
    client = _clients.get(endpoint)
    if client is None:
        client = _clients[endpoint] = AgentClient(endpoint, timeout)
        while len(_clients) > MAX_CLIENTS:
            _, evicted = _clients.popitem(last=False)
            evicted.close_idle()
    else:
        _clients.move_to_end(endpoint)
    if client.timeout != timeout:  # the caller's bound, the same connections
        client = AgentClient(endpoint, timeout, idle=client._idle)
    return client


def forget_client(endpoint: AgentEndpoint) -> None:
    client = _clients.pop(endpoint, None)
    if client is not None:
        client.close_idle()


class AgentClient:
    """Requests to one environment's agent."""

    def __init__(
        self,
        endpoint: AgentEndpoint,
        timeout: float = 10.0,
        idle: deque[tuple[asyncio.StreamReader, asyncio.StreamWriter]] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._idle = deque() if idle is None else idle

    def close_idle(self) -> None:
        while self._idle:
            _, writer = self._idle.popleft()
            writer.close()

    async def call(
        self,
        request: dict[str, Any],
        data: Iterable[bytes] = (),
        *,
        blobs: int = 0,
        max_blob: int = protocol.MAX_DATA,
        within: float | None = None,
    ) -> tuple[dict[str, Any], list[bytes]]:
        """Send one request (and its DATA frames); its answer and ``blobs`` DATA frames.
        ``blobs`` may be a callable of the answer telling how many frames follow."""
        limit = within or self.timeout
        if self._idle:
            reader, writer = self._idle.popleft()
        else:
            reader, writer = await connect(self.endpoint, {"mode": "rpc"}, self.timeout)
        reusable = False
        try:
            async with asyncio.timeout(limit):
                writer.write(encode_json(request))
                for chunk in data:
                    writer.write(encode_data(chunk))
                await writer.drain()
                answer = await protocol.read_json(reader)
                count = blobs(answer) if callable(blobs) else (blobs if answer.get("ok") else 0)
                frames = [await protocol.read_data(reader, max_data=max_blob) for _ in range(count)]
            reusable = True
        except (EOFError, ProtocolError, OSError) as exc:
            raise ExecutionError(UNREACHABLE) from exc
        except TimeoutError as exc:
            log.warning("agent %s: %s timed out after %s s", self.endpoint.address,
                        request.get("op"), limit)  # fmt: skip
            raise ExecutionError("The execution environment did not answer in time.") from exc
        finally:
            if reusable and len(self._idle) < IDLE_CONNECTIONS and not writer.is_closing():
                self._idle.append((reader, writer))
            else:
                writer.close()
        return answer, frames

    async def _simple(self, request: dict[str, Any], data: Iterable[bytes] = ()) -> dict[str, Any]:
        answer, _ = await self.call(request, data)
        if answer.get("ok") is True:
            return answer
        error = answer.get("error")
        if error == protocol.E_CONFLICT:
            current = answer.get("current")
            raise Conflict(current if isinstance(current, dict) else None)
        if error == protocol.E_NO_SPACE:
            raise NoSpace("The execution environment's disk is full.")
        # The agent is not trusted with what reaches logs and users: a short printable code.
        code = error if isinstance(error, str) and _CODE.fullmatch(error) else "unknown"
        message = str(answer.get("message", ""))[:300]
        log.info("agent %s refused %s: %s %r", self.endpoint.address, str(request.get("op")),
                 code, message)  # fmt: skip
        raise ExecutionError(f"A file operation in the execution environment failed ({code}).")

    # -- environment -------------------------------------------------------------------

    async def status(self) -> AgentStatus:
        answer = await self._simple({"op": "status"})
        terminals = answer.get("terminals")
        workspace = answer.get("workspace")
        _check(isinstance(terminals, list) and len(terminals) <= 64 and isinstance(workspace, dict))
        infos = []
        for item in terminals:
            _check(isinstance(item, dict) and isinstance(item.get("name"), str))
            code = item.get("exit_code")
            _check(code is None or isinstance(code, int))
            infos.append(
                TerminalInfo(
                    name=item["name"][:64],
                    viewers=int(_number(item.get("viewers"), 0, 1 << 20)),
                    cols=int(_number(item.get("cols"), 0, 10_000)),
                    rows=int(_number(item.get("rows"), 0, 10_000)),
                    idle_seconds=float(_number(item.get("idle_seconds"), 0)),
                    output_age_seconds=float(_number(item.get("output_age_seconds"), 0)),
                    exit_code=code,
                )
            )
        return AgentStatus(
            uptime_seconds=float(_number(answer.get("uptime_seconds"), 0)),
            materialized=answer.get("materialized") is True,
            terminals=tuple(infos),
            free_bytes=int(_number(workspace.get("free_bytes"), 0)),
            total_bytes=int(_number(workspace.get("total_bytes"), 0)),
        )

    async def shutdown(self, reason: str) -> None:
        await self._simple({"op": "shutdown", "reason": reason})

    async def close_terminal(self, code: int, reason: str, terminal: str = "main") -> int:
        answer = await self._simple(
            {"op": "close_terminal", "terminal": terminal, "code": code, "reason": reason}
        )
        return int(_number(answer.get("viewers", 0), 0, 1 << 20))

    async def resize(self, cols: int, rows: int, terminal: str = "main") -> bool:
        answer = await self._simple({"op": "resize", "terminal": terminal, "cols": cols,
                                     "rows": rows})  # fmt: skip
        return answer.get("attached") is True

    # -- files -------------------------------------------------------------------------

    async def materialize(self, entries: Sequence[WorkspaceEntry]) -> None:
        request = {"op": "materialize", "entries": [[e.path, e.type] for e in entries]}
        data = (e.content or b"" for e in entries if e.type == "file")
        await self._simple(request, data) if entries else None

    async def scan(
        self, ignore: Sequence[str], max_file_bytes: int, max_entries: int, max_skipped: int = 1000
    ) -> ScanResult:
        answer = await self._simple(
            {
                "op": "scan",
                "ignore": list(ignore),
                "max_file_bytes": max_file_bytes,
                "max_entries": max_entries,
                "max_skipped": max_skipped,
            }  # fmt: skip
        )
        raw_entries, raw_skipped = answer.get("entries"), answer.get("skipped")
        _check(isinstance(raw_entries, list) and len(raw_entries) <= max_entries)
        _check(isinstance(raw_skipped, list) and len(raw_skipped) <= max_skipped)
        entries: list[ScannedEntry] = []
        seen: set[str] = set()
        for item in raw_entries:
            _check(isinstance(item, list) and len(item) == 4)
            path, kind, size, digest = item
            _check(isinstance(path, str) and path_problem(path) is None and path not in seen)
            seen.add(path)
            if kind == "file":
                _check(isinstance(digest, str) and _HEX64.fullmatch(digest) is not None)
                entries.append(ScannedEntry(path, "file", int(_number(size, 0, max_file_bytes)),
                                            digest))  # fmt: skip
            else:
                _check(kind == "directory")
                entries.append(ScannedEntry(path, "directory"))
        skipped: list[tuple[str, str]] = []
        for item in raw_skipped:
            _check(isinstance(item, list) and len(item) == 2)
            _check(all(isinstance(part, str) for part in item))
            skipped.append((item[0][:2048], item[1][:64]))
        unlisted = int(_number(answer.get("unlisted", 0), 0))
        if unlisted:
            skipped.append(("...", f"{unlisted} more skipped entries not listed"))
        return ScanResult(entries=tuple(entries), skipped=tuple(skipped))

    async def read_files(
        self,
        paths: Sequence[str],
        max_bytes: int,
        problems: dict[str, str] | None = None,
        budget: int | None = None,
    ) -> dict[str, bytes]:
        """The files that exist and fit ``max_bytes`` (a path over it or gone is left out,
        with its error code in ``problems``); in batches that keep every answer bounded.
        With ``budget``, no batch is asked for once that many bytes were read: the paths
        left are ``over_budget`` in ``problems`` (however sizes were claimed, what is held
        is at most the budget and one batch)."""
        out: dict[str, bytes] = {}
        held = 0
        per_batch = max(1, min(4096, READ_BATCH_BYTES // max(1, max_bytes)))
        for start in range(0, len(paths), per_batch):
            batch = list(paths[start : start + per_batch])
            if budget is not None and held >= budget:
                if problems is not None:
                    problems.update(dict.fromkeys(paths[start:], OVER_BUDGET))
                break

            def frames(answer: dict[str, Any], asked: int = len(batch)) -> int:
                files = answer.get("files")
                _check(answer.get("ok") is True and isinstance(files, list))
                _check(len(files) == asked)
                return sum(
                    1
                    for item in files
                    if isinstance(item, list) and len(item) == 3 and item[1] is not None
                )

            answer, blobs = await self.call(
                {"op": "read", "paths": batch, "max_bytes": max_bytes},
                blobs=frames,  # type: ignore[arg-type]
                max_blob=max_bytes,
            )
            found = iter(blobs)
            for path, item in zip(batch, answer["files"], strict=True):
                _check(isinstance(item, list) and len(item) == 3 and item[0] == path)
                if item[1] is None:
                    if problems is not None:
                        problems[path] = str(item[2])[:32]
                    continue
                data = next(found)
                _check(len(data) == item[1])
                out[path] = data
                held += len(data)
        return out

    async def write_file(self, path: str, content: bytes, expect: dict[str, Any] | None) -> str:
        """Write ``path`` if what is there matches ``expect`` (else ``Conflict``)."""
        answer = await self._simple({"op": "write", "path": path, "expect": expect}, [content])
        digest = hashlib.sha256(content).hexdigest()
        _check(answer.get("sha256") == digest)
        return digest

    async def make_directory(self, path: str) -> None:
        await self._simple({"op": "mkdir", "path": path})

    async def delete_path(self, path: str, expect: dict[str, str] | None) -> list[str]:
        """Remove ``path``; with ``expect`` only what still matches. Returns what was kept."""
        answer = await self._simple({"op": "delete", "path": path, "expect": expect})
        kept = answer.get("kept", [])
        _check(isinstance(kept, list) and len(kept) <= 100_000)
        return [str(item)[:2048] for item in kept]

    # -- terminals ---------------------------------------------------------------------

    async def attach(self, cols: int, rows: int, terminal: str = "main") -> AgentTerminal:
        reader, writer = await connect(
            self.endpoint,
            {"mode": "attach", "terminal": terminal, "cols": cols, "rows": rows},
            self.timeout,
        )
        return AgentTerminal(reader, writer)
