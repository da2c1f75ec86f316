"""No credential in a log line: request lines are logged without their query string.

Browsers cannot set headers on a WebSocket, so a terminal presents its token or ticket in the
URL's query, and uvicorn logs the handshake line (``"WebSocket /api/terminal/...?token=..."``)
at INFO and every access-log line with the full URL. ``StripQueryStrings`` removes the query
from any path in a log record it sees; ``uvicorn-logging.json`` beside this module is uvicorn's
own logging configuration with that filter on both of its handlers. ``python -m ingress`` uses
it through ``uvicorn_log_config()``; a function run alone passes the file:
``uvicorn functions.users.app:app --log-config shared/uvicorn-logging.json``.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

LOG_CONFIG_FILE = Path(__file__).with_name("uvicorn-logging.json")

# A path (from its first "/") followed by a query string: keep the path, drop the query.
_PATH_QUERY = re.compile(r"(/[^\s\"'?#]*)\?[^\s\"'#]*")


def strip_query_strings(text: str) -> str:
    """``"GET /a/b?token=x HTTP/1.1"`` -> ``"GET /a/b HTTP/1.1"``."""
    return _PATH_QUERY.sub(r"\1", text) if "?" in text else text


def _clean(value: Any) -> Any:
    return strip_query_strings(value) if isinstance(value, str) else value


class StripQueryStrings(logging.Filter):
    """Rewrites a record's message and arguments so no query string reaches a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _clean(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_clean(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _clean(arg) for key, arg in record.args.items()}
        return True


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's logging configuration with query strings stripped (for ``log_config=``)."""
    return json.loads(LOG_CONFIG_FILE.read_text())
