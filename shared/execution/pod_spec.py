"""The execution pod's manifest, built by one pure function from the settings (kubespawner's
make_pod).

The pod's one process is the environment agent (``shared/agent/``, copied into the execution image
at ``AGENT_HOME``): it listens on the agent port, proves itself with the per-pod secret it
reads (and removes) from its environment, and owns the shells and the file work. Nothing
here talks to a cluster, so the restricted Pod Security profile, the command, the probe,
labels, names and limits are all checked by plain unit tests.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any
from uuid import UUID

from shared.config import KubernetesSettings

APP_LABEL = "execution"
CONTAINER_NAME = "agent"
PORT_NAME = "agent"
WORKSPACE_DIR = "/workspace"
RUN_AS_UID = 1000
RUN_AS_GID = 1000
SECRET_ENV = "CEP_AGENT_SECRET"
# Where docker/execution.Dockerfile puts shared/agent/ (shared/ there is a namespace package
# holding only it), and the image's own Python (absolute: nothing the platform runs in a pod
# resolves through PATH).
AGENT_HOME = "/opt/cep-agent"
PYTHON = "/usr/bin/python3"
# No directory the user can write (/workspace, /tmp) is on it: the agent's PATH. Interactive
# shells add the user's own tool directories in the image's /etc/bash.bashrc.
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"

# What the agent hands on to the shells it starts (it drops its own variables first).
SHELL_ENV = {
    "HOME": WORKSPACE_DIR,
    "TERM": "xterm-256color",
    "COLORTERM": "truecolor",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PATH": SAFE_PATH,
    "PYTHONUNBUFFERED": "1",
}

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_MAX_DNS_LABEL = 63


def pod_name(session_id: UUID | str) -> str:
    """``exec-<session-id>`` as a valid DNS label; a hash of the id when it would not be one."""
    candidate = f"exec-{str(session_id).lower()}"
    if len(candidate) <= _MAX_DNS_LABEL and _DNS_LABEL.fullmatch(candidate):
        return candidate
    return "exec-" + hashlib.sha256(str(session_id).encode()).hexdigest()[:32]


def session_labels(session_id: UUID | str, owner_id: int) -> dict[str, str]:
    return {"app": APP_LABEL, "session": str(session_id), "owner": str(owner_id)}


def agent_command(config: KubernetesSettings) -> list[str]:
    """The pod's process. ``-P``: the working directory (the user's /workspace) is not put on
    the agent's import path, so nothing the user writes there can shadow a module of it."""
    return [
        PYTHON, "-S", "-B", "-P", "-m", "shared.agent",
        "--listen", f"0.0.0.0:{config.agent_port}",
        "--secret-env", SECRET_ENV,
        "--workspace", WORKSPACE_DIR,
        "--grace", f"{config.terminal_grace_seconds:g}",
        "--slow", f"{config.slow_viewer_seconds:g}",
        "--prespawn",  # the first terminal finds a prompt waiting
    ]  # fmt: skip


def build_pod_manifest(
    config: KubernetesSettings, session_id: UUID | str, owner_id: int, secret: str
) -> dict[str, Any]:
    """The Pod for one session: the agent as its process, ready once its port accepts
    connections; restricted profile, workspace emptyDir, requests = limits."""
    resources = {"cpu": config.cpu, "memory": config.memory}
    env = {**SHELL_ENV, "PYTHONPATH": AGENT_HOME, SECRET_ENV: secret}
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": config.image,
        "imagePullPolicy": config.image_pull_policy,
        "command": agent_command(config),
        "workingDir": WORKSPACE_DIR,
        "env": [{"name": name, "value": value} for name, value in env.items()],
        "ports": [{"name": PORT_NAME, "containerPort": config.agent_port, "protocol": "TCP"}],
        # The kubelet's TCP check: the agent listens only once it can serve.
        "readinessProbe": {
            "tcpSocket": {"port": config.agent_port},
            "periodSeconds": 1,
            "timeoutSeconds": 1,
            "successThreshold": 1,
            "failureThreshold": 3,
        },
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_UID,
            "runAsGroup": RUN_AS_GID,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "workspace", "mountPath": WORKSPACE_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    spec: dict[str, Any] = {
        "containers": [container],
        # A crashed environment is replaced from the database copy, never restarted quietly.
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 5,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_UID,
            "runAsGroup": RUN_AS_GID,
            "fsGroup": RUN_AS_GID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumes": [
            {"name": "workspace", "emptyDir": {"sizeLimit": config.workspace_size_limit}},
            {"name": "tmp", "emptyDir": {"sizeLimit": config.tmp_size_limit}},
        ],
    }
    if config.runtime_class:
        spec["runtimeClassName"] = config.runtime_class
    if config.node_selector:
        spec["nodeSelector"] = dict(config.node_selector)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(session_id),
            "namespace": config.namespace,
            "labels": session_labels(session_id, owner_id),
        },
        "spec": spec,
    }
