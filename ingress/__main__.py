"""``python -m ingress``: the whole platform on one port (embedded PostgreSQL unless
DATABASE_URL is set, local sandboxes), as ``make run`` starts it.

SIGTERM and Ctrl-C both end in uvicorn's graceful shutdown, whose lifespan stops the embedded
PostgreSQL (uvicorn re-raises SIGTERM afterwards, so nothing registered with ``atexit`` runs).
Request lines are logged without their query strings, where terminal tokens travel.
"""

from __future__ import annotations

import logging

import uvicorn

from shared.config import get_settings
from shared.logsafe import uvicorn_log_config


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    http = get_settings().http
    uvicorn.run(
        "ingress.gateway:app",
        host=http.host,
        port=http.port,
        loop="uvloop",
        http="httptools",
        ws="websockets",
        # Browsers offer permessage-deflate; accepting it costs ~40 KiB per terminal and CPU
        # per frame for output that is mostly small and already cheap to send.
        ws_per_message_deflate=False,
        ws_max_size=1024 * 1024,
        lifespan="on",
        # The platform takes the client address from X-Forwarded-For itself, and only from
        # TRUSTED_PROXIES (shared/web_security.py); uvicorn must not rewrite it first.
        proxy_headers=False,
        access_log=http.access_log,
        log_config=uvicorn_log_config(),
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
