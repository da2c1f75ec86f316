"""The Kubernetes manifests in k8s/, checked without a cluster.

Every kustomization is rendered with the machine's ``kubectl kustomize`` (the ``KUBECTL``
environment variable picks another binary) and every object is validated strictly against the
Kubernetes 1.30 schemas with ``kubernetes-validate``. Then the deployment rules are checked:
autoscaling, labels, probes, security contexts, RBAC scope, the Ingress against
``ingress.routes.ROUTE_TABLE``, network isolation of execution pods, trusted proxies.
The Dockerfiles are checked in test_images.py.
"""

from __future__ import annotations

import copy
import functools
import ipaddress
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from ingress.routes import FRONT_DOOR, FUNCTIONS, ROUTE_TABLE, WEB

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
NAMESPACE = "coding-platform"
K8S_VERSION = "1.30"

OVERLAYS = ("base", "overlays/dev", "overlays/prod")
ALL_TARGETS = (*OVERLAYS, "knative", "optional/execution-egress")
BACKENDS = (*FUNCTIONS, FRONT_DOOR)  # one template: Deployment, Service, HPA, PDB each
WORKLOADS = (*BACKENDS, WEB)
EXECUTORS = {"terminal", "workspace"}
EXECUTOR_SA = "platform-executor"
BACKEND_SA = "platform-backend"
AGENT_PORT = 7681

Obj = dict[str, Any]


# ---- rendering ---------------------------------------------------------------------------


@functools.cache
def kubectl() -> str:
    """kubectl with kustomize v5 (kubectl 1.27+); missing is a failure, never a skip."""
    binary = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not binary or not Path(binary).exists():
        pytest.fail(
            "kubectl not found: install kubectl 1.27 or newer or set KUBECTL=/path/to/kubectl; "
            "the manifests cannot be rendered without it",
            pytrace=False,
        )
    version = subprocess.run(
        [binary, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=60
    )
    kustomize = json.loads(version.stdout or "{}").get("kustomizeVersion", "v0")
    if int(re.sub(r"\D.*", "", kustomize.lstrip("v")) or 0) < 5:
        pytest.fail(
            f"{binary} embeds kustomize {kustomize}; the manifests need v5 (kubectl 1.27+)",
            pytrace=False,
        )
    return binary


@functools.cache
def render(target: str) -> tuple[Obj, ...]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(K8S / target)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        pytest.fail(f"kubectl kustomize k8s/{target} failed:\n{result.stderr}", pytrace=False)
    objs = tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)
    assert objs, f"k8s/{target} rendered nothing"
    return objs


