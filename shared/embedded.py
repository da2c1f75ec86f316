"""The embedded PostgreSQL of ``make run``: started on first use, stopped when the platform stops.

``pgserver`` records the processes using a data directory in ``.handle_pids.json`` and stops
the server when the last of them exits, from ``atexit``. That is not enough here: uvicorn
re-raises SIGTERM after its graceful shutdown, so ``atexit`` never runs, and a gateway killed
with SIGKILL stays in the list forever, so no later run would ever stop the server. So the
platform stops the server itself when its lifespan ends, and at start forgets the users that no
longer exist (adopting a server a killed run left behind) and clears a lock file whose process
is not a PostgreSQL any more.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import psutil

log = logging.getLogger("shared.embedded")

_server: Any = None  # the pgserver handle while this process uses the server


def start(data_dir: Path) -> str:
    """The URI of the embedded server for ``data_dir`` (started on first call)."""
    global _server
    if _server is None:
        import pgserver  # imported lazily: production images never start it
        from pgserver.postgres_server import PostgresServer

        pgdata = (data_dir / "pg").resolve()
        pgdata.mkdir(parents=True, exist_ok=True)
        with PostgresServer._lock:  # the lock pgserver itself takes around the user list
            _forget_dead_users(pgdata)
            _clear_stale_lock(pgdata)
        _server = pgserver.get_server(pgdata, cleanup_mode="stop")
        log.info("embedded PostgreSQL at %s", pgdata)
    return _server.get_uri()


def stop() -> None:
    """Stop the server if this process is its last user (blocking: it runs ``pg_ctl stop``)."""
    global _server
    server, _server = _server, None
    if server is not None:
        server.cleanup()  # with cleanup_mode="stop" this stops, it never deletes
        log.info("embedded PostgreSQL stopped")


def _forget_dead_users(pgdata: Path) -> None:
    users_file = pgdata / ".handle_pids.json"
    try:
        users = json.loads(users_file.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in users if psutil.pid_exists(pid)]
    if alive != users:
        log.info("embedded PostgreSQL: forgetting users that are gone: %s", set(users) - set(alive))
        users_file.write_text(json.dumps(alive))
        if not alive and _postmaster_pid(pgdata) is not None:
            log.warning("adopting the embedded PostgreSQL a killed run left running")


def _clear_stale_lock(pgdata: Path) -> None:
    """A postmaster.pid naming a live process that is not PostgreSQL (its pid was reused after
    a crash or reboot) would make pgserver report a server that is not there."""
    lock = pgdata / "postmaster.pid"
    try:
        pid = int(lock.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return
    if psutil.pid_exists(pid) and _postmaster_pid(pgdata) is None:
        log.warning("removing a stale postmaster.pid (pid %s is not PostgreSQL)", pid)
        lock.unlink(missing_ok=True)


def _postmaster_pid(pgdata: Path) -> int | None:
    """The pid of the live PostgreSQL postmaster serving ``pgdata``, if there is one."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        process = psutil.Process(pid)
        if process.name() == "postgres" and str(pgdata) in process.cmdline():
            return pid
    except (OSError, ValueError, psutil.Error):
        pass
    return None
