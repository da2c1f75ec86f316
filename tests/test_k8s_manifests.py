"""The Kubernetes manifests in k8s/ and the Dockerfiles in docker/, checked without a cluster.

Every kustomization is rendered with ``kubectl kustomize`` (the ``KUBECTL`` environment variable
picks the binary, e.g. Debian's kubectl 1.20 with its old embedded kustomize) and every object is
validated strictly against the Kubernetes 1.30 schemas with ``kubernetes-validate``. Then the
rules of DESIGN.md section 6 are checked: autoscaling, labels, probes, security contexts, RBAC
scope, the Ingress against ``ingress.routes.ROUTE_TABLE``, network isolation of execution pods.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from ingress.routes import DEFAULT_FUNCTION, FUNCTIONS, ROUTE_TABLE

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
NAMESPACE = "coding-platform"
K8S_VERSION = "1.30"

OVERLAYS = ("base", "overlays/dev", "overlays/prod")
ALL_TARGETS = (*OVERLAYS, "knative", "optional/execution-egress")
EXECUTORS = {"terminal", "workspace"}
EXECUTOR_SA = "platform-executor"
BACKEND_SA = "platform-backend"

Obj = dict[str, Any]


# ---- rendering ---------------------------------------------------------------------------


def kubectl() -> str:
    """The kubectl binary; missing kubectl is a failure (CI installs it), never a skip."""
    binary = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not binary or not Path(binary).exists():
        pytest.fail(
            "kubectl not found: install Debian's kubernetes-client (apt-get install -y "
            "kubernetes-client) or set KUBECTL=/path/to/kubectl; the manifests cannot be "
            "rendered without it",
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


def test_secret_template_is_valid_and_holds_only_placeholders() -> None:
    path = K8S / "base" / "common" / "secret.example.yaml"
    secret = yaml.safe_load(path.read_text())
    validate_strict(secret)
    assert secret["metadata"]["name"] == "platform-database"
    assert set(secret["stringData"]) == {"DATABASE_URL"}
    assert "REPLACE_PASSWORD" in secret["stringData"]["DATABASE_URL"]
    for kustomization in K8S.rglob("kustomization.yaml"):
        assert "secret.example.yaml" not in kustomization.read_text().split("#")[0]


# ---- functions: Deployment, Service, HPA, PDB --------------------------------------------


@pytest.mark.parametrize("target", OVERLAYS)
def test_each_function_has_deployment_service_autoscaler_and_disruption_budget(
    target: str,
) -> None:
    objs = render(target)
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        names = sorted(o["metadata"]["name"] for o in of_kind(objs, kind))
        assert names == sorted(FUNCTIONS), f"{kind}: {names}"


@pytest.mark.parametrize("target", OVERLAYS)
def test_deployment_pods_are_labelled_backend_and_function(target: str) -> None:
    for fn in FUNCTIONS:
        deployment = named(render(target), "Deployment", fn)
        expected = {"app": "backend", "function": fn}
        assert deployment["spec"]["selector"]["matchLabels"] == expected
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert expected.items() <= labels.items()
        # The autoscaler owns the replica count; re-applying must not reset it.
        assert "replicas" not in deployment["spec"]


@pytest.mark.parametrize("target", OVERLAYS)
def test_deployment_runs_uvicorn_with_the_function_app_on_port_8000(target: str) -> None:
    for fn in FUNCTIONS:
        (container,) = pod_spec(named(render(target), "Deployment", fn))["containers"]
        command = container.get("command", []) + container.get("args", [])
        assert command[:2] == ["uvicorn", f"functions.{fn}.app:app"], command
        assert command[command.index("--port") + 1] == "8000"
        assert command[command.index("--host") + 1] == "0.0.0.0"
        assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]


@pytest.mark.parametrize("target", OVERLAYS)
def test_probes_use_the_cheap_livez_path(target: str) -> None:
    for fn in FUNCTIONS:
        (container,) = pod_spec(named(render(target), "Deployment", fn))["containers"]
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            get = container[probe]["httpGet"]
            assert (get["path"], get["port"]) == ("/livez", "http"), f"{fn} {probe}"


@pytest.mark.parametrize("target", OVERLAYS)
def test_backend_pods_are_non_root_and_read_only(target: str) -> None:
    for fn in FUNCTIONS:
        spec = pod_spec(named(render(target), "Deployment", fn))
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 1000
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert_restricted_pod(spec, f"Deployment/{fn}")


@pytest.mark.parametrize("target", OVERLAYS)
def test_backend_pods_have_resources_and_graceful_termination(target: str) -> None:
    for fn in FUNCTIONS:
        spec = pod_spec(named(render(target), "Deployment", fn))
        (container,) = spec["containers"]
        for part in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][part]), f"{fn} {part}"
        # Long enough for the preStop pause plus uvicorn's drain after the 1012 closes.
        command = container["command"]
        drain = int(command[command.index("--timeout-graceful-shutdown") + 1])
        assert spec["terminationGracePeriodSeconds"] >= drain + 10
        assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"


@pytest.mark.parametrize("target", OVERLAYS)
def test_backend_pods_read_the_config_map_and_the_database_secret(target: str) -> None:
    for fn in FUNCTIONS:
        (container,) = pod_spec(named(render(target), "Deployment", fn))["containers"]
        assert container["envFrom"] == [{"configMapRef": {"name": "platform-config"}}]
        env = {e["name"]: e for e in container["env"]}
        assert env["DATABASE_URL"]["valueFrom"] == {
            "secretKeyRef": {"name": "platform-database", "key": "DATABASE_URL"}
        }


@pytest.mark.parametrize("target", OVERLAYS)
def test_services_select_their_function_on_the_http_port(target: str) -> None:
    for fn in FUNCTIONS:
        service = named(render(target), "Service", fn)
        assert service["spec"]["selector"] == {"app": "backend", "function": fn}
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
def test_autoscalers_match_design_section_6_exactly(target: str) -> None:
    for fn in FUNCTIONS:
        hpa = named(render(target), "HorizontalPodAutoscaler", fn)
        assert hpa["apiVersion"] == "autoscaling/v2"
        spec = copy.deepcopy(hpa["spec"])
        assert spec.pop("scaleTargetRef") == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": fn,
        }
        assert spec == EXPECTED_HPA_SPEC


@pytest.mark.parametrize("target", OVERLAYS)
def test_disruption_budgets_keep_one_pod_of_each_function(target: str) -> None:
    for fn in FUNCTIONS:
        pdb = named(render(target), "PodDisruptionBudget", fn)
        assert pdb["spec"]["minAvailable"] == 1
        assert pdb["spec"]["selector"]["matchLabels"] == {"app": "backend", "function": fn}


# ---- the Ingress is the route table --------------------------------------------------------


@pytest.mark.parametrize("target", OVERLAYS)
def test_ingress_paths_equal_the_route_table(target: str) -> None:
    objs = render(target)
    (ingress,) = of_kind(objs, "Ingress")
    routed = []
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            assert path["pathType"] == "Prefix"
            assert path["backend"]["service"]["port"] == {"name": "http"}
            routed.append((path["path"], path["backend"]["service"]["name"]))
    expected = [(route.prefix, route.function) for route in ROUTE_TABLE]
    assert sorted(routed) == sorted(expected)
    assert len(routed) == len(set(routed)), "a prefix is routed twice"
    # What matches no prefix (root, health, docs) reaches the front door, as in the gateway.
    assert ingress["spec"]["defaultBackend"]["service"] == {
        "name": DEFAULT_FUNCTION,
        "port": {"name": "http"},
    }
    services = {s["metadata"]["name"] for s in of_kind(objs, "Service")}
    assert {service for _, service in routed} <= services


# ---- RBAC: pod rights for terminal and workspace only ------------------------------------


@pytest.mark.parametrize("target", (*OVERLAYS, "knative"))
def test_only_terminal_and_workspace_may_manage_execution_pods(target: str) -> None:
    objs = render(target)
    assert not of_kind(objs, "ClusterRole") and not of_kind(objs, "ClusterRoleBinding")

    (role,) = of_kind(objs, "Role")
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    assert rules == {
        (("",), ("pods",)): {"create", "get", "list", "watch", "delete"},
        (("",), ("pods/exec",)): {"create", "get"},
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
    assert {w["metadata"]["name"] for w in workloads} == set(FUNCTIONS)
    for workload in workloads:
        fn = workload["metadata"]["name"]
        spec = pod_spec(workload)
        if fn in EXECUTORS:
            assert spec["serviceAccountName"] == EXECUTOR_SA, fn
        else:
            assert spec["serviceAccountName"] == BACKEND_SA, fn
            assert spec.get("automountServiceAccountToken") in (None, False), fn
    for job in of_kind(objs, "Job"):
        assert pod_spec(job)["serviceAccountName"] == BACKEND_SA


# ---- network isolation ---------------------------------------------------------------------


@pytest.mark.parametrize("target", (*OVERLAYS, "knative"))
def test_execution_pods_accept_nothing_and_reach_nothing_by_default(target: str) -> None:
    policies = of_kind(render(target), "NetworkPolicy")
    execution = [
        p for p in policies if p["spec"]["podSelector"].get("matchLabels") == {"app": "execution"}
    ]
    assert len(execution) == 1, "one default-deny policy for execution pods"
    spec = execution[0]["spec"]
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
    assert not spec.get("ingress") and not spec.get("egress")


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
    assert {"EXECUTION_IMAGE", "CORS_ORIGINS", "COOKIE_SECURE"} <= set(data)
    assert "DATABASE_URL" not in data
    assert not any(re.search("PASSWORD|SECRET|TOKEN", key) for key in data)


def test_prod_uses_secure_cookies_and_registry_images() -> None:
    objs = render("overlays/prod")
    (config,) = of_kind(objs, "ConfigMap")
    assert config["data"]["COOKIE_SECURE"] == "true"
    assert config["data"]["CORS_ORIGINS"].startswith("https://")
    images = [config["data"]["EXECUTION_IMAGE"]]
    for workload in of_kind(objs, "Deployment") + of_kind(objs, "Job"):
        images += [c["image"] for c in pod_spec(workload)["containers"]]
    for image in images:
        registry, _, rest = image.partition("/")
        assert "." in registry and rest, f"{image} is not pulled from a registry"
        assert not image.endswith(":latest") and ":" in rest, f"{image} has no fixed tag"


def test_each_function_runs_its_own_image() -> None:
    for target in OVERLAYS:
        for fn in FUNCTIONS:
            (container,) = pod_spec(named(render(target), "Deployment", fn))["containers"]
            assert container["image"].split(":")[0].endswith(fn), container["image"]


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
    assert sorted(s["metadata"]["name"] for s in services) == sorted(FUNCTIONS)
    for service in services:
        fn = service["metadata"]["name"]
        assert (service["apiVersion"], service["kind"]) == ("serving.knative.dev/v1", "Service")
        template = service["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        assert annotations["autoscaling.knative.dev/min-scale"] == "2"
        assert annotations["autoscaling.knative.dev/max-scale"] == "10"
        assert annotations["autoscaling.knative.dev/metric"] == "concurrency"
        assert int(annotations["autoscaling.knative.dev/target"]) > 0
        assert template["metadata"]["labels"] == {"app": "backend", "function": fn}
        assert set(template["spec"]) <= {
            "serviceAccountName",
            "containerConcurrency",
            "timeoutSeconds",
            "containers",
            "volumes",
        }  # fields Knative accepts in a revision's pod spec
        assert 0 < template["spec"]["timeoutSeconds"] <= 600  # Knative's default ceiling


def test_knative_pod_specs_are_valid_restricted_pod_specs() -> None:
    """Knative's template spec is a PodSpec subset: validate it as a Pod, strictly."""
    for service in (o for o in render("knative") if is_knative(o)):
        fn = service["metadata"]["name"]
        spec = copy.deepcopy(service["spec"]["template"]["spec"])
        spec.pop("containerConcurrency")
        spec.pop("timeoutSeconds")
        (container,) = spec["containers"]
        assert container["ports"] == [{"name": "http1", "containerPort": 8000}]
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {"path": "/livez"}
            container[probe]["httpGet"]["port"] = 8000  # Knative fills in the serving port
        command = container["command"]
        assert command[:2] == ["uvicorn", f"functions.{fn}.app:app"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": fn, "namespace": NAMESPACE},
            "spec": spec,
        }
        validate_strict(pod)
        assert_restricted_pod(spec, f"knative/{fn}")


