"""Real database faults under the real platform: a frozen server, a stopped one, a full disk.

Each test runs a PostgreSQL of its own (initdb + pg_ctl on a free port in a temp directory) so
it can freeze, stop or starve it without touching the server the other tests use, and starts
the gateway against it with small timeouts. What a user sees is asserted over HTTP: a 503 (507
for a full disk) error envelope within the configured bound, never a hang or a 500, and the
platform recovering by itself, with everything acknowledged before still there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest

from shared.db import advisory_key
from tests.conftest import running_platform
from tests.helpers import (
    Platform,
    User,
    assert_error,
    free_port,
    new_user,
    new_workspace,
    wait_until,
)

# Small bounds so a test sees the fault quickly; a request may take a connect (or acquire)
# wait plus one statement wait, and the client gives it twice that before calling it a hang.
TIMEOUT_SECONDS = 2
FAULT_ENV = {
    "DB_CONNECT_TIMEOUT": str(TIMEOUT_SECONDS),
    "DB_ACQUIRE_TIMEOUT": str(TIMEOUT_SECONDS),
    "DB_STATEMENT_TIMEOUT": str(TIMEOUT_SECONDS),
    "DB_POOL_MIN": "2",
}
ANSWER_WITHIN = 4 * TIMEOUT_SECONDS + 2
RECOVERY_SECONDS = 45

pytestmark = pytest.mark.timeout(240)


def _server_binaries() -> Path | None:
    """A directory holding initdb, pg_ctl and postgres: the system's newest, else pgserver's."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: p.parent.name)
    with contextlib.suppress(ImportError):
        from pgserver._commands import POSTGRES_BIN_PATH

        candidates.insert(0, POSTGRES_BIN_PATH)
    found = [c for c in candidates if (c / "initdb").exists() and (c / "pg_ctl").exists()]
    return found[-1] if found else None


