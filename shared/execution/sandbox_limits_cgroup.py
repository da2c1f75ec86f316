"""One cgroup per sandbox: memory (tmpfs and shared memory included), processes, CPU weight.

A process joins the cgroup through ``CgroupSet.join_argv``: a ``/bin/sh`` prefix that writes
its own pid into each ``cgroup.procs`` and then execs the rest of the command line. That keeps
``subprocess`` on vfork (a Python ``preexec_fn`` forces fork() of the whole server) and puts
the sandbox in its cgroup before it can fork anything. ``kill_all`` empties the cgroup even
of a fork bomb; ``to_dict``/``from_dict`` let a restarted server find and destroy it.

Everything here blocks on cgroupfs writes and short waits: call it from a worker thread.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from shared.execution.sandbox_limits_detect import (
    NAME_RE,
    V1_CONTROLLERS,
    V2_KEY,
    CgroupError,
    CgroupHost,
    cgroup_mounts,
    v1_shares,
    write_v1_memory,
    write_value,
)

# Sandbox processes are the host OOM killer's first choice, before PostgreSQL or the server;
# an unprivileged process may raise its score but never lower it again.
OOM_SCORE_ADJ = 500
# The join prefix fails with 125 (like env/nsenter) when a cgroup cannot be joined.
_JOIN_SCRIPT = (
    'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; '
    f"echo {OOM_SCORE_ADJ} > /proc/$$/oom_score_adj; "
    'exec "$@"'
)


@attrs.frozen
class CgroupUsage:
    """What a sandbox's cgroup uses now, for the workspace status."""

    memory_bytes: int
    memory_peak_bytes: int | None
    processes: int
    oom_kills: int


