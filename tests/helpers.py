"""Test helpers: act as clients do, through the public API only."""

from __future__ import annotations

import inspect
import itertools
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import anyio
import httpx

PASSWORD = "correct horse battery"
ALLOWED_ORIGIN = "http://localhost:3000"  # one of the default CORS origins
_counter = itertools.count(1)


# The workspace volume of the suite's sandboxes (SANDBOX_WORKSPACE_MB), in MiB.
TEST_WORKSPACE_MB = 64

# How often a wait looks at its condition again (the condition is state of another process:
# the platform, an agent, the kernel; nothing would tell this process when it changes).
POLL_SECONDS = 0.05


def wait_until(condition: Callable[[], object], what: str, within: float = 20.0) -> None:
    """Until ``condition()`` is true; an AssertionError naming ``what`` after ``within`` s."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        time.sleep(POLL_SECONDS)


async def eventually(condition: Callable[[], object], what: str, within: float = 20.0) -> None:
    """``wait_until`` for async tests; ``condition`` may return an awaitable."""
    try:
        with anyio.fail_after(within):
            while True:
                result = condition()
                if inspect.isawaitable(result):
                    result = await result
                if result:
                    return
                await anyio.sleep(POLL_SECONDS)
    except TimeoutError:
        raise AssertionError(f"timed out after {within} s waiting for {what}") from None


@dataclass
class Platform:
    base_url: str
    ws_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    workdir: Path
    log_file: IO[bytes]
    data_dir: Path  # DATA_DIR: several platforms may share one (and its sandboxes)

    def stop(self, *, keep_environments: bool = False) -> None:
        """Stop the gateway; its environments outlive it by design, so unless told to keep
        them (a restart test), end them too: a test run leaves no sandbox behind."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self.log_file.closed:
            self.log_file.close()
        if not keep_environments:
            destroy_sandboxes(self.data_dir)

    def kill(self) -> None:
        """``kill -9`` the gateway: no shutdown work at all (its environments stay)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=20)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class User:
    id: int
    username: str
    email: str
    token: str
    client: httpx.Client
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def free_port() -> int:
    """A TCP port nobody listens on right now, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # type: ignore[no-any-return]


def unique_name(prefix: str = "user") -> str:
    return f"{prefix}{next(_counter)}_{uuid.uuid4().hex[:6]}"


def register(
    api: httpx.Client,
    username: str | None = None,
    email: str | None = None,
    password: str = PASSWORD,
) -> httpx.Response:
    username = username or unique_name()
    email = email or f"{username}@example.com"
    return api.post(
        "/api/users/register", json={"username": username, "email": email, "password": password}
    )


def new_user(api: httpx.Client, *, reviewer: bool = False, level: int | None = None) -> User:
    """Register and log in a fresh user; the returned client carries its bearer token."""
    username = unique_name()
    email = f"{username}@example.com"
    response = register(api, username, email)
    assert response.status_code == 201, response.text
    login = api.post("/api/users/login", json={"username": username, "password": PASSWORD})
    assert login.status_code == 200, login.text
    api.cookies.clear()  # the anonymous client stays anonymous
    token = login.json()["data"]["token"]
    client = httpx.Client(
        base_url=str(api.base_url), timeout=30, headers={"Authorization": f"Bearer {token}"}
    )
    user = User(login.json()["data"]["user"]["id"], username, email, token, client)
    if reviewer:
        body: dict[str, Any] = {"is_reviewer": True}
        if level is not None:
            body["reviewer_level"] = level
        assert client.put("/api/users/me/reviewer-status", json=body).status_code == 200
    return user


def new_workspace(user: User, name: str = "ws") -> str:
    response = user.client.post("/api/postgres_sessions/", json={"name": name})
    assert response.status_code == 201, response.text
    return response.json()["data"]["id"]


