"""The execution pod's manifest, built by one pure function from config (kubespawner's make_pod).

Nothing here talks to a cluster, so the restricted Pod Security profile, labels, names and
limits are all checked by plain unit tests.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any
from uuid import UUID

from shared.execution.k8s_config import KubernetesBackendConfig

APP_LABEL = "execution"
CONTAINER_NAME = "shell"
WORKSPACE_DIR = "/workspace"
RUN_AS_UID = 1000
RUN_AS_GID = 1000

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_MAX_DNS_LABEL = 63

# PID 1 ignores signals it has no handler for, so a bare `sleep infinity` would sit out the
# whole grace period on a normal delete; the trap makes it leave at once.
KEEPALIVE_COMMAND = ["/bin/sh", "-c", "trap 'exit 0' TERM INT; sleep infinity & wait"]


def pod_name(session_id: UUID | str) -> str:
    """``exec-<session-id>`` as a valid DNS label; a hash of the id when it would not be one."""
    candidate = f"exec-{str(session_id).lower()}"
    if len(candidate) <= _MAX_DNS_LABEL and _DNS_LABEL.fullmatch(candidate):
        return candidate
    return "exec-" + hashlib.sha256(str(session_id).encode()).hexdigest()[:32]


def session_labels(session_id: UUID | str, owner_id: int) -> dict[str, str]:
    return {"app": APP_LABEL, "session": str(session_id), "owner": str(owner_id)}


def build_pod_manifest(
    config: KubernetesBackendConfig, session_id: UUID | str, owner_id: int
) -> dict[str, Any]:
    """The Pod for one session: restricted profile, workspace emptyDir, requests = limits."""
    resources = {"cpu": config.cpu, "memory": config.memory}
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": config.image,
        "imagePullPolicy": config.image_pull_policy,
        "command": list(KEEPALIVE_COMMAND),
        "workingDir": WORKSPACE_DIR,
        "env": [
            {"name": "HOME", "value": WORKSPACE_DIR},
            {"name": "TERM", "value": "xterm-256color"},
        ],
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
