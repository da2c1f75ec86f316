"""Host-side containment of each local sandbox: cgroup, workspace quota, host uid, tmpfs sizes.

One ``SandboxContainment`` per server process takes ``SandboxLimits`` (from the settings),
detects what the host offers and sets up the parent cgroup once. ``create_slot`` then gives
each slot its ``SlotLimits``: a unique host uid (``UidPool``), a cgroup (``CgroupSet``:
memory including tmpfs and shared memory, processes, CPU weight) and a ``/workspace`` with a
disk quota (``WorkspaceVolume``). ``SlotLimits.to_dict`` is JSON for the slot's metadata, so
a restarted server (or any fresh process) can ``from_dict(...).destroy()`` what it finds.

Where the host lacks a feature, the slot runs without it after a loud warning, logged once:
no cgroup (per-process rlimits stay the only containment), no quota (a plain directory), no
uid (not root: the server's own). Everything blocks: call it from a worker thread.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from shared.execution.sandbox_limits_cgroup import CgroupSet, CgroupUsage
from shared.execution.sandbox_limits_detect import DEFAULT_PARENT, CgroupError, CgroupHost, detect
from shared.execution.sandbox_limits_uid import DEFAULT_LEASE_DIR, UidLease, UidPool, kill_uid
from shared.execution.sandbox_limits_volume import VolumeError, WorkspaceVolume

__all__ = [
    "CgroupError", "CgroupHost", "CgroupSet", "CgroupUsage", "SandboxContainment",
    "SandboxLimits", "SlotLimits", "UidLease", "UidPool", "VolumeError", "WorkspaceVolume",
    "bwrap_tmpfs_args", "detect", "kill_uid",
]  # fmt: skip

log = logging.getLogger(__name__)
MIB = 2**20


@attrs.frozen
class SandboxLimits:
    """What each sandbox may use (``shared.config`` reads it from the environment)."""

    memory_mb: int = 1024  # whole sandbox: processes, page cache, tmpfs, shared memory
    max_processes: int = 256
    cpu_weight: int = 100  # cgroup v2 units: 1..10000, 100 = an equal share
    cpu_limit: float = 0.0  # cores per sandbox; 0 = no hard cap (weights share idle CPU)
    parent_cpu_weight: int = 10  # all sandboxes together, against the server's 100
    total_memory_percent: int = 75  # of host RAM, all sandboxes together; 0 = no cap
    total_processes: int = 0  # all sandboxes together; 0 = half of kernel.pid_max
    workspace_mb: int = 1024  # the /workspace filesystem, venvs and node_modules included
    disk_min_free_mb: int = 2048  # a new workspace never leaves the data disk with less
    tmp_mb: int = 256  # /tmp tmpfs
    shm_mb: int = 64  # /dev/shm tmpfs
    host_uid_base: int = 0x70000000  # above systemd's container range, below 2^31
    host_uid_count: int = 65536
    cgroup_parent: str = DEFAULT_PARENT
    uid_lease_dir: Path = attrs.field(default=DEFAULT_LEASE_DIR, converter=Path)

    def __attrs_post_init__(self) -> None:
        if self.tmp_mb + self.shm_mb >= self.memory_mb:
            # tmpfs pages are charged to the sandbox's memory and cannot be reclaimed: a full
            # /tmp must stop at ENOSPC, not at the OOM killer.
            raise ValueError(
                f"SANDBOX_MAX_TMP_MB + SANDBOX_SHM_MB ({self.tmp_mb} + {self.shm_mb}) must be "
                f"less than SANDBOX_MEMORY_MB ({self.memory_mb})"
            )


def bwrap_tmpfs_args(limits: SandboxLimits) -> list[str]:
    """bwrap options giving every tmpfs of the sandbox a bound: sized ``/dev/shm`` and
    ``/tmp``, and ``/dev`` and bwrap's root tmpfs ``/`` read-only.

    Place them after ``--dev /dev`` and after every other mount option (``--remount-ro /``
    must be the last one: nothing can be created in ``/`` after it)."""
    return [
        "--perms", "1777", "--size", str(limits.shm_mb * MIB), "--tmpfs", "/dev/shm",
        "--perms", "1777", "--size", str(limits.tmp_mb * MIB), "--tmpfs", "/tmp",
        "--remount-ro", "/dev",
        "--remount-ro", "/",
    ]  # fmt: skip


@attrs.frozen
class SlotLimits:
    """The containment of one slot: what to prefix its sandbox with, and how to end it."""

    volume: WorkspaceVolume
    cgroup: CgroupSet | None
    uid: UidLease | None

    @property
    def host_uid(self) -> int | None:
        return self.uid.uid if self.uid else None

    def join_argv(self) -> list[str]:
        """Put the sandbox into its cgroup: prefix of the command, before prlimit and setpriv."""
        return self.cgroup.join_argv() if self.cgroup else []

    def kill_all(self, timeout: float = 10.0) -> None:
        """End every process of the slot (by cgroup, else by its unique host uid)."""
        if self.cgroup is not None:
            self.cgroup.kill_all(timeout)
        elif self.uid is not None:
            kill_uid(self.uid.uid, timeout)

    def destroy(self, timeout: float = 10.0) -> None:
        """Kill, unmount and delete the workspace volume, remove the cgroup, give the uid
        back. Idempotent; raises (and keeps the uid leased) if processes will not die."""
        self.kill_all(timeout)
        self.volume.destroy()
        if self.cgroup is not None:
            self.cgroup.destroy(timeout)
        if self.uid is not None:
            self.uid.release()

    def to_dict(self) -> dict[str, Any]:
        return {
            "volume": self.volume.to_dict(),
            "cgroup": self.cgroup.to_dict() if self.cgroup else None,
            "uid": self.uid.to_dict() if self.uid else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SlotLimits:
        return cls(
            volume=WorkspaceVolume.from_dict(data["volume"]),
            cgroup=CgroupSet.from_dict(data["cgroup"]) if data.get("cgroup") else None,
            uid=UidLease.from_dict(data["uid"]) if data.get("uid") else None,
        )


class SandboxContainment:
    """What the host offers, set up once per server process; makes each slot's limits."""

    def __init__(self, limits: SandboxLimits) -> None:
        self.limits = limits
        self.cgroups = detect(limits.cgroup_parent)
        self.uids = UidPool(limits.host_uid_base, limits.host_uid_count, limits.uid_lease_dir)
        if self.cgroups.mode is not None:
            self.cgroups.configure_parent(
                limits.parent_cpu_weight, self._total_memory(), self._total_processes()
            )

    def _total_memory(self) -> int | None:
        if not self.limits.total_memory_percent:
            return None
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return pages * self.limits.total_memory_percent // 100

    def _total_processes(self) -> int:
        if self.limits.total_processes:
            return self.limits.total_processes
        return int(Path("/proc/sys/kernel/pid_max").read_text()) // 2

    def resume(self, data: Mapping[str, Any]) -> SlotLimits:
        """The slot recorded by ``SlotLimits.to_dict``, ready again after a server restart or
        a reboot: uid lease re-taken, cgroup re-created if it is gone, volume mounted. Save
        the result's ``to_dict``: the cgroup may have a new path."""
        slot = SlotLimits.from_dict(data)
        uid = self.uids.adopt(slot.uid.uid, slot.uid.holder) if slot.uid else None
        cgroup = slot.cgroup
        if cgroup is not None and not all(p.is_dir() for p in cgroup.paths.values()):
            cgroup.destroy()  # whatever part of it is left
            cgroup = self._cgroup(next(iter(cgroup.paths.values())).name)
        slot.volume.mount()
        return SlotLimits(slot.volume, cgroup, uid)

    def release_abandoned(self, slot_dir: Path) -> None:
        """End and free what ``create_slot`` made for ``slot_dir`` when no record of it was
        ever saved (the process making the slot died): the cgroup named after it, the uid
        lease it holds, its volume, each found where ``create_slot`` puts it."""
        cgroup = None
        if self.cgroups.mode is not None:
            paths = {key: parent / slot_dir.name for key, parent in self.cgroups.parents.items()}
            if any(path.is_dir() for path in paths.values()):
                cgroup = CgroupSet(self.cgroups.mode, paths)
        uid = None
        for number, holder in self.uids.leases().items() if self.uids.enabled else ():
            if holder == str(slot_dir):
                uid = UidLease(number, slot_dir, self.uids.lease_dir)
        volume = WorkspaceVolume.found_in(slot_dir)
        SlotLimits(volume, cgroup, uid).destroy()

    def _cgroup(self, name: str) -> CgroupSet | None:
        if self.cgroups.mode is None:
            return None
        limits = self.limits
        return CgroupSet.create(
            self.cgroups, name, limits.memory_mb * MIB, limits.max_processes,
            limits.cpu_weight, limits.cpu_limit,
        )  # fmt: skip

    def create_slot(self, slot_dir: Path) -> SlotLimits:
        """uid lease, cgroup and mounted workspace volume for the slot in ``slot_dir`` (which
        must exist; its name names the cgroup). Undoes what it made if a step fails."""
        limits = self.limits
        uid = self.uids.allocate(slot_dir)
        cgroup = volume = None
        try:
            cgroup = self._cgroup(slot_dir.name)
            host_uid = uid.uid if uid else None
            volume = WorkspaceVolume.create(
                slot_dir, limits.workspace_mb, host_uid, limits.disk_min_free_mb
            )
        except BaseException:
            if cgroup is not None:
                cgroup.destroy()
            if uid is not None:
                uid.release()
            raise
        return SlotLimits(volume, cgroup, uid)
