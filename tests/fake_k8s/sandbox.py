"""A fake pod's container: its command, run the way the pod spec says, in a bubblewrap
stand-in for the image, inside the pod's own network namespace.

``nsenter --net=<the pod's netns> setpriv <runAsUser> bwrap ... -- <command> <args>``:
the host's system directories read-only (standing in for the image), an empty directory at
``/workspace`` and ``/tmp`` (the emptyDirs), the repository's ``shared/agent/`` where the pod's
PYTHONPATH expects it (as the execution image holds it), private pid/ipc/uts namespaces,
the container's env (the secret travels in the environment, never in argv) and working
directory. The process is a real uid (1000) on the host, not root in a user namespace.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .network import PodNetwork

BWRAP = shutil.which("bwrap")
AGENT_DIR = Path(__file__).resolve().parents[2] / "shared" / "agent"
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")


def container_command(container: dict[str, Any]) -> list[str]:
    return [*(container.get("command") or []), *(container.get("args") or [])]


class PodSandbox:
    """The directories and the process of one pod's (first) container."""

    def __init__(self, root: Path, pod: dict[str, Any], network: PodNetwork | None) -> None:
        if BWRAP is None:
            raise RuntimeError("the fake cluster runs containers with bubblewrap (bwrap)")
        self.name = pod["metadata"]["name"]
        self.network = network
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=root))
        self.workspace = self.dir / "workspace"
        self.tmp = self.dir / "tmp"
        self.log = self.dir / "container.log"
        spec = pod["spec"]
        self.container = spec["containers"][0]
        security = {**(spec.get("securityContext") or {}),
                    **(self.container.get("securityContext") or {})}  # fmt: skip
        self.uid = int(security.get("runAsUser", 0))
        self.gid = int(security.get("runAsGroup", self.uid))
        os.chmod(self.dir, 0o711)  # the container's uid reaches its volumes below it
        for volume, mode in ((self.workspace, 0o755), (self.tmp, 0o1777)):
            volume.mkdir()
            os.chown(volume, self.uid, self.gid)
            os.chmod(volume, mode)
        self.process: subprocess.Popen[bytes] | None = None

    def _argv(self) -> list[str]:
        env = {e["name"]: e.get("value", "") for e in self.container.get("env") or []}
        argv = ["nsenter", f"--net={self.network.netns_path}", "--"] if self.network else []
        argv += ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", "--"]
        argv.append(BWRAP or "bwrap")
        for path in SYSTEM_DIRS:
            if os.path.islink(path):
                argv += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                argv += ["--ro-bind", path, path]
        agent_home = env.get("PYTHONPATH", "").split(":")[0]
        if agent_home.startswith("/"):
            argv += ["--ro-bind", str(AGENT_DIR), f"{agent_home.rstrip('/')}/shared/agent"]
        argv += [
            "--bind", str(self.workspace), "/workspace",
            "--bind", str(self.tmp), "/tmp",
            "--proc", "/proc", "--dev", "/dev",
            "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--uid", str(self.uid), "--gid", str(self.gid),
            "--hostname", self.name,
            "--die-with-parent",
            "--chdir", self.container.get("workingDir") or "/",
            "--", *container_command(self.container),
        ]  # fmt: skip
        return argv

    def start(self) -> subprocess.Popen[bytes]:
        """Start the container's process (from the event loop's thread: it dies with it)."""
        env = {e["name"]: e.get("value", "") for e in self.container.get("env") or []}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env.setdefault("HOSTNAME", self.name)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self._argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                start_new_session=True,
            )  # fmt: skip
        return self.process

    def kill(self) -> None:
        """SIGKILL the container: the sandbox's pid 1 goes, and every process of its pid
        namespace (the shells, whatever they started) with it."""
        process = self.process
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=10)

    def remove(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