# ---- kustomization files stay within what old and new kustomize both accept ----------------

PORTABLE_FIELDS = {
    "namespace",
    "resources",
    "bases",
    "images",
    "patchesStrategicMerge",
    "configMapGenerator",
    "generatorOptions",
}


def test_kustomizations_use_only_fields_old_and_new_kustomize_share() -> None:
    files = sorted(K8S.rglob("kustomization.yaml"))
    assert files
    for path in files:
        fields = set(yaml.safe_load(path.read_text()))
        assert fields <= PORTABLE_FIELDS, f"{path.relative_to(ROOT)}: {fields - PORTABLE_FIELDS}"
        for entry in yaml.safe_load(path.read_text()).get("resources", []):
            # kustomize v2 (Debian's kubectl 1.20) takes only files under resources.
            assert (path.parent / entry).is_file(), f"{path}: {entry} belongs under bases"


# ---- Dockerfiles -------------------------------------------------------------------------


def dockerfile(name: str) -> list[str]:
    text = (ROOT / "docker" / name).read_text()
    text = text.replace("\\\n", " ")  # join continued lines
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_function_dockerfile_is_multi_stage_non_root_and_parameterized() -> None:
    lines = dockerfile("function.Dockerfile")
    assert len([line for line in lines if line.startswith("FROM ")]) >= 2
    assert any(line == "ARG FUNCTION" for line in lines)
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] == "1000"
    (cmd,) = [line for line in lines if line.startswith("CMD ")]
    assert "uvicorn functions.${FUNCTION}.app:app" in cmd and "--port 8000" in cmd


