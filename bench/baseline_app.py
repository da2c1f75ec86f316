"""The baseline of ``bench/http.py``: a bare Litestar app serving the health JSON's shape.

Same envelope and fields as the platform's ``GET /api/health/`` but static (no database, no
middleware, no dependencies), so the ratio platform/baseline isolates what the platform adds on
top of Litestar + uvicorn. Served exactly like the gateway: uvicorn, one worker, uvloop,
httptools, no access log::

    python -m uvicorn bench.baseline_app:app --loop uvloop --http httptools --no-access-log
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from litestar import Litestar, get

_STARTED = time.monotonic()


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
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }


app = Litestar(route_handlers=[health], openapi_config=None, debug=False)
