"""One runner per cluster for background work: a PostgreSQL advisory lock held on a
connection of its own. Whoever holds it runs the periodic syncs and the idle reaper; when
that process dies (or loses its database connection) the lock goes with the connection and
another replica takes over at its next try."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

import anyio
import asyncpg

from shared import db

log = logging.getLogger(__name__)


async def run_as_leader(
    scope: str,
    work: Callable[[], Awaitable[None]],
    *,
    retry_seconds: float = 5.0,
    connect_timeout: float = 5.0,
) -> None:
    """Forever: try to become the leader of ``scope`` (the environments a process can see:
    a cluster namespace, or one host's sandbox directory); while leading, run ``work``
    (which loops) and watch the lock's connection; go back to trying when either ends."""
    key = db.advisory_key("background-work", scope)
    while True:
        conn = None
        try:
            conn = await asyncpg.connect(
                db.DB.config["dsn"], timeout=connect_timeout, server_settings=db.KEEPALIVE
            )
            if await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
                log.info("this process now runs the background work (periodic sync, reaper)")
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_watch, conn, tg.cancel_scope)
                    await work()
                    tg.cancel_scope.cancel()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.info("background work: database unavailable (%r); trying again", exc)
        except Exception:
            log.exception("background work failed; trying again")
        finally:
            if conn is not None:
                with contextlib.suppress(Exception), anyio.CancelScope(shield=True):
                    await conn.close(timeout=2)
        await anyio.sleep(retry_seconds)


async def _watch(conn: asyncpg.Connection, scope: anyio.CancelScope) -> None:
    """Leadership ends when the lock's connection does."""
    while not conn.is_closed():
        try:
            with anyio.fail_after(10):
                await conn.fetchval("SELECT 1")
        except Exception:
            break
        await anyio.sleep(5)
    log.warning("lost the background-work lock's connection")
    scope.cancel()
