"""The process's execution runtime: the backend, the agents' clients, syncs and their
retries, the terminals this process relays, and the background work of the cluster.

One per process, ref-counted (the gateway serves every function in one process and starts
it once), injected into the handlers that need it. Environments do not live here: they
live in their agents, which outlive this process, so the runtime holds only what it can
lose (open relays, timers) and finds everything else again from the backend.

Background work: syncs after terminal output goes quiet and retries of failed syncs with
backoff (any replica, for the environments it touched); the periodic sync and the idle
reaper run once per cluster, in the replica holding the leader lock (``leader``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from uuid import UUID

import anyio
import attrs
from anyio.abc import TaskGroup

from shared import environment_store
from shared.config import Settings
from shared.execution.agent_client import AgentClient, AgentEndpoint, AgentStatus, client_for
from shared.execution.agent_terminal import AgentTerminal
from shared.execution.base import (
    EnvironmentStatus,
    ExecutionBackend,
    ExecutionError,
    ExecutionState,
)
from shared.execution.leader import run_as_leader
from shared.execution.locks import KeyedLock
from shared.execution.reaper import leader_work
from shared.execution.relays import Relays
from shared.execution.sync import SyncEngine, SyncOutcome, record_failure

log = logging.getLogger(__name__)


class QuotaReached(ExecutionError):
    """A per-user limit (environments running, terminals per session) says no."""


def make_backend(settings: Settings) -> ExecutionBackend:
    if settings.execution.backend == "kubernetes":
        from shared.execution.kubernetes import KubernetesBackend

        return KubernetesBackend(settings.execution.kubernetes)
    from shared.execution.local import LocalBackend

    return LocalBackend(settings.execution.sandbox)


@attrs.frozen
class ShutdownOutcome:
    closed: int  # terminal connections closed
    cleaned: bool  # the environment is gone (False: kept, see message)
    message: str | None = None


class ExecutionRuntime:
    def __init__(self, settings: Settings, backend: ExecutionBackend | None = None) -> None:
        self.settings = settings
        self.config = settings.execution
        self._given_backend = backend
        self.backend: ExecutionBackend | None = None
        self.sync = SyncEngine(settings)
        self._users = 0
        self._start_lock = anyio.Lock()
        self._runner: asyncio.Task[None] | None = None
        self._stopping = anyio.Event()
        self._tg: TaskGroup | None = None
        self.locks = KeyedLock()
        self.relays = Relays()
        self._due: dict[UUID, float] = {}  # session -> when to sync it (monotonic)
        self._backoff: dict[UUID, float] = {}  # session -> the last retry delay
        self._wake = anyio.Event()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        async with self._start_lock:
            self._users += 1
            if self._users > 1:
                return
            try:
                self.backend = self._given_backend or make_backend(self.settings)
                await self.backend.start()
            except Exception:
                self._users -= 1
                self.backend = None
                raise
            self._stopping = anyio.Event()
            ready = anyio.Event()
            self._runner = asyncio.get_running_loop().create_task(self._run(ready))
            await ready.wait()

    async def _run(self, ready: anyio.Event) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._scheduled_syncs)
            tg.start_soon(self.relays.close_logged_out)
            tg.start_soon(self.relays.heartbeats, self.config.idle_seconds / 4)
            tg.start_soon(run_as_leader, self._backend().scope, partial(leader_work, self))
            ready.set()
            await self._stopping.wait()
            tg.cancel_scope.cancel()

    async def aclose(self) -> None:
        async with self._start_lock:
            self._users -= 1
            if self._users > 0 or self.backend is None:
                return
            backend = self.backend
            # Environments keep running (their agents outlive us): tell this process's
            # terminal clients to reconnect, and save what the shells wrote meanwhile.
            await self.relays.close_everything(1012, "server restarting")
            with anyio.move_on_after(10):
                for session_id in list(self._due):
                    await self._sync_now(session_id)
            self._stopping.set()
            if self._runner is not None:
                await self._runner
            await backend.aclose()
            self.backend = None

    def backend_or_fail(self) -> ExecutionBackend:
        return self._backend()

    def _backend(self) -> ExecutionBackend:
        if self.backend is None:
            raise ExecutionError("the execution runtime is not running")
        return self.backend

    # -- environments --------------------------------------------------------------------------

    def client(self, endpoint: AgentEndpoint) -> AgentClient:
        return client_for(endpoint, self.config.agent_timeout_seconds)

    async def endpoint(self, session_id: UUID) -> AgentEndpoint | None:
        """The running environment's agent, or None (not running)."""
        return await self._backend().find(session_id)

    async def status(self, session_id: UUID) -> EnvironmentStatus:
        if self.backend is None:
            return EnvironmentStatus(ExecutionState.STOPPED, self.config.backend)
        return await self.backend.status(session_id)

    async def ensure_environment(
        self, session_id: UUID, owner_id: int
    ) -> tuple[AgentEndpoint, AgentStatus | None]:
        """The session's agent, starting the environment from the database copy if needed
        (within the owner's quota of environments running at once); with the agent's status
        when it was running already (None: started now, nothing attached yet)."""
        backend = self._backend()
        async with self.locks.hold(("environment", session_id)):
            endpoint = await backend.find(session_id)
            if endpoint is not None:
                status = await self.client(endpoint).status()
                if not status.materialized:
                    # Whoever started it died before its files were in: put them in now.
                    await self.sync.materialize(session_id, self.client(endpoint))
                return endpoint, status
            # The count and the start under one lock per owner: opened all at once, N
            # terminals of N workspaces would otherwise all pass the count (in this process;
            # replicas each hold their own lock).
            async with self.locks.hold(("owner", owner_id)):
                limit = self.settings.quotas.environments_per_user
                running = [e for e in await backend.running() if e.owner_id == owner_id]
                if len(running) >= limit:
                    raise QuotaReached(
                        f"at most {limit} execution environments may run at once per user; "
                        "shut one down first"
                    )
                # What an earlier environment had synced says nothing of a new one: a sync
                # that reaches the new one before its files are in (a crash between the two
                # steps, a read racing the start) must push the files in, not read their
                # absence as the shell deleting them.
                await environment_store.clear(session_id)
                endpoint, started = await backend.ensure_started(session_id, owner_id)
            if started:
                try:
                    await self.sync.materialize(session_id, self.client(endpoint), fresh=True)
                except BaseException:
                    with anyio.CancelScope(shield=True):
                        await backend.stop(session_id)
                    raise
                return endpoint, None
            return endpoint, await self.client(endpoint).status()

    # -- syncs: now, soon, and retried ---------------------------------------------------------

    async def sync_back(self, session_id: UUID) -> SyncOutcome | None:
        """Bring a running environment and the database in step now; None when it is not
        running. Failures are raised (and retried in the background)."""
        endpoint = await self.endpoint(session_id)
        if endpoint is None:
            return None
        try:
            outcome = await self.sync.sync(session_id, self.client(endpoint))
        except BaseException as exc:
            if isinstance(exc, Exception):
                await self._failed(session_id, exc)
            raise
        self._succeeded(session_id)
        return outcome

    def schedule_sync(self, session_id: UUID, delay: float = 0.0) -> None:
        due = time.monotonic() + delay
        if session_id not in self._due or self._due[session_id] > due:
            self._due[session_id] = due
            self._wake.set()

    def output_seen(self, session_id: UUID) -> None:
        """Terminal output: sync once it has been quiet for a moment (debounced). Called for
        every chunk: the scheduler is woken only when the session was not already waiting
        (a later due time never needs it)."""
        waiting = session_id in self._due
        self._due[session_id] = time.monotonic() + self.config.sync_quiet_seconds
        if not waiting:
            self._wake.set()

    async def _sync_now(self, session_id: UUID) -> None:
        try:
            await self.sync_back(session_id)
        except Exception:
            pass  # recorded and rescheduled by _failed

    async def _failed(self, session_id: UUID, exc: Exception) -> None:
        if await self._gone(session_id):
            # Stopped meanwhile (a shutdown whose final sync succeeded, a deletion): a sync
            # that raced it failed for that reason only, and nothing is left to retry.
            self._forget(session_id)
            return
        delay = min(self.config.sync_retry_max_seconds, max(0.5, self._backoff.get(session_id, 0)
                                                                * 2))  # fmt: skip
        self._backoff[session_id] = delay
        self.schedule_sync(session_id, delay)
        message = str(exc) if isinstance(exc, ExecutionError) else "the database is unavailable"
        log.warning("sync of %s failed (%r); retrying in %.1f s", session_id, exc, delay)
        with contextlib.suppress(Exception), anyio.move_on_after(2):
            await record_failure(session_id, f"The last sync failed: {message}")

    async def _gone(self, session_id: UUID) -> bool:
        try:
            return await self.endpoint(session_id) is None
        except Exception:  # noqa: BLE001 - cannot tell: keep retrying
            return False

    def _succeeded(self, session_id: UUID) -> None:
        self._backoff.pop(session_id, None)

    async def _scheduled_syncs(self) -> None:
        """Start every sync that is due, each in a task of its own, so one environment that
        does not answer delays no other's. A sync holds a database connection throughout (the
        workspace's lock), so at most a quarter of the pool syncs at once: requests keep the
        rest."""
        limiter = anyio.CapacityLimiter(max(1, self.settings.database.pool_max // 4))
        running: set[UUID] = set()

        async def one(session_id: UUID) -> None:
            try:
                async with limiter:
                    await self._sync_now(session_id)
            finally:
                running.discard(session_id)
                self._wake.set()

        async with anyio.create_task_group() as tg:
            while True:
                await self._start_due(tg, running, one)

    async def _start_due(
        self, tg: TaskGroup, running: set[UUID], one: Callable[[UUID], Awaitable[None]]
    ) -> None:
        now = time.monotonic()
        for session_id in [s for s, due in self._due.items() if due <= now]:
            if session_id not in running:  # one sync per environment at a time
                running.add(session_id)
                self._due.pop(session_id, None)
                tg.start_soon(one, session_id)
        self._wake = anyio.Event()
        due = [t for s, t in self._due.items() if s not in running]
        wait = max(0.01, min(due) - time.monotonic()) if due else 3600.0
        with anyio.move_on_after(wait):
            await self._wake.wait()

    # -- terminals ---------------------------------------------------------------------------

    async def open_terminal(
        self, session_id: UUID, owner_id: int, cols: int, rows: int
    ) -> AgentTerminal:
        """Start (or find) the environment and attach a viewer to its shell (the caller has
        registered its relay already, so it counts itself)."""
        endpoint, status = await self.ensure_environment(session_id, owner_id)
        limit = self.settings.quotas.terminals_per_session
        viewers = self.relays.count(session_id) - 1
        if status is not None:  # other replicas' viewers too, as the agent counts them
            viewers = max(viewers, sum(t.viewers for t in status.terminals if t.name == "main"))
        if viewers >= limit:
            raise QuotaReached(f"at most {limit} terminal connections per workspace")
        return await self.client(endpoint).attach(cols, rows)

    def active_connections(self, session_id: UUID) -> int:
        return self.relays.count(session_id)

    # -- ending environments -------------------------------------------------------------------

    async def shutdown(self, session_id: UUID, reason: str) -> ShutdownOutcome:
        """Close the shells, sync a last time, stop the environment. When that last sync
        fails the environment is KEPT (nothing it holds is lost) and the outcome says so."""
        backend = self._backend()
        endpoint = await backend.find(session_id)
        if endpoint is None:
            return ShutdownOutcome(closed=0, cleaned=True)
        client = self.client(endpoint)
        closed = self.relays.count(session_id)
        unanswered: ExecutionError | None = None
        try:
            closed = max(closed, await client.close_terminal(1001, reason))
        except ExecutionError as exc:
            unanswered = exc
        await self.relays.close_session(session_id, 1001, reason)
        if unanswered is not None:
            # An agent that cannot close its shells will not answer a sync either: keep the
            # environment at once rather than after a sync's worth of timeouts.
            await self._failed(session_id, unanswered)  # recorded, retried in the background
            return self._kept(closed, unanswered)
        try:
            await self.sync_back(session_id)
        except Exception as exc:
            return self._kept(closed, exc)
        await backend.stop(session_id)
        self._forget(session_id)
        return ShutdownOutcome(closed=closed, cleaned=True)

    @staticmethod
    def _kept(closed: int, exc: Exception) -> ShutdownOutcome:
        message = str(exc) if isinstance(exc, ExecutionError) else "the database is unavailable"
        return ShutdownOutcome(
            closed=closed,
            cleaned=False,
            message=f"the final sync failed ({message}); the environment is kept",
        )

    async def session_deleted(self, session_id: UUID) -> None:
        """The session is gone: close its terminals and stop its environment, unsynced."""
        if self.backend is None:
            return
        await self.relays.close_session(session_id, 1001, "workspace deleted")
        await self.backend.stop(session_id)
        self._forget(session_id)

    def _forget(self, session_id: UUID) -> None:
        self._due.pop(session_id, None)
        self._backoff.pop(session_id, None)


_process_runtime: ExecutionRuntime | None = None


def process_runtime(settings: Settings) -> ExecutionRuntime:
    """The one runtime of this process (created on first use; started by the lifespans of
    the functions that drive execution)."""
    global _process_runtime
    if _process_runtime is None:
        _process_runtime = ExecutionRuntime(settings)
    return _process_runtime


def running_runtime() -> ExecutionRuntime | None:
    """The dependency handlers receive: the process's runtime once started, else None (a
    function deployed without execution writes the database only)."""
    runtime = _process_runtime
    return runtime if runtime is not None and runtime.backend is not None else None