def of_kind(objs: tuple[Obj, ...], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def named(objs: tuple[Obj, ...], kind: str, name: str) -> Obj:
    found = [o for o in of_kind(objs, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_spec(obj: Obj) -> Obj:
    return obj["spec"]["template"]["spec"]


def is_knative(obj: Obj) -> bool:
    return obj["apiVersion"].startswith("serving.knative.dev/")


def config_data(objs: tuple[Obj, ...]) -> dict[str, str]:
    (config,) = of_kind(objs, "ConfigMap")
    return dict(config["data"])


def expanded_command(container: Obj, config: dict[str, str]) -> list[str]:
    """The command as the kubelet runs it: ``$(VAR)`` from the container's env and envFrom.
    A reference to a variable that is not defined is a failure (it would stay literal)."""
    env = dict(config) if container.get("envFrom") else {}
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    words = container.get("command", []) + container.get("args", [])

    def resolve(match: re.Match[str]) -> str:
        assert match.group(1) in env, f"{match.group(1)} is referenced but never defined"
        return env[match.group(1)]

    return [re.sub(r"\$\(([A-Z_][A-Z0-9_]*)\)", resolve, word) for word in words]


def option(command: list[str], name: str) -> str:
    assert name in command, f"{name} missing from {command}"
    return command[command.index(name) + 1]


def validate_strict(obj: Obj) -> None:
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        pytest.fail(
            f"{name} is not valid Kubernetes {K8S_VERSION}: {exc.message} at "
            f"{'.'.join(str(p) for p in exc.path)}",
            pytrace=False,
        )


# ---- shared checks -----------------------------------------------------------------------


def assert_restricted_container(container: Obj, where: str) -> None:
    sc = container.get("securityContext") or {}
    assert sc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation"
    assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: drop ALL capabilities"
    assert not sc.get("capabilities", {}).get("add"), f"{where}: no added capabilities"
    assert sc.get("privileged") in (None, False), f"{where}: privileged"
    assert sc.get("readOnlyRootFilesystem") is True, f"{where}: read-only root filesystem"


def assert_restricted_pod(spec: Obj, where: str) -> None:
    """The restricted Pod Security profile, plus uid 1000 and a writable /tmp."""
    psc = spec.get("securityContext") or {}
    for c in spec["containers"]:
        csc = c.get("securityContext") or {}
        # Either level may carry these; the container's wins.
        non_root = csc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        uid = csc.get("runAsUser", psc.get("runAsUser"))
        seccomp = (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        assert non_root is True, f"{where}/{c['name']}: runAsNonRoot"
        assert uid == 1000, f"{where}/{c['name']}: runAsUser 1000"
        assert seccomp in ("RuntimeDefault", "Localhost"), f"{where}/{c['name']}: seccomp"
        assert_restricted_container(c, f"{where}/{c['name']}")
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        assert "/tmp" in mounts, f"{where}/{c['name']}: a writable /tmp"
        volume = next(v for v in spec["volumes"] if v["name"] == mounts["/tmp"])
        assert "emptyDir" in volume, f"{where}: /tmp is an emptyDir"
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(key), f"{where}: {key}"


# ---- every object is valid Kubernetes 1.30 -----------------------------------------------


def test_kubernetes_validate_ships_the_target_schema() -> None:
    versions = kubernetes_validate.utils.all_versions()
    assert any(v.startswith(K8S_VERSION + ".") for v in versions), versions


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_every_rendered_object_is_valid_kubernetes_1_30(target: str) -> None:
    for obj in render(target):
        if is_knative(obj):
            continue  # a CRD kubernetes-validate does not know; see the Knative tests
        validate_strict(obj)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_every_object_lives_in_the_platform_namespace(target: str) -> None:
    for obj in render(target):
        if obj["kind"] == "Namespace":
            assert obj["metadata"]["name"] == NAMESPACE
        else:
            assert obj["metadata"].get("namespace") == NAMESPACE, obj["metadata"]["name"]


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_no_secret_is_ever_rendered(target: str) -> None:
    assert not of_kind(render(target), "Secret"), "secrets are created by the operator"


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_no_template_placeholder_survives_rendering(target: str) -> None:
    """Each backend renames the template's "backend" objects and image; none may be left."""
    text = yaml.safe_dump_all(render(target))
    assert "coding-platform-backend" not in text
    assert "internal.config.kubernetes.io" not in text
    for obj in render(target):
        assert obj["metadata"]["name"] != "backend", obj["kind"]


def test_secret_template_is_valid_and_holds_only_placeholders() -> None:
    path = K8S / "base" / "common" / "secret.example.yaml"
    secret = yaml.safe_load(path.read_text())
    validate_strict(secret)
    assert secret["metadata"]["name"] == "platform-database"
    assert set(secret["stringData"]) == {"DATABASE_URL"}
    assert "REPLACE_PASSWORD" in secret["stringData"]["DATABASE_URL"]
    for kustomization in K8S.rglob("kustomization.yaml"):
        assert "secret.example.yaml" not in kustomization.read_text().split("#")[0]


# ---- workloads: Deployment, Service, HPA, PDB --------------------------------------------


@pytest.mark.parametrize("target", OVERLAYS)
def test_each_workload_has_its_deployment_service_and_disruption_budget(target: str) -> None:
    objs = render(target)
    for kind in ("Deployment", "Service", "PodDisruptionBudget"):
        names = sorted(o["metadata"]["name"] for o in of_kind(objs, kind))
        assert names == sorted(WORKLOADS), f"{kind}: {names}"
    names = sorted(o["metadata"]["name"] for o in of_kind(objs, "HorizontalPodAutoscaler"))
    assert names == sorted(BACKENDS), "every function and the front door autoscale"


@pytest.mark.parametrize("target", OVERLAYS)
def test_backend_pods_are_labelled_backend_and_their_name(target: str) -> None:
    for name in BACKENDS:
        deployment = named(render(target), "Deployment", name)
        expected = {"app": "backend", "function": name}
        assert deployment["spec"]["selector"]["matchLabels"] == expected
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert expected.items() <= labels.items()
        (spread,) = pod_spec(deployment)["topologySpreadConstraints"]
        assert spread["labelSelector"]["matchLabels"] == expected
        # The autoscaler owns the replica count; re-applying must not reset it.
        assert "replicas" not in deployment["spec"]
    web = named(render(target), "Deployment", WEB)
    assert web["spec"]["selector"]["matchLabels"] == {"app": "web"}


@pytest.mark.parametrize("target", OVERLAYS)
def test_backends_run_their_image_app_with_uvicorn_on_port_8000(target: str) -> None:
    objs = render(target)
    config = config_data(objs)
    for name in BACKENDS:
        (container,) = pod_spec(named(objs, "Deployment", name))["containers"]
        command = expanded_command(container, config)
        # No app argument: uvicorn serves the image's UVICORN_APP (test_images.py checks it).
        assert command[0] == "uvicorn" and command[1].startswith("--"), command
        assert not [w for w in command if re.fullmatch(r"[\w.]+:app", w)], command
        assert option(command, "--port") == "8000" and option(command, "--host") == "0.0.0.0"
        assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]


@pytest.mark.parametrize("target", OVERLAYS)
def test_the_web_ide_runs_the_static_server_of_the_gateway(target: str) -> None:
    (container,) = pod_spec(named(render(target), "Deployment", WEB))["containers"]
    command = container["command"]
    assert command[:2] == ["uvicorn", "ingress.ide:app"] and option(command, "--port") == "8000"
    assert "envFrom" not in container and "env" not in container, "the IDE needs no config"


@pytest.mark.parametrize("target", (*OVERLAYS, "knative"))
def test_proxy_headers_are_trusted_only_from_the_configured_proxies(target: str) -> None:
    objs = render(target)
    config = config_data(objs)
    proxies = config["TRUSTED_PROXIES"].split(",")
    for network in proxies:
        parsed = ipaddress.ip_network(network.strip())  # strict: a real CIDR
        assert parsed.prefixlen > 0, f"{network} trusts every address"
    workloads = [o for o in objs if o["kind"] == "Deployment" or is_knative(o)]
    for workload in workloads:
        (container,) = pod_spec(workload)["containers"]
        raw = container.get("command", [])
        name = workload["metadata"]["name"]
        assert "*" not in raw, f"{name} trusts every peer"
        # One home for the rule: the platform reads TRUSTED_PROXIES itself; uvicorn never
        # rewrites the client address from a header first.
        assert "--no-proxy-headers" in raw and "--forwarded-allow-ips" not in raw, name
        if name != WEB:
            env = {e["name"] for e in container.get("env", [])}
            sources = {s["configMapRef"]["name"] for s in container.get("envFrom", [])
                       if "configMapRef" in s}  # fmt: skip
            assert "TRUSTED_PROXIES" in env or sources, f"{name} never sees TRUSTED_PROXIES"


@pytest.mark.parametrize("overlay", ["overlays/dev", "overlays/prod", "knative"])
def test_each_overlay_sets_trusted_proxies_to_a_documented_placeholder(overlay: str) -> None:
    text = (K8S / overlay / "kustomization.yaml").read_text()
    lines = text.splitlines()
    (index,) = [i for i, line in enumerate(lines) if "TRUSTED_PROXIES=" in line]
    comment = " ".join(line for line in lines[max(0, index - 4) : index] if "#" in line)
    assert "PLACEHOLDER" in comment, "say that the operator must set the controller's range"
    assert config_data(render(overlay))["TRUSTED_PROXIES"] != "127.0.0.1/32"


@pytest.mark.parametrize("target", OVERLAYS)
def test_uvicorn_logs_through_the_log_config_that_drops_query_strings(target: str) -> None:
    for name in BACKENDS:
        (container,) = pod_spec(named(render(target), "Deployment", name))["containers"]
        assert option(container["command"], "--log-config") == "/app/shared/uvicorn-logging.json"
    (web,) = pod_spec(named(render(target), "Deployment", WEB))["containers"]
    assert "--no-access-log" in web["command"]


@pytest.mark.parametrize("target", OVERLAYS)
def test_probes_use_the_cheap_livez_path(target: str) -> None:
    for name in WORKLOADS:
        (container,) = pod_spec(named(render(target), "Deployment", name))["containers"]
        for probe in ("livenessProbe", "startupProbe"):
            get = container[probe]["httpGet"]
            assert (get["path"], get["port"]) == ("/livez", "http"), f"{name} {probe}"
        ready = container["readinessProbe"]["httpGet"]
        # The IDE is ready when its page is (503 while its image holds no build).
        assert ready["path"] == ("/ide/" if name == WEB else "/livez"), name


@pytest.mark.parametrize("target", OVERLAYS)
def test_pods_are_non_root_and_read_only(target: str) -> None:
    for name in WORKLOADS:
        spec = pod_spec(named(render(target), "Deployment", name))
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 1000
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert_restricted_pod(spec, f"Deployment/{name}")


@pytest.mark.parametrize("target", OVERLAYS)
def test_pods_have_resources_and_graceful_termination(target: str) -> None:
    objs = render(target)
    for name in WORKLOADS:
        spec = pod_spec(named(objs, "Deployment", name))
        (container,) = spec["containers"]
        for part in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][part]), f"{name} {part}"
        # Long enough for the preStop pause plus uvicorn's drain after the 1012 closes.
        command = expanded_command(container, config_data(objs))
        drain = int(option(command, "--timeout-graceful-shutdown"))
        assert spec["terminationGracePeriodSeconds"] >= drain + 10, name
        assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    terminal = named(objs, "Deployment", "terminal")
    assert pod_spec(terminal)["terminationGracePeriodSeconds"] == 45, "syncs files on the way"


@pytest.mark.parametrize("target", OVERLAYS)
def test_backend_pods_read_the_config_map_and_the_database_secret(target: str) -> None:
    for name in BACKENDS:
        (container,) = pod_spec(named(render(target), "Deployment", name))["containers"]
        assert container["envFrom"] == [{"configMapRef": {"name": "platform-config"}}]
        env = {e["name"]: e for e in container["env"]}
        assert env["DATABASE_URL"]["valueFrom"] == {
            "secretKeyRef": {"name": "platform-database", "key": "DATABASE_URL"}
        }


def _python_sources() -> str:
    return "\n".join(
        path.read_text() for part in ("shared", "functions", "ingress") for path in
        (ROOT / part).rglob("*.py")
    )  # fmt: skip


@pytest.mark.parametrize("target", (*OVERLAYS, "knative"))
def test_every_environment_variable_a_pod_gets_is_read_by_something(target: str) -> None:
    """Set in a manifest, read nowhere (as FUNCTION_NAME was) misleads whoever operates it."""
    sources = _python_sources()
    for workload in (o for o in render(target) if o["kind"] == "Deployment" or is_knative(o)):
        for container in pod_spec(workload)["containers"]:
            command = " ".join(container.get("command", []))
            for name in (e["name"] for e in container.get("env", [])):
                used = f"$({name})" in command or re.search(rf"\b{name}\b", sources)
                assert used, f"{workload['metadata']['name']} sets {name}, which nothing reads"


@pytest.mark.parametrize("target", OVERLAYS)
def test_services_select_their_pods_on_the_http_port(target: str) -> None:
    for name in WORKLOADS:
        service = named(render(target), "Service", name)
        expected = {"app": "web"} if name == WEB else {"app": "backend", "function": name}
        assert service["spec"]["selector"] == expected
        assert service["spec"]["ports"][0]["targetPort"] == "http"


EXPECTED_HPA_SPEC = {
    "minReplicas": 2,
    "maxReplicas": 10,
    "metrics": [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 70},
            },
        },
        {
            "type": "Resource",
            "resource": {
                "name": "memory",
                "target": {"type": "Utilization", "averageUtilization": 80},
            },
        },
    ],
    "behavior": {
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "policies": [
                {"type": "Percent", "value": 100, "periodSeconds": 15},
                {"type": "Pods", "value": 2, "periodSeconds": 15},
            ],
            "selectPolicy": "Max",
        },
        "scaleDown": {
            "stabilizationWindowSeconds": 300,
            "policies": [
                {"type": "Percent", "value": 50, "periodSeconds": 60},
                {"type": "Pods", "value": 1, "periodSeconds": 60},
            ],
            "selectPolicy": "Max",
        },
    },
}


