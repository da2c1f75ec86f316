"""The database: one Piccolo engine per process, pointed at DATABASE_URL or an embedded server.

When DATABASE_URL is unset, an embedded PostgreSQL (``shared/embedded.py``) keeps its data
under ``.data/pg`` (it speaks over a unix socket, which asyncpg takes as ``?host=<dir>``).
The pool opens and closes in the app lifespan (ref-counted, so the gateway that serves every
function in one process opens it once), and migrations run under an advisory lock so several
replicas starting together apply them once.

Every wait for the database is bounded: connecting (``DB_CONNECT_TIMEOUT``), waiting for a
pooled connection (``DB_ACQUIRE_TIMEOUT``, which also bounds handing it back) and each
statement (``DB_STATEMENT_TIMEOUT``, enforced by the server and, a second later for a server
that stopped answering at all, by the client). A connection that failed mid-use is dropped,
not reused, so the pool heals by itself when the server comes back. Migrations run without
the statement timeout: a schema change may legitimately take longer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any

import anyio
import asyncpg
from asyncpg.pool import Pool
from piccolo.engine.postgres import PostgresEngine, PostgresTransaction

from shared.config import DatabaseSettings, Settings, get_settings
from shared.errors import DatabaseUnavailable

log = logging.getLogger("shared.db")


class _Engine(PostgresEngine):
    """Piccolo's engine, running its queries where the platform runs its own: in the current
    ``transaction()``, else on the ``pinned()`` connection, else on one from the bounded pool
    (a broken connection dropped, a pool that cannot serve in time a 503)."""

    async def _run_in_pool(self, query: str, args: Any = None) -> Any:
        return await fetch(query, *(args or ()))


class _Transaction(PostgresTransaction):
    """What Piccolo sees of a ``transaction()``: its queries inside run on its connection,
    and a Piccolo ``DB.transaction()`` inside joins it."""

    def __init__(self, conn: Any) -> None:
        super().__init__(DB)
        self.connection = conn


# Piccolo finds this engine through piccolo_conf.DB; configure() fills in where it points.
DB = _Engine(config={}, extensions=())

_pool_users = 0
_pool_lock = anyio.Lock()
_limits = DatabaseSettings()  # the waits of the running pool (set by start())
_embedded = False  # whether configure() started the embedded server
_MIGRATION_LOCK_KEY = 0x0C0DE_0001
_CLIENT_GRACE_SECONDS = 1.0  # the client's statement timeout trails the server's by this


def resolve_database_url(settings: Settings) -> str:
    """DATABASE_URL, or the URI of the embedded server (started on first use)."""
    global _embedded
    if settings.database.url:
        return settings.database.url
    from shared import embedded

    _embedded = True
    return embedded.start(settings.data_dir)


def configure(settings: Settings | None = None) -> None:
    """Point the engine at the configured server (idempotent).

    The engine's own config (used by migrations and by Piccolo outside the pool) carries the
    connect timeout only; the pool adds the statement timeout.
    """
    if DB.config.get("dsn"):
        return
    settings = settings or get_settings()
    DB.config.update(
        dsn=resolve_database_url(settings),
        server_settings={"jit": "off"},
        timeout=settings.database.connect_timeout,
    )


class _BoundedPool(Pool):
    """An asyncpg pool whose ``acquire()`` waits at most the configured time unless told
    otherwise, so Piccolo's own queries on this pool are bounded like ours.

    When a connection is free the wait is skipped, and with it asyncpg's timer on the
    acquire and on the release (a few percent of a file GET): taking a free connection does
    not wait, opening one is bounded by the connect timeout, and handing it back runs
    ``_reset``, bounded by the statement timeout."""

    def __init__(self, *args: Any, acquire_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._acquire_timeout = acquire_timeout

    def acquire(self, *, timeout: float | None = None) -> Any:
        if timeout is None:
            free = getattr(self, "_queue", None)  # asyncpg's idle connection holders
            timeout = None if free is not None and not free.empty() else self._acquire_timeout
        return super().acquire(timeout=timeout)


async def start(settings: Settings) -> None:
    """Open the pool (first caller) and apply migrations when configured to."""
    global _pool_users, _limits
    async with _pool_lock:
        _pool_users += 1
        if _pool_users > 1:
            return
        try:
            configure(settings)
            _limits = settings.database
            if settings.database.migrate_on_start:
                await migrate()
            DB.pool = await _open_pool(settings)
        except BaseException:
            _pool_users -= 1
            await _stop_embedded()
            raise


# A replica that vanishes without closing its connections (a node or network gone, unlike a
# kill, which the kernel answers for) would keep its locks in PostgreSQL until the OS gives
# up on the socket, hours later: the server probes quiet connections and drops dead ones
# within about 30 s (TCP connections only; a unix socket's peer cannot vanish that way).
KEEPALIVE = {
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "30000",
}


async def _open_pool(settings: Settings) -> Pool:
    limits = settings.database
    statement_ms = int(limits.statement_timeout * 1000)
    return await _BoundedPool(
        DB.config["dsn"],
        min_size=limits.pool_min,
        max_size=limits.pool_max,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        reset=_reset,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        acquire_timeout=limits.acquire_timeout,
        timeout=limits.connect_timeout,
        # The server cancels a statement that runs too long (its connection stays usable);
        # the client gives up a second later, for a server that does not answer at all.
        command_timeout=limits.statement_timeout + _CLIENT_GRACE_SECONDS,
        server_settings={"jit": "off", "statement_timeout": str(statement_ms), **KEEPALIVE},
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
    """Close the pool (last caller) and stop the embedded server if this process started it."""
    global _pool_users
    async with _pool_lock:
        _pool_users -= 1
        if _pool_users > 0:
            return
        pool, DB.pool = DB.pool, None
        if pool is not None:
            # close() waits for connections in use; a stalled server must not hold shutdown.
            with anyio.move_on_after(_round_trip_bound()):
                await pool.close()
            pool.terminate()  # no-op after a clean close
        await _stop_embedded()


async def _stop_embedded() -> None:
    global _embedded
    if _embedded:
        from shared import embedded

        _embedded = False
        DB.config.pop("dsn", None)  # a later start() resolves (and starts) it again
        await anyio.to_thread.run_sync(embedded.stop)


async def migrate() -> None:
    """Apply every checked-in migration, once, even with several replicas starting at once."""
    from piccolo.apps.migrations.commands.forwards import run_forwards

    configure()
    # Migrations run on their own connections; a session-level lock on a dedicated connection
    # serializes replicas without holding a transaction open around DDL.
    conn = await asyncpg.connect(
        DB.config["dsn"], timeout=DB.config["timeout"], server_settings=KEEPALIVE
    )
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


async def lock(*keys: int) -> None:
    """Take these advisory locks for the current transaction, in one round trip and in
    sorted order (unnest keeps the array's), so callers sharing keys never wait in a cycle."""
    await execute("SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k", sorted(keys))


def advisory_key(*parts: object) -> int:
    """A signed 64-bit advisory lock key derived from the given parts."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _round_trip_bound() -> float:
    """The longest one pooled round trip may take: waiting for a connection, then the
    statement."""
    return _limits.acquire_timeout + _limits.statement_timeout


async def ping() -> float:
    """Round-trip a trivial query on the pool; returns latency in milliseconds. Bounded as a
    whole too (a second past the pool's own bounds): a TimeoutError then."""
    start = anyio.current_time()
    with anyio.fail_after(_round_trip_bound() + 1):
        await fetchval("SELECT 1")
    return (anyio.current_time() - start) * 1000


# What leaves a connection in an unknown state: it is dropped instead of reset and reused.
_BROKEN = (
    TimeoutError,
    asyncio.CancelledError,
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
)


async def _acquire() -> tuple[Pool, Any]:
    """A connection from the pool, waited for at most DB_ACQUIRE_TIMEOUT; a failure to get
    one is ``DatabaseUnavailable``."""
    pool = DB.pool
    if pool is None:
        raise DatabaseUnavailable("The database is not connected; try again shortly")
    try:
        return pool, await pool.acquire()
    except Exception as exc:
        if isinstance(exc, TimeoutError):
            raise DatabaseUnavailable(
                "The database did not answer in time; try again shortly"
            ) from exc
        raise DatabaseUnavailable("The database is unreachable; try again shortly") from exc


async def _release(pool: Pool, conn: Any, exc: BaseException | None) -> None:
    """Give a connection back. One whose statement timed out, was cancelled or lost its
    server (``exc``) is terminated rather than reset, so a stalled server never holds the
    caller longer than the timeout and the pool reconnects later."""
    if isinstance(exc, _BROKEN):
        with contextlib.suppress(asyncpg.InterfaceError):  # already released
            conn.terminate()
    try:
        await pool.release(conn)
    except Exception as failure:  # noqa: BLE001 - asyncpg dropped the connection already
        log.warning("a database connection could not be reset and was dropped: %r", failure)


@contextlib.asynccontextmanager
async def _pooled() -> AsyncIterator[Any]:
    """A connection from the pool for the block (see ``_acquire`` and ``_release``)."""
    pool, conn = await _acquire()
    failure: BaseException | None = None
    try:
        yield conn
    except BaseException as exc:
        failure = exc
        raise
    finally:
        await _release(pool, conn, failure)


async def _statement(method: str, query: str, args: tuple[Any, ...]) -> Any:
    current = _current_transaction_connection() or _pinned_connection.get()
    if current is not None:
        return await getattr(current, method)(query, *args)
    pool, conn = await _acquire()
    failure: BaseException | None = None
    try:
        return await getattr(conn, method)(query, *args)
    except BaseException as exc:
        failure = exc
        raise
    finally:
        await _release(pool, conn, failure)


# One statement where ``connection()`` would run it, without its context managers: what the
# hot paths use (two generator-based context managers per query are measurable there).
async def fetch(query: str, *args: Any) -> list[Any]:
    return await _statement("fetch", query, args)  # type: ignore[no-any-return]


async def fetchrow(query: str, *args: Any) -> Any:
    return await _statement("fetchrow", query, args)


async def fetchval(query: str, *args: Any) -> Any:
    return await _statement("fetchval", query, args)


async def execute(query: str, *args: Any) -> str:
    return await _statement("execute", query, args)  # type: ignore[no-any-return]


_pinned_connection: ContextVar[Any] = ContextVar("pinned_connection", default=None)


@contextlib.asynccontextmanager
async def transaction() -> AsyncIterator[Any]:
    """One transaction: every query inside it (in this task), Piccolo's and hand-built SQL
    through ``connection()`` alike, runs on its connection.

    A transaction opened inside another joins it, so a service can call helpers that open
    their own. Inside ``pinned()`` it runs on the pinned connection. Plain asyncpg
    underneath: BEGIN and COMMIT are the only cost.
    """
    outer = DB.current_transaction.get()
    if outer is not None:
        yield outer.connection
        return
    pinned_conn = _pinned_connection.get()
    async with contextlib.AsyncExitStack() as stack:
        conn = (
            pinned_conn if pinned_conn is not None else await stack.enter_async_context(_pooled())
        )
        tx = conn.transaction()
        await tx.start()
        token = DB.current_transaction.set(_Transaction(conn))
        try:
            yield conn
        except BaseException as exc:
            # On a broken connection a ROLLBACK would only wait; dropping it rolls back.
            if not isinstance(exc, _BROKEN):
                with contextlib.suppress(Exception):  # then the release drops the connection
                    await tx.rollback()
            raise
        else:
            await tx.commit()
        finally:
            DB.current_transaction.reset(token)


@contextlib.asynccontextmanager
async def pinned() -> AsyncIterator[Any]:
    """One pooled connection for everything inside (in this task), across several
    transactions: what holds a session-level advisory lock."""
    current = _pinned_connection.get() or _current_transaction_connection()
    if current is not None:
        yield current
        return
    async with _pooled() as conn:
        token = _pinned_connection.set(conn)
        try:
            yield conn
        finally:
            _pinned_connection.reset(token)


def in_transaction() -> bool:
    """Whether queries here run in a ``transaction()`` or on a ``pinned()`` connection."""
    return _current_transaction_connection() is not None or _pinned_connection.get() is not None


def _current_transaction_connection() -> Any:
    current = DB.current_transaction.get()
    return current.connection if current is not None else None


@contextlib.asynccontextmanager
async def connection() -> AsyncIterator[Any]:
    """The connection of the current transaction, else the pinned one, else one from the
    pool: where hand-built SQL runs (asyncpg caches each prepared statement per connection,
    so a query costs one round trip)."""
    current = _current_transaction_connection() or _pinned_connection.get()
    if current is not None:
        yield current
        return
    async with _pooled() as conn:
        yield conn
