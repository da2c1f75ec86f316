"""A correct ``Allow`` header on automatic OPTIONS responses.

Litestar 2 answers OPTIONS for a path that has several handlers with the methods of the
first handler only (fixed in Litestar 3). This middleware rewrites the header from the
complete route table of the app, so clients (and schemathesis) see every method a path has.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, Message, Receive, Scope, Send


def allow_headers(app: Litestar) -> dict[str, bytes]:
    """path template -> the Allow header value of that path."""
    table: dict[str, bytes] = {}
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            value = ", ".join(sorted(route.methods)).encode()
            table[route.path] = value
            table[route.path_format] = value
    return table


def allow_middleware(table: dict[str, bytes]) -> Any:
    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or scope["method"] != "OPTIONS":
                await app(scope, receive, send)
                return
            allow = table.get(scope.get("path_template", ""))

            async def send_with_allow(message: Message) -> None:
                if allow and message["type"] == "http.response.start":
                    headers = [
                        (k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"
                    ]
                    message = {**message, "headers": [*headers, (b"allow", allow)]}
                await send(message)

            await app(scope, receive, send_with_allow)

        return middleware

    return factory
