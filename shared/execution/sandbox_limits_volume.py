"""A sandbox's ``/workspace`` with a disk quota the kernel enforces: its own small filesystem.

Each volume is an ext4 filesystem in a preallocated image file in the slot's directory,
attached to a loop device and mounted ``nosuid,nodev,noatime``; the sandbox binds the mount
point at ``/workspace``. A write past the size fails with ENOSPC in that sandbox only: no other
sandbox, and not PostgreSQL, shares that filesystem, and the image's blocks were reserved on
the host filesystem when it was created (a full host disk refuses new volumes instead of
failing the database later). The files are on disk, so they survive a crash of the sandbox
or the server (the mount stays) and a reboot (``mount()`` attaches the image again).

Measured alternatives (bench/sandbox_limits.py, 1 GiB, median of 20 on the 2-core dev VM):
this volume costs ~18 ms to create (fallocate + mkfs.ext4 + loop + mount) and ~19 ms to
destroy; a sparse image the same (but the host disk can be overcommitted); a size-capped
tmpfs 0.05 ms, but it is RAM (charged to the sandbox's memory, lost on a reboot, so the files
do not survive what they must). Project quotas on one shared filesystem cannot even be mounted
on this kernel (no CONFIG_QFMT_V2), need a filesystem prepared for them, give EDQUOT instead
of ENOSPC, and leave every sandbox sharing that filesystem's free space and inodes.

Without root, loop devices or mkfs.ext4 the volume is a plain directory (no quota), with a
loud warning logged once. Blocking (mkfs, mount, fsync): call from a worker thread.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import logging
import os
import shutil
import stat
import struct
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from shared.execution.sandbox_limits_detect import unescape_mountinfo

log = logging.getLogger(__name__)

IMAGE_NAME = "workspace.img"
MOUNT_NAME = "workspace"
# mkfs: no blocks reserved for root (the sandbox has no root), an inode per 8 KiB (node_modules
# and virtualenvs are many small files), and no zeroing or discard: the fresh image reads zeros.
MKFS_ARGS = ("-q", "-F", "-t", "ext4", "-m", "0", "-i", "8192")
MKFS_EXTENDED = "nodiscard,lazy_itable_init=1,assume_storage_prezeroed=1"
MS_NOSUID, MS_NODEV, MS_NOATIME = 0x2, 0x4, 0x400
MNT_DETACH = 0x2
# How long mount() waits for an earlier filesystem on the same image to be let go.
IN_USE_WAIT_SECONDS = 10.0
LOOP_CTL_GET_FREE, LOOP_CONFIGURE = 0x4C82, 0x4C0A
LO_FLAGS_AUTOCLEAR, LO_FLAGS_DIRECT_IO = 4, 16
LOOP_MAJOR = 7
_LOOP_CONFIG = struct.Struct("=II" + "QQQQQIIII64s64s32sQQ" + "8Q")  # struct loop_config


class VolumeError(Exception):
    """The volume could not be created, mounted or removed."""


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


@functools.cache
def loop_support() -> str | None:
    """None when loop-mounted volumes work here, else why not (logged once, loudly)."""
    reason = None
    if os.geteuid() != 0:
        reason = "the server does not run as root"
    elif not os.path.exists("/dev/loop-control"):
        reason = "there is no /dev/loop-control (no loop devices)"
    elif shutil.which("mkfs.ext4") is None:
        reason = "mkfs.ext4 is not installed (e2fsprogs)"
    if reason:
        log.warning(
            "NO DISK QUOTA for sandbox workspaces: %s. Each /workspace is a plain directory on "
            "the data filesystem, so one sandbox can fill the disk for everyone.",
            reason,
        )
    return reason


def mounted(path: Path) -> bool:
    """Whether ``path`` is a mount point in this process's mount namespace."""
    target = str(path)
    with open("/proc/self/mountinfo") as f:
        return any(unescape_mountinfo(line.split(" ", 5)[4]) == target for line in f)


def loop_devices_of(image: Path) -> list[str]:
    """The loop devices backed by ``image``. While one is, a filesystem on the image is alive,
    mounted here or in another mount namespace (a sandbox being made copies the host's
    mounts for a moment), even after this namespace unmounted it."""
    target = str(image)
    found = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            text = backing.read_text().strip()
        except OSError:
            continue
        if text in (target, f"{target} (deleted)"):
            found.append(backing.parent.parent.name)
    return found


