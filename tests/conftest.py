"""Fixtures every test shares: a fresh PostgreSQL database and the real platform on a socket.

The database is a new one on the server DATABASE_URL names, or on an embedded ``pgserver``
when it is unset. The platform is ``python -m ingress`` in a subprocess (the gateway serving
every function), so tests speak HTTP and WebSocket over a real socket exactly as clients do.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import TEST_WORKSPACE_MB, Platform, free_port, fresh_database, wait_until

ROOT = Path(__file__).resolve().parent.parent

pytest_plugins = ["anyio"]


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A brand-new, empty database for this test run; dropped afterwards."""
    with fresh_database("cep_test", "test-pg") as url:
        yield url


@pytest.fixture(scope="module")
async def database(database_url: str) -> AsyncIterator[None]:
    """This process's own pool on the test database, migrated: for the tests that call the
    services directly, without the gateway."""
    from shared import db
    from shared.config import DatabaseSettings, Settings

    await db.start(Settings(database=DatabaseSettings(url=database_url, pool_max=8)))
    try:
        yield
    finally:
        await db.stop()


def start_platform(database_url: str, extra_env: dict[str, str] | None = None) -> Platform:
    """Start the gateway as a subprocess and wait until it answers its liveness route."""
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="cep-test-"))
    os.chmod(workdir, 0o711)  # sandboxes run as unprivileged uids below it
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "DATA_DIR": str(workdir / "data"),  # another platform's to share its sandboxes
        # The tests' client is the proxy: per-address tests name their client in
        # X-Forwarded-For. The suite registers hundreds of users from 127.0.0.1, far over the
        # production per-address limit; tests of that limit start a platform with their own.
        "TRUSTED_PROXIES": "127.0.0.1/32",
        "REGISTER_MAX_PER_ADDRESS": "1000000",
        # The suite registers and logs in hundreds of users from 127.0.0.1 in bursts; the
        # in-memory account throttle has a test of its own.
        "AUTH_REQUESTS_PER_SECOND": "100000",
        "AUTH_REQUESTS_BURST": "100000",
        # Every workspace volume reserves its blocks on the disk: the suite keeps dozens of
        # environments alive at once, so 1 GiB each (the default) would take tens of GiB.
        "SANDBOX_WORKSPACE_MB": str(TEST_WORKSPACE_MB),
        "SANDBOX_DISK_MIN_FREE_MB": "1024",  # a test machine's disk may be small
        # The suite registers and logs in hundreds of users: argon2 at the production cost
        # (64 MiB, 3 passes: ~0.1 s each, one at a time) would be minutes of it.
        "PASSWORD_HASH_MEMORY_KIB": "1024",
        "PASSWORD_HASH_TIME_COST": "1",
        "LOG_LEVEL": "warning",
        **(extra_env or {}),
    }
    log_path = workdir / "server.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed when the platform stops
    process = subprocess.Popen(
        [sys.executable, "-m", "ingress"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    platform = Platform(
        base_url=f"http://127.0.0.1:{port}",
        ws_url=f"ws://127.0.0.1:{port}",
        process=process,
        log_path=log_path,
        workdir=workdir,
        log_file=log,
        data_dir=Path(env["DATA_DIR"]),
    )

    def answers() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the platform exited at start:\n{log_path.read_text()[-4000:]}")
        try:
            return httpx.get(platform.base_url + "/api/health/", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(answers, "the platform to answer", 60)
    except AssertionError:
        platform.stop()
        raise RuntimeError(f"the platform did not start:\n{log_path.read_text()[-4000:]}") from None
    return platform


@contextlib.contextmanager
def running_platform(
    database_url: str, extra_env: dict[str, str] | None = None
) -> Iterator[Platform]:
    """A platform for the block: stopped (its environments ended) and its work directory
    removed afterwards, whatever the block did."""
    platform = start_platform(database_url, extra_env)
    try:
        yield platform
    finally:
        platform.stop()
        shutil.rmtree(platform.workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def platform(database_url: str) -> Iterator[Platform]:
    with running_platform(database_url) as running:
        yield running


@pytest.fixture
def api(platform: Platform) -> Iterator[httpx.Client]:
    """An anonymous HTTP client of the platform."""
    with httpx.Client(base_url=platform.base_url, timeout=30) as client:
        yield client


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(autouse=True)
def platform_log_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """When a test fails, print what the platform logged meanwhile (it runs in a subprocess,
    so pytest would not show it)."""
    platforms = [
        request.getfixturevalue(name)
        for name in request.fixturenames
        if name in ("platform", "quick_reaper", "tight_platform")
    ]
    starts = [p.log_path.stat().st_size if p.log_path.exists() else 0 for p in platforms]
    yield
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        for running, start in zip(platforms, starts, strict=True):
            with open(running.log_path, "rb") as log:
                log.seek(start)
                print(f"--- platform log ({running.base_url}) ---")
                print(log.read()[-8000:].decode(errors="replace"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI (``CEP_FORBID_SKIPS=1``, set by ``.ci/run``) a skipped test fails the run: every
    skip says what the machine lacks, and CI installs everything the tests need."""
    if os.environ.get("CEP_FORBID_SKIPS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped:
        reporter.write_line(
            f"CEP_FORBID_SKIPS: {len(skipped)} test(s) skipped; CI must run them all", red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
