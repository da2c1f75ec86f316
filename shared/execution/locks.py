"""Per-key locks that do not outlive their use (a dict of locks per session never pruned
grows with every session a process ever saw)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Hashable

import anyio


class KeyedLock:
    """``async with locks.hold(key):`` one holder per key at a time; a key's lock is dropped
    as soon as nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[anyio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = anyio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)
