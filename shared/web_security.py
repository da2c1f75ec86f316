"""The web layer's guard: who the client is, where a request comes from, how big its headers are.

- Client address. ``X-Forwarded-For`` is believed only when the connection's peer is one of
  ``TRUSTED_PROXIES`` (CIDRs); the client is then the rightmost address of the chain that is
  not a trusted proxy, since everything left of it was written by the client itself.
- Origin rule. A POST/PUT/PATCH/DELETE authenticated by the login cookie (no bearer token) is
  refused with 403 unless its ``Origin`` (or, without one, ``Referer``) is an allowed CORS
  origin or the API's own origin: ``shared.auth.token_from_connection``, the one place a
  request's token is taken from, asks ``cookie_request_refusal`` whenever it takes the
  cookie. A WebSocket handshake whose ``Origin`` is outside that set is refused whatever its
  credentials, here. Bearer requests cannot be forged by another site and pass.
- Header size. Request headers over ``MAX_HEADER_BYTES`` in total get 431. uvicorn's
  httptools parser has no limit of its own, so this is checked here, after parsing; the
  memory bound in production is the ingress's header buffer.
- Floods. POSTs to the account endpoints over their client address's token bucket get 429
  (``shared.throttle``).

``guard`` is the one layer in front of a function's Litestar app (outside CORS), so its
refusals happen before any routing, authentication or body parsing.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import msgspec
from litestar import Litestar

from shared.allow import allow_headers, send_with_allow
from shared.config import HttpSettings
from shared.envelope import error_body
from shared.throttle import THROTTLED_PATHS, TokenBuckets

MAX_HEADER_BYTES = 32 * 1024  # what an nginx ingress accepts by default (4 x 8 KiB buffers)
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_WEB_SCHEMES = {"ws": "http", "wss": "https", "http": "http", "https": "https"}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Scope = dict[str, Any]


@functools.cache
def trusted_networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    """The parsed ``TRUSTED_PROXIES``; a bad entry fails at start-up with its value named."""
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            raise ValueError(f"TRUSTED_PROXIES: {cidr!r} is not an address or CIDR") from None
    return tuple(networks)


def _is_trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def header(scope: Scope, name: bytes) -> str | None:
    """The last value of a header (latin-1, as HTTP defines), or None; read from the scope
    directly (a Litestar ``Headers`` costs more than the scan)."""
    value = None
    for key, raw in scope.get("headers", ()):
        if key == name:
            value = raw.decode("latin-1")
    return value


def _headers_joined(scope: Scope, name: bytes) -> str:
    return ",".join(raw.decode("latin-1") for key, raw in scope.get("headers", ()) if key == name)


def _peer(scope: Scope) -> str | None:
    client = scope.get("client")
    return client[0] if client else None


def _behind_trusted_proxy(scope: Scope, http: HttpSettings) -> bool:
    peer = _peer(scope)
    networks = trusted_networks(http.trusted_proxies)
    return bool(networks) and peer is not None and _is_trusted(peer, networks)


def client_address(scope: Scope, http: HttpSettings) -> str:
    """The caller's address, as rate limits count it: an IPv6 client by its /64, the block
    one subscriber gets (counting single addresses, one client would be 2**64 of them)."""
    return _as_counted(_client_address(scope, http))


def _client_address(scope: Scope, http: HttpSettings) -> str:
    peer = _peer(scope) or "unknown"
    if not _behind_trusted_proxy(scope, http):
        return peer
    networks = trusted_networks(http.trusted_proxies)
    hops = [hop.strip() for hop in _headers_joined(scope, b"x-forwarded-for").split(",")]
    hops = [hop for hop in hops if hop]
    for hop in reversed(hops):
        if not _is_trusted(hop, networks):
            return hop[:64]
    # Every hop is a trusted proxy: the leftmost is the closest thing to a client.
    return hops[0][:64] if hops else peer


def _as_counted(address: str) -> str:
    try:
        parsed = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return address


def _normalize_origin(value: str) -> str | None:
    """``scheme://host[:port]`` lower-cased without a default port; None if not an origin."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and str(port) != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    return f"{scheme}://{host}"


@functools.cache
def _allowed_origins(cors_origins: tuple[str, ...]) -> frozenset[str]:
    return frozenset(
        origin for origin in (_normalize_origin(item) for item in cors_origins) if origin
    )


def own_origin(scope: Scope, http: HttpSettings) -> str | None:
    """The API's own origin as the browser sees it: the request's scheme and Host (the
    scheme from ``X-Forwarded-Proto`` when a trusted proxy terminated TLS)."""
    host = header(scope, b"host")
    if not host:
        return None
    scheme = _WEB_SCHEMES.get(scope.get("scheme", "http"), "http")
    if _behind_trusted_proxy(scope, http):
        forwarded = (header(scope, b"x-forwarded-proto") or "").split(",")[0].strip().lower()
        if forwarded in _DEFAULT_PORTS:
            scheme = forwarded
    return _normalize_origin(f"{scheme}://{host}")


