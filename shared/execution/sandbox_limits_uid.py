"""Host uids for sandboxes, unique among live sandboxes across every server process on the host.

A lease is a file ``<lease_dir>/<uid>`` naming its holder: the slot's directory. Leases are
taken and given back under an exclusive ``flock`` on ``<lease_dir>/.lock``, so two server
processes never hand out the same uid. A lease is stale, and reclaimed, when its holder
directory is gone and no process on the host runs as that uid; a uid some process already
runs as (a leftover sandbox, or a foreign user of the range) is never handed out at all.
Blocking (file locks, a /proc scan of a few ms): call from a worker thread.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import random
import signal
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

log = logging.getLogger(__name__)

DEFAULT_LEASE_DIR = Path("/run/code-execution-platform/uids")


class UidError(Exception):
    """No free uid in the range, or a uid already leased by another holder."""


def process_uids(proc: Path = Path("/proc")) -> dict[int, set[int]]:
    """pid -> its real, effective, saved and filesystem uids, for every live process on the
    host (zombies are left out: they run nothing and only wait for their parent to reap them)."""
    found: dict[int, set[int]] = {}
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"{entry.path}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"State:") and line.split()[1] == b"Z":
                        break
                    if line.startswith(b"Uid:"):
                        found[int(entry.name)] = {int(u) for u in line.split()[1:]}
                        break
        except OSError:  # the process ended meanwhile
            continue
    return found


def uids_in_use() -> set[int]:
    return set().union(*process_uids().values())


def kill_uid(uid: int, timeout: float = 10.0) -> None:
    """SIGKILL every process running as ``uid`` until none is left (when there is no cgroup
    to empty: the uid is unique to one sandbox)."""
    deadline = time.monotonic() + timeout
    while pids := [pid for pid, uids in process_uids().items() if uid in uids]:
        if time.monotonic() > deadline:
            raise UidError(f"processes {pids[:10]} of uid {uid} survive SIGKILL")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)


@attrs.frozen
class UidLease:
    """One sandbox's host uid, held until ``release``."""

    uid: int
    holder: Path
    lease_dir: Path

    def release(self) -> None:
        """Give the uid back (idempotent; leaves a lease since taken by another holder)."""
        with _locked(self.lease_dir):
            path = self.lease_dir / str(self.uid)
            lease = _read_lease(path)
            if lease is not None and lease.get("holder") == str(self.holder):
                path.unlink()

    def to_dict(self) -> dict[str, Any]:
        return {"uid": self.uid, "holder": str(self.holder), "lease_dir": str(self.lease_dir)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UidLease:
        return cls(int(data["uid"]), Path(data["holder"]), Path(data["lease_dir"]))


@contextmanager
def _locked(lease_dir: Path) -> Iterator[None]:
    lease_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(lease_dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released by close, also if this process dies
        yield
    finally:
        os.close(fd)


def _read_lease(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError:
        return {}  # torn or foreign: treated as held by nobody we know
    return data if isinstance(data, dict) else {}


class UidPool:
    """Leases host uids ``base .. base+count-1`` to sandboxes; None when not root."""

    def __init__(self, base: int, count: int, lease_dir: Path = DEFAULT_LEASE_DIR) -> None:
        if base < 1000 or count < 1 or base + count > 2**31 - 1:
            raise ValueError(f"host uid range {base}+{count} must lie within 1000 .. 2^31-2")
        self.base, self.count, self.lease_dir = base, count, lease_dir
        self.enabled = os.geteuid() == 0
        if self.enabled:
            _warn_on_subid_overlap(base, count)

    def allocate(self, holder: Path) -> UidLease | None:
        """Lease a uid no live sandbox and no process uses; ``holder`` (the slot's directory)
        must exist, and its removal is what marks the lease stale."""
        if not self.enabled:
            return None
        if not holder.is_dir():
            raise UidError(f"the lease holder {holder} does not exist")
        with _locked(self.lease_dir):
            busy = uids_in_use()
            leased = self._leased()
            start = random.randrange(self.count)
            for step in range(self.count):
                uid = self.base + (start + step) % self.count
                if uid in busy:
                    continue
                if uid in leased and not self._reclaim_if_stale(uid, busy):
                    continue
                self._write(uid, holder)
                return UidLease(uid, holder, self.lease_dir)
        raise UidError(f"all {self.count} host uids from {self.base} are in use")

    def adopt(self, uid: int, holder: Path) -> UidLease | None:
        """Re-take the lease of a slot found on disk after a restart (or a reboot that emptied
        the lease directory). Raises UidError if another live holder has it."""
        if not self.enabled:
            return None
        if not self.base <= uid < self.base + self.count:
            raise UidError(f"uid {uid} is outside the sandbox range")
        with _locked(self.lease_dir):
            lease = _read_lease(self.lease_dir / str(uid))
            if lease is not None and lease.get("holder") != str(holder):
                if not self._reclaim_if_stale(uid, uids_in_use()):
                    raise UidError(f"uid {uid} is leased by {lease.get('holder')}")
            self._write(uid, holder)
        return UidLease(uid, holder, self.lease_dir)

    def leases(self) -> dict[int, str]:
        """uid -> holder of every lease in this pool's range."""
        found = {}
        for uid in self._leased():
            lease = _read_lease(self.lease_dir / str(uid))
            if lease is not None:
                found[uid] = str(lease.get("holder", "?"))
        return found

    def _leased(self) -> set[int]:
        try:
            names = os.listdir(self.lease_dir)
        except FileNotFoundError:
            return set()
        uids = {int(n) for n in names if n.isdigit()}
        return {u for u in uids if self.base <= u < self.base + self.count}

    def _reclaim_if_stale(self, uid: int, busy: set[int]) -> bool:
        path = self.lease_dir / str(uid)
        lease = _read_lease(path)
        if lease is None:
            return True
        holder = lease.get("holder")
        if uid in busy or (isinstance(holder, str) and os.path.exists(holder)):
            return False
        log.info("reclaiming the stale lease of host uid %d (holder %s is gone)", uid, holder)
        path.unlink(missing_ok=True)
        return True

    def _write(self, uid: int, holder: Path) -> None:
        body = json.dumps({"holder": str(holder), "pid": os.getpid(), "at": time.time()})
        tmp = self.lease_dir / f".{uid}.{os.getpid()}.tmp"
        tmp.write_text(body)
        os.replace(tmp, self.lease_dir / str(uid))  # a reader never sees half a lease


def _warn_on_subid_overlap(base: int, count: int) -> None:
    # A range shared with /etc/subuid is shared with rootless containers' users.
    for name in ("/etc/subuid", "/etc/subgid"):
        try:
            lines = Path(name).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            parts = line.split(":")
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                start, size = int(parts[1]), int(parts[2])
                if start < base + count and base < start + size:
                    log.warning(
                        "sandbox host uids %d..%d overlap %s entry %s: processes of that user's "
                        "containers could share a uid with a sandbox; move SANDBOX_HOST_UID_BASE",
                        base, base + count - 1, name, line,
                    )  # fmt: skip
