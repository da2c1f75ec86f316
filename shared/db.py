"""The database: one Piccolo engine per process, pointed at DATABASE_URL or an embedded server.

When DATABASE_URL is unset, an embedded PostgreSQL from the ``pgserver`` package keeps its data
under ``.data/pg`` (it speaks over a unix socket, which asyncpg takes as ``?host=<dir>``).
The pool opens and closes in the app lifespan (ref-counted, so the gateway that serves every
function in one process opens it once), and migrations run under an advisory lock so several
replicas starting together apply them once.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any

import anyio
from piccolo.engine.postgres import PostgresEngine

from shared.config import Settings, get_settings

log = logging.getLogger("shared.db")

# Piccolo finds this engine through piccolo_conf.DB; configure() fills in where it points.
DB = PostgresEngine(config={}, extensions=())

_embedded: Any = None  # the pgserver handle, kept alive for the life of the process
_pool_users = 0
_pool_lock = anyio.Lock()
_MIGRATION_LOCK_KEY = 0x0C0DE_0001


def resolve_database_url(settings: Settings) -> str:
    """DATABASE_URL, or the URI of the embedded server (started on first use)."""
    global _embedded
    if settings.database_url:
        return settings.database_url
    if _embedded is None:
        import pgserver  # imported lazily: production images never start it

        pgdata = settings.data_dir / "pg"
        pgdata.mkdir(parents=True, exist_ok=True)
        _embedded = pgserver.get_server(pgdata, cleanup_mode="stop")
        log.info("embedded PostgreSQL at %s", pgdata)
    return _embedded.get_uri()


def configure(settings: Settings | None = None) -> None:
    """Point the engine at the configured server (idempotent)."""
    if DB.config.get("dsn"):
        return
    settings = settings or get_settings()
    DB.config.update(dsn=resolve_database_url(settings), server_settings={"jit": "off"})


async def start(settings: Settings | None = None) -> None:
    """Open the pool (first caller) and apply migrations when configured to."""
    global _pool_users
    settings = settings or get_settings()
    async with _pool_lock:
        _pool_users += 1
        if _pool_users > 1:
            return
        configure(settings)
        if settings.db_migrate_on_start:
            await migrate()
        await DB.start_connection_pool(
            min_size=settings.db_pool_min, max_size=settings.db_pool_max, reset=_reset
        )


async def _reset(conn: Any) -> None:
    """Return a connection to the pool without asyncpg's default reset query.

    The platform sets no session state (no LISTEN, no session advisory locks on pooled
    connections, no SET), so the default round trip on every release buys nothing; only a
    transaction left open by a failure needs undoing.
    """
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def stop() -> None:
    global _pool_users
    async with _pool_lock:
        _pool_users -= 1
        if _pool_users == 0:
            await DB.close_connection_pool()


async def migrate() -> None:
    """Apply every checked-in migration, once, even with several replicas starting at once."""
    import asyncpg
    from piccolo.apps.migrations.commands.forwards import run_forwards

    configure()
    # Migrations run on their own connections; a session-level lock on a dedicated connection
    # serializes replicas without holding a transaction open around DDL.
    conn = await asyncpg.connect(DB.config["dsn"])
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_KEY)
        with contextlib.redirect_stdout(_LogWriter()):
            result = await run_forwards(app_name="all")
        if not result.success:
            raise RuntimeError(f"migrations failed: {result.message}")
    finally:
        await conn.close()


class _LogWriter:
    """Piccolo prints migration progress; send it to the log instead of stdout."""

    def write(self, text: str) -> int:
        if text.strip():
            log.info("migrations: %s", text.strip())
        return len(text)

    def flush(self) -> None:
        pass


def advisory_key(*parts: object) -> int:
    """A signed 64-bit advisory lock key derived from the given parts."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def ping() -> float:
    """Round-trip a trivial query on the pool; returns latency in milliseconds."""
    start = anyio.current_time()
    async with DB.pool.acquire() as conn:
        await conn.fetchval("SELECT 1")
    return (anyio.current_time() - start) * 1000


_transaction_connection: ContextVar[Any] = ContextVar("transaction_connection", default=None)
_pinned_connection: ContextVar[Any] = ContextVar("pinned_connection", default=None)


@contextlib.asynccontextmanager
async def transaction() -> AsyncIterator[Any]:
    """One transaction: every ``connection()`` inside it (in this task) gets its connection.

    A transaction opened inside another joins it, so a service can call helpers that open
    their own. Inside ``pinned()`` it runs on the pinned connection. Plain asyncpg
    underneath: BEGIN and COMMIT are the only cost.
    """
    outer = _transaction_connection.get()
    if outer is not None:
        yield outer
        return
    pinned_conn = _pinned_connection.get()
    if pinned_conn is not None:
        async with pinned_conn.transaction():
            token = _transaction_connection.set(pinned_conn)
            try:
                yield pinned_conn
            finally:
                _transaction_connection.reset(token)
        return
    async with DB.pool.acquire() as conn, conn.transaction():
        token = _transaction_connection.set(conn)
        try:
            yield conn
        finally:
            _transaction_connection.reset(token)


@contextlib.asynccontextmanager
async def pinned() -> AsyncIterator[Any]:
    """One pooled connection for everything inside (in this task), across several
    transactions: what holds a session-level advisory lock."""
    current = _pinned_connection.get() or _transaction_connection.get()
    if current is not None:
        yield current
        return
    async with DB.pool.acquire() as conn:
        token = _pinned_connection.set(conn)
        try:
            yield conn
        finally:
            _pinned_connection.reset(token)


@contextlib.asynccontextmanager
async def connection() -> AsyncIterator[Any]:
    """The connection of the current transaction, or one from the pool.

    Queries are hand-written SQL through this; asyncpg caches each prepared statement per
    connection, so a query costs one round trip.
    """
    current = _transaction_connection.get() or _pinned_connection.get()
    if current is not None:
        yield current
        return
    piccolo_transaction = DB.current_transaction.get()
    if piccolo_transaction is not None:
        yield piccolo_transaction.connection
        return
    async with DB.pool.acquire() as conn:
        yield conn
