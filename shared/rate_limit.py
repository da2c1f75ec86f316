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

from piccolo.query.functions.aggregate import Count, Min

from shared import db
from shared.envelope import utc_now
from shared.errors import RateLimited
from shared.tables import RateEvent

_PRUNE_EVERY = timedelta(seconds=60)
_last_prune = {"at": utc_now() - _PRUNE_EVERY}


async def _prune(now: datetime) -> None:
    """Drop expired events, at most once a minute per process, outside any lock: pruning
    inside the admission transaction would make unrelated keys wait for each other."""
    if now - _last_prune["at"] < _PRUNE_EVERY:
        return
    _last_prune["at"] = now
    await RateEvent.delete().where(RateEvent.expires_at <= now)


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
        async with db.transaction():
            await db.lock(*(db.advisory_key("rate", key) for key in keys))
            rows = await (
                RateEvent.select(RateEvent.key, Count(), Min(RateEvent.expires_at))
                .where(RateEvent.key.is_in(keys) & (RateEvent.expires_at > now))
                .group_by(RateEvent.key)
            )
            live = {row["key"]: row for row in rows}
            for key in keys:
                row = live.get(key)
                if (row["count"] if row else 0) >= limits[key]:
                    expiry = row["min"] if row else now + self.window
                    retry = ceil((expiry - now).total_seconds())
                    raise RateLimited(self.message, retry_after=retry)
            expiry = now + self.window
            added = await RateEvent.insert(
                *(RateEvent(key=key, expires_at=expiry) for key in keys)
            ).returning(RateEvent.id)
            ids = [row["id"] for row in added]
        await _prune(now)
        return ids

    async def release(self, event_ids: list[int]) -> None:
        """Forget the events of an attempt that must not count."""
        if event_ids:
            await RateEvent.delete().where(RateEvent.id.is_in(event_ids))

    async def clear(self, key: str) -> None:
        """Forget every event of ``key`` (a successful login clears its username's failures)."""
        await RateEvent.delete().where(RateEvent.key == key)
