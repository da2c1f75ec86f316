"""The web IDE's static files under ``/ide``: an ASGI app over ``web/dist``.

The local gateway mounts it at the route table's ``/ide`` prefix, and the web image on
Kubernetes runs it alone (``uvicorn ingress.ide:app``), so both serve the IDE the same way:
- a file of the build with its content type; files under ``assets/`` (Vite names them by
  their content hash) are cached for a year as immutable, everything else is revalidated;
- any other path without a file extension is a client-side route and gets ``index.html``;
- a missing file with an extension is a 404 (never HTML where a script was expected);
- without a build, a page that says how to make one.

``IDE_DIST_DIR`` points at the build (default: ``web/dist`` of this checkout). Standard
library only: the web image carries this package, uvicorn and the build, nothing else.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path, PurePosixPath
from typing import Any

from ingress.static import (
    IMMUTABLE,
    REVALIDATE,
    FileCache,
    file_response,
    header,
    send_error,
    send_response,
)

PREFIX = "/ide"
DEFAULT_DIST = Path(__file__).resolve().parent.parent / "web" / "dist"
BUILD_COMMAND = "cd web && npm ci && npm run build"
_ALIVE = b'{"status":"alive"}'

_NOT_BUILT = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>The IDE is not built</title>
<link rel="icon" href="/favicon.ico">
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem}}
code,pre{{background:#f3f3f3;padding:.1rem .3rem;border-radius:3px}}pre{{padding:.6rem}}</style>
</head><body>
<h1>The web IDE is not built yet</h1>
<p>This server serves the IDE from <code>{{dist}}</code>, which holds no
<code>index.html</code>. Build it from the repository root (Node.js 18 or newer):</p>
<pre>{BUILD_COMMAND}</pre>
<p>then reload this page. The API works without it: its documentation is at
<a href="/docs">/docs</a>.</p>
</body></html>"""


def dist_dir() -> Path:
    configured = os.environ.get("IDE_DIST_DIR")
    return Path(configured).resolve() if configured else DEFAULT_DIST


class IdeApp:
    def __init__(self, dist: Path | None = None) -> None:
        self.dist = dist or dist_dir()
        self.cache = FileCache()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        head = scope["method"] == "HEAD"
        path = scope["path"]
        if path == "/livez":  # probes of the web image, which serves nothing else
            await send_response(send, 200, [("content-type", "application/json")], _ALIVE, head)
            return
        if scope["method"] not in ("GET", "HEAD"):
            await send_error(send, 405, "Method not allowed", "the IDE is read-only", head)
            return
        if path == PREFIX:
            await _redirect(send, PREFIX + "/", scope)
            return
        if not path.startswith(PREFIX + "/"):
            await send_error(send, 404, "Not found", f"nothing at {path}", head)
            return
        await self._serve(scope, send, path[len(PREFIX) + 1 :], head)

    async def _serve(self, scope: dict[str, Any], send: Any, relative: str, head: bool) -> None:
        index = self.dist / "index.html"
        if not await asyncio.to_thread(index.is_file):
            page = _NOT_BUILT.replace("{dist}", str(self.dist)).encode()
            headers = [
                ("content-type", "text/html; charset=utf-8"),
                ("cache-control", REVALIDATE),
                ("retry-after", "60"),
            ]
            await send_response(send, 503, headers, page, head)
            return
        target = await asyncio.to_thread(self._file_for, relative)
        if target is None and "." in PurePosixPath(relative).name:
            await send_error(send, 404, "Not found", f"no file {relative} in the IDE build", head)
            return
        # Vite names what it puts under assets/ by content hash: those never change.
        immutable = target is not None and relative.startswith("assets/")
        status, headers, body = await file_response(
            target or index,  # no such file and no extension: a client-side route
            self.cache,
            IMMUTABLE if immutable else REVALIDATE,
            if_none_match=header(scope, b"if-none-match"),
            accept_encoding=header(scope, b"accept-encoding"),
        )
        await send_response(send, status, headers, body, head)

    def _file_for(self, relative: str) -> Path | None:
        """The regular file ``relative`` names inside the build, or None (never outside it)."""
        if relative in ("", "index.html"):
            return self.dist / "index.html"
        parts = PurePosixPath(relative).parts
        if any(part in ("..", ".") or part.startswith(".") or "\\" in part for part in parts):
            return None
        candidate = (self.dist / relative).resolve()
        if not candidate.is_relative_to(self.dist.resolve()) or not candidate.is_file():
            return None
        return candidate


async def _redirect(send: Any, location: str, scope: dict[str, Any]) -> None:
    query = scope.get("query_string", b"")
    target = location.encode() + (b"?" + query if query else b"")
    headers = [(b"location", target), (b"content-length", b"0")]
    await send({"type": "http.response.start", "status": 308, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


app = IdeApp()