def assert_error(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response is the error envelope with this status."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["success"] is False, body
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["error"], str) and body["error"]
    assert body["timestamp"].endswith("Z")
    return body


ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def fresh_database(prefix: str, embedded_dir: str) -> Iterator[str]:
    """A new, empty database, dropped afterwards: on the server DATABASE_URL names, or on an
    embedded pgserver under ``.data/<embedded_dir>``. Its URL is yielded."""
    import asyncio

    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    server = os.environ.get("DATABASE_URL")
    embedded = None  # held for the life of the database: pgserver stops with its last handle
    if not server:
        import pgserver

        pgdata = ROOT / ".data" / embedded_dir
        pgdata.mkdir(parents=True, exist_ok=True)
        embedded = pgserver.get_server(pgdata, cleanup_mode="stop")
        server = embedded.get_uri()

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(server)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield str(httpx.URL(server).copy_with(path="/" + name))
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        del embedded


def destroy_sandboxes(data_dir: Path) -> None:
    """End every environment (and warm spare) kept under a platform's data directory."""
    from shared.config import Settings
    from shared.execution.local import LocalBackend

    root = data_dir / "sandboxes"
    if not root.exists():
        return
    settings = Settings.from_env({"DATA_DIR": str(data_dir)})
    LocalBackend(settings.execution.sandbox).destroy_everything()


# -- what a platform's sandboxes hold on the host (tests of survival and cleanup) -----------


def sandbox_slots(data_dir: Path) -> dict[str, dict[str, Any]]:
    """slot id -> its meta.json (``{}`` when it has none, or none readable yet)."""
    import json

    slots: dict[str, dict[str, Any]] = {}
    root = data_dir / "sandboxes" / "slots"
    for slot_dir in sorted(root.iterdir()) if root.exists() else []:
        try:
            slots[slot_dir.name] = json.loads((slot_dir / "meta.json").read_text())
        except (OSError, ValueError):
            slots[slot_dir.name] = {}
    return slots


def session_slot(data_dir: Path, session_id: str) -> str | None:
    """The id of the slot the session's environment runs in, or None."""
    link = data_dir / "sandboxes" / "sessions" / session_id
    try:
        return os.readlink(link).rsplit("/", 1)[-1]
    except FileNotFoundError:
        return None


def slot_pids(meta: dict[str, Any]) -> set[int]:
    """Every process in the slot's cgroup (its sandbox, agent, shells, programs)."""
    cgroup = (meta.get("containment") or {}).get("cgroup") or {}
    pids: set[int] = set()
    for path in (cgroup.get("paths") or {}).values():
        with suppress(OSError):
            pids.update(int(p) for p in Path(path, "cgroup.procs").read_text().split())
    return pids


def _uids_of(pid: str) -> set[int]:
    with suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:") and line.split()[1] == "Z":
                return set()
            if line.startswith("Uid:"):
                return {int(u) for u in line.split()[1:]}
    return set()


@dataclass
class SandboxTrace:
    """Every slot and host uid a test's sandboxes were seen with, to check for leftovers."""

    data_dir: Path
    lease_dir: Path
    slots: set[str] = field(default_factory=set)
    uids: set[int] = field(default_factory=set)

    def observe(self) -> None:
        for slot, meta in sandbox_slots(self.data_dir).items():
            self.slots.add(slot)
            uid = ((meta.get("containment") or {}).get("uid") or {}).get("uid")
            if uid is not None:
                self.uids.add(int(uid))
        if self.lease_dir.exists():
            self.uids.update(int(n) for n in os.listdir(self.lease_dir) if n.isdigit())

    def leftovers(self) -> list[str]:
        """What the sandboxes left on the host: mounts, loop devices, cgroups, processes of
        their uids, uid leases. Empty when everything was cleaned up."""
        from shared.execution.sandbox_limits_detect import DEFAULT_PARENT, detect

        found: list[str] = []
        root = str(self.data_dir)
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].encode().decode("unicode_escape")
            if point.startswith(root):
                found.append(f"mount {point}")
        for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
            with suppress(OSError):
                if backing.read_text().startswith(root):
                    found.append(f"loop device {backing.parent.parent.name}")
        for parent in detect(DEFAULT_PARENT).parents.values():
            found += [f"cgroup {parent / s}" for s in self.slots if (parent / s).exists()]
        for pid in filter(str.isdigit, os.listdir("/proc")):
            if _uids_of(pid) & self.uids:
                found.append(f"process {pid}")
        if self.lease_dir.exists():
            found += [f"uid lease {n}" for n in os.listdir(self.lease_dir) if n.isdigit()]
        return found
