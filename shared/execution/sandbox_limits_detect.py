"""What cgroups the host offers sandboxes, and the parent group all sandbox cgroups live in.

``detect`` finds cgroup v2 with the memory, pids and cpu controllers delegatable to us, else
the three cgroup v1 hierarchies, else neither (then the reason is logged once, loudly, and
per-process rlimits stay the only containment). It creates the parent group, whose CPU weight
is low so that the server keeps its share of the CPU when every sandbox burns it, and whose
memory and process caps bound all sandboxes together.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path

import attrs

log = logging.getLogger(__name__)

DEFAULT_PARENT = "code-execution-platform"
V1_CONTROLLERS = ("memory", "pids", "cpu")
V2_KEY = "unified"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class CgroupError(Exception):
    """A cgroup could not be created, configured, emptied or removed."""


@attrs.frozen
class CgroupMount:
    """One cgroup filesystem from /proc/self/mountinfo."""

    mountpoint: Path
    root: str  # the cgroup directory mounted there, as /proc/self/cgroup names it
    version: int
    controllers: frozenset[str]  # v1 only: the hierarchy's controllers


def unescape_mountinfo(field: str) -> str:
    """A path field of /proc/self/mountinfo (spaces and such are octal escapes there)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def cgroup_mounts(mountinfo: Path = Path("/proc/self/mountinfo")) -> list[CgroupMount]:
    mounts = []
    for line in mountinfo.read_text().splitlines():
        before, _, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        version = 2 if tail[0] == "cgroup2" else 1
        options = frozenset(tail[2].split(",")) if version == 1 else frozenset()
        point, root = unescape_mountinfo(fields[4]), unescape_mountinfo(fields[3])
        mounts.append(CgroupMount(Path(point), root, version, options))
    return mounts


def own_cgroups(proc_cgroup: Path = Path("/proc/self/cgroup")) -> dict[str, str]:
    """controller -> this process's cgroup path; the v2 entry is under ``V2_KEY``."""
    own: dict[str, str] = {}
    for line in proc_cgroup.read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if not controllers:
            own[V2_KEY] = path
        for name in controllers.split(","):
            own.setdefault(name, path)
    return own


def _directory(mount: CgroupMount, cgroup_path: str) -> Path | None:
    """Where the cgroup ``cgroup_path`` appears under ``mount`` (None: not visible there)."""
    root = mount.root.rstrip("/")
    if root and cgroup_path != root and not cgroup_path.startswith(root + "/"):
        return None
    return mount.mountpoint / cgroup_path[len(root) :].lstrip("/")


@attrs.frozen
class CgroupHost:
    """What ``detect`` found: the mode, why, and the parent group in each hierarchy."""

    mode: str | None  # "v2", "v1" or None (no cgroup containment)
    reason: str
    parents: Mapping[str, Path] = attrs.field(factory=dict, hash=False)
    swap_accounting: bool = False  # v1: memory.memsw.* exists, so swap can be capped too

    def configure_parent(
        self, cpu_weight: int, memory_bytes: int | None, max_pids: int | None
    ) -> None:
        """(Re)create the parent group; set its CPU weight and its caps on all sandboxes."""
        for path in self.parents.values():
            path.mkdir(exist_ok=True)
        if self.mode == "v2":
            parent = self.parents[V2_KEY]
            write_value(parent / "cgroup.subtree_control", "+memory +pids +cpu")
            write_value(parent / "cpu.weight", cpu_weight)
            write_value(parent / "memory.max", memory_bytes or "max")
            write_value(parent / "memory.swap.max", 0, optional=True)
            write_value(parent / "pids.max", max_pids or "max")
        elif self.mode == "v1":
            write_value(self.parents["cpu"] / "cpu.shares", v1_shares(cpu_weight))
            write_v1_memory(self.parents["memory"], memory_bytes, self.swap_accounting)
            write_value(self.parents["pids"] / "pids.max", max_pids or "max")

    def remove_parent(self) -> None:
        """rmdir the parent groups if no sandbox group is left in them (for tests, uninstall);
        the next ``detect`` or ``configure_parent`` makes them again."""
        for path in self.parents.values():
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
        detect.cache_clear()


