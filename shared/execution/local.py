"""The ``local`` execution backend: a bubblewrap sandbox with its agent per environment.

Environments are slots on disk (``local_slots``), started detached so they outlive this
process, and found again from their directories by any server process on the same data
directory. A few warm spares are kept ready so a first terminal does not wait for a
sandbox and a Python interpreter to start; claiming one is an exclusive file create, so
two servers never hand the same spare to two sessions, and the per-session symlink decides
which of two servers starting the same session at once wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import anyio
import anyio.to_thread

from shared.config import SandboxSettings
from shared.execution import local_slots
from shared.execution.agent_client import AgentEndpoint, client_for, forget_client
from shared.execution.base import (
    EnvironmentStatus,
    ExecutionError,
    ExecutionState,
    RunningEnvironment,
)
from shared.execution.local_slots import Containment, Slot
from shared.execution.locks import KeyedLock

log = logging.getLogger(__name__)
REFILL_DELAY_SECONDS = 0.5
UNLINKED_GRACE_SECONDS = 60.0


class LocalBackend:
    """``ExecutionBackend`` running sandboxes on this host."""

    name = "local"

    def __init__(
        self, config: SandboxSettings | None = None, containment: Containment | None = None
    ) -> None:
        self.config = config or SandboxSettings()
        if self.config.isolation == "bwrap":
            if shutil.which("bwrap") is None:
                raise ExecutionError(
                    "bubblewrap (bwrap) is not installed; install it or set "
                    "EXECUTION_SANDBOX=none to run terminals unsandboxed"
                )
        else:
            log.warning(
                "EXECUTION_SANDBOX=none: terminals run UNSANDBOXED as the server's user, "
                "with the host's files and network"
            )
        self.containment = containment or Containment(self.config.limits)
        self.root = self.config.root.resolve()
        self.scope = f"local:{os.uname().nodename}:{self.root}"
        self._links = f"{self.root}/sessions/"  # + a session id: its slot's link
        for sub in ("slots", "sessions"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o711)
        os.chmod(self.root / "slots", 0o711)
        self._locks = KeyedLock()
        self._starting: dict[UUID, datetime] = {}
        self._failures: dict[UUID, str] = {}
        self._spares_changed = asyncio.Event()
        self._keeper: asyncio.Task[None] | None = None
        self._ready: list[Slot] = []  # spares this process made and saw answer, newest last
        self._known: dict[UUID, Slot] = {}  # sessions' slots seen lately (checked on each use)

    # -- background: warm spares -----------------------------------------------------------

    async def start(self) -> None:
        """Clean up after crashed processes and keep the warm spares topped up."""
        if os.geteuid() == 0 and self.config.isolation == "bwrap":
            _check_searchable(self.root)
        await anyio.to_thread.run_sync(self._tidy)
        if self.config.warm_spares > 0 and self._keeper is None:
            self._keeper = asyncio.get_running_loop().create_task(self._keep_spares())

    async def _keep_spares(self) -> None:
        while True:
            try:
                await anyio.to_thread.run_sync(self._tidy)
                missing = self.config.warm_spares - len(await self._spares())
                for _ in range(max(0, missing)):
                    slot = await anyio.to_thread.run_sync(self._create_slot)
                    await self._wait_ready(slot)  # a spare is ready once its agent answers
                    self._ready.append(slot)
            except Exception:
                log.exception("preparing a warm sandbox failed")
                await asyncio.sleep(5)
            self._spares_changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30):
                    await self._spares_changed.wait()
            # A spare was just taken: let its first prompt have the CPU before making another.
            await asyncio.sleep(REFILL_DELAY_SECONDS)

    def _revive(self, slot: Slot) -> None:
        """A new sandbox and agent on a dead slot's workspace (the files are still there)."""
        local_slots.kill(slot, self.containment)  # whatever is left of the old one
        slot.meta["containment"] = self.containment.resume(slot.meta.get("containment") or {})
        local_slots.spawn(slot, self.config, self.containment, revived=True)

    def _create_slot(self) -> Slot:
        return local_slots.create(self.root, self.config, self.containment)

    async def _spares(self) -> list[Slot]:
        slots = await anyio.to_thread.run_sync(self._slots)
        return [s for s in slots if s.session_id is None and s.alive()]

    def _slots(self) -> list[Slot]:
        found = []
        for slot_dir in sorted((self.root / "slots").iterdir()):
            slot = local_slots.load(slot_dir)
            if slot is not None:
                found.append(slot)
        return found

    def _tidy(self) -> None:
        """Dead spares and slots abandoned half-made are removed; dead claimed slots are kept
        (their workspace may hold unsynced work: ``find`` starts them again)."""
        for slot_dir in sorted((self.root / "slots").iterdir()):
            slot = local_slots.load(slot_dir)
            if slot is None:
                if local_slots.abandoned(slot_dir):
                    local_slots.destroy_abandoned(slot_dir, self.containment)
                elif (slot_dir / local_slots.CLAIM).exists():
                    log.warning("environment slot %s is claimed but its meta.json is unreadable; "
                                "left as it is (its workspace is %s)", slot_dir.name,
                                slot_dir / "workspace")  # fmt: skip
                continue
            if slot.session_id is None and (
                not slot.alive()
                or slot.meta.get("agent") != local_slots.AGENT_VERSION
                or self._half_claimed(slot)
            ):
                # Dead, or a spare of another release's agent: a new session gets today's.
                local_slots.destroy(slot, self.containment)
            elif slot.session_id is not None and self._unlinked(slot):
                # Claimed, but its session link is gone: a stop() killed between the two
                # (after its final sync), or a claim that never got its link.
                log.warning("freeing environment slot %s left without its session", slot.id)
                local_slots.destroy(slot, self.containment)
        for link in (self.root / "sessions").iterdir():
            if not link.resolve().exists():
                link.unlink(missing_ok=True)

    @staticmethod
    def _half_claimed(slot: Slot) -> bool:
        """A spare whose claim file outlived its making (a kill between the claim and its
        record, or within an unclaim): nobody can claim it again, and nothing of a user's is
        in it yet."""
        try:
            age = time.time() - (slot.dir / local_slots.CLAIM).stat().st_mtime
        except FileNotFoundError:
            return False
        return age > UNLINKED_GRACE_SECONDS

    def _unlinked(self, slot: Slot) -> bool:
        link = self.root / "sessions" / str(slot.session_id)
        claimed_at = float(slot.meta.get("claimed_at", 0))
        if time.time() - claimed_at < UNLINKED_GRACE_SECONDS:
            return False  # a claim being linked right now
        try:
            return link.resolve(strict=True) != slot.dir
        except (FileNotFoundError, RuntimeError):
            return True

    # -- lookups -----------------------------------------------------------------------------

    def _session_slot(self, session_id: UUID) -> Slot | None:
        link = self.root / "sessions" / str(session_id)
        try:
            target = link.resolve(strict=True)
        except (FileNotFoundError, RuntimeError):
            return None
        slot = local_slots.load(target)
        if slot is None or slot.session_id != str(session_id):
            return None
        return slot

    async def find(self, session_id: UUID) -> AgentEndpoint | None:
        """The running environment's agent; a crashed one is started again on its slot
        (same workspace on disk, new agent: the shells are gone, the files are not)."""
        # One stat of a directory entry: a workspace without an environment (the common case
        # on the hot file routes) costs no thread hop (and no pathlib: a string is cheaper).
        if not os.path.lexists(self._links + str(session_id)):  # noqa: ASYNC240
            self._known.pop(session_id, None)
            return None
        known = self._known.get(session_id)
        if known is not None and known.alive():  # a read of /proc: no thread hop on reattach
            return known.endpoint
        slot = await anyio.to_thread.run_sync(self._session_slot, session_id)
        if slot is None:
            return None
        if not slot.alive():
            async with self._locks.hold(session_id):
                slot = await anyio.to_thread.run_sync(self._session_slot, session_id)
                if slot is None:
                    return None
                if not slot.alive():
                    log.warning("environment %s had died; starting its agent again", session_id)
                    await anyio.to_thread.run_sync(self._revive, slot)
        self._known[session_id] = slot
        return slot.endpoint

    async def ensure_started(self, session_id: UUID, owner_id: int) -> tuple[AgentEndpoint, bool]:
        """The session's agent, starting an environment when there is none. True when it was
        started now (empty workspace: the caller materializes the files)."""
        endpoint = await self.find(session_id)
        if endpoint is not None:
            return endpoint, False
        async with self._locks.hold(session_id):
            endpoint = await self.find(session_id)
            if endpoint is not None:
                return endpoint, False
            self._starting[session_id] = datetime.now(UTC)
            try:
                slot, started = await anyio.to_thread.run_sync(
                    self._claim_slot, session_id, owner_id
                )
            except ExecutionError as exc:
                self._failures[session_id] = str(exc)
                raise
            except Exception as exc:
                log.exception("starting an environment for %s failed", session_id)
                self._failures[session_id] = "could not start the execution environment"
                raise ExecutionError("could not start the execution environment") from exc
            finally:
                self._starting.pop(session_id, None)
            self._failures.pop(session_id, None)
            self._spares_changed.set()
        if started and not slot.meta.pop("ready", False):
            await self._wait_ready(slot)
        return slot.endpoint, started

    def _claim_slot(self, session_id: UUID, owner_id: int) -> tuple[Slot, bool]:
        while self._ready:
            spare = self._ready.pop()
            if spare.alive() and spare.claim(str(session_id), owner_id):
                spare.meta["ready"] = True  # its agent answered the keeper already
                return self._link(spare, session_id)
        for spare in self._slots():
            if (
                spare.session_id is None
                and spare.alive()
                and spare.claim(str(session_id), owner_id)
            ):
                return self._link(spare, session_id)
        slot = self._create_slot()
        if not slot.claim(str(session_id), owner_id):  # pragma: no cover - nobody knew it
            raise ExecutionError("could not start the execution environment")
        return self._link(slot, session_id)

    def _link(self, slot: Slot, session_id: UUID) -> tuple[Slot, bool]:
        link = self.root / "sessions" / str(session_id)
        try:
            os.symlink(f"../slots/{slot.id}", link)
        except FileExistsError:
            slot.unclaim()  # another server started this session a moment ago: use its slot
            existing = self._session_slot(session_id)
            if existing is None:
                raise ExecutionError("the execution environment is starting elsewhere") from None
            return existing, False
        return slot, True

    async def _wait_ready(self, slot: Slot, within: float = 20.0) -> None:
        """Until the agent answers (a fresh slot's interpreter may still be starting); the
        authenticated connection stays in the shared pool for the first real request."""
        client = client_for(slot.endpoint)
        with anyio.fail_after(within):
            await client.status()

    async def status(self, session_id: UUID) -> EnvironmentStatus:
        if session_id in self._starting:
            return EnvironmentStatus(ExecutionState.STARTING, self.name, self._starting[session_id])
        slot = await anyio.to_thread.run_sync(self._session_slot, session_id)
        if slot is None:
            message = self._failures.get(session_id)
            return EnvironmentStatus(ExecutionState.STOPPED, self.name, message=message)
        since = datetime.fromtimestamp(slot.meta.get("claimed_at", 0), UTC)
        return EnvironmentStatus(ExecutionState.RUNNING, self.name, since)

    async def running(self) -> Sequence[RunningEnvironment]:
        def collect() -> list[RunningEnvironment]:
            found = []
            for slot in self._slots():
                if slot.session_id is not None:
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        since = datetime.fromtimestamp(float(slot.meta["claimed_at"]), UTC)
                        found.append(
                            RunningEnvironment(
                                UUID(slot.session_id), int(slot.meta["owner_id"]), since
                            )
                        )
            return found

        return await anyio.to_thread.run_sync(collect)

    async def stop(self, session_id: UUID) -> bool:
        async with self._locks.hold(session_id):
            slot = await anyio.to_thread.run_sync(self._session_slot, session_id)
            if slot is None:
                return False

            def remove() -> None:
                (self.root / "sessions" / str(session_id)).unlink(missing_ok=True)
                local_slots.destroy(slot, self.containment)

            await anyio.to_thread.run_sync(remove)
            self._known.pop(session_id, None)
            forget_client(slot.endpoint)
            self._failures.pop(session_id, None)
            return True

    async def aclose(self) -> None:
        """Stop keeping spares (environments stay: they outlive this process by design)."""
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None

    def destroy_everything(self) -> None:
        """Every slot of this root, claimed or not (tests and `make clean`)."""
        for slot_dir in sorted((self.root / "slots").iterdir()):
            slot = local_slots.load(slot_dir)
            if slot is None:
                local_slots.destroy_abandoned(slot_dir, self.containment)
            else:
                local_slots.destroy(slot, self.containment)
        shutil.rmtree(self.root / "sessions", ignore_errors=True)


def _check_searchable(root: Path) -> None:
    """Sandboxes run as unprivileged uids and resolve their workspace by path, so every
    parent of the sandbox root must be searchable (o+x) by other users."""
    for parent in root.parents:
        if not os.stat(parent).st_mode & 0o001:
            raise ExecutionError(
                f"EXECUTION_ROOT {root}: {parent} is not searchable by other users "
                "(bubblewrap runs as the sandbox's unprivileged uid and binds the workspace "
                "by path); chmod o+x it or choose another DATA_DIR / EXECUTION_ROOT"
            )
