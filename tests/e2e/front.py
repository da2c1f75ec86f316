"""A same-origin front door for the browser tests: static pages next to the real platform.

It serves ``/e2e/`` (test pages, ``web/dist-e2e``) and ``/ide/`` (``web/dist``); every other
request, HTTP or WebSocket, is forwarded to the platform unchanged: method, body, cookies,
``Host``, ``Origin`` and the WebSocket subprotocol the browser asked for, and back the status,
headers (every ``Set-Cookie``), the subprotocol the platform chose, frames of the same type,
and the close code and reason. So a page served here is same-origin with the API exactly as it
is behind the ingress; and a test can cut its WebSockets as a restarting server would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from pathlib import Path

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

# Headers that belong to one hop, never forwarded (RFC 9110 section 7.6.1), plus the framing
# aiohttp recomputes.
_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
}
# A subprotocol the platform did not choose is refused by the browser itself; no warning here.
logging.getLogger("aiohttp.websocket").setLevel(logging.ERROR)

_WS_HANDSHAKE = {
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
}


class Front:
    """Runs on its own thread and event loop, so synchronous Playwright tests can use it."""

    def __init__(self, upstream: str, static: dict[str, Path]) -> None:
        self.upstream = upstream.rstrip("/")
        self.static = static  # URL prefix ("/e2e/") -> directory
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._sockets: set[web.WebSocketResponse] = set()

    def start(self) -> str:
        self.thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        return self.url

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def drop_websockets(self, code: int = 1012) -> int:
        """Close every browser WebSocket as a restarting server would; returns how many."""

        async def drop() -> int:
            sockets = list(self._sockets)
            for socket in sockets:
                await socket.close(code=code, message=b"front restarting")
            return len(sockets)

        return asyncio.run_coroutine_threadsafe(drop(), self.loop).result(30)

    async def _start(self) -> str:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        for prefix, root in self.static.items():
            if request.path == prefix.rstrip("/"):
                raise web.HTTPFound(prefix)
            if request.path.startswith(prefix):
                return self._file(root, request.path[len(prefix) :])
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request)
        return await self._http(request)

    @staticmethod
    def _file(root: Path, relative: str) -> web.StreamResponse:
        target = (root / (relative or "index.html")).resolve()
        if not target.is_relative_to(root.resolve()) or not target.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(target)

    def _forward_headers(self, request: web.Request, drop: set[str] = frozenset()) -> CIMultiDict:
        headers = CIMultiDict()
        for name, value in request.headers.items():
            if name.lower() not in _HOP and name.lower() not in drop:
                headers.add(name, value)
        return headers  # Host included: the platform sees the origin the browser used

    async def _http(self, request: web.Request) -> web.Response:
        assert self._session is not None
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=self._forward_headers(request),
            data=await request.read(),
            allow_redirects=False,
        ) as upstream:
            body = await upstream.read()
            headers = CIMultiDict(
                (k, v) for k, v in upstream.headers.items() if k.lower() not in _HOP
            )
            return web.Response(status=upstream.status, body=body, headers=headers)

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        asked = request.headers.get("Sec-WebSocket-Protocol", "")
        protocols = [p.strip() for p in asked.split(",") if p.strip()]
        headers = self._forward_headers(request, _WS_HANDSHAKE)
        origin = headers.popall("Origin", [None])[0]
        try:
            upstream = await self._session.ws_connect(
                self.upstream.replace("http", "ws", 1) + request.path_qs,
                protocols=protocols,
                headers=headers,
                origin=origin,
                autoping=True,
                max_msg_size=0,
                compress=0,
            )
        except aiohttp.WSServerHandshakeError as exc:
            return web.Response(status=exc.status or 502, text=exc.message)
        chosen = (upstream.protocol,) if upstream.protocol else ()
        browser = web.WebSocketResponse(protocols=chosen, max_msg_size=0, compress=False)
        await browser.prepare(request)
        self._sockets.add(browser)
        tasks = [
            asyncio.create_task(self._pump_up(browser, upstream)),
            asyncio.create_task(self._pump_down(upstream, browser)),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._sockets.discard(browser)
        await upstream.close()
        await browser.close()
        return browser

    @staticmethod
    async def _pump_up(browser: web.WebSocketResponse, upstream) -> None:  # noqa: ANN001
        while True:
            message = await browser.receive()
            if message.type == aiohttp.WSMsgType.TEXT:
                await upstream.send_str(message.data)
            elif message.type == aiohttp.WSMsgType.BINARY:
                await upstream.send_bytes(message.data)
            else:  # close, closing, error: the browser went away
                await upstream.close(code=browser.close_code or 1000)
                return

    @staticmethod
    async def _pump_down(upstream, browser: web.WebSocketResponse) -> None:  # noqa: ANN001
        while True:
            message = await upstream.receive()
            if message.type == aiohttp.WSMsgType.TEXT:
                await browser.send_str(message.data)
            elif message.type == aiohttp.WSMsgType.BINARY:
                await browser.send_bytes(message.data)
            else:  # the platform closed: pass its code and reason on
                code = message.data if message.type == aiohttp.WSMsgType.CLOSE else 1011
                reason = (message.extra or "") if message.type == aiohttp.WSMsgType.CLOSE else ""
                await browser.close(code=code, message=str(reason).encode())
                return
