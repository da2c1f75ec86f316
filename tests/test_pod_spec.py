"""The execution pod manifest and the Kubernetes settings, checked without a cluster."""

from __future__ import annotations

import json
import re
from pathlib import Path
from uuid import UUID

import pytest
import yaml

from shared.config import KubernetesSettings, Settings
from shared.execution.pod_spec import AGENT_HOME, SECRET_ENV, build_pod_manifest, pod_name

ROOT = Path(__file__).resolve().parent.parent
SESSION = UUID("6f1c2a9e-0b7d-4c55-9a51-3d2f4e8b7a10")
SECRET = "5ec2e7" * 10
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def manifest(**config: object) -> dict:
    return build_pod_manifest(KubernetesSettings(**config), SESSION, 42, SECRET)  # type: ignore[arg-type]


def container(**config: object) -> dict:
    (only,) = manifest(**config)["spec"]["containers"]
    return only


def env_of(**config: object) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(**config)["env"]}


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


def test_the_pods_process_is_the_agent_listening_on_the_agent_port() -> None:
    command = container()["command"]
    assert command[0] == "/usr/bin/python3"
    assert command[command.index("-m") + 1] == "shared.agent"
    assert "-P" in command  # the user's /workspace never shadows a module of the agent
    assert command[command.index("--listen") + 1] == "0.0.0.0:7681"
    assert command[command.index("--secret-env") + 1] == SECRET_ENV
    assert env_of()["PYTHONPATH"] == AGENT_HOME
    custom = container(agent_port=9000, terminal_grace_seconds=60, slow_viewer_seconds=2)
    assert custom["command"][custom["command"].index("--listen") + 1] == "0.0.0.0:9000"
    assert custom["command"][custom["command"].index("--grace") + 1] == "60"
    assert custom["command"][custom["command"].index("--slow") + 1] == "2"
    assert custom["ports"] == [{"name": "agent", "containerPort": 9000, "protocol": "TCP"}]


def test_the_pod_is_ready_once_the_agent_accepts_connections() -> None:
    probe = container()["readinessProbe"]
    assert probe["tcpSocket"] == {"port": 7681}
    assert probe["periodSeconds"] == 1
    assert container(agent_port=9000)["readinessProbe"]["tcpSocket"] == {"port": 9000}


def test_the_secret_is_in_the_environment_never_in_the_command() -> None:
    assert env_of()[SECRET_ENV] == SECRET
    assert not any(SECRET in arg for arg in container()["command"])
    other = build_pod_manifest(KubernetesSettings(), SESSION, 42, "another-secret-value")
    assert {e["name"]: e["value"] for e in other["spec"]["containers"][0]["env"]}[
        SECRET_ENV
    ] == "another-secret-value"


def test_no_directory_the_user_can_write_is_on_the_path() -> None:
    env = env_of()
    entries = env["PATH"].split(":")
    assert entries and all(entry.startswith("/") for entry in entries)
    writable = ("/workspace", "/tmp", "/var/tmp", "/dev/shm", env["HOME"])
    assert not [e for e in entries if any(e == w or e.startswith(w + "/") for w in writable)]
    assert container()["command"][0].startswith("/")


