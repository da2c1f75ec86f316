"""Slots: the local backend's sandboxes on disk, found again by any server process.

A slot is a directory ``<root>/slots/<id>/`` holding the workspace (bound at /workspace),
the agent's listening socket and ``meta.json`` (the sandbox's pids, its secret, its host
uid and containment records, and the session that claimed it). A slot without a claim is a
warm spare; claiming one is an exclusive file create, and a session finds its slot through
the symlink ``<root>/sessions/<session-id>``. Because everything lives on disk and the
sandbox is started detached, a slot outlives the process that created it: a restarted
server (or another one on the same data directory) finds every environment again.

Everything here blocks (files, processes); the backend calls it from worker threads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import attrs

from shared.config import SandboxSettings
from shared.execution import local_sandbox, unix_path
from shared.execution.agent_client import AgentEndpoint
from shared.execution.base import ExecutionError
from shared.execution.sandbox_limits import SandboxContainment, SandboxLimits, SlotLimits

log = logging.getLogger(__name__)

META = "meta.json"
# Which agent a slot runs: a spare made by another release is replaced, not handed out.
AGENT_VERSION = hashlib.sha256(
    b"".join(f.read_bytes() for f in sorted(local_sandbox.AGENT_DIR.glob("*.py")))
).hexdigest()[:16]
CLAIM = "claim"
SOCKET = "agent.sock"
MAKER = "maker"  # "<pid> <start time>" of the process making the slot, until meta.json is saved
ABANDONED_AFTER_SECONDS = 300.0  # a slot without meta.json or maker this old is abandoned


class Containment:
    """What keeps one sandbox from hurting the host or its neighbours (a cgroup, a disk
    quota for the workspace, a unique host uid: ``sandbox_limits``), as JSON records kept
    in each slot's meta.json so any process can end what another one started."""

    def __init__(self, limits: SandboxLimits) -> None:
        self.host = SandboxContainment(limits)

    def prepare(self, slot_dir: Path) -> dict[str, Any]:
        """The slot's containment, with its workspace mounted at ``slot_dir/workspace``."""
        return self.host.create_slot(slot_dir).to_dict()

    def resume(self, record: dict[str, Any]) -> dict[str, Any]:
        """Ready again after a restart or a reboot (uid re-leased, volume mounted)."""
        return self.host.resume(record).to_dict()

    @staticmethod
    def _limits(record: dict[str, Any]) -> SlotLimits | None:
        try:
            return SlotLimits.from_dict(record) if record else None
        except (KeyError, TypeError, ValueError):
            log.warning("a slot's containment record is unreadable: %r", record)
            return None

    def host_uid(self, record: dict[str, Any]) -> int | None:
        limits = self._limits(record)
        return limits.host_uid if limits else None

    def join_argv(self, record: dict[str, Any]) -> list[str]:
        limits = self._limits(record)
        return limits.join_argv() if limits else []

    def kill_all(self, record: dict[str, Any]) -> bool:
        """Kill every process of the slot; False when that cannot be done (no cgroup and
        no host uid of its own: the caller kills by pid)."""
        limits = self._limits(record)
        if limits is None or (limits.cgroup is None and limits.uid is None):
            return False
        limits.kill_all()
        return True

    def release(self, record: dict[str, Any]) -> None:
        """Remove the cgroup, unmount the workspace volume, free the uid (idempotent)."""
        limits = self._limits(record)
        if limits is not None:
            limits.destroy()

    def release_abandoned(self, slot_dir: Path) -> None:
        """The same for a slot whose record was never saved (its maker died making it)."""
        self.host.release_abandoned(slot_dir)


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (tells a pid from its reuse), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _memfd(name: str, text: bytes) -> int:
    fd = os.memfd_create(name, 0)  # no MFD_CLOEXEC: the child reads it
    os.write(fd, text)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


