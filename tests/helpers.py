"""Test helpers: act as clients do, through the public API only."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

PASSWORD = "correct horse battery"
_counter = itertools.count(1)


@dataclass
class Platform:
    base_url: str
    ws_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    workdir: Path
    log_file: IO[bytes]

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
            destroy_sandboxes(self.workdir / "data")

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
