"""A fake Kubernetes API server for tests: real HTTP on 127.0.0.1, so the UNMODIFIED official
client talks to it through a kubeconfig like to any cluster.

Supported: pods create/get/list (labelSelector, fieldSelector)/watch/delete in a namespace,
with resourceVersions and 410 Gone for a watch resumed from before the history kept. Pods
run for real: each gets a network namespace and an IP the test process can connect to, and
its container's command runs in it (``store.py``, ``sandbox.py``, ``network.py``). There is
no ``pods/exec``: the platform never uses it. ``requests`` records every request served.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import tempfile
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from .store import ApiError, PodStore, field_matcher, label_matcher

PODS = "/api/v1/namespaces/{namespace}/pods"


def _status_response(error: ApiError) -> web.Response:
    return web.json_response(error.status(), status=error.code)


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("true", "1")


class FakeApiServer:
    """The aiohttp application; ``requests`` records (method, path, query) of each request."""

    def __init__(self, root: Path, token: str, step_delay: float):
        self.store = PodStore(root, step_delay)
        self.token = token
        self.requests: list[tuple[str, str, dict[str, str]]] = []

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get(PODS, self.list_pods)
        app.router.add_post(PODS, self.create_pod)
        app.router.add_get(PODS + "/{name}", self.get_pod)
        app.router.add_delete(PODS + "/{name}", self.delete_pod)
        return app

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.requests.append((request.method, request.path, dict(request.query)))
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
        options = await request.json() if request.can_read_body else {}
        uid = ((options or {}).get("preconditions") or {}).get("uid")
        return web.json_response(self.store.delete(info["namespace"], info["name"], uid))

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
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        try:
            watcher = self.store.watch(namespace, matches, since)
        except ApiError as error:  # as the real server: 200, then one ERROR event
            await response.prepare(request)
            await response.write(
                json.dumps({"type": "ERROR", "object": error.status()}).encode() + b"\n"
            )
            await response.write_eof()
            return response
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
                if pod is None:
                    break  # expire_watches(): the server ends the stream
                line = json.dumps({"type": kind, "object": pod}) + "\n"
                await response.write(line.encode())
        except ConnectionResetError:
            pass
        finally:
            self.store.watchers.discard(watcher)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response


class FakeKubernetes:
    """Runs ``FakeApiServer`` on a free localhost port in a background thread.

    ``with FakeKubernetes() as fake: config = fake.write_kubeconfig(path)``.
    """

    def __init__(
        self,
        *,
        step_delay: float = 0.05,
        token: str = "fake-token",
        namespace: str = "coding-platform",
    ) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="fake-k8s-")
        self.server = FakeApiServer(Path(self._tmp.name), token, step_delay)
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

    def delete_pod(self, pod_name: str, namespace: str | None = None) -> None:
        """Delete a pod behind the platform's back (as kubectl would)."""

        async def delete() -> None:
            self.server.store.delete(namespace or self.namespace, pod_name)

        self.call(delete())

    def stop_container(self, pod_name: str, namespace: str | None = None) -> None:
        """Kill a pod's process, as a crash or the OOM killer would."""

        async def stop() -> None:
            self.server.store.stop_container(namespace or self.namespace, pod_name)

        self.call(stop())

    def expire_watches(self) -> None:
        """End every watch and forget the event history (clients must list again)."""

        async def expire() -> None:
            self.server.store.expire_watches()

        self.call(expire())

    def container_log(self, pod_name: str, namespace: str | None = None) -> str:
        async def read() -> str:
            sandbox = self.server.store.sandboxes[(namespace or self.namespace, pod_name)]
            return sandbox.log.read_text(errors="replace")

        return self.call(read())  # type: ignore[no-any-return]

    @property
    def requests(self) -> list[tuple[str, str, dict[str, str]]]:
        return list(self.server.requests)
