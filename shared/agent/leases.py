"""Replacing a file's content while no program can touch it: a rewrite under a write lease.

Replacing a file by renaming a new one over it loses what a program writes through a
descriptor it opened just before the rename (a shell's ``echo ... >> log`` opens, then
writes): that write lands in the old, unlinked inode. A write lease (``F_SETLEASE``) is
granted only while nobody else has the file open, and while it is held anyone opening the
file waits in the kernel; so the agent checks the content, rewrites the same inode in place
and lets the waiting program go on, which then appends after the new content. When the file
is open elsewhere (or leases are not available) the caller falls back to the rename.
"""

from __future__ import annotations

import fcntl
import os
import signal
import stat
import time

F_SETLEASE = getattr(fcntl, "F_SETLEASE", 1024)
F_SETSIG = 10  # Linux: the signal the lease break is announced with
# Default action "ignore": the kernel announces a lease break to the holder with a signal,
# and SIGIO's default action would end the agent.
BREAK_SIGNAL = signal.SIGWINCH
_OPEN = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _write_all(fd: int, data: bytes) -> None:
    view, offset = memoryview(data), 0
    while offset < len(view):
        offset += os.pwrite(fd, view[offset:], offset)


def open_leased(dir_fd: int, name: str, patience: float = 0.5) -> int | None:
    """An fd of the regular file ``name`` holding a write lease (nobody else has the file
    open, and whoever opens it waits until the fd is closed), or None when none can be had:
    not writable, not ours, leases unsupported, or open elsewhere for longer than
    ``patience`` seconds (a shell's ``>>`` holds it for microseconds; a program keeping it
    open, much longer)."""
    try:
        fd = os.open(name, _OPEN, dir_fd=dir_fd)
    except OSError:
        return None
    deadline = time.monotonic() + patience
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, F_SETSIG, BREAK_SIGNAL)
            while True:
                try:
                    fcntl.fcntl(fd, F_SETLEASE, fcntl.F_WRLCK)
                    return fd
                except BlockingIOError:  # open elsewhere right now
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.001)
    except OSError:
        pass
    os.close(fd)
    return None


def rewrite(fd: int, old: bytes, content: bytes) -> None:
    """Replace the content ``old`` of the leased ``fd`` by ``content``. The space is
    reserved first (a full disk fails before anything changed); should the rewrite fail
    all the same, ``old`` is put back."""
    if content:
        os.posix_fallocate(fd, 0, len(content))
    try:
        _write_all(fd, content)
        os.ftruncate(fd, len(content))
    except BaseException:
        _write_all(fd, old)
        os.ftruncate(fd, len(old))
        raise
