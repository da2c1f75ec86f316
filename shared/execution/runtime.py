"""The process's execution runtime: backend, terminal manager, sync engine and idle reaper.

One per process (``get_runtime``). The lifespans of the functions that drive execution
(terminal, workspace) call ``start``/``aclose``; they are ref-counted so the gateway, which
serves every function in one process, starts it once. Its background work (debounced and
periodic syncs, the idle reaper, terminal pumps) runs in one task group owned by a runner
task, so it does not matter which task starts or stops the runtime.

Per session, an in-process lock orders materialization, API pushes and syncs, so a push
never lands before the files it updates were materialized and a sync never reads a file
half-pushed.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from time import monotonic
from uuid import UUID

import anyio
import attrs
from anyio.abc import TaskGroup

from shared import db, workspace_store
from shared.config import get_settings
from shared.execution import hooks
from shared.execution.base import (
    EnvironmentStatus,
    ExecutionBackend,
    ExecutionError,
    ExecutionState,
    WorkspaceEntry,
)
from shared.execution.sync import SyncConfig, SyncEngine
from shared.execution.terminal import TerminalClient, TerminalConfig, TerminalManager

log = logging.getLogger(__name__)


def _float(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key, "").strip()
    value = float(raw) if raw else default
    if value <= 0:
        raise ValueError(f"{key} must be positive, got {raw!r}")
    return value


@attrs.frozen
class RuntimeConfig:
    backend: str = "local"  # EXECUTION_BACKEND: local | kubernetes
    idle_seconds: float = 900.0  # EXECUTION_IDLE_SECONDS
    sync_interval_seconds: float = 30.0  # SYNC_INTERVAL_SECONDS
    sync_quiet_seconds: float = 1.0  # SYNC_QUIET_SECONDS: after output goes quiet
    terminal: TerminalConfig = TerminalConfig()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RuntimeConfig:
        backend = env.get("EXECUTION_BACKEND", "local").strip().lower() or "local"
        if backend not in ("local", "kubernetes"):
            raise ValueError(f"EXECUTION_BACKEND must be local or kubernetes, got {backend!r}")
        return cls(
            backend=backend,
            idle_seconds=_float(env, "EXECUTION_IDLE_SECONDS", 900.0),
            sync_interval_seconds=_float(env, "SYNC_INTERVAL_SECONDS", 30.0),
            sync_quiet_seconds=_float(env, "SYNC_QUIET_SECONDS", 1.0),
            terminal=TerminalConfig(
                grace_seconds=_float(env, "TERMINAL_GRACE_SECONDS", 300.0),
                slow_client_seconds=_float(env, "TERMINAL_SLOW_CLIENT_SECONDS", 5.0),
            ),
        )


def make_backend(kind: str, env: Mapping[str, str]) -> ExecutionBackend:
    if kind == "kubernetes":
        from shared.execution.k8s_config import KubernetesBackendConfig
        from shared.execution.kubernetes import KubernetesBackend

        return KubernetesBackend(KubernetesBackendConfig.from_env(env))
    from shared.execution.local import LocalBackend, LocalSandboxConfig

    return LocalBackend(LocalSandboxConfig.from_env(env))


class ExecutionRuntime:
    def __init__(
        self,
        config: RuntimeConfig | None = None,
        backend: ExecutionBackend | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._env = os.environ if env is None else env
        self.config = config or RuntimeConfig.from_env(self._env)
        self._given_backend = backend
        self.backend: ExecutionBackend | None = None
        self.manager: TerminalManager | None = None
        self.sync: SyncEngine | None = None
        self._users = 0
        self._start_lock = anyio.Lock()
        self._runner: asyncio.Task[None] | None = None
        self._stopping = anyio.Event()
        self._tg: TaskGroup | None = None
        self._locks: dict[UUID, anyio.Lock] = {}
        self._dirty: dict[UUID, float] = {}
        self._dirty_event = anyio.Event()
        self._last_active: dict[UUID, float] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        async with self._start_lock:
            self._users += 1
            if self._users > 1:
                return
            try:
                backend = self._given_backend or make_backend(self.config.backend, self._env)
            except Exception:
                self._users -= 1
                raise
            self.backend = backend
            self.sync = SyncEngine(backend, SyncConfig.from_env(self._env, get_settings()))
            self._stopping = anyio.Event()
            ready = anyio.Event()
            self._runner = asyncio.get_running_loop().create_task(self._run(ready))
            await ready.wait()
            hooks.install(self)  # functions without the runtime (sessions) reach it through hooks

    async def _run(self, ready: anyio.Event) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            assert self.backend is not None
            self.manager = TerminalManager(
                self.backend, tg, self.config.terminal, on_output=self._output_seen
            )
            tg.start_soon(self._debounced_syncs)
            tg.start_soon(self._periodic_syncs)
            tg.start_soon(self._idle_reaper)
            ready.set()
            await self._stopping.wait()
            tg.cancel_scope.cancel()

    async def aclose(self) -> None:
        async with self._start_lock:
            self._users -= 1
            if self._users > 0:
                return
            backend = self.backend
            if backend is None:
                return
            hooks.install(None)
            if self.manager is not None:
                # Persist what the shells wrote, then tell clients we are restarting (1012).
                for session_id in list(await backend.running_sessions()):
                    with anyio.move_on_after(10):
                        await self.sync_back(session_id)
                await self.manager.aclose()
            self._stopping.set()
            if self._runner is not None:
                await self._runner
            await backend.aclose()
            self.backend = self.manager = self.sync = None

    # -- environments --------------------------------------------------------------------------

    def _lock(self, session_id: UUID) -> anyio.Lock:
        return self._locks.setdefault(session_id, anyio.Lock())

    def _parts(self) -> tuple[ExecutionBackend, TerminalManager, SyncEngine]:
        if self.backend is None or self.manager is None or self.sync is None:
            raise ExecutionError("the execution runtime is not running")
        return self.backend, self.manager, self.sync

    async def ensure_environment(self, session_id: UUID, owner_id: int) -> bool:
        """Start the session's environment from the database copy unless it runs already."""
        backend, _, sync = self._parts()
        async with self._lock(session_id):
            if (await backend.status(session_id)).state is ExecutionState.RUNNING:
                return False
            stored = await workspace_store.list_with_content(session_id)
            entries = [
                WorkspaceEntry(f.path, f.type, f.content if f.type == "file" else None)
                for f in stored
            ]
            started = await backend.ensure_started(session_id, owner_id, entries)
            if started:
                sync.materialized(session_id, entries)
            self._last_active[session_id] = monotonic()
            return started

    async def open_terminal(
        self, session_id: UUID, owner_id: int, cols: int, rows: int
    ) -> TerminalClient:
        """Start (or find) the environment and attach a new client to its shell."""
        _, manager, _ = self._parts()
        await self.ensure_environment(session_id, owner_id)
        client = await manager.attach(session_id, cols, rows)
        self._last_active[session_id] = monotonic()
        return client

    async def close_terminal(self, client: TerminalClient) -> None:
        if self.manager is not None:
            await self.manager.detach(client)
        self._last_active[client.session_id] = monotonic()

    async def status(self, session_id: UUID) -> EnvironmentStatus:
        if self.backend is None:
            return EnvironmentStatus(state=ExecutionState.STOPPED, backend=self.config.backend)
        return await self.backend.status(session_id)

    def active_connections(self, session_id: UUID) -> int:
        return self.manager.active_connections(session_id) if self.manager else 0

    async def _running(self, session_id: UUID) -> bool:
        backend = self.backend
        return (
            backend is not None
            and (await backend.status(session_id)).state is ExecutionState.RUNNING
        )

    async def sync_back(self, session_id: UUID) -> None:
        """Write the environment's changes back to the database; no-op when not running.
        A failure is logged, not raised: the database copy stays valid to serve."""
        if self.sync is None or not await self._running(session_id):
            return
        async with self._lock(session_id):
            try:
                await self.sync.sync_back(session_id)
            except Exception:
                log.exception("sync of %s failed", session_id)

    async def file_written(self, session_id: UUID, path: str, content: bytes) -> None:
        await self._push(session_id, "file", path, content)

    async def directory_created(self, session_id: UUID, path: str) -> None:
        await self._push(session_id, "directory", path, None)

    async def path_deleted(self, session_id: UUID, path: str) -> None:
        await self._push(session_id, "delete", path, None)

    async def _push(self, session_id: UUID, kind: str, path: str, content: bytes | None) -> None:
        """Put an API write (already committed) into the running environment, if any."""
        if self.backend is None or self.sync is None:
            return
        async with self._lock(session_id):
            if not await self._running(session_id):
                return
            try:
                if kind == "file":
                    await self.backend.write_file(session_id, path, content or b"")
                    self.sync.pushed_file(session_id, path, content or b"")
                elif kind == "directory":
                    await self.backend.make_directory(session_id, path)
                    self.sync.pushed_directory(session_id, path)
                else:
                    await self.backend.delete_path(session_id, path)
                    self.sync.pushed_delete(session_id, path)
            except Exception:
                # The database has it; the environment gets it at its next start.
                log.exception("pushing %s %s into %s failed", kind, path, session_id)

    async def shutdown(
        self, session_id: UUID, reason: str = "workspace shut down"
    ) -> tuple[int, bool]:
        """Stop the session's shells, sync, stop the environment.
        Returns (connections closed, environment cleaned); idempotent."""
        if self.backend is None or self.manager is None:
            return 0, True
        # Shells go first so nothing writes between the final sync and the stop.
        closed = await self.manager.close_session(session_id, 1001, reason)
        await self.sync_back(session_id)
        async with self._lock(session_id):
            try:
                await self.backend.stop(session_id)
            except ExecutionError:
                log.exception("stopping %s failed", session_id)
                return closed, False
        self._forget(session_id)
        return closed, True

    async def session_deleted(self, session_id: UUID) -> None:
        """The session is gone: close its terminals and stop without syncing."""
        if self.backend is None or self.manager is None:
            return
        await self.manager.close_session(session_id, 1001, "workspace deleted")
        async with self._lock(session_id):
            await self.backend.stop(session_id)
        self._forget(session_id)

    def _forget(self, session_id: UUID) -> None:
        if self.sync is not None:
            self.sync.forget(session_id)
        self._dirty.pop(session_id, None)
        self._last_active.pop(session_id, None)

    # -- background work ------------------------------------------------------------------------

    def _output_seen(self, session_id: UUID) -> None:
        now = monotonic()
        self._dirty[session_id] = now
        self._last_active[session_id] = now
        self._dirty_event.set()

    async def _debounced_syncs(self) -> None:
        """Sync a session once its terminal output has been quiet for a moment."""
        quiet = self.config.sync_quiet_seconds
        while True:
            if not self._dirty:
                self._dirty_event = anyio.Event()
                await self._dirty_event.wait()
                continue
            now = monotonic()
            for session_id, seen in list(self._dirty.items()):
                if now - seen >= quiet:
                    del self._dirty[session_id]
                    await self.sync_back(session_id)
            if self._dirty:
                await anyio.sleep(max(0.05, min(self._dirty.values()) + quiet - monotonic()))

    async def _periodic_syncs(self) -> None:
        while True:
            await anyio.sleep(self.config.sync_interval_seconds)
            if self.backend is None:
                continue
            for session_id in list(await self.backend.running_sessions()):
                await self.sync_back(session_id)

    async def _idle_reaper(self) -> None:
        """Stop environments nobody has used (no terminal attached) for the idle timeout.

        Replicas share the environments (pods are found by label), so "attached" must be
        shared too: each tick, a replica records in the database which of its environments
        have terminals, and an environment is idle only when no replica has recorded it for
        the timeout. An environment whose session was deleted is stopped at once, unsynced.
        """
        idle = self.config.idle_seconds
        while True:
            await anyio.sleep(min(60.0, max(0.05, idle / 4)))
            if self.backend is None or self.manager is None:
                continue
            try:
                await self._reap_once(idle)
            except Exception:
                log.exception("the idle reaper's round failed")

    async def _reap_once(self, idle: float) -> None:
        assert self.backend is not None and self.manager is not None
        running = list(await self.backend.running_sessions())
        if not running:
            return
        now = monotonic()
        attached = [s for s in running if self.manager.active_connections(s)]
        async with db.connection() as conn:
            if attached:
                await conn.execute(
                    "UPDATE sessions SET terminal_seen_at = now() WHERE id = ANY($1::uuid[])",
                    attached,
                )
            rows = await conn.fetch(
                "SELECT id, extract(epoch FROM now() - terminal_seen_at) AS seen_ago "
                "FROM sessions WHERE id = ANY($1::uuid[])",
                running,
            )
        seen_ago = {row["id"]: row["seen_ago"] for row in rows}
        for session_id in running:
            if session_id not in seen_ago:
                log.info("stopping the environment of deleted session %s", session_id)
                await self.session_deleted(session_id)
                continue
            if session_id in attached:
                self._last_active[session_id] = now
                continue
            local = now - self._last_active.setdefault(session_id, now)
            elsewhere = seen_ago[session_id]
            quiet_for = local if elsewhere is None else min(local, float(elsewhere))
            if quiet_for >= idle:
                log.info("stopping idle environment %s", session_id)
                try:
                    await self.shutdown(session_id, "idle timeout")
                except Exception:
                    log.exception("stopping idle environment %s failed", session_id)


_runtime: ExecutionRuntime | None = None


def get_runtime() -> ExecutionRuntime:
    """The process singleton."""
    global _runtime
    if _runtime is None:
        _runtime = ExecutionRuntime()
    return _runtime