@pytest.mark.parametrize("target", OVERLAYS)
def test_autoscalers_match_the_deployment_contract_exactly(target: str) -> None:
    """min 2, max 10, CPU 70 %, memory 80 %, up by max(100 %, 2 pods), down after 300 s."""
    for name in BACKENDS:
        hpa = named(render(target), "HorizontalPodAutoscaler", name)
        assert hpa["apiVersion"] == "autoscaling/v2"
        spec = copy.deepcopy(hpa["spec"])
        assert spec.pop("scaleTargetRef") == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        assert spec == EXPECTED_HPA_SPEC


@pytest.mark.parametrize("target", OVERLAYS)
def test_disruption_budgets_keep_one_pod_of_each_workload(target: str) -> None:
    for name in WORKLOADS:
        pdb = named(render(target), "PodDisruptionBudget", name)
        assert pdb["spec"]["minAvailable"] == 1
        expected = {"app": "web"} if name == WEB else {"app": "backend", "function": name}
        assert pdb["spec"]["selector"]["matchLabels"] == expected


# ---- the Ingress is the route table --------------------------------------------------------


@pytest.mark.parametrize("target", OVERLAYS)
def test_ingress_paths_equal_the_route_table_and_the_rest_goes_to_the_front_door(
    target: str,
) -> None:
    objs = render(target)
    (ingress,) = of_kind(objs, "Ingress")
    routed = []
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            assert path["pathType"] == "Prefix"
            assert path["backend"]["service"]["port"] == {"name": "http"}
            routed.append((path["path"], path["backend"]["service"]["name"]))
    expected = [(route.prefix, route.service) for route in ROUTE_TABLE]
    assert sorted(routed) == sorted(expected)
    assert len(routed) == len(set(routed)), "a prefix is routed twice"
    assert ("/ide", WEB) in routed
    # What matches no prefix (root, health, docs) reaches the front door, as in the gateway.
    assert ingress["spec"]["defaultBackend"]["service"] == {
        "name": FRONT_DOOR,
        "port": {"name": "http"},
    }
    services = {s["metadata"]["name"] for s in of_kind(objs, "Service")}
    assert {service for _, service in routed} | {FRONT_DOOR} <= services