def origin_allowed(scope: Scope, origin: str, http: HttpSettings) -> bool:
    if "*" in http.cors_origins:
        return True  # the operator allowed every origin
    normalized = _normalize_origin(origin)
    if normalized is None:
        return False  # "null" (sandboxed frames, privacy redirects) or garbage
    return normalized in _allowed_origins(http.cors_origins) or normalized == own_origin(
        scope, http
    )


def websocket_refusal(scope: Scope, http: HttpSettings) -> str | None:
    """Why a WebSocket handshake must be refused (a foreign ``Origin``), else None."""
    origin = header(scope, b"origin")
    if origin is not None and not origin_allowed(scope, origin, http):
        return f"WebSocket from origin {origin[:100]!r} is not allowed"
    return None


def cookie_request_refusal(scope: Scope, http: HttpSettings) -> str | None:
    """Why a request that the login cookie authenticates must be refused, else None.

    Only state-changing methods are checked: reads are left to CORS, which keeps another
    site from reading the answers.
    """
    if scope["type"] != "http" or scope.get("method") not in STATE_CHANGING:
        return None
    origin = header(scope, b"origin")
    if origin is None:
        referer = header(scope, b"referer")
        if referer is None:
            return (
                "a request authenticated by the cookie must carry Origin or Referer "
                "(clients other than browsers use Authorization: Bearer)"
            )
        if not origin_allowed(scope, referer, http):
            return "cross-site request refused: the Referer is not an allowed origin"
        return None
    if not origin_allowed(scope, origin, http):
        return f"cross-site request refused: origin {origin[:100]!r} is not allowed"
    return None


async def _refuse(
    scope: Scope,
    send: Any,
    status: int,
    message: str,
    error: str,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    body = msgspec.json.encode(error_body(message, error))
    start_type, body_type = "http.response.start", "http.response.body"
    if scope["type"] == "websocket":
        if "websocket.http.response" not in scope.get("extensions", {}):
            # Closing before accept makes the server reject the handshake (403).
            await send({"type": "websocket.close", "code": 1008, "reason": error[:120]})
            return
        start_type, body_type = "websocket.http.response.start", "websocket.http.response.body"
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        *headers,
    ]
    await send({"type": start_type, "status": status, "headers": headers})
    await send({"type": body_type, "body": body})


# An ASGI callable that answers one kind of request itself (True) or passes (False).
Lane = Callable[[Scope, Any, Any], Awaitable[bool]]


def guard(app: Litestar, http: HttpSettings, buckets: TokenBuckets, lane: Lane | None) -> Any:
    """The one ASGI layer in front of a function's Litestar app (it becomes its
    ``asgi_handler``): the header limit, the account endpoints' token buckets, the WebSocket
    Origin rule, and the complete ``Allow`` header of OPTIONS responses (``shared.allow``).

    Litestar's CORS middleware acts only on requests that carry an ``Origin``; the others (API
    clients, same-origin reads) go straight past it, to the app behind it, after ``lane`` (a
    function's hottest request, answered without Litestar's routing) had its chance.
    """
    trusted_networks(http.trusted_proxies)  # a bad TRUSTED_PROXIES fails at start-up
    with_cors = app.asgi_handler
    without_cors = with_cors
    if app.cors_config is not None:
        without_cors = getattr(with_cors, "app", None)
        if type(with_cors).__name__ != "CORSMiddleware" or without_cors is None:
            raise RuntimeError("Litestar's CORS middleware is not where this guard expects it")
    allow = allow_headers(app)

    async def guarded(scope: Scope, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await with_cors(scope, receive, send)
            return
        size, has_origin = 0, False
        for key, value in scope["headers"]:
            size += len(key) + len(value) + 4  # ": " and CRLF
            if key == b"origin":
                has_origin = True
        if size > MAX_HEADER_BYTES:
            error = f"request headers exceed {MAX_HEADER_BYTES} bytes"
            await _refuse(scope, send, 431, "Request headers too large", error)
            return
        if kind == "websocket":
            refusal = websocket_refusal(scope, http)
            if refusal is not None:
                await _refuse(scope, send, 403, "Not allowed", refusal)
                return
        elif scope["method"] == "POST" and scope["path"].rstrip("/") in THROTTLED_PATHS:
            wait = buckets.take(client_address(scope, http))
            if wait > 0:
                retry = (b"retry-after", b"%d" % max(1, round(wait)))
                error = "too many requests from your address"
                await _refuse(scope, send, 429, "Too many requests", error, [retry])
                return
        elif scope["method"] == "OPTIONS":
            send = send_with_allow(send, scope, allow)
        if has_origin:
            await with_cors(scope, receive, send)
        elif lane is None or not await lane(scope, receive, send):
            await without_cors(scope, receive, send)

    return guarded
