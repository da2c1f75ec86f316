"""A fake Kubernetes API server for tests: real HTTP and WebSocket on 127.0.0.1, so the
UNMODIFIED official client talks to it through a kubeconfig like to any cluster.

Supported: pods create/get/list (labelSelector, fieldSelector)/watch/delete in a namespace,
and exec over the ``v5.channel.k8s.io`` / ``v4.channel.k8s.io`` WebSocket subprotocols
(channel 0 stdin, 1 stdout, 2 stderr, 3 status, 4 resize, v5's 255 close). Pods are backed
by local processes (see ``sandbox.py``); lifecycle and failure injection are in ``store.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import tempfile
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from .sandbox import Process, set_window_size
from .store import ApiError, PodStore, field_matcher, label_matcher

V4, V5 = "v4.channel.k8s.io", "v5.channel.k8s.io"
ALL_PROTOCOLS = (V5, V4)
STDIN, STDOUT, STDERR, STATUS, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
PODS = "/api/v1/namespaces/{namespace}/pods"


def _status_response(error: ApiError) -> web.Response:
    return web.json_response(error.status(), status=error.code)


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("true", "1")


def _exit_status(returncode: int, command: list[str]) -> dict[str, Any]:
    """The channel 3 message the kubelet sends when an exec's process ends."""
    if returncode == 0:
        return {"metadata": {}, "status": "Success"}
    code = 128 - returncode if returncode < 0 else returncode  # killed by a signal
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command "
        f"{command}, exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


