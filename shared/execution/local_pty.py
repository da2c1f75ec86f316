"""A bash on a PTY, optionally inside a bubblewrap sandbox, read without a thread.

``sandbox_argv`` is a pure function from the config to the bwrap command line, so the
isolation flags are testable without spawning anything. ``PtyShell`` implements the pull-based
``Shell`` protocol: the master fd is non-blocking and waited on with the event loop's reader,
so an unread shell costs nothing and a shell is only read as fast as its reader asks.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import struct
import subprocess
import termios
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from shared.execution.local import LocalSandboxConfig

SANDBOX_UID = 1000
SANDBOX_GID = 1000

# What bash and python need from /etc; everything else (shadow, ssh keys, sudoers, service
# configs with passwords) is simply not there.
ETC_ALLOWLIST = (
    "alternatives",
    "bash.bashrc",
    "ca-certificates",
    "environment",
    "gai.conf",
    "host.conf",
    "hosts",
    "inputrc",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "locale.alias",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "profile",
    "profile.d",
    "python3",
    "python3.11",
    "ssl/certs",
    "ssl/openssl.cnf",
    "terminfo",
    "timezone",
)
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")

PASSWD = (
    "root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
    f"sandbox:x:{SANDBOX_UID}:{SANDBOX_GID}:sandbox:/workspace:/bin/bash\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
)
GROUP = f"root:x:0:\nsandbox:x:{SANDBOX_GID}:\nnogroup:x:65534:\n"

SHELL_ENV = {
    "TERM": "xterm-256color",
    "COLORTERM": "truecolor",
    "HOME": "/workspace",
    "USER": "sandbox",
    "LOGNAME": "sandbox",
    "SHELL": "/bin/bash",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PATH": "/workspace/.local/bin:/usr/local/bin:/usr/bin:/bin",
    "PS1": r"\u@\h:\w\$ ",
    "PYTHONUNBUFFERED": "1",
}


def _memfd(name: str, text: str) -> int:
    fd = os.memfd_create(name, 0)  # bwrap reads it to EOF; no MFD_CLOEXEC so it is inherited
    os.write(fd, text.encode())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def sandbox_argv(
    config: LocalSandboxConfig, workspace_fd: int, passwd_fd: int, group_fd: int
) -> list[str]:
    """The bwrap command line for one shell. Pure: depends only on its arguments and /."""
    argv = ["bwrap"]
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    for name in ETC_ALLOWLIST:
        argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    argv += ["--ro-bind-data", str(passwd_fd), "/etc/passwd"]
    argv += ["--ro-bind-data", str(group_fd), "/etc/group"]
    argv += [
        "--bind-fd", str(workspace_fd), "/workspace",
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", str(config.max_tmp_mb * 1024 * 1024), "--tmpfs", "/tmp",
        "--unshare-all",  # ipc, pid, net, uts, cgroup: no network at all
        "--unshare-user",  # explicit: --unshare-all only tries it
        "--disable-userns",
        "--uid", str(SANDBOX_UID),
        "--gid", str(SANDBOX_GID),
        "--hostname", "sandbox",
        "--die-with-parent",
        "--new-session",  # the sandbox cannot TIOCSTI into any terminal but its own PTY
        "--chdir", "/workspace",
        "--clearenv",
    ]  # fmt: skip
    for key, value in SHELL_ENV.items():
        argv += ["--setenv", key, value]
    # --new-session dropped the controlling terminal; setsid -c takes the PTY back so that
    # job control and Ctrl-C work inside.
    argv += ["--", "setsid", "-w", "-c", "bash", "-i"]
    return argv


def limits_argv(config: LocalSandboxConfig) -> list[str]:
    """``prlimit`` in front of the sandbox: cheaper than a Python preexec_fn (which forces
    fork() instead of vfork()), and the limits cover bwrap and everything under it."""
    mib = 1024 * 1024
    limits = {
        "nproc": config.max_processes,
        "as": config.max_memory_mb * mib,
        "fsize": config.max_file_mb * mib,
        "nofile": config.max_open_files,
        "cpu": config.cpu_seconds,
        "core": 0,
    }
    return ["prlimit", *(f"--{k}={v}:{v}" for k, v in limits.items()), "--"]


def drop_privileges_argv(host_uid: int | None) -> list[str]:
    """``setpriv`` switching to the session's host uid (util-linux, like ``prlimit``).

    Not Popen's ``user``/``group``/``extra_groups``: those make CPython fork() the whole
    server instead of vfork(), and copying the page tables of a server holding many
    terminals blocked the event loop for ~10 ms per shell. setpriv clears the supplementary
    groups and drops every capability exactly as the kernel does on that setuid."""
    if host_uid is None:
        return []
    return ["setpriv", f"--reuid={host_uid}", f"--regid={host_uid}", "--clear-groups", "--"]


def spawn_shell(
    config: LocalSandboxConfig,
    workspace: Path,
    host_uid: int | None,
    cols: int,
    rows: int,
) -> PtyShell:
    """Start bash on a fresh PTY, in a sandbox unless the config says ``none``."""
    master, slave = os.openpty()
    try:
        _set_size(slave, cols, rows)
        os.set_blocking(master, False)
        # RLIMIT_NPROC is not enforced for host root, so under root each session runs as its
        # own unprivileged host uid: the process limit then really holds, per session.
        prefix = limits_argv(config) + drop_privileges_argv(host_uid)
        if config.sandbox == "none":
            env = dict(SHELL_ENV, HOME=str(workspace), PATH="/usr/local/bin:/usr/bin:/bin")
            proc = subprocess.Popen(
                [*prefix, "bash", "-i"],
                stdin=slave, stdout=slave, stderr=slave, cwd=workspace, env=env,
                start_new_session=True, close_fds=True,
            )  # fmt: skip
        else:
            ws_fd = os.open(workspace, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW)
            passwd_fd = _memfd("passwd", PASSWD)
            group_fd = _memfd("group", GROUP)
            try:
                proc = subprocess.Popen(
                    prefix + sandbox_argv(config, ws_fd, passwd_fd, group_fd),
                    stdin=slave, stdout=slave, stderr=slave, env={},
                    start_new_session=True, close_fds=True,
                    pass_fds=(ws_fd, passwd_fd, group_fd),
                )  # fmt: skip
            finally:
                for fd in (ws_fd, passwd_fd, group_fd):
                    os.close(fd)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    return PtyShell(proc, master)


def _set_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class PtyShell:
    """The ``Shell`` of the local backend: a PTY master fd plus the process behind it."""

    def __init__(self, proc: subprocess.Popen[bytes], master_fd: int) -> None:
        self._proc = proc
        self._fd: int | None = master_fd
        self._pidfd = os.pidfd_open(proc.pid)
        self._exit_code: int | None = None
        self._reaped = anyio.Event()
        self._reaping = False
        self._closed = False

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def exit_code(self) -> int | None:
        return self._exit_code

    async def read(self, max_bytes: int = 65536) -> bytes:
        while self._fd is not None:
            fd = self._fd
            try:
                first = os.read(fd, max_bytes)
            except BlockingIOError:
                try:
                    await anyio.wait_readable(fd)
                except anyio.ClosedResourceError:  # close() while we waited
                    break
                continue
            except OSError as exc:
                if exc.errno != errno.EIO:  # EIO: every slave fd closed, the shell is gone
                    raise
                break
            if not first:
                break
            # The PTY hands over ~4 KiB per read; take what is already there in one go.
            chunks = [first]
            size = len(first)
            while size < max_bytes:
                try:
                    more = os.read(fd, max_bytes - size)
                except OSError:
                    break
                if not more:
                    break
                chunks.append(more)
                size += len(more)
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        await self._reap()
        return b""

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view and self._fd is not None:
            try:
                written = os.write(self._fd, view)
            except BlockingIOError:
                try:
                    await anyio.wait_writable(self._fd)
                except anyio.ClosedResourceError:
                    return
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:
                    return
                raise
            view = view[written:]

    async def resize(self, cols: int, rows: int) -> None:
        if self._fd is not None:
            _set_size(self._fd, cols, rows)  # the kernel sends SIGWINCH to the foreground job

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            # Killing bwrap's group ends the sandbox's pid-1, which takes the whole pid
            # namespace with it (and --die-with-parent covers the rest).
            os.killpg(self._proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await self._reap()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            anyio.notify_closing(fd)
            os.close(fd)

    async def _reap(self) -> None:
        if self._reaping:
            await self._reaped.wait()
            return
        self._reaping = True
        with anyio.CancelScope(shield=True):
            await anyio.wait_readable(self._pidfd)  # readable once the process has exited
        code = self._proc.wait()
        os.close(self._pidfd)
        self._exit_code = code if code >= 0 else 128 - code
        self._reaped.set()