class OwnPostgres:
    """A throwaway PostgreSQL server: TCP on 127.0.0.1, trust auth, its data where we say."""

    def __init__(self, workdir: Path, data_dir: Path | None = None) -> None:
        bin_dir = _server_binaries()
        if bin_dir is None:
            pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
        self.bin = bin_dir
        self.workdir = workdir
        self.data = data_dir or workdir / "data"
        self.wal = workdir / "wal"  # beside, not inside: a full data disk then fails writes
        self.log = workdir / "postgres.log"
        self.port = free_port()
        self.user: str | None = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root without a 'postgres' user to run the test server")
            self.user = "postgres"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            check=True,
            user=self.user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout,
            cwd=self.workdir,
        )

    def init(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        if self.user:
            uid, gid = pwd.getpwnam(self.user)[2:4]
            for path in (self.workdir, self.data):
                os.chown(path, uid, gid)
        os.chmod(self.data, 0o700)
        self._run(
            "initdb", "-D", str(self.data), "-X", str(self.wal), "-U", "postgres",
            "--auth=trust", "--encoding=UTF8", "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
                  "-t", "60", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def processes(self) -> list[psutil.Process]:
        """The postmaster and every process it started (none when it is not running)."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
            postmaster = psutil.Process(pid)
            # A stale pid file may name a pid reused by some other process: never signal that.
            if postmaster.name() != "postgres" or str(self.data) not in postmaster.cmdline():
                return []
            return [postmaster, *postmaster.children(recursive=True)]
        except (OSError, ValueError, psutil.Error):
            return []

    def backends(self) -> list[psutil.Process]:
        """The processes serving client connections (their title names the client address)."""
        return [p for p in self.processes() if "127.0.0.1(" in " ".join(p.cmdline())]

    def cleanup(self) -> None:
        for process in self.processes():
            with contextlib.suppress(psutil.Error):
                process.send_signal(signal.SIGCONT)
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.stop("immediate")
        for process in self.processes():
            with contextlib.suppress(psutil.Error):
                process.kill()


@contextlib.contextmanager
def own_postgres(
    data_dir: Path | None = None, workdir: Path | None = None
) -> Iterator[OwnPostgres]:
    workdir = workdir or Path(tempfile.mkdtemp(prefix="cep-pg-"))
    os.chmod(workdir, 0o755)
    server = OwnPostgres(workdir, data_dir)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def platform_on(server: OwnPostgres) -> Iterator[Platform]:
    with running_platform(server.url, FAULT_ENV) as platform:
        yield platform


def _send(processes: list[psutil.Process], sig: signal.Signals) -> None:
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(sig)


def _answers(response_of: Callable[[], httpx.Response], status: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return response_of().status_code == status
        except httpx.TransportError:
            return False

    return check


def _file(user: User, workspace: str, path: str) -> httpx.Response:
    return user.client.get(f"/api/workspace/{workspace}/files/{path}", timeout=ANSWER_WITHIN)


def _save(user: User, workspace: str, path: str, content: str) -> httpx.Response:
    return user.client.put(
        f"/api/workspace/{workspace}/files/{path}",
        json={"content": content},
        timeout=ANSWER_WITHIN,
    )


def _health(platform: Platform) -> httpx.Response:
    return httpx.get(f"{platform.base_url}/api/health/", timeout=ANSWER_WITHIN)


def _assert_recovered(platform: Platform, user: User, workspace: str, kept: str) -> None:
    """Health and the file API answer again without a restart: ``kept.txt`` still holds
    ``kept``, and a new save is read back."""
    wait_until(_answers(lambda: _health(platform), 200), "200 from health", RECOVERY_SECONDS)
    wait_until(
        _answers(lambda: _file(user, workspace, "kept.txt"), 200),
        "200 from file",
        RECOVERY_SECONDS,
    )
    assert _file(user, workspace, "kept.txt").json()["data"]["content"] == kept
    assert _save(user, workspace, "after.txt", "written after").status_code == 200
    assert _file(user, workspace, "after.txt").json()["data"]["content"] == "written after"


def _assert_unavailable(response: httpx.Response) -> None:
    body = assert_error(response, 503)
    assert "Internal" not in body["message"], body


def test_a_frozen_database_is_a_503_within_the_timeout_and_recovery_needs_no_restart() -> None:
    with own_postgres() as server, platform_on(server) as platform:
        with httpx.Client(base_url=platform.base_url, timeout=ANSWER_WITHIN) as api:
            user = new_user(api)
        workspace = new_workspace(user)
        assert (
            _save(user, workspace, "kept.txt", "acknowledged before the freeze").status_code == 200
        )

        frozen = server.processes()
        _send(frozen, signal.SIGSTOP)  # the postmaster and every backend: nothing answers
        try:
            # An httpx ReadTimeout here is the hang this rule forbids.
            _assert_unavailable(_file(user, workspace, "kept.txt"))
            _assert_unavailable(_save(user, workspace, "during.txt", "maybe"))
            _assert_unavailable(user.client.get("/api/postgres_sessions/", timeout=ANSWER_WITHIN))
            # Probes polling together share one bounded check instead of queueing behind it.
            with ThreadPoolExecutor(max_workers=6) as pool:
                for response in pool.map(lambda _: _health(platform), range(6)):
                    _assert_unavailable(response)
        finally:
            _send(frozen, signal.SIGCONT)

        _assert_recovered(platform, user, workspace, "acknowledged before the freeze")
        assert "unhandled error" not in platform.log()


def test_a_frozen_backend_is_dropped_and_the_pool_reconnects_while_it_stays_frozen() -> None:
    with own_postgres() as server, platform_on(server) as platform:
        with httpx.Client(base_url=platform.base_url, timeout=ANSWER_WITHIN) as api:
            user = new_user(api)
        workspace = new_workspace(user)
        assert _save(user, workspace, "kept.txt", "before").status_code == 200

        frozen = server.backends()  # the pool's connections; the postmaster still accepts
        assert frozen, "the platform holds no connection to freeze"
        _send(frozen, signal.SIGSTOP)
        try:
            # Requests on a frozen connection time out (503); the pool drops those connections
            # and opens new ones, so requests succeed again with the old backends still frozen.
            for _ in range(len(frozen) + 1):
                response = _file(user, workspace, "kept.txt")
                assert response.status_code in (200, 503), response.text
            wait_until(
                _answers(lambda: _file(user, workspace, "kept.txt"), 200), "200 from file", 30
            )
            assert _save(user, workspace, "during.txt", "while frozen").status_code == 200
        finally:
            _send(frozen, signal.SIGCONT)
        assert _file(user, workspace, "during.txt").json()["data"]["content"] == "while frozen"


def test_a_stopped_database_is_a_503_and_its_restart_is_picked_up_without_restarting() -> None:
    with own_postgres() as server, platform_on(server) as platform:
        with httpx.Client(base_url=platform.base_url, timeout=ANSWER_WITHIN) as api:
            user = new_user(api)
        workspace = new_workspace(user)
        assert _save(user, workspace, "kept.txt", "committed before the crash").status_code == 200

        server.stop("immediate")  # a crash: no shutdown checkpoint, recovery from the WAL
        _assert_unavailable(_file(user, workspace, "kept.txt"))
        _assert_unavailable(_save(user, workspace, "during.txt", "refused"))
        # Health shares one measurement per second, so it may take that long to notice.
        wait_until(_answers(lambda: _health(platform), 503), "503 from health", 5)
        _assert_unavailable(_health(platform))

        server.start()
        _assert_recovered(platform, user, workspace, "committed before the crash")
        assert platform.process.poll() is None, "the platform restarted or died"


def test_a_statement_past_the_timeout_is_a_503_and_the_next_request_works() -> None:
    """The server cancels a statement that waits too long (here for a workspace's lock)."""
    with own_postgres() as server, platform_on(server) as platform:
        with httpx.Client(base_url=platform.base_url, timeout=ANSWER_WITHIN) as api:
            user = new_user(api)
        workspace = new_workspace(user)
        assert _save(user, workspace, "kept.txt", "before").status_code == 200

        async def save_while_the_lock_is_held() -> httpx.Response:
            holder = await asyncpg.connect(server.url)
            try:
                await holder.execute(
                    "SELECT pg_advisory_lock($1)", advisory_key("workspace", workspace)
                )
                return await asyncio.to_thread(_save, user, workspace, "kept.txt", "blocked")
            finally:
                await holder.close()

        _assert_unavailable(asyncio.run(save_while_the_lock_is_held()))
        assert _file(user, workspace, "kept.txt").json()["data"]["content"] == "before"
        assert _save(user, workspace, "kept.txt", "after").status_code == 200
        assert "unhandled error" not in platform.log()


# -- a full disk ------------------------------------------------------------------------------

DISK_MB = 96


@contextlib.contextmanager
def small_disk() -> Iterator[Path]:
    """A size-capped tmpfs to hold a server's data directory; unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a size-capped filesystem for the data directory needs root")
    if shutil.which("mount") is None:
        pytest.skip("no mount command on this machine")
    workdir = Path(tempfile.mkdtemp(prefix="cep-pg-full-"))
    mountpoint = workdir / "disk"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m,mode=0755", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield workdir
    finally:
        if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)


def _fill(directory: Path) -> Path:
    """Write a file until the filesystem is full; the file, to delete to free the space."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 4096):  # megabytes, then the last pages
            block = b"\0" * size
            with contextlib.suppress(OSError):  # ENOSPC: full at this block size
                while True:
                    os.write(fd, block)
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_is_a_507_not_a_500_and_writes_work_once_space_is_freed() -> None:
    with small_disk() as workdir:
        data = workdir / "disk" / "data"
        with (
            own_postgres(data_dir=data, workdir=workdir) as server,
            platform_on(server) as platform,
        ):
            with httpx.Client(base_url=platform.base_url, timeout=ANSWER_WITHIN) as api:
                user = new_user(api)
            workspace = new_workspace(user)
            assert _save(user, workspace, "kept.txt", "saved before").status_code == 200

            # Random text does not compress: storing it needs new pages on the full disk.
            big = os.urandom(300 * 1024).hex()[: 600 * 1024]
            filler = _fill(workdir / "disk")
            try:
                body = assert_error(_save(user, workspace, "big.txt", big), 507)
                assert body["message"] == "Insufficient storage", body
                # Nothing half-written, and what was saved is still readable.
                assert _file(user, workspace, "big.txt").status_code in (404, 503)
                kept = _file(user, workspace, "kept.txt")
                assert kept.status_code == 200 and kept.json()["data"]["content"] == "saved before"
            finally:
                filler.unlink()

            wait_until(
                _answers(lambda: _save(user, workspace, "big.txt", big), 200),
                "200 from save",
                RECOVERY_SECONDS,
            )
            assert _file(user, workspace, "big.txt").json()["data"]["content"] == big
            assert "unhandled error" not in platform.log()
