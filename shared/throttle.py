"""A cheap first line against floods of unauthenticated requests: per client address, the
account endpoints (register, login) get a token bucket in memory, checked before anything
else runs (no body parsing, no database). What passes still meets the durable limits in
PostgreSQL (``rate_limit``); what does not is a 429 that costs microseconds, so a flood
from one address cannot take the event loop from everybody else. ``shared.web_security.guard``
asks the buckets.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

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
