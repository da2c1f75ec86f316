"""``python -m ingress`` as ``make run`` starts it: how it stops, restarts and what it logs.

With no DATABASE_URL it runs an embedded PostgreSQL under DATA_DIR; stopping the platform
(SIGTERM, or SIGINT as Ctrl-C sends it) must stop that server too, and a server left behind
by a gateway killed with SIGKILL must not stand in the way of the next start. Credentials in
a URL's query string (terminal tokens and tickets) must never reach the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from tests.conftest import running_platform, start_platform
from tests.helpers import Platform, wait_until

pytestmark = pytest.mark.timeout(240)


def _postmaster(pgdata: Path) -> psutil.Process:
    pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    return psutil.Process(pid)


def _servers_of(pgdata: Path) -> list[psutil.Process]:
    """Every live PostgreSQL whose command line names this data directory."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if process.info["name"] == "postgres" and str(pgdata) in (
                process.info["cmdline"] or []
            ):
                found.append(process)
    return found


def _wait_gone(processes: list[psutil.Process], within: float = 30) -> list[psutil.Process]:
    _, alive = psutil.wait_procs(processes, timeout=within)
    return alive


@contextlib.contextmanager
def embedded_platform(data_dir: Path | None = None) -> Iterator[Platform]:
    """The gateway with no DATABASE_URL (so the embedded PostgreSQL) in a temp DATA_DIR."""
    extra = {"DATA_DIR": str(data_dir)} if data_dir else {}
    with running_platform("", extra) as platform:
        yield platform


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A DATA_DIR whose embedded server is stopped afterwards, whatever the test did."""
    path = tmp_path / "data"
    try:
        yield path
    finally:
        leftovers = _servers_of((path / "pg").resolve())
        for process in leftovers:
            with contextlib.suppress(psutil.Error):
                process.kill()
        _wait_gone(leftovers, within=10)
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopping_the_platform_stops_its_embedded_postgresql(
    data_dir: Path, sig: signal.Signals
) -> None:
    pgdata = (data_dir / "pg").resolve()
    with embedded_platform(data_dir) as platform:
        postmaster = _postmaster(pgdata)
        server = [postmaster, *postmaster.children(recursive=True)]
        platform.process.send_signal(sig)
        try:
            platform.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the platform did not exit on {sig.name}:\n{platform.log()[-3000:]}")
        assert not _wait_gone(server), f"PostgreSQL outlived the platform:\n{platform.log()}"
        assert not _servers_of(pgdata)
        assert not (pgdata / "postmaster.pid").exists()


def test_a_start_after_the_gateway_was_killed_adopts_and_later_stops_the_left_server(
    data_dir: Path,
) -> None:
    pgdata = (data_dir / "pg").resolve()
    with embedded_platform(data_dir) as killed:
        killed.process.kill()  # SIGKILL: no shutdown at all
        killed.process.wait(timeout=30)
    left = _postmaster(pgdata)
    assert left.is_running(), "the embedded server should outlive a SIGKILL of its gateway"

    with embedded_platform(data_dir) as platform:
        health = httpx.get(f"{platform.base_url}/api/health/", timeout=10)
        assert health.status_code == 200, health.text
        assert _postmaster(pgdata).pid == left.pid, "the left server should be taken over"
        server = _servers_of(pgdata)
        platform.process.send_signal(signal.SIGTERM)
        platform.process.wait(timeout=30)
        assert not _wait_gone(server), f"PostgreSQL outlived the platform:\n{platform.log()}"
        assert not (pgdata / "postmaster.pid").exists()


# -- no credentials in the log ----------------------------------------------------------------


async def _open_socket(url: str) -> None:
    """Open a WebSocket and read until the server closes it (it refuses a bad token)."""
    with contextlib.suppress(WebSocketException, OSError):
        async with connect(url, open_timeout=20, close_timeout=5) as ws:
            with contextlib.suppress(WebSocketException):
                async with asyncio.timeout(20):
                    async for _ in ws:
                        pass


def test_tokens_and_tickets_in_a_query_string_never_reach_the_log(database_url: str) -> None:
    platform = start_platform(database_url, {"LOG_LEVEL": "info", "ACCESS_LOG": "true"})
    secrets = [f"SECRET{uuid.uuid4().hex}" for _ in range(6)]
    workspace = uuid.uuid4()
    try:
        with httpx.Client(base_url=platform.base_url, timeout=30) as client:
            client.get(f"/api/health/?token={secrets[0]}")
            client.get(f"/api/users/me?ticket={secrets[1]}")
            client.get(f"/api/workspace/{workspace}/files?skip=0&token={secrets[2]}")
        ws = f"{platform.ws_url}/api/terminal/ws/{workspace}"
        asyncio.run(_open_socket(f"{ws}?token={secrets[3]}"))
        asyncio.run(_open_socket(f"{ws}?cols=80&ticket={secrets[4]}"))
        asyncio.run(_open_socket(f"{platform.ws_url}/no/such/socket?token={secrets[5]}"))
        # The lines are written as the requests finish; the log must show them (proof that
        # request lines are logged at all) before the secrets are looked for.
        wait_until(lambda: platform.log().count("WebSocket /") >= 2, "the request lines logged")
    finally:
        platform.stop()
    log = platform.log()
    assert "GET /api/users/me" in log and "WebSocket /api/terminal/ws/" in log, log[-3000:]
    for secret in secrets:
        assert secret not in log, [line for line in log.splitlines() if secret in line]
    shutil.rmtree(platform.workdir, ignore_errors=True)