# ---- RBAC: pod rights for terminal and workspace only ------------------------------------


@pytest.mark.parametrize("target", (*OVERLAYS, "knative"))
def test_only_terminal_and_workspace_may_manage_execution_pods(target: str) -> None:
    objs = render(target)
    assert not of_kind(objs, "ClusterRole") and not of_kind(objs, "ClusterRoleBinding")

    (role,) = of_kind(objs, "Role")
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    assert rules == {  # no pods/exec: nothing reaches into a pod through the API server
        (("",), ("pods",)): {"create", "get", "list", "watch", "delete"},
    }

    (binding,) = of_kind(objs, "RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": EXECUTOR_SA, "namespace": NAMESPACE}
    ]

    accounts = {sa["metadata"]["name"]: sa for sa in of_kind(objs, "ServiceAccount")}
    assert set(accounts) == {EXECUTOR_SA, BACKEND_SA}
    assert accounts[BACKEND_SA]["automountServiceAccountToken"] is False

    workloads = of_kind(objs, "Deployment") + [o for o in objs if is_knative(o)]
    assert {w["metadata"]["name"] for w in workloads} == set(WORKLOADS)
    for workload in workloads:
        name = workload["metadata"]["name"]
        spec = pod_spec(workload)
        if name in EXECUTORS:
            assert spec["serviceAccountName"] == EXECUTOR_SA, name
        else:
            assert spec["serviceAccountName"] == BACKEND_SA, name
            assert spec.get("automountServiceAccountToken") in (None, False), name
    for job in of_kind(objs, "Job"):
        assert pod_spec(job)["serviceAccountName"] == BACKEND_SA


