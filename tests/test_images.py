"""The container images: what each Dockerfile builds, and that what it copies is enough.

No image is built here (no container runtime in the test environment); instead each test
copies exactly what a Dockerfile copies into a fresh directory and imports the app from it,
so an image that would miss a module, or carry one it must not, fails here first.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def dockerfile(name: str) -> list[str]:
    text = (ROOT / "docker" / name).read_text()
    text = text.replace("\\\n", " ")  # join continued lines
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def final_stage(lines: list[str]) -> list[str]:
    starts = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    return lines[starts[-1] :]


def assert_runs_as_1000(lines: list[str]) -> None:
    users = [line.split()[1] for line in final_stage(lines) if line.startswith("USER ")]
    assert users and users[-1] == "1000:1000"


# ---- the Dockerfiles ---------------------------------------------------------------------


def test_function_dockerfile_copies_only_the_function_and_shared() -> None:
    lines = dockerfile("function.Dockerfile")
    assert len([line for line in lines if line.startswith("FROM ")]) >= 2
    assert "ARG FUNCTION" in lines
    copies = [line for line in lines if line.startswith("COPY ") and "--from" not in line]
    sources = {word for line in copies for word in line.split()[1:-1]}
    assert sources == {"pyproject.toml", "shared", "functions", "piccolo_conf.py"}, sources
    text = " ".join(lines)
    assert 'cp -r "functions/${FUNCTION}" /app/functions/' in text
    assert "ingress" not in text
    assert "UVICORN_APP=functions.${FUNCTION}.app:app" in text
    assert_runs_as_1000(lines)


def test_front_dockerfile_bakes_the_merged_document_and_installs_pinned_docs_assets() -> None:
    lines = dockerfile("front.Dockerfile")
    text = " ".join(lines)
    assert "npm ci --ignore-scripts --omit=peer" in text, "the lockfile, no install scripts"
    assert "python -m ingress.openapi /app/openapi.json" in text
    assert "OPENAPI_FILE=/app/openapi.json" in text and "UVICORN_APP=ingress.front:app" in text
    # Every function is in the build stage (to bake the document), none in /app.
    assert "cp -r shared ingress piccolo_conf.py /app/" in text
    assert not re.search(r"cp [^&]*functions[^&]*/app", text), "no function in the front door"
    assert "functions" not in " ".join(final_stage(lines))
    for asset in ("swagger-ui.css", "swagger-ui-bundle.js", "redoc.standalone.js"):
        assert asset in text
    assert_runs_as_1000(lines)


def test_web_dockerfile_builds_the_ide_from_its_lockfile_and_serves_it_with_ide_py() -> None:
    lines = dockerfile("web.Dockerfile")
    text = " ".join(lines)
    assert "ARG NODE_IMAGE=node:20-bookworm-slim" in lines
    assert "FROM ${NODE_IMAGE} AS build" in lines
    assert "COPY web/package.json web/package-lock.json ./" in lines
    assert "npm ci" in text and "npm run build" in text
    runtime = final_stage(lines)
    copies = [line for line in runtime if line.startswith("COPY ")]
    assert "COPY ingress/__init__.py ingress/ide.py ingress/static.py /app/ingress/" in copies
    assert "COPY --from=build /web/dist /app/web/dist" in copies
    (cmd,) = [line for line in runtime if line.startswith("CMD ")]
    assert '"ingress.ide:app"' in cmd and '"8000"' in cmd
    assert_runs_as_1000(lines)


@pytest.mark.parametrize("name", ["function.Dockerfile", "front.Dockerfile"])
def test_backend_images_leave_forwarded_headers_to_the_platform(name: str) -> None:
    (cmd,) = [line for line in dockerfile(name) if line.startswith("CMD ")]
    assert "--port 8000" in cmd and "--host 0.0.0.0" in cmd
    # The platform reads X-Forwarded-For itself, only from TRUSTED_PROXIES.
    assert "--no-proxy-headers" in cmd and "--forwarded-allow-ips" not in cmd
    assert "'*'" not in cmd and '"*"' not in cmd
    assert "--log-config /app/shared/uvicorn-logging.json" in cmd


def test_execution_dockerfile_has_the_tools_sync_needs_and_runs_as_1000() -> None:
    lines = dockerfile("execution.Dockerfile")
    text = " ".join(lines)
    assert lines[0].startswith("FROM debian:") and "slim" in lines[0]
    for package in ("python3", "bash", "coreutils", "tar"):
        assert re.search(rf"\b{package}\b", text), package
    assert [line for line in lines if line.startswith("USER ")][-1] == "USER 1000:1000"
    assert "WORKDIR /workspace" in lines


def test_dockerignore_keeps_secrets_local_state_and_builds_out_of_images() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", ".data", ".env", "**/node_modules", "web/dist"):
        assert entry in ignored


def _python(code: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize("function", ["users", "terminal"])
def test_a_function_runs_from_its_own_code_and_shared_alone(tmp_path: Path, function: str) -> None:
    """What docker/function.Dockerfile copies: shared/ and functions/<name>/, nothing else."""
    shutil.copytree(ROOT / "shared", tmp_path / "shared")
    (tmp_path / "functions").mkdir()
    shutil.copy(ROOT / "functions" / "__init__.py", tmp_path / "functions")
    shutil.copytree(ROOT / "functions" / function, tmp_path / "functions" / function)
    code = f"""
import sys
sys.path.insert(0, {str(tmp_path)!r})
import functions.{function}.app as module
assert module.__file__.startswith({str(tmp_path)!r}), module.__file__
paths = {{r.path for r in module.app.routes}}
assert "/openapi.json" in paths and "/livez" in paths and "/api/health" in paths, paths
assert "/docs" not in paths and "/" not in paths, paths
foreign = [m for m in sys.modules if m.split(".")[0] == "ingress"
           or (m.startswith("functions.") and m.split(".")[1] != {function!r})]
assert not foreign, foreign
"""
    _python(code, tmp_path)


def test_the_front_door_serves_a_baked_document_without_importing_any_function(
    tmp_path: Path,
) -> None:
    baked = tmp_path / "openapi.json"
    subprocess.run(
        [sys.executable, "-m", "ingress.openapi", str(baked)], cwd=ROOT, check=True, timeout=120
    )
    code = """
import json, os, sys
import ingress.front as front
document = front.front_document(front.app)
expected = json.loads(open(os.environ["OPENAPI_FILE"]).read())
assert expected["components"]["securitySchemes"]["cookie"]["name"] == "cep_token"
# The cookie's name is configuration: the served document follows it, not the build's.
expected["components"]["securitySchemes"]["cookie"]["name"] = "other_cookie"
assert document == expected
assert "/api/workspace/{workspace_id}/files" in document["paths"]
assert not [m for m in sys.modules if m.startswith("functions")], "a function was imported"
"""
    _python(code, ROOT, {"OPENAPI_FILE": str(baked), "AUTH_COOKIE_NAME": "other_cookie"})


def test_the_web_image_server_needs_only_the_standard_library(tmp_path: Path) -> None:
    """The web image installs uvicorn and copies ingress/{__init__,ide,static}.py: the app
    must import with nothing else (``-S``: no site-packages at all)."""
    (tmp_path / "ingress").mkdir()
    for name in ("__init__.py", "ide.py", "static.py"):
        shutil.copy(ROOT / "ingress" / name, tmp_path / "ingress")
    result = subprocess.run(
        [sys.executable, "-S", "-c", "import ingress.ide as m; print(type(m.app).__name__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "IdeApp"
