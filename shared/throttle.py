"""A cheap first line against floods of unauthenticated requests: per client address, the
account endpoints (register, login) get a token bucket in memory, checked before anything
else runs (no body parsing, no database). What passes still meets the durable limits in
PostgreSQL (``rate_limit``); what does not is a 429 that costs microseconds, so a flood
from one address cannot take the event loop from everybody else.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

import msgspec

from shared.envelope import error_body

Scope = dict[str, Any]
THROTTLED_PATHS = frozenset({"/api/users/register", "/api/users/login"})
MAX_TRACKED = 10_000  # addresses remembered (least recently seen forgotten first)


class TokenBuckets:
    """``rate`` tokens per second up to ``burst`` per key; bounded in the keys it keeps."""

    def __init__(self, rate: float, burst: float, clock: Any = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float:
        """0 when a token was taken; otherwise the seconds until one is there."""
        now = self._clock()
        tokens, then = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > MAX_TRACKED:
            self._buckets.popitem(last=False)
        return wait


def throttle(app: Any, buckets: TokenBuckets, address: Any) -> Any:
    """ASGI wrapper: POSTs to the account endpoints over the budget of their client address
    get 429 at once. ``address(scope)`` names the client (trusted proxies considered)."""

    async def guarded(scope: Scope, receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].rstrip("/") in THROTTLED_PATHS
        ):
            wait = buckets.take(address(scope))
            if wait > 0:
                body = msgspec.json.encode(
                    error_body("Too many requests", "too many requests from your address")
                )
                await send({"type": "http.response.start", "status": 429, "headers": [
                    (b"content-type", b"application/json"),
                    (b"retry-after", str(max(1, round(wait))).encode()),
                ]})  # fmt: skip
                await send({"type": "http.response.body", "body": body})
                return
        await app(scope, receive, send)

    return guarded