# ---- network isolation ---------------------------------------------------------------------


def _selects(selector: Obj, labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and In / NotIn / Exists)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def _admits(policy: Obj, source_labels: dict[str, str], port: int) -> bool:
    for rule in policy["spec"].get("ingress", []):
        ports = [p["port"] for p in rule.get("ports", [])]
        if ports and port not in ports:
            continue
        for peer in rule.get("from", []) or [{}]:
            assert set(peer) <= {"podSelector"}, f"only same-namespace pods may be peers: {peer}"
            if _selects(peer.get("podSelector", {}), source_labels):
                return True
    return False


@pytest.mark.parametrize("target", (*OVERLAYS, "knative"))
def test_execution_pods_accept_only_the_agent_port_from_terminal_and_workspace(
    target: str,
) -> None:
    objs = render(target)
    policies = of_kind(objs, "NetworkPolicy")
    execution = [p for p in policies if _selects(p["spec"]["podSelector"], {"app": "execution"})]
    assert len(execution) == 1, "one policy for execution pods"
    (policy,) = execution
    assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert not policy["spec"].get("egress"), "egress stays denied by default"
    workloads = of_kind(objs, "Deployment") + [o for o in objs if is_knative(o)]
    sources = {
        w["metadata"]["name"]: w["spec"]["template"]["metadata"]["labels"] for w in workloads
    }
    sources["execution"] = {"app": "execution", "session": "x", "owner": "1"}
    sources["migrate"] = {"app": "migrate"}
    for name, labels in sources.items():
        for port in (AGENT_PORT, 22, 8000):
            allowed = name in EXECUTORS and port == AGENT_PORT
            assert _admits(policy, labels, port) == allowed, f"{name} -> execution:{port}"


