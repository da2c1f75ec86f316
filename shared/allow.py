"""A correct ``Allow`` header on automatic OPTIONS responses.

Litestar 2 answers OPTIONS for a path that has several handlers with the methods of the
first handler only (fixed in Litestar 3). This rewrites the header from the
complete route table of the app, so clients (and schemathesis) see every method a path has.
``shared.web_security.guard`` applies it to every OPTIONS response.
"""

from __future__ import annotations

from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.types import Message, Scope, Send


def allow_headers(app: Litestar) -> dict[str, bytes]:
    """path template -> the Allow header value of that path."""
    table: dict[str, bytes] = {}
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            value = ", ".join(sorted(route.methods)).encode()
            table[route.path] = value
            table[route.path_format] = value
    return table


def send_with_allow(send: Send, scope: Scope, table: dict[str, bytes]) -> Send:
    """``send`` with the response's ``Allow`` header taken from ``table`` by the path template
    the router matched (read when the response starts, after routing)."""

    async def wrapped(message: Message) -> None:
        allow = table.get(scope.get("path_template", ""))
        if allow and message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
            message = {**message, "headers": [*headers, (b"allow", allow)]}
        await send(message)

    return wrapped