@attrs.frozen
class CgroupSet:
    """One sandbox's cgroup: one directory (v2) or one per hierarchy (v1: memory, pids, cpu)."""

    mode: str
    paths: Mapping[str, Path] = attrs.field(hash=False)

    @classmethod
    def create(
        cls,
        host: CgroupHost,
        name: str,
        memory_bytes: int,
        max_pids: int,
        cpu_weight: int = 100,
        cpu_limit: float = 0.0,
    ) -> CgroupSet:
        """Create the cgroup ``name`` under the parent with its limits (fails if it exists)."""
        if host.mode is None:
            raise CgroupError(f"no cgroup support: {host.reason}")
        if not NAME_RE.match(name):
            raise CgroupError(f"invalid cgroup name {name!r}")
        made = cls(host.mode, {key: parent / name for key, parent in host.parents.items()})
        try:
            for path in made.paths.values():
                path.mkdir()
            made._set_limits(host, memory_bytes, max_pids, cpu_weight, cpu_limit)
        except BaseException:
            made.destroy()
            raise
        return made

    def _set_limits(
        self, host: CgroupHost, memory: int, pids: int, weight: int, cpu_limit: float
    ) -> None:
        period = 100_000
        quota = int(cpu_limit * period) if cpu_limit > 0 else None
        if self.mode == "v2":
            group = self.paths[V2_KEY]
            write_value(group / "memory.max", memory)
            write_value(group / "memory.swap.max", 0, optional=True)  # absent without swap support
            write_value(group / "pids.max", pids)
            write_value(group / "cpu.weight", weight)
            write_value(group / "cpu.max", f"{quota or 'max'} {period}")
        else:
            write_v1_memory(self.paths["memory"], memory, host.swap_accounting)
            write_value(self.paths["pids"] / "pids.max", pids)
            write_value(self.paths["cpu"] / "cpu.shares", v1_shares(weight))
            write_value(self.paths["cpu"] / "cpu.cfs_period_us", period)
            write_value(self.paths["cpu"] / "cpu.cfs_quota_us", quota or -1)

    # -- joining -----------------------------------------------------------------------------

    def join_argv(self) -> list[str]:
        """A command prefix that moves itself into this cgroup, then execs what follows.

        Runs as root (before any setpriv); exits 125 if a cgroup cannot be joined."""
        procs = [str(path / "cgroup.procs") for path in self.paths.values()]
        return ["/bin/sh", "-c", _JOIN_SCRIPT, "cgroup-join", *procs, "--"]

    def add(self, pid: int) -> None:
        """Move an already running process (not its existing children) into this cgroup."""
        for path in self.paths.values():
            write_value(path / "cgroup.procs", pid)

    # -- status --------------------------------------------------------------------------------

    def pids(self) -> set[int]:
        found: set[int] = set()
        for path in self.paths.values():
            try:
                found.update(int(p) for p in (path / "cgroup.procs").read_text().split())
            except FileNotFoundError:
                pass
        return found

    def usage(self) -> CgroupUsage:
        if self.mode == "v2":
            group = self.paths[V2_KEY]
            events = _keyed(group / "memory.events")
            return CgroupUsage(
                memory_bytes=_read_int(group / "memory.current"),
                memory_peak_bytes=_read_int(group / "memory.peak", None),
                processes=_read_int(group / "pids.current"),
                oom_kills=events.get("oom_kill", 0),
            )
        memory = self.paths["memory"]
        return CgroupUsage(
            memory_bytes=_read_int(memory / "memory.usage_in_bytes"),
            memory_peak_bytes=_read_int(memory / "memory.max_usage_in_bytes", None),
            processes=_read_int(self.paths["pids"] / "pids.current"),
            oom_kills=_keyed(memory / "memory.oom_control").get("oom_kill", 0),
        )

    def limits(self) -> dict[str, str]:
        """The limit files as the kernel reports them (for status pages and tests)."""
        names = {
            "v2": ("memory.max", "memory.swap.max", "pids.max", "cpu.weight", "cpu.max"),
            "v1": ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "pids.max",
                   "cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us"),
        }[self.mode]  # fmt: skip
        found = {}
        for path in self.paths.values():
            for name in names:
                if (path / name).exists():
                    found[name] = (path / name).read_text().strip()
        return found

    # -- ending --------------------------------------------------------------------------------

    def kill_all(self, timeout: float = 10.0) -> None:
        """SIGKILL every process in the cgroup until it is empty (forking or stopped ones too).

        Raises CgroupError if processes remain after ``timeout`` (e.g. stuck in the kernel)."""
        deadline = time.monotonic() + timeout
        saved = None
        if self.mode == "v2" and (self.paths[V2_KEY] / "cgroup.kill").exists():
            write_value(self.paths[V2_KEY] / "cgroup.kill", 1)  # kills frozen tasks too
        else:
            saved = self._stop_forks()
        delay = 0.001
        while pids := self.pids():
            if time.monotonic() > deadline:
                raise CgroupError(f"processes {sorted(pids)[:10]} survive SIGKILL in {self}")
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        if saved is not None:
            write_value(saved[0], saved[1], optional=True)  # the cgroup may be reused after this

    def _stop_forks(self) -> tuple[Path, str] | None:
        # With pids.max at 0 no fork succeeds, so SIGKILL rounds cannot be outrun.
        path = self.paths[V2_KEY if self.mode == "v2" else "pids"] / "pids.max"
        try:
            saved = path.read_text().strip()
            write_value(path, 0)
        except FileNotFoundError:
            return None
        return path, saved

    def destroy(self, timeout: float = 10.0) -> None:
        """Kill everything inside and remove the cgroup; a missing cgroup is not an error."""
        if not any(path.is_dir() for path in self.paths.values()):
            return
        self.kill_all(timeout)
        deadline = time.monotonic() + timeout
        for path in self.paths.values():
            while True:
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:  # EBUSY: a task still exiting
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise CgroupError(f"cannot remove {path}: {exc.strerror}") from exc
                    time.sleep(0.01)

    # -- persistence -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "paths": {k: str(v) for k, v in self.paths.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CgroupSet:
        """The cgroup recorded by ``to_dict``; refuses paths that are not cgroups."""
        mode, raw = data["mode"], data["paths"]
        expected = {V2_KEY} if mode == "v2" else set(V1_CONTROLLERS)
        if mode not in ("v1", "v2") or set(raw) != expected:
            raise CgroupError(f"not a recorded cgroup: {data!r}")
        mounts = cgroup_mounts()
        paths = {key: Path(value) for key, value in raw.items()}
        for key, path in paths.items():
            version = 2 if mode == "v2" else 1
            inside = any(
                m.version == version
                and (version == 2 or key in m.controllers)
                and path.is_relative_to(m.mountpoint)
                and path != m.mountpoint
                for m in mounts
            )
            if not inside or ".." in path.parts or not NAME_RE.match(path.name):
                raise CgroupError(f"{path} is not a {key} cgroup")
        return cls(mode, paths)


def _read_int(path: Path, default: int | None = 0) -> Any:
    try:
        text = path.read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return default
    return int(text) if text.lstrip("-").isdigit() else default


def _keyed(path: Path) -> dict[str, int]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return {}
    return {k: int(v) for k, _, v in (line.partition(" ") for line in lines) if v.isdigit()}