def v1_shares(weight: int) -> int:
    """cgroup v2 weight (1..10000, default 100) -> v1 cpu.shares (2..262144, default 1024)."""
    return max(2, min(262144, weight * 1024 // 100))


def write_value(path: Path, value: object, optional: bool = False) -> None:
    try:
        with open(path, "w") as f:
            f.write(str(value))
    except FileNotFoundError:
        if not optional:
            raise


def write_v1_memory(group: Path, memory_bytes: int | None, swap_accounting: bool) -> None:
    limit = memory_bytes if memory_bytes else -1
    if not swap_accounting:
        write_value(group / "memory.limit_in_bytes", limit)
        return
    # memsw (memory + swap) may never be below the memory limit: order the two writes.
    try:
        write_value(group / "memory.limit_in_bytes", limit)
        write_value(group / "memory.memsw.limit_in_bytes", limit)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        write_value(group / "memory.memsw.limit_in_bytes", limit)
        write_value(group / "memory.limit_in_bytes", limit)


@functools.cache
def detect(parent: str = DEFAULT_PARENT) -> CgroupHost:
    """Find (and create) the parent group in v2, else v1; logs once, loudly, when neither."""
    host = probe(parent)
    if host.mode is None:
        log.warning(
            "NO CGROUP CONTAINMENT for sandboxes: %s. Each sandbox is then bounded only by "
            "per-process rlimits (prlimit): its memory, tmpfs and CPU are NOT capped as a whole.",
            host.reason,
        )
    else:
        log.info("sandbox cgroups: %s (%s)", host.mode, host.reason)
    return host


def probe(
    parent: str = DEFAULT_PARENT,
    mountinfo: Path = Path("/proc/self/mountinfo"),
    proc_cgroup: Path = Path("/proc/self/cgroup"),
) -> CgroupHost:
    """``detect`` without the cache and the log line.

    A relative ``parent`` is placed under the server's own cgroup in each hierarchy (on v2,
    when the server's cgroup is not the root, next to it: a cgroup holding processes cannot
    have controllers enabled for its children); an absolute one under the hierarchy's root.
    """
    if os.geteuid() != 0:
        return CgroupHost(None, "the server does not run as root, so it cannot create cgroups")
    if not all(part and part not in (".", "..") for part in parent.strip("/").split("/")):
        return CgroupHost(None, f"SANDBOX_CGROUP_PARENT {parent!r} is not a cgroup path")
    try:
        mounts, own = cgroup_mounts(mountinfo), own_cgroups(proc_cgroup)
    except OSError as exc:
        return CgroupHost(None, f"cannot read the process's cgroups: {exc}")
    reasons = []
    v2 = next((m for m in mounts if m.version == 2), None)
    if v2 is not None:
        host = _probe_v2(v2, own.get(V2_KEY, "/"), parent)
        if host.mode:
            return host
        reasons.append(host.reason)
    else:
        reasons.append("cgroup v2 is not mounted")
    host = _probe_v1(mounts, own, parent)
    if host.mode:
        return host
    return CgroupHost(None, "; ".join([*reasons, host.reason]))


def _base(mount: CgroupMount, own_path: str, parent: str, leaf_rule: bool) -> Path | None:
    if parent.startswith("/"):
        return _directory(mount, "/")
    base = _directory(mount, own_path)
    if base is not None and leaf_rule and base != mount.mountpoint:
        base = base.parent  # v2: next to the server's own (leaf) cgroup
    return base


def _probe_v2(mount: CgroupMount, own_path: str, parent: str) -> CgroupHost:
    base = _base(mount, own_path, parent, leaf_rule=True)
    if base is None:
        return CgroupHost(None, f"cgroup v2: the server's cgroup {own_path} is not visible")
    wanted = {"memory", "pids", "cpu"}
    try:
        available = set((base / "cgroup.controllers").read_text().split())
    except OSError as exc:
        return CgroupHost(None, f"cgroup v2: cannot read {base}/cgroup.controllers: {exc}")
    if not wanted <= available:
        missing = " ".join(sorted(wanted - available))
        return CgroupHost(None, f"cgroup v2: controllers {missing} are not available in {base}")
    group = base
    try:
        # Each level from the base down to the parent hands the controllers to its children.
        for part in ["", *parent.strip("/").split("/")]:
            group = group / part if part else group
            group.mkdir(exist_ok=True)
            enabled = set((group / "cgroup.subtree_control").read_text().split())
            if not wanted <= enabled:
                write_value(group / "cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))
    except OSError as exc:
        return CgroupHost(
            None,
            f"cgroup v2: cannot delegate memory, pids and cpu below {base} ({exc.strerror}); "
            "run the server in a leaf cgroup of a delegated unit (systemd Delegate=yes, "
            "DelegateSubgroup=) or set SANDBOX_CGROUP_PARENT to a delegated absolute path",
        )
    return CgroupHost("v2", f"cgroup v2 at {group}", {V2_KEY: group})


def _probe_v1(mounts: list[CgroupMount], own: dict[str, str], parent: str) -> CgroupHost:
    parents: dict[str, Path] = {}
    for controller in V1_CONTROLLERS:
        mount = next((m for m in mounts if m.version == 1 and controller in m.controllers), None)
        if mount is None:
            return CgroupHost(None, f"cgroup v1: no {controller} hierarchy is mounted")
        base = _base(mount, own.get(controller, "/"), parent, leaf_rule=False)
        if base is None:
            return CgroupHost(None, f"cgroup v1: the server's {controller} cgroup is not visible")
        group = base / parent.strip("/")
        try:
            group.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return CgroupHost(None, f"cgroup v1: cannot create {group}: {exc.strerror}")
        parents[controller] = group
    swap = (parents["memory"] / "memory.memsw.limit_in_bytes").exists()
    where = ", ".join(str(p) for p in parents.values())
    return CgroupHost("v1", f"cgroup v1 at {where}", parents, swap)