@attrs.define
class Slot:
    dir: Path
    meta: dict[str, Any]

    @property
    def id(self) -> str:
        return self.dir.name

    @property
    def session_id(self) -> str | None:
        return self.meta.get("session_id")

    @property
    def endpoint(self) -> AgentEndpoint:
        return AgentEndpoint(f"unix:{self.dir / SOCKET}", self.meta["secret"].encode())

    def alive(self) -> bool:
        pid, started = self.meta.get("pid"), self.meta.get("pid_start")
        return isinstance(pid, int) and started is not None and _start_time(pid) == started

    def save(self) -> None:
        tmp = self.dir / f".{META}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(self.meta, out)
        os.replace(tmp, self.dir / META)

    def claim(self, session_id: str, owner_id: int) -> bool:
        """Take this spare for a session; False when another process took it first."""
        try:
            fd = os.open(self.dir / CLAIM, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except (FileExistsError, FileNotFoundError):  # taken, or already gone
            return False
        os.write(fd, session_id.encode())
        os.close(fd)
        self.meta.update(session_id=session_id, owner_id=owner_id, claimed_at=time.time())
        self.save()
        return True

    def unclaim(self) -> None:
        for key in ("session_id", "owner_id", "claimed_at"):
            self.meta.pop(key, None)
        self.save()
        (self.dir / CLAIM).unlink(missing_ok=True)


def load(slot_dir: Path) -> Slot | None:
    try:
        meta = json.loads((slot_dir / META).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get("secret"), str):
        return None
    slot = Slot(slot_dir, meta)
    if not (slot_dir / CLAIM).exists():
        slot.meta.pop("session_id", None)  # a claim interrupted before its file: still spare
    return slot


def create(root: Path, config: SandboxSettings, containment: Containment) -> Slot:
    """A new slot with its sandbox and agent running (a spare until claimed)."""
    slot_id = f"{int(time.time() * 1000):x}-{secrets.token_hex(4)}"
    slot_dir = root / "slots" / slot_id
    slot_dir.mkdir(parents=True, mode=0o711)
    # Whoever finds this slot without meta.json can tell whether its maker is still at it.
    me = os.getpid()
    (slot_dir / MAKER).write_text(f"{me} {_start_time(me)}")
    os.chmod(slot_dir, 0o711)  # the sandbox's uid resolves the workspace below it
    slot = Slot(slot_dir, {"secret": secrets.token_hex(32), "created_at": time.time(),
                           "agent": AGENT_VERSION})  # fmt: skip
    try:
        slot.meta["containment"] = containment.prepare(slot_dir)
        spawn(slot, config, containment)
    except BaseException:
        destroy(slot, containment)
        raise
    (slot_dir / MAKER).unlink()  # meta.json tells everything from now on
    return slot


def spawn(
    slot: Slot, config: SandboxSettings, containment: Containment, revived: bool = False
) -> None:
    """Start the slot's sandbox and agent (first start, or ``revived`` after a crash: its
    workspace still holds the files), detached."""
    record = slot.meta["containment"]
    sock_path = slot.dir / SOCKET
    sock_path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with unix_path.usable(str(sock_path)) as address:
        listener.bind(address)
    os.chmod(sock_path, 0o600)  # the server (root) connects; the agent holds the fd
    listener.listen(128)
    secret_read, secret_write = os.pipe()
    os.write(secret_write, slot.meta["secret"].encode())
    os.close(secret_write)
    fds = [secret_read]  # closed here once the child has them (the listener closes itself)
    info_read = info_write = -1
    try:
        agent = local_sandbox.agent_argv(config, listener.fileno(), secret_read, revived)
        host_uid = containment.host_uid(record)
        prefix = local_sandbox.limits_argv(config) + local_sandbox.drop_privileges_argv(host_uid)
        if config.isolation == "none":
            argv = [*prefix, "env", "-i", *(f"{k}={v}" for k, v in _plain_env(slot).items()),
                    *agent, "--workspace", str(slot.dir / "workspace")]  # fmt: skip
        else:
            workspace = os.open(slot.dir / "workspace", os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW)
            passwd = _memfd("passwd", local_sandbox.PASSWD.encode())
            group = _memfd("group", local_sandbox.GROUP.encode())
            info_read, info_write = os.pipe()
            fds += [workspace, passwd, group, info_write]
            bwrap = local_sandbox.sandbox_argv(config, workspace, passwd, group, info_write)
            argv = [*prefix, *bwrap, *agent]
        launcher = subprocess.run(
            local_sandbox.DETACH + containment.join_argv(record) + argv,
            stdin=subprocess.DEVNULL, capture_output=True, pass_fds=[listener.fileno(), *fds],
            start_new_session=True, timeout=30, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )  # fmt: skip
        if launcher.returncode != 0 or not launcher.stdout.strip().isdigit():
            log.error("starting a sandbox failed: %r", launcher.stderr[-2000:])
            raise ExecutionError("could not start the execution environment")
        pid = int(launcher.stdout.strip())
        child = None
        if info_write >= 0:
            os.close(info_write)
            fds.remove(info_write)
            child = _child_pid(info_read, pid)
    finally:
        listener.close()
        for fd in fds:
            os.close(fd)
        if info_read >= 0:
            os.close(info_read)
    slot.meta.update(pid=pid, pid_start=_start_time(pid), child_pid=child,
                     child_start=_start_time(child) if child else None)  # fmt: skip
    if slot.meta["pid_start"] is None:
        raise ExecutionError("the execution environment exited at start")
    slot.save()


def _plain_env(slot: Slot) -> dict[str, str]:
    env = dict(local_sandbox.SHELL_ENV)
    env.update(HOME=str(slot.dir / "workspace"), PATH="/usr/local/bin:/usr/bin:/bin",
               PYTHONPATH=str(local_sandbox.AGENT_DIR.parent.parent))  # fmt: skip
    return env


def _child_pid(info_fd: int, pid: int, timeout: float = 10.0) -> int | None:
    """bwrap's --info-fd JSON names the sandbox's pid 1 (killing it ends the namespace)."""
    deadline = time.monotonic() + timeout
    data = b""
    os.set_blocking(info_fd, False)
    while time.monotonic() < deadline:
        try:
            chunk = os.read(info_fd, 4096)
        except BlockingIOError:
            chunk = None
        if chunk == b"":
            break
        if chunk:
            data += chunk
            try:
                value = json.loads(data).get("child-pid")
                return value if isinstance(value, int) else None
            except ValueError:
                continue
        if _start_time(pid) is None:
            return None
        time.sleep(0.002)  # bwrap writes it within milliseconds of starting
    try:
        value = json.loads(data).get("child-pid")
    except ValueError:
        return None
    return value if isinstance(value, int) else None


def abandoned(slot_dir: Path) -> bool:
    """A slot without a readable meta.json whose maker died before saving it (a server
    killed while making a sandbox): its cgroup, volume and uid are nobody's now. A claimed
    one never is: its meta.json was lost (a power cut before the disk had it), not its
    user's files, so it is left for an operator rather than destroyed."""
    if (slot_dir / CLAIM).exists():
        return False
    try:
        pid, started = (int(part) for part in (slot_dir / MAKER).read_text().split())
    except (OSError, ValueError):  # not even the maker's name was written
        try:
            made = int(slot_dir.name.split("-", 1)[0], 16) / 1000
        except ValueError:
            return True  # not a name ``create`` gives
        return time.time() - made > ABANDONED_AFTER_SECONDS
    return _start_time(pid) != started


def destroy_abandoned(slot_dir: Path, containment: Containment) -> None:
    """End and free whatever an abandoned slot got before its maker died, then remove it."""
    try:
        containment.release_abandoned(slot_dir)
    except Exception:
        log.exception("could not free the abandoned sandbox %s", slot_dir.name)
        return  # kept: a later start tries again rather than deleting files under a mount
    shutil.rmtree(slot_dir, ignore_errors=True)


def kill(slot: Slot, containment: Containment) -> None:
    """End every process of the slot (the sandbox, its agent, the user's programs)."""
    record = slot.meta.get("containment") or {}
    if containment.kill_all(record):
        return
    for key, start_key in (("child_pid", "child_start"), ("pid", "pid_start")):
        pid = slot.meta.get(key)
        if isinstance(pid, int) and _start_time(pid) == slot.meta.get(start_key):
            try:
                os.kill(pid, signal.SIGKILL)  # pid 1 of the sandbox: the namespace goes with it
            except ProcessLookupError:
                pass
    pid = slot.meta.get("pid")
    deadline = time.monotonic() + 10
    while isinstance(pid, int) and _start_time(pid) == slot.meta.get("pid_start"):
        if time.monotonic() > deadline:
            log.warning("sandbox %s (pid %s) did not exit", slot.id, pid)
            break
        time.sleep(0.005)


def destroy(slot: Slot, containment: Containment) -> None:
    """Kill the slot's processes, release its containment and remove its directory."""
    kill(slot, containment)
    containment.release(slot.meta.get("containment") or {})
    shutil.rmtree(slot.dir, ignore_errors=True)