def test_optional_egress_opens_only_dns_and_public_web_for_execution_pods() -> None:
    (policy,) = render("optional/execution-egress")
    assert policy["spec"]["podSelector"]["matchLabels"] == {"app": "execution"}
    assert policy["spec"]["policyTypes"] == ["Egress"]
    blocks = [peer["ipBlock"] for rule in policy["spec"]["egress"] for peer in rule.get("to", [])]
    for block in blocks:
        assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(
            block["except"]
        )


# ---- configuration, migration Job, images ------------------------------------------------


REQUIRED_CONFIG = {
    "EXECUTION_BACKEND": "kubernetes",
    "K8S_NAMESPACE": NAMESPACE,
    "DB_MIGRATE_ON_START": "false",
}


@pytest.mark.parametrize("target", (*OVERLAYS, "knative"))
def test_config_map_selects_the_kubernetes_backend_and_holds_no_secret(target: str) -> None:
    (config,) = of_kind(render(target), "ConfigMap")
    assert config["metadata"]["name"] == "platform-config"
    data = config["data"]
    assert REQUIRED_CONFIG.items() <= data.items()
    assert {"EXECUTION_IMAGE", "CORS_ORIGINS", "COOKIE_SECURE", "TRUSTED_PROXIES"} <= set(data)
    assert "DATABASE_URL" not in data
    assert not any(re.search("PASSWORD|SECRET|TOKEN", key) for key in data)


