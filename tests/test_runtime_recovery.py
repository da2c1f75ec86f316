"""The runtime after a crash mid-start, called directly on a real database and a real local
sandbox: a new environment that never got its files is filled by the next sync, never read
as "the shell deleted everything"."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID

import pytest

from shared import account_store, db, environment_store, session_store, workspace_store
from shared.config import DatabaseSettings, ExecutionSettings, SandboxSettings, Settings
from shared.envelope import utc_now
from shared.execution.agent_client import AgentEndpoint
from shared.execution.local import LocalBackend
from shared.execution.runtime import ExecutionRuntime
from tests.conformance.backends import sandbox_root
from tests.helpers import unique_name

pytestmark = pytest.mark.anyio


class DiesAfterStarting(LocalBackend):
    """The process dies right after the environment exists, before its files go in."""

    async def ensure_started(self, session_id: UUID, owner_id: int) -> tuple[AgentEndpoint, bool]:
        await super().ensure_started(session_id, owner_id)
        raise RuntimeError("the server died here")


@pytest.fixture
async def runtime(database: None, database_url: str) -> AsyncIterator[ExecutionRuntime]:
    with sandbox_root("cep-recovery-") as root:
        sandbox = SandboxSettings(root=root / "sandboxes", warm_spares=0)
        settings = Settings(
            database=DatabaseSettings(url=database_url),
            execution=ExecutionSettings(sandbox=sandbox),
        )
        backend = DiesAfterStarting(sandbox)
        running = ExecutionRuntime(settings, backend)
        await running.start()
        try:
            yield running
        finally:
            await running.aclose()
            backend.destroy_everything()


async def test_a_sync_of_an_environment_that_never_got_its_files_loses_nothing(
    runtime: ExecutionRuntime,
) -> None:
    name = unique_name("rec")
    user = await account_store.insert_user(name, f"{name}@example.com", "x", utc_now())
    session = await session_store.create_within_quota(user["id"], "w", "python", utc_now(), 10)
    assert session is not None
    workspace = session["id"]
    limits = Settings().workspace
    async with db.transaction():
        await workspace_store.write_file(workspace, "main.py", b"print(1)\n", limits)
        await workspace_store.write_file(workspace, "pkg/mod.py", b"x = 1\n", limits)
    # An earlier environment held exactly these files (its baseline outlived it).
    await environment_store.reset_to_database(workspace)
    before = sorted(await workspace_store.inventory(workspace))

    with pytest.raises(RuntimeError, match="died"):
        await runtime.ensure_environment(workspace, user["id"])
    await runtime.sync_back(workspace)  # the leader's periodic sync finds the empty one

    assert sorted(await workspace_store.inventory(workspace)) == before
    endpoint = await runtime.endpoint(workspace)
    assert endpoint is not None
    files = await runtime.client(endpoint).read_files(["main.py", "pkg/mod.py"], 1 << 20)
    assert files == {"main.py": b"print(1)\n", "pkg/mod.py": b"x = 1\n"}  # pushed in
