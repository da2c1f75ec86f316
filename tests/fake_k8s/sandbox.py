"""A fake pod's "containers": a temp directory mounted at /workspace and local processes.

With bubblewrap (the normal case here) every exec runs in
``bwrap --ro-bind /usr /usr ... --bind <pod>/workspace /workspace --bind <pod>/tmp /tmp ...`` so the
commands the backend sends (``tar -C /workspace``, ``cd /workspace``) work unchanged. Without
it, ``/workspace`` in argv and env is rewritten to the pod directory (a weaker stand-in).
"""

from __future__ import annotations

import fcntl
import os
import pty
import shutil
import signal
import struct
import subprocess
import tempfile
import termios
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BWRAP = shutil.which("bwrap")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _read_only_root() -> list[str]:
    """bwrap arguments for the host's top-level directories, read-only, on bwrap's own root
    (binding ``/`` itself would leave no place to create the /workspace mount point)."""
    args: list[str] = []
    for entry in sorted(os.listdir("/")):
        path = f"/{entry}"
        if entry in ("proc", "dev", "tmp", "workspace"):
            continue
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def _controlling_tty() -> None:  # runs in the child between fork and exec
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def set_window_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


@dataclass(eq=False)
class Process:
    """One exec: the process, the fd we write its stdin to, and (channel, fd) outputs."""

    popen: subprocess.Popen[bytes]
    stdin_fd: int | None
    outputs: list[tuple[int, int]]
    tty_fd: int | None = None  # the PTY master, for resize
    _closed: set[int] = field(default_factory=set)

    def close_fd(self, fd: int | None) -> None:
        if fd is not None and fd not in self._closed:
            self._closed.add(fd)
            os.close(fd)

    def close_all(self) -> None:
        for fd in {self.stdin_fd, self.tty_fd, *(fd for _, fd in self.outputs)}:
            self.close_fd(fd)

    def kill(self) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class PodSandbox:
    def __init__(self, root: Path, pod: dict[str, Any]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"{pod['metadata']['name']}-", dir=root))
        self.workspace = self.dir / "workspace"
        self.tmp = self.dir / "tmp"
        self.workspace.mkdir()
        self.tmp.mkdir()
        container = pod["spec"]["containers"][0]
        self.working_dir = container.get("workingDir") or "/"
        self.env = {"PATH": PATH, "HOSTNAME": pod["metadata"]["name"]}
        self.env.update({e["name"]: e.get("value", "") for e in container.get("env") or []})
        self.processes: set[Process] = set()

    def _rewrite(self, text: str) -> str:
        if BWRAP:
            return text
        return text.replace("/workspace", str(self.workspace)).replace("/tmp", str(self.tmp))

    def _argv(self, command: list[str]) -> list[str]:
        if not BWRAP:
            return [self._rewrite(arg) for arg in command]
        return [
            BWRAP, *_read_only_root(),
            "--bind", str(self.workspace), "/workspace",
            "--bind", str(self.tmp), "/tmp",
            "--dev", "/dev", "--proc", "/proc",
            "--unshare-pid", "--die-with-parent",
            # As the pod's securityContext says (runAsUser/runAsGroup 1000): never root inside.
            "--unshare-user", "--uid", "1000", "--gid", "1000",
            "--chdir", self.working_dir,
            "--", *command,
        ]  # fmt: skip

    def spawn(
        self, command: list[str], *, stdin: bool, stdout: bool, stderr: bool, tty: bool
    ) -> Process:
        env = {k: self._rewrite(v) for k, v in self.env.items()}
        cwd = str(self.workspace) if not BWRAP else None
        if tty:
            master, slave = pty.openpty()
            set_window_size(master, 80, 24)
            try:
                popen = subprocess.Popen(
                    self._argv(command),
                    stdin=slave,
                    stdout=slave,
                    stderr=slave,
                    env=env,
                    cwd=cwd,
                    preexec_fn=_controlling_tty,  # noqa: PLW1509 - needs a ctty
                )
            finally:
                os.close(slave)
            process = Process(popen, master if stdin else None, [(1, master)], tty_fd=master)
        else:
            pipes: dict[str, tuple[int, int]] = {}
            for name, wanted in (("stdin", stdin), ("stdout", stdout), ("stderr", stderr)):
                if wanted:
                    pipes[name] = os.pipe()
            try:
                popen = subprocess.Popen(
                    self._argv(command),
                    stdin=pipes["stdin"][0] if stdin else subprocess.DEVNULL,
                    stdout=pipes["stdout"][1] if stdout else subprocess.DEVNULL,
                    stderr=pipes["stderr"][1] if stderr else subprocess.DEVNULL,
                    env=env, cwd=cwd, start_new_session=True,
                )  # fmt: skip
            finally:
                for name, (read_end, write_end) in pipes.items():
                    os.close(read_end if name == "stdin" else write_end)
            outputs = [(ch, pipes[n][0]) for ch, n in ((1, "stdout"), (2, "stderr")) if n in pipes]
            process = Process(popen, pipes["stdin"][1] if stdin else None, outputs)
        for _, fd in process.outputs:
            os.set_blocking(fd, False)
        self.processes.add(process)
        return process

    def kill_all(self) -> None:
        for process in list(self.processes):
            process.kill()

    def destroy(self) -> None:
        self.kill_all()
        shutil.rmtree(self.dir, ignore_errors=True)
