"""The background work of a set of environments, run by the one process that holds the
leader lock (``leader``): the periodic sync of every environment, and the idle reaper, which
stops environments no terminal has used for the idle timeout (after a final sync) and those
of deleted sessions (unsynced)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio

from shared import session_store

if TYPE_CHECKING:
    from shared.execution.runtime import ExecutionRuntime

log = logging.getLogger(__name__)


async def leader_work(runtime: ExecutionRuntime) -> None:
    config = runtime.config
    interval = config.sync_interval_seconds
    reap_every = min(60.0, max(0.05, config.idle_seconds / 4))
    next_sync = time.monotonic() + interval
    while True:
        try:
            await reap_once(runtime)
        except Exception:
            log.exception("the idle reaper's round failed")
        if time.monotonic() >= next_sync:
            next_sync = time.monotonic() + interval
            for environment in await runtime.backend_or_fail().running():
                runtime.schedule_sync(environment.session_id)
        await anyio.sleep(min(reap_every, max(0.05, next_sync - time.monotonic())))


async def reap_once(runtime: ExecutionRuntime) -> None:
    """ "Used" is shared between replicas through ``sessions.terminal_seen_at``, which every
    replica refreshes for its terminals (``Relays.heartbeats``)."""
    running = list(await runtime.backend_or_fail().running())
    if not running:
        return
    seen = await session_store.terminals_seen([e.session_id for e in running])
    now = datetime.now(UTC)
    for environment in running:
        session_id = environment.session_id
        if session_id not in seen:
            log.info("stopping the environment of deleted session %s", session_id)
            await runtime.session_deleted(session_id)
            continue
        if session_id in runtime.relays:
            continue
        marks = [m for m in (seen[session_id], environment.since) if m is not None]
        quiet_for = (now - max(marks)).total_seconds() if marks else float("inf")
        if quiet_for >= runtime.config.idle_seconds:
            log.info("stopping idle environment %s", session_id)
            outcome = await runtime.shutdown(session_id, "idle timeout")
            if not outcome.cleaned:
                log.warning("idle environment %s kept: %s", session_id, outcome.message)