def test_execution_dockerfile_has_the_tools_sync_needs_and_runs_as_1000() -> None:
    lines = dockerfile("execution.Dockerfile")
    text = " ".join(lines)
    assert lines[0].startswith("FROM debian:") and "slim" in lines[0]
    for package in ("python3", "bash", "coreutils", "tar"):
        assert re.search(rf"\b{package}\b", text), package
    assert [line for line in lines if line.startswith("USER ")][-1] == "USER 1000:1000"
    assert "WORKDIR /workspace" in lines


def test_dockerignore_keeps_secrets_and_local_state_out_of_images() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", ".data", ".env"):
        assert entry in ignored


# ---- the execution pod the backend creates -------------------------------------------------


@pytest.mark.parametrize("target", OVERLAYS)
def test_execution_pod_from_the_rendered_config_is_valid_and_restricted(target: str) -> None:
    """The pod built from the ConfigMap the functions get is valid 1.30, restricted, and is
    the pod the RBAC, the default-deny NetworkPolicy and the namespace are meant for."""
    from shared.execution.k8s_config import KubernetesBackendConfig
    from shared.execution.pod_spec import build_pod_manifest

    objs = render(target)
    (config_map,) = of_kind(objs, "ConfigMap")
    env = dict(config_map["data"])
    variants = [
        env,
        {**env, "EXECUTION_RUNTIME_CLASS": "gvisor", "EXECUTION_NODE_SELECTOR": "pool=exec"},
    ]
    for variant in variants:
        config = KubernetesBackendConfig.from_env(variant)
        pod = build_pod_manifest(config, "0b7f6a52-1c1e-4c8e-9a53-7d1f0e0c2a11", 42)
        validate_strict(pod)
        spec = pod["spec"]
        assert_restricted_pod(spec, "execution pod")
        assert spec["automountServiceAccountToken"] is False
        assert pod["metadata"]["namespace"] == NAMESPACE
        assert pod["metadata"]["labels"]["app"] == "execution"
        assert {"session", "owner"} <= set(pod["metadata"]["labels"])
        (container,) = spec["containers"]
        assert container["image"] == env["EXECUTION_IMAGE"]
        assert {"cpu", "memory"} <= set(container["resources"]["limits"])
        workspace = [m for m in container["volumeMounts"] if m["mountPath"] == "/workspace"]
        assert workspace, "a writable /workspace"
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes[workspace[0]["name"]]["emptyDir"]["sizeLimit"]