def test_shells_get_a_terminal_environment_in_the_workspace() -> None:
    env = env_of()
    assert container()["workingDir"] == "/workspace"
    assert env["HOME"] == "/workspace" and env["TERM"] == "xterm-256color"
    assert env["LANG"] == "C.UTF-8"


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
    assert spec["restartPolicy"] == "Never"
    assert "hostNetwork" not in spec and "hostPID" not in spec
    security = container()["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["privileged"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}


def test_workspace_and_tmp_are_writable_size_limited_empty_dirs() -> None:
    spec = manifest(workspace_size_limit="2Gi", tmp_size_limit="64Mi")["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["workspace"]["emptyDir"] == {"sizeLimit": "2Gi"}
    assert volumes["tmp"]["emptyDir"] == {"sizeLimit": "64Mi"}
    mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
    assert mounts == {"/workspace": "workspace", "/tmp": "tmp"}


def test_resources_default_to_half_a_cpu_and_512mi() -> None:
    resources = container()["resources"]
    assert resources["requests"] == {"cpu": "500m", "memory": "512Mi"}
    assert resources["limits"] == {"cpu": "500m", "memory": "512Mi"}
    assert container(cpu="2", memory="1Gi")["resources"]["limits"] == {"cpu": "2", "memory": "1Gi"}


def test_runtime_class_and_node_selector_are_optional() -> None:
    plain = manifest()["spec"]
    assert "runtimeClassName" not in plain and "nodeSelector" not in plain
    sandboxed = manifest(runtime_class="gvisor", node_selector={"pool": "sandbox"})["spec"]
    assert sandboxed["runtimeClassName"] == "gvisor"
    assert sandboxed["nodeSelector"] == {"pool": "sandbox"}


def test_manifest_is_accepted_by_the_official_client_model() -> None:
    from kubernetes.client import ApiClient

    body = json.dumps(manifest(runtime_class="gvisor"))
    pod = ApiClient().deserialize(body, "V1Pod", "application/json")
    assert pod.spec.security_context.run_as_non_root is True
    assert pod.spec.containers[0].readiness_probe.tcp_socket.port == 7681


def test_the_image_holds_the_agent_where_the_pod_looks_for_it() -> None:
    lines = (ROOT / "docker" / "execution.Dockerfile").read_text().splitlines()
    assert f"COPY shared/agent/ {AGENT_HOME}/shared/agent/" in lines
    (path,) = [line.split()[1].removeprefix("PATH=") for line in lines
               if line.startswith("ENV PATH=")]  # fmt: skip
    assert "/tmp" not in path and "/workspace" not in path


def test_the_network_policy_admits_the_agent_port_to_execution_pods() -> None:
    policies = yaml.safe_load_all((ROOT / "k8s/base/common/networkpolicies.yaml").read_text())
    (isolation,) = [p for p in policies if p["metadata"]["name"] == "execution-isolation"]
    assert isolation["spec"]["podSelector"]["matchLabels"] == {"app": "execution"}
    ports = [port["port"] for rule in isolation["spec"]["ingress"] for port in rule["ports"]]
    assert ports == [KubernetesSettings().agent_port]


# --- settings ----------------------------------------------------------------------------


def test_kubernetes_settings_defaults() -> None:
    config = Settings.from_env({}).execution.kubernetes
    assert config == KubernetesSettings()
    assert config.namespace == "coding-platform"
    assert config.image == "code-execution-platform/execution:latest"
    assert (config.cpu, config.memory, config.workspace_size_limit) == ("500m", "512Mi", "1Gi")
    assert config.runtime_class is None and dict(config.node_selector) == {}
    assert config.ready_timeout_seconds == 60 and config.kubeconfig is None
    assert config.image_pull_policy == "IfNotPresent" and config.agent_port == 7681


def test_kubernetes_settings_are_read_from_the_environment() -> None:
    config = Settings.from_env(
        {
            "K8S_NAMESPACE": "ns1",
            "K8S_API_TIMEOUT_SECONDS": "3",
            "EXECUTION_IMAGE": "img:2",
            "EXECUTION_IMAGE_PULL_POLICY": "Always",
            "EXECUTION_CPU": "1",
            "EXECUTION_MEMORY": "1Gi",
            "EXECUTION_WORKSPACE_SIZE": "3Gi",
            "EXECUTION_TMP_SIZE": "128Mi",
            "EXECUTION_RUNTIME_CLASS": "gvisor",
            "EXECUTION_NODE_SELECTOR": "pool=sandbox, zone=a",
            "EXECUTION_READY_TIMEOUT": "90",
            "EXECUTION_AGENT_PORT": "9000",
            "TERMINAL_GRACE_SECONDS": "30",
            "TERMINAL_SLOW_CLIENT_SECONDS": "2",
            "KUBECONFIG": "/etc/kubeconfig",
            "UNRELATED": "x",
        }
    ).execution.kubernetes
    assert config == KubernetesSettings(
        namespace="ns1",
        api_timeout_seconds=3.0,
        image="img:2",
        image_pull_policy="Always",
        cpu="1",
        memory="1Gi",
        workspace_size_limit="3Gi",
        tmp_size_limit="128Mi",
        runtime_class="gvisor",
        node_selector={"pool": "sandbox", "zone": "a"},
        ready_timeout_seconds=90.0,
        agent_port=9000,
        terminal_grace_seconds=30.0,
        slow_viewer_seconds=2.0,
        kubeconfig="/etc/kubeconfig",
    )


@pytest.mark.parametrize(
    "env",
    [
        {"EXECUTION_NODE_SELECTOR": "novalue"},
        {"EXECUTION_READY_TIMEOUT": "soon"},
        {"EXECUTION_AGENT_PORT": "80"},
        {"EXECUTION_AGENT_PORT": "70000"},
    ],
)
def test_malformed_kubernetes_settings_are_refused_naming_the_variable(
    env: dict[str, str],
) -> None:
    with pytest.raises(ValueError, match=next(iter(env))):
        Settings.from_env(env)
