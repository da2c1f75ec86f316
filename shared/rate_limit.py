"""Rate limits counted in PostgreSQL, so every replica of every function sees the same counts.

An attempt is admitted by ``reserve``: under a transaction-scoped advisory lock per key, the
live events of each key are counted and, when every key is under its limit, one event per key
is inserted, all in one transaction. A burst of parallel attempts is therefore admitted no
more often than the same attempts made one after another. The caller then ``release``s the
events of an attempt that must not count (a successful login) or keeps them (a failure, a
registration). Events carry their own expiry, so limiters with different windows share the
``rate_events`` table and expired rows are pruned as new ones arrive.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from math import ceil

from shared import db
from shared.envelope import utc_now
from shared.errors import RateLimited

_PRUNE_EVERY = timedelta(seconds=60)
_last_prune = {"at": utc_now() - _PRUNE_EVERY}


async def _prune(now: datetime) -> None:
    """Drop expired events, at most once a minute per process, outside any lock: pruning
    inside the admission transaction would make unrelated keys wait for each other."""
    if now - _last_prune["at"] < _PRUNE_EVERY:
        return
    _last_prune["at"] = now
    async with db.connection() as conn:
        await conn.execute("DELETE FROM rate_events WHERE expires_at <= $1", now)


class RateLimiter:
    """Events per key within a sliding window of ``window_seconds``."""

    def __init__(self, window_seconds: int, message: str) -> None:
        self.window = timedelta(seconds=max(1, window_seconds))
        self.message = message

    async def reserve(self, limits: Mapping[str, int]) -> list[int]:
        """Admit one attempt against every ``key -> limit`` or raise 429 (nothing recorded).

        Returns the ids of the events recorded for the attempt, for ``release``.
        """
        keys = sorted(limits)
        now = utc_now()
        async with db.transaction() as conn:
            # Locks taken in sorted order (unnest keeps the array's order), so two attempts
            # sharing keys never wait for each other in a cycle.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k",
                sorted(db.advisory_key("rate", key) for key in keys),
            )
            rows = await conn.fetch(
                "SELECT key, count(*) AS live, min(expires_at) AS first_expiry FROM rate_events "
                "WHERE key = ANY($1::text[]) AND expires_at > $2 GROUP BY key",
                keys,
                now,
            )
            live = {row["key"]: row for row in rows}
            for key in keys:
                row = live.get(key)
                if (row["live"] if row else 0) >= limits[key]:
                    expiry = row["first_expiry"] if row else now + self.window
                    retry = ceil((expiry - now).total_seconds())
                    raise RateLimited(self.message, retry_after=retry)
            ids = list(
                await conn.fetchval(
                    "WITH added AS (INSERT INTO rate_events (key, expires_at) "
                    "SELECT unnest($1::text[]), $2 RETURNING id) SELECT array_agg(id) FROM added",
                    keys,
                    now + self.window,
                )
            )
        await _prune(now)
        return ids

    async def release(self, event_ids: list[int]) -> None:
        """Forget the events of an attempt that must not count."""
        async with db.connection() as conn:
            await conn.execute("DELETE FROM rate_events WHERE id = ANY($1::int[])", event_ids)

    async def clear(self, key: str) -> None:
        """Forget every event of ``key`` (a successful login clears its username's failures)."""
        async with db.connection() as conn:
            await conn.execute("DELETE FROM rate_events WHERE key = $1", key)