def test_prod_uses_secure_cookies_and_registry_images() -> None:
    objs = render("overlays/prod")
    config = config_data(objs)
    assert config["COOKIE_SECURE"] == "true"
    assert config["CORS_ORIGINS"].startswith("https://")
    images = [config["EXECUTION_IMAGE"]]
    for workload in of_kind(objs, "Deployment") + of_kind(objs, "Job"):
        images += [c["image"] for c in pod_spec(workload)["containers"]]
    for image in images:
        registry, _, rest = image.partition("/")
        assert "." in registry and rest, f"{image} is not pulled from a registry"
        assert not image.endswith(":latest") and ":" in rest, f"{image} has no fixed tag"


def test_each_workload_runs_its_own_image() -> None:
    for target in (*OVERLAYS, "knative"):
        objs = render(target)
        workloads = of_kind(objs, "Deployment") + [o for o in objs if is_knative(o)]
        for workload in workloads:
            name = workload["metadata"]["name"]
            (container,) = pod_spec(workload)["containers"]
            assert container["image"].split(":")[0].endswith(name), container["image"]


@pytest.mark.parametrize("target", (*OVERLAYS, "knative"))
def test_migration_job_applies_the_piccolo_migrations(target: str) -> None:
    job = named(render(target), "Job", "db-migrate")
    spec = pod_spec(job)
    assert spec["restartPolicy"] == "Never"
    (container,) = spec["containers"]
    assert container["command"] == ["python", "-m", "shared.migrate"]
    assert_restricted_pod(spec, "Job/db-migrate")
    assert spec["automountServiceAccountToken"] is False
    env = {e["name"]: e for e in container["env"]}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "platform-database"


