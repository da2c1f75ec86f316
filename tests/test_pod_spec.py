"""The execution pod manifest and the backend config, checked without a cluster."""

from __future__ import annotations

import re
from uuid import UUID

import pytest

from shared.execution.k8s_config import KubernetesBackendConfig
from shared.execution.pod_spec import build_pod_manifest, pod_name

SESSION = UUID("6f1c2a9e-0b7d-4c55-9a51-3d2f4e8b7a10")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def manifest(**config: object) -> dict:
    return build_pod_manifest(KubernetesBackendConfig(**config), SESSION, 42)  # type: ignore[arg-type]


def test_pod_is_named_after_the_session_as_a_dns_label() -> None:
    name = manifest()["metadata"]["name"]
    assert name == f"exec-{SESSION}"
    assert DNS_LABEL.match(name) and len(name) <= 63


def test_pod_name_is_hashed_when_the_id_is_not_a_dns_label() -> None:
    for odd in ("Upper_Case.Id", "x" * 80, "-leading"):
        name = pod_name(odd)
        assert DNS_LABEL.match(name) and len(name) <= 63
        assert name.startswith("exec-")
    assert pod_name("Upper_Case.Id") != pod_name("upper_case.id")


def test_pod_is_labelled_with_app_session_and_owner_in_the_namespace() -> None:
    metadata = manifest(namespace="sandboxes")["metadata"]
    assert metadata["namespace"] == "sandboxes"
    assert metadata["labels"] == {"app": "execution", "session": str(SESSION), "owner": "42"}


def test_pod_follows_the_restricted_pod_security_profile() -> None:
    spec = manifest()["spec"]
    pod_security = spec["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] == 1000
    assert pod_security["runAsGroup"] == 1000
    assert pod_security["fsGroup"] == 1000
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    assert "hostNetwork" not in spec and "hostPID" not in spec
    (container,) = spec["containers"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["privileged"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}


def test_workspace_and_tmp_are_writable_size_limited_empty_dirs() -> None:
    spec = manifest(workspace_size_limit="2Gi")["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["workspace"]["emptyDir"] == {"sizeLimit": "2Gi"}
    assert "sizeLimit" in volumes["tmp"]["emptyDir"]
    mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
    assert mounts == {"/workspace": "workspace", "/tmp": "tmp"}


def test_container_keeps_running_in_the_workspace_with_terminal_env() -> None:
    container = manifest(image="registry.example/exec:1")["spec"]["containers"][0]
    assert container["image"] == "registry.example/exec:1"
    assert container["workingDir"] == "/workspace"
    assert "sleep infinity" in " ".join(container["command"])
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {"HOME": "/workspace", "TERM": "xterm-256color"}


def test_resources_default_to_half_a_cpu_and_512mi() -> None:
    resources = manifest()["spec"]["containers"][0]["resources"]
    assert resources["requests"] == {"cpu": "500m", "memory": "512Mi"}
    assert resources["limits"] == {"cpu": "500m", "memory": "512Mi"}
    custom = manifest(cpu="2", memory="1Gi")["spec"]["containers"][0]["resources"]
    assert custom["limits"] == {"cpu": "2", "memory": "1Gi"}


def test_runtime_class_and_node_selector_are_optional() -> None:
    plain = manifest()["spec"]
    assert "runtimeClassName" not in plain and "nodeSelector" not in plain
    sandboxed = manifest(runtime_class="gvisor", node_selector={"pool": "sandbox"})["spec"]
    assert sandboxed["runtimeClassName"] == "gvisor"
    assert sandboxed["nodeSelector"] == {"pool": "sandbox"}


def test_manifest_is_accepted_by_the_official_client_model() -> None:
    import json

    from kubernetes.client import ApiClient

    body = json.dumps(manifest(runtime_class="gvisor"))
    pod = ApiClient().deserialize(body, "V1Pod", "application/json")
    assert pod.spec.security_context.run_as_non_root is True


def test_config_defaults() -> None:
    config = KubernetesBackendConfig()
    assert config.namespace == "coding-platform"
    assert config.image == "code-execution-platform/execution:latest"
    assert (config.cpu, config.memory, config.workspace_size_limit) == ("500m", "512Mi", "1Gi")
    assert config.runtime_class is None and dict(config.node_selector) == {}
    assert config.ready_timeout_s == 60 and config.kubeconfig is None
    assert config.image_pull_policy == "IfNotPresent"


def test_config_from_env() -> None:
    config = KubernetesBackendConfig.from_env(
        {
            "K8S_NAMESPACE": "ns1",
            "EXECUTION_IMAGE": "img:2",
            "EXECUTION_CPU": "1",
            "EXECUTION_MEMORY": "1Gi",
            "EXECUTION_WORKSPACE_SIZE": "3Gi",
            "EXECUTION_RUNTIME_CLASS": "gvisor",
            "EXECUTION_NODE_SELECTOR": "pool=sandbox, zone=a",
            "EXECUTION_READY_TIMEOUT": "90",
            "KUBECONFIG": "/tmp/kubeconfig",
            "UNRELATED": "x",
        }
    )
    assert config == KubernetesBackendConfig(
        namespace="ns1",
        image="img:2",
        cpu="1",
        memory="1Gi",
        workspace_size_limit="3Gi",
        runtime_class="gvisor",
        node_selector={"pool": "sandbox", "zone": "a"},
        ready_timeout_s=90.0,
        kubeconfig="/tmp/kubeconfig",
    )
    assert KubernetesBackendConfig.from_env({}) == KubernetesBackendConfig()


@pytest.mark.parametrize(
    "env",
    [{"EXECUTION_NODE_SELECTOR": "novalue"}, {"EXECUTION_READY_TIMEOUT": "soon"}],
)
def test_config_from_env_rejects_malformed_values(env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=next(iter(env))):
        KubernetesBackendConfig.from_env(env)
