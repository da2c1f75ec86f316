"""Configuration of the Kubernetes execution backend, read from the environment."""

from __future__ import annotations

from collections.abc import Mapping

import attrs


def _parse_node_selector(text: str) -> dict[str, str]:
    """``"k=v,k2=v2"`` -> ``{"k": "v", "k2": "v2"}``; blanks are ignored."""
    selector: dict[str, str] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"EXECUTION_NODE_SELECTOR: expected key=value, got {item!r}")
        selector[key.strip()] = value.strip()
    return selector


@attrs.frozen
class KubernetesBackendConfig:
    """Where and how execution pods run. Every field has a working default for a cluster
    set up by the manifests in ``k8s/``; ``from_env`` reads the documented variables."""

    namespace: str = "coding-platform"
    image: str = "code-execution-platform/execution:latest"
    cpu: str = "500m"
    memory: str = "512Mi"
    workspace_size_limit: str = "1Gi"
    tmp_size_limit: str = "256Mi"
    runtime_class: str | None = None  # e.g. "gvisor"
    node_selector: Mapping[str, str] = attrs.field(factory=dict, converter=dict)
    ready_timeout_s: float = 60.0
    kubeconfig: str | None = None  # None: in-cluster config, else ~/.kube/config
    image_pull_policy: str = "IfNotPresent"
    stop_timeout_s: float = 60.0  # how long stop() waits for the pod to disappear

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> KubernetesBackendConfig:
        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        values: dict[str, object] = {}
        for field, name in (
            ("namespace", "K8S_NAMESPACE"),
            ("image", "EXECUTION_IMAGE"),
            ("cpu", "EXECUTION_CPU"),
            ("memory", "EXECUTION_MEMORY"),
            ("workspace_size_limit", "EXECUTION_WORKSPACE_SIZE"),
            ("runtime_class", "EXECUTION_RUNTIME_CLASS"),
            ("kubeconfig", "KUBECONFIG"),
            ("image_pull_policy", "EXECUTION_IMAGE_PULL_POLICY"),
        ):
            if (value := get(name)) is not None:
                values[field] = value
        if (selector := get("EXECUTION_NODE_SELECTOR")) is not None:
            values["node_selector"] = _parse_node_selector(selector)
        if (timeout := get("EXECUTION_READY_TIMEOUT")) is not None:
            try:
                values["ready_timeout_s"] = float(timeout)
            except ValueError:
                raise ValueError(
                    f"EXECUTION_READY_TIMEOUT: expected seconds, got {timeout!r}"
                ) from None
            if values["ready_timeout_s"] <= 0:  # type: ignore[operator]
                raise ValueError("EXECUTION_READY_TIMEOUT: must be > 0")
        return cls(**values)  # type: ignore[arg-type]