def test_namespace_enforces_the_restricted_pod_security_profile() -> None:
    namespace = named(render("base"), "Namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# ---- Knative ----------------------------------------------------------------------------


def test_knative_services_scale_between_2_and_10_on_concurrency() -> None:
    services = [o for o in render("knative") if is_knative(o)]
    assert sorted(s["metadata"]["name"] for s in services) == sorted(WORKLOADS)
    for service in services:
        name = service["metadata"]["name"]
        assert (service["apiVersion"], service["kind"]) == ("serving.knative.dev/v1", "Service")
        template = service["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        assert annotations["autoscaling.knative.dev/min-scale"] == "2"
        assert annotations["autoscaling.knative.dev/max-scale"] == "10"
        assert annotations["autoscaling.knative.dev/metric"] == "concurrency"
        assert int(annotations["autoscaling.knative.dev/target"]) > 0
        expected = {"app": "web"} if name == WEB else {"app": "backend", "function": name}
        assert template["metadata"]["labels"] == expected
        assert set(template["spec"]) <= {
            "serviceAccountName",
            "containerConcurrency",
            "timeoutSeconds",
            "containers",
            "volumes",
        }  # fields Knative accepts in a revision's pod spec
        assert 0 < template["spec"]["timeoutSeconds"] <= 600  # Knative's default ceiling
    terminal = next(s for s in services if s["metadata"]["name"] == "terminal")
    assert terminal["spec"]["template"]["spec"]["timeoutSeconds"] == 600


def test_knative_pod_specs_are_valid_restricted_pod_specs() -> None:
    """Knative's template spec is a PodSpec subset: validate it as a Pod, strictly."""
    objs = render("knative")
    config = config_data(objs)
    for service in (o for o in objs if is_knative(o)):
        name = service["metadata"]["name"]
        spec = copy.deepcopy(service["spec"]["template"]["spec"])
        spec.pop("containerConcurrency")
        spec.pop("timeoutSeconds")
        (container,) = spec["containers"]
        assert container["ports"] == [{"name": "http1", "containerPort": 8000}]
        ready = "/ide/" if name == WEB else "/livez"
        assert container["readinessProbe"]["httpGet"] == {"path": ready}
        assert container["livenessProbe"]["httpGet"] == {"path": "/livez"}
        for probe in ("readinessProbe", "livenessProbe"):
            container[probe]["httpGet"]["port"] = 8000  # Knative fills in the serving port
        command = expanded_command(container, config)
        assert command[0] == "uvicorn" and option(command, "--port") == "8000"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": spec,
        }
        validate_strict(pod)
        assert_restricted_pod(spec, f"knative/{name}")


# ---- kustomizations ------------------------------------------------------------------------

DEPRECATED_FIELDS = {"bases", "patchesStrategicMerge", "patchesJson6902", "commonLabels", "vars"}


def test_kustomizations_declare_their_kind_and_use_no_deprecated_field() -> None:
    files = sorted(K8S.rglob("kustomization.yaml"))
    assert files
    for path in files:
        document = yaml.safe_load(path.read_text())
        where = path.relative_to(ROOT)
        assert document.get("kind") in ("Kustomization", "Component"), where
        assert not set(document) & DEPRECATED_FIELDS, (
            f"{where}: {set(document) & DEPRECATED_FIELDS}"
        )


def test_a_function_is_a_few_lines_over_the_template() -> None:
    for name in FUNCTIONS:
        path = K8S / "base" / "functions" / name / "kustomization.yaml"
        lines = [line for line in path.read_text().splitlines() if not line.strip().startswith("#")]
        limit = 30 if name == "terminal" else 15  # the terminal also sizes itself
        assert len(lines) <= limit, f"{path.relative_to(ROOT)}: {len(lines)} lines"


# ---- the execution pod the backend creates -------------------------------------------------


@pytest.mark.parametrize("target", OVERLAYS)
def test_execution_pod_from_the_rendered_config_is_valid_and_restricted(target: str) -> None:
    """The pod built from the ConfigMap the functions get is valid 1.30, restricted, and is
    the pod the RBAC, the NetworkPolicy and the namespace are meant for."""
    from shared.config import Settings
    from shared.execution.pod_spec import build_pod_manifest

    objs = render(target)
    env = config_data(objs)
    variants = [
        env,
        {**env, "EXECUTION_RUNTIME_CLASS": "gvisor", "EXECUTION_NODE_SELECTOR": "pool=exec"},
    ]
    for variant in variants:
        config = Settings.from_env(variant).execution.kubernetes
        pod = build_pod_manifest(config, "0b7f6a52-1c1e-4c8e-9a53-7d1f0e0c2a11", 42, "0" * 64)
        validate_strict(pod)
        spec = pod["spec"]
        assert_restricted_pod(spec, "execution pod")
        assert spec["automountServiceAccountToken"] is False
        assert pod["metadata"]["namespace"] == NAMESPACE
        assert pod["metadata"]["labels"]["app"] == "execution"
        assert {"session", "owner"} <= set(pod["metadata"]["labels"])
        (container,) = spec["containers"]
        assert container["image"] == env["EXECUTION_IMAGE"]
        assert [p["containerPort"] for p in container["ports"]] == [AGENT_PORT]
        assert container["readinessProbe"]["tcpSocket"] == {"port": AGENT_PORT}
        assert {"cpu", "memory"} <= set(container["resources"]["limits"])
        workspace = [m for m in container["volumeMounts"] if m["mountPath"] == "/workspace"]
        assert workspace, "a writable /workspace"
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes[workspace[0]["name"]]["emptyDir"]["sizeLimit"]