class FakeApiServer:
    """The aiohttp application; ``exec_log`` records (pod, command, tty, subprotocol)."""

    def __init__(self, root: Path, token: str, step_delay: float, protocols: tuple[str, ...]):
        self.store = PodStore(root, step_delay)
        self.token = token
        self.protocols = protocols
        self.exec_log: list[tuple[str, list[str], bool, str | None]] = []

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get(PODS, self.list_pods)
        app.router.add_post(PODS, self.create_pod)
        app.router.add_get(PODS + "/{name}", self.get_pod)
        app.router.add_delete(PODS + "/{name}", self.delete_pod)
        app.router.add_route("GET", PODS + "/{name}/exec", self.exec_pod)
        app.router.add_route("POST", PODS + "/{name}/exec", self.exec_pod)
        return app

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _status_response(ApiError(401, "Unauthorized", "Unauthorized"))
        try:
            return await handler(request)
        except ApiError as error:
            return _status_response(error)

    # --- REST --------------------------------------------------------------------------

    async def create_pod(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, "BadRequest", "the body is not JSON") from None
        pod = self.store.create(request.match_info["namespace"], body)
        return web.json_response(pod, status=201)

    async def get_pod(self, request: web.Request) -> web.Response:
        info = request.match_info
        return web.json_response(self.store.get(info["namespace"], info["name"]))

    async def delete_pod(self, request: web.Request) -> web.Response:
        info = request.match_info
        return web.json_response(self.store.delete(info["namespace"], info["name"]))

    async def list_pods(self, request: web.Request) -> web.StreamResponse:
        namespace = request.match_info["namespace"]
        labels = label_matcher(request.query.get("labelSelector", ""))
        fields = field_matcher(request.query.get("fieldSelector", ""))

        def matches(pod: dict[str, Any]) -> bool:
            return labels(pod) and fields(pod)

        if _flag(request, "watch"):
            return await self._watch(request, namespace, matches)
        return web.json_response(
            {
                "kind": "PodList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self.store.resource_version)},
                "items": self.store.list(namespace, matches),
            }
        )

    async def _watch(
        self, request: web.Request, namespace: str, matches: Callable[[dict[str, Any]], bool]
    ) -> web.StreamResponse:
        version = request.query.get("resourceVersion", "")
        since = int(version) if version not in ("", "0") else None
        timeout = float(request.query.get("timeoutSeconds", "1800"))
        watcher = self.store.watch(namespace, matches, since)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while (remaining := deadline - loop.time()) > 0:
                if request.transport is None or request.transport.is_closing():
                    break  # the client stopped watching
                try:
                    kind, pod = await asyncio.wait_for(watcher.queue.get(), min(remaining, 0.2))
                except TimeoutError:
                    continue
                line = json.dumps({"type": kind, "object": pod}) + "\n"
                await response.write(line.encode())
        except ConnectionResetError:
            pass
        finally:
            self.store.watchers.discard(watcher)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    # --- exec --------------------------------------------------------------------------

    async def exec_pod(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        key = (info["namespace"], info["name"])
        pod = self.store.get(*key)
        sandbox = self.store.sandboxes.get(key)
        if sandbox is None or pod["status"].get("phase") != "Running":
            raise ApiError(400, "BadRequest", f"pod {info['name']} is not running")
        command = request.query.getall("command", [])
        if not command:
            raise ApiError(400, "BadRequest", "you must specify at least 1 command")
        tty = _flag(request, "tty")
        ws = web.WebSocketResponse(protocols=self.protocols, max_msg_size=0, autoping=True)
        await ws.prepare(request)
        self.exec_log.append((info["name"], command, tty, ws.ws_protocol))
        try:
            process = sandbox.spawn(
                command, stdin=_flag(request, "stdin"), stdout=_flag(request, "stdout"),
                stderr=_flag(request, "stderr") and not tty, tty=tty,
            )  # fmt: skip
        except OSError as exc:
            await ws.send_bytes(bytes([STATUS]) + json.dumps(
                {"metadata": {}, "status": "Failure", "message": str(exc),
                 "reason": "InternalError"}).encode())  # fmt: skip
            await ws.close()
            return ws
        try:
            await self._run_exec(ws, process, command)
        finally:
            process.kill()
            process.close_all()
            sandbox.processes.discard(process)
        return ws

    async def _run_exec(self, ws: web.WebSocketResponse, process: Process, cmd: list[str]) -> None:
        loop = asyncio.get_running_loop()
        pumps = [asyncio.create_task(self._pump(ws, fd, ch)) for ch, fd in process.outputs]
        receiver = asyncio.create_task(self._receive(ws, process))
        exited = loop.run_in_executor(None, process.popen.wait)
        done, _ = await asyncio.wait({exited, receiver}, return_when=asyncio.FIRST_COMPLETED)
        if exited not in done:  # the client went away: the kubelet ends the stream's process
            process.kill()
            await exited
            receiver.cancel()
            for pump in pumps:
                pump.cancel()
            return
        # Output written just before exit is still in the pipe or PTY: drain it first.
        await asyncio.wait(pumps, timeout=2)
        for pump in pumps:
            pump.cancel()
        if not ws.closed:
            with contextlib.suppress(ConnectionResetError):
                status = _exit_status(process.popen.returncode, cmd)
                await ws.send_bytes(bytes([STATUS]) + json.dumps(status).encode())
                await ws.close()
        receiver.cancel()

    @staticmethod
    async def _pump(ws: web.WebSocketResponse, fd: int, channel: int) -> None:
        """Copy one output fd to its channel; ``send_bytes`` waits for the socket to drain,
        so a client that reads slowly slows the process down (real backpressure)."""
        loop = asyncio.get_running_loop()
        while True:
            readable = loop.create_future()
            loop.add_reader(fd, readable.set_result, None)
            try:
                await readable
            finally:
                loop.remove_reader(fd)
            try:
                data = os.read(fd, 32768)
            except BlockingIOError:
                continue
            except OSError:  # EIO: the PTY's other side is closed
                return
            if not data or ws.closed:
                return
            await ws.send_bytes(bytes([channel]) + data)

    async def _receive(self, ws: web.WebSocketResponse, process: Process) -> None:
        loop = asyncio.get_running_loop()
        async for message in ws:
            if message.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                continue
            data = message.data if isinstance(message.data, bytes) else message.data.encode()
            if not data:
                continue
            channel, payload = data[0], data[1:]
            if channel == STDIN and payload and process.stdin_fd is not None:
                fd = process.stdin_fd
                with contextlib.suppress(OSError):  # the process stopped reading
                    await loop.run_in_executor(None, _write_all, fd, payload)
            elif channel == RESIZE and process.tty_fd is not None:
                size = json.loads(payload)
                set_window_size(process.tty_fd, int(size["Width"]), int(size["Height"]))
            elif channel == CLOSE and ws.ws_protocol == V5 and payload[:1] == bytes([STDIN]):
                if process.tty_fd is None:
                    process.close_fd(process.stdin_fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class FakeKubernetes:
    """Runs ``FakeApiServer`` on a free localhost port in a background thread.

    ``with FakeKubernetes() as fake: config = fake.write_kubeconfig(path)``.
    """

    def __init__(
        self,
        *,
        step_delay: float = 0.05,
        token: str = "fake-token",
        protocols: tuple[str, ...] = ALL_PROTOCOLS,
        namespace: str = "coding-platform",
    ) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="fake-k8s-")
        self.server = FakeApiServer(Path(self._tmp.name), token, step_delay, protocols)
        self.token = token
        self.namespace = namespace
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeKubernetes:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._thread.start()

        async def serve() -> None:
            self._runner = web.AppRunner(self.server.app(), access_log=None, shutdown_timeout=2)
            await self._runner.setup()
            await web.SockSite(self._runner, sock).start()

        self.call(serve())
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            self.server.store.shutdown()
            if self._runner is not None:
                await self._runner.cleanup()

        if self._thread.is_alive():
            self.call(shutdown())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._tmp.cleanup()

    def __enter__(self) -> FakeKubernetes:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, coro: Awaitable[Any]) -> Any:
        """Run a coroutine on the server's loop (for test inspection) and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)  # type: ignore[arg-type]

    def write_kubeconfig(self, path: Path, *, token: str | None = None) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": token or self.token}}],
            "contexts": [
                {"name": "fake", "context": {"cluster": "fake", "user": "fake",
                                             "namespace": self.namespace}}
            ],
            "current-context": "fake",
        }  # fmt: skip
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        return path

    # --- inspection helpers for tests (thread-safe: they run on the server loop) -------

    def pods(self, namespace: str | None = None) -> list[dict[str, Any]]:
        async def snapshot() -> list[dict[str, Any]]:
            return self.server.store.list(namespace or self.namespace, lambda _: True)

        return self.call(snapshot())  # type: ignore[no-any-return]

    def workspace_dir(self, pod_name: str, namespace: str | None = None) -> Path:
        async def find() -> Path:
            return self.server.store.sandboxes[(namespace or self.namespace, pod_name)].workspace

        return self.call(find())  # type: ignore[no-any-return]

    @property
    def exec_log(self) -> list[tuple[str, list[str], bool, str | None]]:
        return list(self.server.exec_log)