def _attach_loop(image: Path) -> tuple[str, int]:
    """Attach ``image`` to a free loop device, auto-cleared once unmounted and closed.

    Returns the device and an open fd of it: closing that fd before the mount would clear
    the device at once."""
    backing = os.open(image, os.O_RDWR | os.O_CLOEXEC)
    try:
        control = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
        try:
            for _ in range(32):
                number = fcntl.ioctl(control, LOOP_CTL_GET_FREE)
                device = f"/dev/loop{number}"
                if not os.path.exists(device):  # no udev (containers): make the node
                    os.mknod(device, 0o660 | stat.S_IFBLK, os.makedev(LOOP_MAJOR, number))
                loop = os.open(device, os.O_RDWR | os.O_CLOEXEC)
                try:
                    if _configure(loop, backing):
                        return device, loop
                except BaseException:
                    os.close(loop)
                    raise
                os.close(loop)
        finally:
            os.close(control)
    finally:
        os.close(backing)
    raise VolumeError("no free loop device")


def _configure(loop: int, backing: int) -> bool:
    """Bind the backing file to the loop device; False if another process took it first."""
    for flags in (LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO, LO_FLAGS_AUTOCLEAR):
        try:
            fcntl.ioctl(loop, LOOP_CONFIGURE, _loop_config(backing, flags))
            return True
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                return False
            if exc.errno != errno.EINVAL:  # EINVAL: no direct I/O on this backing file
                raise
    return False


def _loop_config(backing_fd: int, flags: int) -> bytes:
    return _LOOP_CONFIG.pack(
        backing_fd, 0,  # fd, block_size (0: the default 512)
        0, 0, 0, 0, 0, 0, 0, 0, flags, b"", b"", b"", 0, 0,  # struct loop_info64
        *([0] * 8),
    )  # fmt: skip


