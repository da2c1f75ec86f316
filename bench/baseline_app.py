"""The baselines of ``bench/http.py``: bare Litestar, without and with one database statement.

* ``GET /api/health/``: the health JSON's shape, static (no database, no middleware, no
  dependencies), so health's ratio isolates what the platform adds on top of Litestar and
  uvicorn.
* ``GET /rows/{id}``: ONE indexed SELECT of a 4 KiB row, answered in an envelope of the
  shape of the platform's file GET.
* ``PUT /rows/{id}``: ONE upsert of that row, committed (autocommit: its own transaction,
  durable before the answer, like a save), answered like the platform's file PUT.

The rows live in the table ``bench_rows`` of ``BENCH_DATABASE_URL`` (the database the
platform of the same run uses), on an asyncpg pool of ``DB_POOL_MIN``..``DB_POOL_MAX``
connections, the platform's pool size. Without ``BENCH_DATABASE_URL`` only the health route
runs. Served exactly like the gateway: uvicorn, one worker, uvloop, httptools, no access log, no
proxy headers::

    python -m uvicorn bench.baseline_app:app --loop uvloop --http httptools --no-access-log \\
        --no-proxy-headers
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
from litestar import Litestar, get, put
from litestar.exceptions import NotFoundException

_STARTED = time.monotonic()
ROWS = 33  # 0..31 for the PUTs, 32 for the GET
ROW_BYTES = 4096
_pool: dict[str, Any] = {}


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@get("/api/health", sync_to_thread=False)
def health() -> dict[str, object]:
    return {
        "success": True,
        "message": "Healthy",
        "data": {
            "status": "healthy",
            "database": {"ok": True, "latency_ms": 0.1},
            "version": "1.0.0",
            "uptime_s": round(time.monotonic() - _STARTED, 1),
        },
        "timestamp": _now(),
    }


class RowWrite(msgspec.Struct):
    content: str


@get("/rows/{row_id:int}")
async def read_row(row_id: int) -> dict[str, object]:
    row = await _pool["pool"].fetchrow(
        "SELECT content, version, updated_at FROM bench_rows WHERE id = $1", row_id
    )
    if row is None:
        raise NotFoundException()
    content = row["content"]
    return {
        "success": True,
        "message": "File content",
        "data": {
            "path": f"row-{row_id}",
            "content": content,
            "encoding": "utf-8",
            "size": len(content),
            "modified": row["updated_at"],
            "version": row["version"],
        },
        "timestamp": _now(),
    }


@put("/rows/{row_id:int}", status_code=200)
async def write_row(row_id: int, data: RowWrite) -> dict[str, object]:
    row = await _pool["pool"].fetchrow(
        "INSERT INTO bench_rows (id, content, version, updated_at) VALUES ($1, $2, 1, now()) "
        "ON CONFLICT (id) DO UPDATE SET content = EXCLUDED.content, "
        "version = bench_rows.version + 1, updated_at = EXCLUDED.updated_at "
        "RETURNING version, updated_at",
        row_id,
        data.content,
    )
    return {
        "success": True,
        "message": "File updated",
        "data": {
            "name": f"row-{row_id}",
            "path": f"row-{row_id}",
            "type": "file",
            "size": len(data.content),
            "modified": row["updated_at"],
            "version": row["version"],
        },
        "timestamp": _now(),
    }


async def _no_reset(_: object) -> None:
    """Nothing to undo: ONE statement per request, and no other."""


@asynccontextmanager
async def lifespan(_: Litestar) -> AsyncIterator[None]:
    url = os.environ.get("BENCH_DATABASE_URL")
    if not url:
        yield
        return
    pool = await asyncpg.create_pool(
        url,
        min_size=int(os.environ.get("DB_POOL_MIN", "2")),
        max_size=int(os.environ.get("DB_POOL_MAX", "16")),
        server_settings={"jit": "off"},
        reset=_no_reset,  # asyncpg resets a connection with a statement of its own: not here
    )
    async with pool.acquire() as conn:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_rows (id integer PRIMARY KEY, content text NOT NULL, "
            "version integer NOT NULL, updated_at timestamptz NOT NULL)"
        )
        await conn.executemany(
            "INSERT INTO bench_rows VALUES ($1, $2, 1, now()) ON CONFLICT (id) DO NOTHING",
            [(i, ("row-4k-" * ROW_BYTES)[:ROW_BYTES]) for i in range(ROWS)],
        )
    _pool["pool"] = pool
    try:
        yield
    finally:
        await pool.close()


app = Litestar(
    route_handlers=[health, read_row, write_row],
    lifespan=[lifespan],
    openapi_config=None,
    debug=False,
)
