"""Serving files: content types, caching headers, ETags and gzip.

Standard library only, so the web IDE's image (ingress/ide.py) needs nothing but uvicorn; the
front door uses the same code for the docs' assets. Files are read off the event loop and kept
in memory (with their gzip form) under a byte budget, keyed by size and modification time, so a
rebuilt file is picked up at once.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import mimetypes
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Explicit, because the system's mime.types differs between machines (and is absent in slim images).
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".ico": "image/x-icon",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".txt": "text/plain; charset=utf-8",
    ".wasm": "application/wasm",
}
_COMPRESSIBLE = ("text/", "application/json", "application/manifest+json", "image/svg+xml")
CACHE_BUDGET_BYTES = 64 * 1024 * 1024

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

Headers = list[tuple[str, str]]


def content_type(path: Path) -> str:
    known = CONTENT_TYPES.get(path.suffix.lower())
    if known:
        return known
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"


class _Loaded:
    __slots__ = ("body", "gzipped", "etag", "ctype")

    def __init__(self, body: bytes, ctype: str) -> None:
        self.body = body
        self.ctype = ctype
        self.etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        compress = ctype.startswith(_COMPRESSIBLE) and len(body) > 1024
        self.gzipped = gzip.compress(body, 6, mtime=0) if compress else None

    @property
    def size(self) -> int:
        return len(self.body) + len(self.gzipped or b"")


class FileCache:
    """Whole files in memory within a byte budget, least recently used dropped first."""

    def __init__(self, budget: int = CACHE_BUDGET_BYTES) -> None:
        self._files: OrderedDict[tuple[str, int, int], _Loaded] = OrderedDict()
        self._budget = budget
        self._used = 0

    async def load(self, path: Path) -> _Loaded:
        stat = await asyncio.to_thread(path.stat)
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        loaded = self._files.get(key)
        if loaded is not None:
            self._files.move_to_end(key)
            return loaded
        loaded = await asyncio.to_thread(lambda: _Loaded(path.read_bytes(), content_type(path)))
        if loaded.size <= self._budget // 4:
            self._files[key] = loaded
            self._used += loaded.size
            while self._used > self._budget:
                _, dropped = self._files.popitem(last=False)
                self._used -= dropped.size
        return loaded


def accepts_gzip(accept_encoding: str) -> bool:
    for part in accept_encoding.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() == "gzip":
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


async def file_response(
    path: Path,
    cache: FileCache,
    cache_control: str,
    *,
    if_none_match: str = "",
    accept_encoding: str = "",
    status: int = 200,
) -> tuple[int, Headers, bytes]:
    """Status, headers and body for ``path`` (a regular file the caller has vetted)."""
    loaded = await cache.load(path)
    headers: Headers = [
        ("content-type", loaded.ctype),
        ("cache-control", cache_control),
        ("etag", loaded.etag),
        ("vary", "accept-encoding"),
        ("x-content-type-options", "nosniff"),
    ]
    if status == 200 and if_none_match == loaded.etag:
        return 304, headers, b""
    body = loaded.body
    if loaded.gzipped is not None and accepts_gzip(accept_encoding):
        body = loaded.gzipped
        headers.append(("content-encoding", "gzip"))
    return status, headers, body


# ---- raw ASGI (the IDE app) --------------------------------------------------------------


def header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return ""


async def send_response(
    send: Any, status: int, headers: Headers, body: bytes, head: bool = False
) -> None:
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def send_error(send: Any, status: int, message: str, error: str, head: bool = False) -> None:
    """The platform's error envelope, without importing the platform (this runs alone too)."""
    stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    body = json.dumps({"success": False, "message": message, "error": error, "timestamp": stamp})
    headers = [("content-type", "application/json"), ("x-content-type-options", "nosniff")]
    if status == 405:
        headers.append(("allow", "GET, HEAD"))
    await send_response(send, status, headers, body.encode(), head)