@attrs.frozen
class WorkspaceVolume:
    """One slot's workspace: ``mountpoint`` is what the sandbox binds at ``/workspace``."""

    kind: str  # "ext4" (quota enforced by its own filesystem) or "dir" (no quota)
    mountpoint: Path
    image: Path | None
    size_mb: int

    @classmethod
    def create(
        cls,
        directory: Path,
        size_mb: int,
        owner_uid: int | None,
        min_free_mb: int = 0,
    ) -> WorkspaceVolume:
        """Make and mount ``directory/workspace`` (image ``directory/workspace.img``), its root
        owned by ``owner_uid``. Refuses when the host filesystem would keep less than
        ``min_free_mb`` free after reserving the image."""
        directory.mkdir(parents=True, exist_ok=True)
        mountpoint = directory / MOUNT_NAME
        if loop_support() is not None:
            mountpoint.mkdir(exist_ok=True)
            volume = cls("dir", mountpoint, None, size_mb)
            volume.chown(owner_uid)
            return volume
        image = directory / IMAGE_NAME
        if image.exists() or mounted(mountpoint):
            raise VolumeError(f"{directory} already holds a workspace volume")
        volume = cls("ext4", mountpoint, image, size_mb)
        try:
            disk = os.statvfs(directory)
            free_mb = disk.f_bavail * disk.f_frsize // 2**20
            if free_mb - size_mb < min_free_mb:
                raise VolumeError(
                    f"not enough disk for a {size_mb} MiB workspace: {free_mb} MiB free, "
                    f"{min_free_mb} MiB must stay free"
                )
            fd = os.open(image, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                os.posix_fallocate(fd, 0, size_mb * 2**20)  # reserve the blocks now
            finally:
                os.close(fd)
            owner = owner_uid or 0
            extended = f"{MKFS_EXTENDED},root_owner={owner}:{owner}"
            subprocess.run(
                ["mkfs.ext4", *MKFS_ARGS, "-E", extended, str(image)],
                check=True, capture_output=True, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            mountpoint.mkdir(exist_ok=True)
            volume.mount()
            (mountpoint / "lost+found").rmdir()  # users would see it in their file tree
        except subprocess.CalledProcessError as exc:
            volume.destroy()
            raise VolumeError(f"mkfs.ext4 failed: {exc.stderr.decode(errors='replace')}") from exc
        except BaseException:
            volume.destroy()
            raise
        return volume

    @classmethod
    def found_in(cls, directory: Path) -> WorkspaceVolume:
        """The volume ``create`` made (or began to make) in ``directory``, from its files."""
        mountpoint, image = directory / MOUNT_NAME, directory / IMAGE_NAME
        if image.exists() or mounted(mountpoint):
            return cls("ext4", mountpoint, image, 0)
        return cls("dir", mountpoint, None, 0)

    def mount(self, in_use_wait: float = IN_USE_WAIT_SECONDS) -> None:
        """Attach and mount the image if it is not mounted (after a reboot); idempotent.
        VolumeError when an earlier filesystem on the image outlives ``in_use_wait``."""
        if self.kind != "ext4" or mounted(self.mountpoint):
            return
        assert self.image is not None
        # Never a second filesystem on one image: it would read what the first has not
        # written yet, and the first would overwrite it when it finally goes.
        deadline = time.monotonic() + in_use_wait
        while busy := loop_devices_of(self.image):
            if time.monotonic() > deadline:
                raise VolumeError(f"{self.image} is still in use ({', '.join(busy)})")
            time.sleep(0.05)  # the kernel frees it when the last namespace lets go
        device, loop = _attach_loop(self.image)
        try:
            flags = MS_NOSUID | MS_NODEV | MS_NOATIME
            result = _libc().mount(
                device.encode(), str(self.mountpoint).encode(), b"ext4", flags, None
            )
            _check(result, f"mount {self.mountpoint}")
        finally:
            os.close(loop)  # from now on the mount holds the device; unmounting clears it

    def unmount(self, timeout: float = 5.0, *, flush: bool = True) -> None:
        """Unmount (the loop device goes with it); detaches lazily if still busy at the end.
        With ``flush``, what was written is on the image first, whoever still holds it."""
        deadline = time.monotonic() + timeout
        if flush and self.kind == "ext4" and mounted(self.mountpoint):
            self._sync()  # on the image now, even if another namespace keeps it mounted
        while self.kind == "ext4" and mounted(self.mountpoint):
            if _libc().umount2(str(self.mountpoint).encode(), 0) == 0:
                return
            code = ctypes.get_errno()
            if code != errno.EBUSY:
                raise OSError(code, f"umount {self.mountpoint}: {os.strerror(code)}")
            if time.monotonic() > deadline:
                log.warning("%s still busy; detaching it lazily", self.mountpoint)
                _check(_libc().umount2(str(self.mountpoint).encode(), MNT_DETACH), "umount")
                return
            time.sleep(0.02)

    def _sync(self) -> None:
        fd = os.open(self.mountpoint, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            if _libc().syncfs(fd) != 0:
                log.warning("syncfs %s: %s", self.mountpoint, os.strerror(ctypes.get_errno()))
        finally:
            os.close(fd)

    def destroy(self) -> None:
        """Unmount and delete the volume and its files; a missing volume is not an error."""
        self.unmount(flush=False)  # nothing on it is kept
        if self.kind == "ext4":
            if self.image is not None:
                self.image.unlink(missing_ok=True)
            try:
                self.mountpoint.rmdir()
            except FileNotFoundError:
                pass
        elif self.mountpoint.exists():
            shutil.rmtree(self.mountpoint)

    def chown(self, owner_uid: int | None) -> None:
        """Give the workspace root to the slot's host uid (e.g. when a spare gets its user)."""
        if owner_uid is not None:
            os.chown(self.mountpoint, owner_uid, owner_uid)

    def usage(self) -> tuple[int, int] | None:
        """(used bytes, size bytes) of the workspace filesystem; None without a quota."""
        if self.kind != "ext4":
            return None
        disk = os.statvfs(self.mountpoint)
        return (disk.f_blocks - disk.f_bfree) * disk.f_frsize, disk.f_blocks * disk.f_frsize

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "mountpoint": str(self.mountpoint),
            "image": str(self.image) if self.image else None,
            "size_mb": self.size_mb,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkspaceVolume:
        kind, mountpoint = data["kind"], Path(data["mountpoint"])
        image = Path(data["image"]) if data.get("image") else None
        if kind not in ("ext4", "dir") or not mountpoint.is_absolute():
            raise VolumeError(f"not a recorded workspace volume: {data!r}")
        if kind == "ext4" and (image is None or image.parent != mountpoint.parent):
            raise VolumeError(f"the image of {mountpoint} must sit next to it: {data!r}")
        return cls(kind, mountpoint, image, int(data["size_mb"]))
