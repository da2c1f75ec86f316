"""The environment agent: one per execution environment, serving the platform over a socket.

Started with the sandbox (locally by the platform, detached so it outlives any server
process) or as an execution pod's main process (Kubernetes). It owns the environment's
shells and does its file work; the platform connects, proves it knows the environment's
secret, and either makes requests (``rpc``) or attaches to a terminal (``attach``).

    python3 -m agent --listen-fd 3 --secret-fd 4        # locally: sockets handed over
    python3 -m agent --listen 0.0.0.0:7681 --secret-env CEP_AGENT_SECRET   # in a pod

Every request is bounded (frame sizes, path rules, limits the platform passes, a cap on
connections and on the time to authenticate), and nothing a connection sends can crash it:
a malformed request gets an error answer or the connection is closed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from . import protocol
from .files import FileError, Workspace, sha256_hex
from .protocol import DATA, ProtocolError, encode_data, encode_json
from .terminals import TerminalManager
from .viewers import Viewer

AUTH_TIMEOUT = 10.0
MAX_CONNECTIONS = 256
MAX_TERMINALS = 8
MAX_FILES_PER_READ = 4096
MAX_READ_TOTAL = 64 * 1024 * 1024  # paths x max_bytes of one read request
T = TypeVar("T")
DEFAULT_SHELL = ["/bin/bash", "-i"]
# What an interactive bash (and its readline) reads at start from HOME (/workspace).
SHELL_STARTUP_FILES = {".bashrc", ".inputrc", ".bash_profile", ".bash_login", ".profile"}
MIN_SIZE, MAX_SIZE = 2, 1000


def _size(value: Any, default: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return max(MIN_SIZE, min(MAX_SIZE, number))


def _int(value: Any, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise FileError("invalid", f"expected an integer in [{low}, {high}]")
    return value


def _str_list(value: Any, limit: int) -> list[str]:
    if not isinstance(value, list) or len(value) > limit:
        raise FileError("invalid", "expected a list of paths")
    if not all(isinstance(item, str) for item in value):
        raise FileError("invalid", "expected a list of paths")
    return value


def _expect(value: Any) -> dict[str, Any] | None:
    if value is None or (isinstance(value, dict) and isinstance(value.get("type"), str)):
        return value
    raise FileError("invalid", "expect must be null or an object with a type")


class Agent:
    def __init__(self, secret: bytes, workspace: str, grace: float, slow: float) -> None:
        self.secret = secret
        self.started = time.monotonic()
        self.workspace = Workspace(workspace)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CEP_AGENT")}
        env.pop("PYTHONPATH", None)  # the agent's own, not the user's
        self.terminals = TerminalManager(workspace, DEFAULT_SHELL, env, grace, slow)
        self.connections = 0
        self.materialized = False  # set once the platform has put the workspace's files here
        self._files_lock = threading.Lock()
        self.stopping = asyncio.Event()

    # -- connections ---------------------------------------------------------------------

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.connections >= MAX_CONNECTIONS:
            writer.close()
            return
        self.connections += 1
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            hello = await self._authenticate(reader, writer)
            if hello is None:
                return
            if hello.get("mode") == "attach":
                await self._attach(hello, reader, writer)
            else:
                await self._rpc(reader, writer)
        except (TimeoutError, EOFError, ProtocolError, ConnectionError, OSError):
            pass
        finally:
            self.connections -= 1
            if not writer.is_closing():
                writer.close()

    async def _authenticate(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> dict[str, Any] | None:
        nonce = secrets.token_hex(16)
        writer.write(encode_json({"hello": protocol.HELLO, "version": protocol.VERSION,
                                  "nonce": nonce}))  # fmt: skip
        message = await asyncio.wait_for(protocol.read_json(reader, max_json=4096), AUTH_TIMEOUT)
        if not protocol.mac_matches(self.secret, nonce, message.get("auth")):
            return None
        writer.write(encode_json({"ok": True}))
        return message

    async def _attach(
        self, hello: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        name = hello.get("terminal", "main")
        if not isinstance(name, str) or not 0 < len(name) <= 64:
            return
        if name not in self.terminals.terminals and len(self.terminals.terminals) >= MAX_TERMINALS:
            writer.write(encode_json({"event": "close", "code": 4429, "reason": "too many"}))
            return
        viewer = Viewer(writer, _size(hello.get("cols"), 80), _size(hello.get("rows"), 24))
        terminal = self.terminals.attach(name, viewer)
        try:
            while not terminal.ended and not viewer.closed:
                kind, payload = await protocol.read_frame(reader, max_data=1 << 20)
                if kind == DATA:
                    await terminal.write(payload)
                elif payload.get("op") == "resize":
                    viewer.cols = _size(payload.get("cols"), viewer.cols)
                    viewer.rows = _size(payload.get("rows"), viewer.rows)
                    terminal.apply_size()
                elif payload.get("op") in ("pause", "resume"):
                    terminal.flow(viewer, payload["op"] == "pause")
        finally:
            terminal.detach(viewer, 1000, "detached")

    async def _rpc(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request = await protocol.read_json(reader)
            op = request.get("op")
            try:
                reply, blobs = await self._dispatch(op, request, reader)
            except FileError as exc:
                reply, blobs = {"ok": False, "error": exc.code, "message": exc.message,
                                **exc.details}, []  # fmt: skip
            writer.write(encode_json(reply))
            for blob in blobs:
                writer.write(encode_data(blob))
            await writer.drain()
            if op == "shutdown":
                self.stopping.set()
                return

    async def _dispatch(
        self, op: Any, request: dict[str, Any], reader: asyncio.StreamReader
    ) -> tuple[dict[str, Any], list[bytes]]:
        ws = self.workspace
        if op == "status":
            return self.status(), []
        if op == "scan":
            ignore = _str_list(request.get("ignore", []), 256)
            result = ws.scan(
                ignore,
                _int(request.get("max_file_bytes"), 0, protocol.MAX_DATA),
                _int(request.get("max_entries"), 0, 1_000_000),
                _int(request.get("max_skipped", 1000), 0, 100_000),
            )
            return {"ok": True, **result}, []
        if op == "read":
            paths = _str_list(request.get("paths"), MAX_FILES_PER_READ)
            limit = _int(request.get("max_bytes"), 0, protocol.MAX_DATA)
            if len(paths) * limit > MAX_READ_TOTAL:
                raise FileError("invalid", "ask for fewer or smaller files at once")
            files, blobs = await self._in_thread(self._read_many, paths, limit)
            return {"ok": True, "files": files}, blobs
        if op == "write":
            content = await protocol.read_data(reader)  # always consumed: the stream stays aligned
            expect = _expect(request.get("expect"))
            sha = await self._in_thread(ws.write, str(request.get("path")), content, expect)
            return {"ok": True, "sha256": sha}, []
        if op == "mkdir":
            await self._in_thread(ws.make_directory, str(request.get("path")))
            return {"ok": True}, []
        if op == "delete":
            expect = request.get("expect")
            if expect is not None and not isinstance(expect, dict):
                raise FileError("invalid", "expect must be null or an object")
            kept = await self._in_thread(ws.delete, str(request.get("path")), expect)
            return {"ok": True, "kept": kept}, []
        if op == "materialize":
            entries = request.get("entries")
            if not isinstance(entries, list) or len(entries) > 100_000:
                raise ProtocolError("entries must be a list")  # the DATA frames cannot be told
            items: list[tuple[str, str, bytes | None]] = []
            for entry in entries:
                if not (isinstance(entry, list) and len(entry) == 2):
                    raise ProtocolError("each entry is [path, type]")
                path, kind = str(entry[0]), entry[1]
                content = await protocol.read_data(reader) if kind == "file" else None
                items.append((path, "file" if kind == "file" else "directory", content))
            await self._in_thread(ws.materialize, items)
            self.materialized = True
            if any(path in SHELL_STARTUP_FILES for path, _, _ in items):
                self.terminals.restart_idle("main")  # it started before the user's dotfiles
            return {"ok": True}, []
        if op == "resize":
            terminal = self.terminals.terminals.get(str(request.get("terminal", "main")))
            if terminal is not None:
                terminal.resize_all(_size(request.get("cols"), 80), _size(request.get("rows"), 24))
            return {"ok": True, "attached": terminal is not None}, []
        if op == "close_terminal":
            name = str(request.get("terminal", "main"))
            terminal = self.terminals.terminals.get(name)
            code = _int(request.get("code", 1001), 1000, 4999)
            reason = str(request.get("reason", ""))[:120]
            viewers = len(terminal.viewers) if terminal else 0
            if terminal is not None:
                terminal.close(code, reason)
            return {"ok": True, "viewers": viewers}, []
        if op == "shutdown":
            self.terminals.close_all(1001, str(request.get("reason", "stopped"))[:120])
            return {"ok": True}, []
        raise FileError("invalid", f"unknown operation {str(op)[:40]!r}")

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """File work runs in a thread, one operation at a time, so the terminals' event loop
        never waits on the disk and the scan cache never sees two writers."""

        def locked() -> T:
            with self._files_lock:
                return fn(*args)

        return await asyncio.to_thread(locked)

    def _read_many(self, paths: list[str], limit: int) -> tuple[list[list[Any]], list[bytes]]:
        files: list[list[Any]] = []
        blobs: list[bytes] = []
        for path in paths:
            try:
                data = self.workspace.read(path, limit)
            except FileError as exc:
                files.append([path, None, exc.code])
                continue
            files.append([path, len(data), sha256_hex(data)])
            blobs.append(data)
        return files, blobs

    def status(self) -> dict[str, Any]:
        return {
            "ok": True,
            "agent": protocol.HELLO,
            "version": protocol.VERSION,
            "pid": os.getpid(),
            "uptime_seconds": round(time.monotonic() - self.started, 3),
            "materialized": self.materialized,
            "terminals": [t.describe() for t in self.terminals.terminals.values()],
            "workspace": self.workspace.usage(),
        }


def _listening_socket(args: argparse.Namespace) -> socket.socket:
    if args.listen_fd is not None:
        # Handed over inheritable: the shells must not get it (one could accept() on it
        # and stand in for this agent).
        os.set_inheritable(args.listen_fd, False)
        return socket.socket(fileno=args.listen_fd)
    host, _, port = args.listen.rpartition(":")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]") or "0.0.0.0", int(port)))
    sock.listen(128)
    return sock


def _secret(args: argparse.Namespace) -> bytes:
    if args.secret_fd is not None:
        with os.fdopen(args.secret_fd, "rb") as source:
            secret = source.read(4096).strip()
    else:
        secret = os.environ.pop(args.secret_env, "").encode()
    if len(secret) < 16:
        raise SystemExit("cep-agent: no secret (at least 16 bytes) was given")
    return secret


def _not_dumpable() -> None:
    """The user's own programs run as the same uid: without this they could read the agent's
    memory and environment (its secret) through /proc, or ptrace it. Shells it starts are
    dumpable again after their exec."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except (OSError, AttributeError):
        pass


