"""The command line that starts one local sandbox with its agent inside.

Pure functions from the settings to argv, so the isolation flags are testable without
spawning anything. The sandbox: read-only system directories and an allowlist of /etc, the
slot's workspace at ``/workspace``, private ``/proc``, ``/dev`` and sized tmpfs for ``/tmp``
and ``/dev/shm``, every namespace unshared (no network), uid 1000 inside, no new user
namespaces, a new session (no TIOCSTI into any terminal but its own), the root read-only.
It does NOT die with its parent: environments outlive the server that started them.
"""

from __future__ import annotations

import os
from pathlib import Path

from shared.config import SandboxSettings
from shared.execution.sandbox_limits import bwrap_tmpfs_args

SANDBOX_UID = 1000
SANDBOX_GID = 1000
AGENT_DIR = Path(__file__).resolve().parent.parent / "agent"  # shared/agent/
# Mounted as /opt/cep-agent/shared/agent: ``python -m shared.agent`` finds it as a namespace
# package there, without the rest of shared/ (which needs the platform's dependencies).
AGENT_MOUNT = "/opt/cep-agent"

# What bash and python need from /etc; everything else (shadow, ssh keys, sudoers, service
# configs with passwords) is simply not there.
ETC_ALLOWLIST = (
    "alternatives", "bash.bashrc", "ca-certificates", "environment", "gai.conf", "host.conf",
    "hosts", "inputrc", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "locale.alias",
    "localtime", "mime.types", "nsswitch.conf", "os-release", "profile", "profile.d",
    "python3", "python3.11", "ssl/certs", "ssl/openssl.cnf", "terminfo", "timezone",
)  # fmt: skip
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")

PASSWD = (
    "root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
    f"sandbox:x:{SANDBOX_UID}:{SANDBOX_GID}:sandbox:/workspace:/bin/bash\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
)
GROUP = f"root:x:0:\nsandbox:x:{SANDBOX_GID}:\nnogroup:x:65534:\n"

# The shells' environment (the agent passes its own environment on, minus its settings).
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


def agent_argv(
    config: SandboxSettings, listen_fd: int, secret_fd: int, materialized: bool = False
) -> list[str]:
    """The agent's own command (inside the sandbox, or plain when unsandboxed);
    ``materialized`` for an agent started again on a workspace that keeps its files."""
    return [
        # -P: not the working directory (/workspace, the user's files) on the import path
        config.python, "-S", "-B", "-P", "-m", "shared.agent",
        "--listen-fd", str(listen_fd), "--secret-fd", str(secret_fd),
        "--grace", f"{config.terminal_grace_seconds:g}",
        "--slow", f"{config.slow_viewer_seconds:g}",
        "--prespawn",
        *(["--materialized"] if materialized else []),
    ]  # fmt: skip


def system_binds() -> list[str]:
    """bwrap's arguments that show the host's system directories, read-only (a merged-/usr
    host's /bin and /lib are symlinks, recreated as such)."""
    argv: list[str] = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    return argv


def sandbox_argv(
    config: SandboxSettings, workspace_fd: int, passwd_fd: int, group_fd: int, info_fd: int
) -> list[str]:
    """bwrap's arguments up to (and including) ``--``; the agent's command follows."""
    argv = ["bwrap", *system_binds()]
    for name in ETC_ALLOWLIST:
        argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    argv += ["--ro-bind-data", str(passwd_fd), "/etc/passwd"]
    argv += ["--ro-bind-data", str(group_fd), "/etc/group"]
    argv += [
        "--ro-bind", str(AGENT_DIR), f"{AGENT_MOUNT}/shared/agent",
        "--bind-fd", str(workspace_fd), "/workspace",
        "--proc", "/proc",
        "--dev", "/dev",
        "--unshare-all",  # ipc, pid, net, uts, cgroup: no network at all
        "--unshare-user",  # explicit: --unshare-all only tries it
        "--disable-userns",
        "--uid", str(SANDBOX_UID),
        "--gid", str(SANDBOX_GID),
        "--hostname", "sandbox",
        "--new-session",  # the sandbox cannot TIOCSTI into any terminal but its own PTY
        "--chdir", "/workspace",
        "--info-fd", str(info_fd),
        "--clearenv",
    ]  # fmt: skip
    for key, value in {**SHELL_ENV, "PYTHONPATH": AGENT_MOUNT}.items():
        argv += ["--setenv", key, value]
    # Every tmpfs has a size (RAM a sandbox could otherwise fill for the whole host), and
    # bwrap's own root and /dev are read-only: last, after every other mount.
    return argv + bwrap_tmpfs_args(config.limits) + ["--"]


def limits_argv(config: SandboxSettings) -> list[str]:
    """``prlimit`` in front of the sandbox: per-process limits that hold even without
    cgroups (cheaper than a Python preexec_fn, which forces fork() instead of vfork())."""
    mib = 1024 * 1024
    limits = {
        "nproc": config.limits.max_processes,
        "as": config.max_memory_mb * mib,
        "fsize": config.max_file_mb * mib,
        "nofile": config.max_open_files,
        "cpu": config.cpu_seconds,
        "core": 0,
    }
    return ["prlimit", *(f"--{k}={v}:{v}" for k, v in limits.items()), "--"]


def drop_privileges_argv(host_uid: int | None) -> list[str]:
    """``setpriv`` to the sandbox's host uid: clears supplementary groups and every
    capability as the kernel does on that setuid (not Popen's ``user=``, which forces
    fork() of the whole server)."""
    if host_uid is None:
        return []
    return ["setpriv", f"--reuid={host_uid}", f"--regid={host_uid}", "--clear-groups", "--"]


# A shell that starts the rest in the background and prints its pid: the sandbox is never
# the server's child, so it outlives the server and is reaped by init.
DETACH = ["/bin/sh", "-c", '"$@" </dev/null >/dev/null 2>&1 & echo $!', "sh"]