async def _main(args: argparse.Namespace) -> None:
    _not_dumpable()
    agent = Agent(_secret(args), args.workspace, args.grace, args.slow)
    agent.materialized = args.materialized
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGCHLD, agent.terminals.reap)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.stopping.set)
    server = await asyncio.start_server(agent.serve, sock=_listening_socket(args))
    await asyncio.to_thread(int)  # start the file-work thread now, not on the first request
    if args.prespawn:
        agent.terminals.prespawn("main", 80, 24)  # the first terminal finds a prompt waiting
    async with server:
        await agent.stopping.wait()
    agent.terminals.close_all(1001, "environment stopped")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cep-agent", description=__doc__)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--listen-fd", type=int, help="an inherited listening socket")
    where.add_argument("--listen", help="host:port to listen on")
    parser.add_argument("--secret-fd", type=int, help="read the secret from this fd")
    parser.add_argument("--secret-env", default="CEP_AGENT_SECRET")
    parser.add_argument("--workspace", default="/workspace")
    parser.add_argument("--grace", type=float, default=300.0, help="orphaned shell lifetime")
    parser.add_argument("--slow", type=float, default=5.0, help="slow viewer detach after")
    parser.add_argument("--prespawn", action="store_true", help="start the main shell now")
    parser.add_argument(
        "--materialized", action="store_true", help="the workspace holds its files already"
    )
    return parser.parse_args(argv)


def run(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    asyncio.run(_main(args))
