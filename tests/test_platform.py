"""The gateway as a whole: root, health, the merged document, CORS, the error envelope for
what matches nothing. The docs pages and the IDE are in test_front_door.py."""

from __future__ import annotations

import httpx

from ingress.routes import FUNCTIONS
from tests.helpers import assert_error


def test_root_names_the_api_its_docs_its_ide_and_its_functions(api: httpx.Client) -> None:
    body = api.get("/").json()
    assert body["success"] is True
    data = body["data"]
    assert data["version"] == "1.0.0" and data["docs"] == "/docs"
    assert (data["redoc"], data["openapi"], data["ide"]) == ("/redoc", "/openapi.json", "/ide/")
    assert data["functions"] == list(FUNCTIONS)


def test_health_reports_the_database(api: httpx.Client) -> None:
    data = api.get("/api/health/").json()["data"]
    assert data["status"] == "healthy" and data["database"]["ok"] is True
    assert data["database"]["latency_ms"] >= 0 and data["version"] == "1.0.0"


def test_docs_serve_the_merged_openapi_of_every_function(api: httpx.Client) -> None:
    spec = api.get("/openapi.json").json()
    assert spec["info"]["version"] == "1.0.0"
    paths = spec["paths"]
    for expected in (
        "/api/users/register",
        "/api/postgres_sessions",
        "/api/sessions",
        "/api/session_workspace/{session_id}",
        "/api/workspace/{workspace_id}/files",
        "/workspace/{workspace_id}/shutdown",
        "/api/reviews",
        "/api/health",
    ):
        assert expected in paths, expected
    # The front door's own paths are in it too.
    assert "/" in paths and "get" in paths["/"]


def test_unknown_paths_and_methods_get_the_error_envelope(api: httpx.Client) -> None:
    assert_error(api.get("/api/nothing-here"), 404)
    assert_error(api.get("/api/users/nothing-here"), 404)
    assert_error(api.delete("/api/users/me"), 405)


def test_cors_allows_the_configured_origins_with_credentials(api: httpx.Client) -> None:
    preflight = api.options(
        "/api/users/me",
        headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert preflight.headers["access-control-allow-credentials"] == "true"
    stranger = api.options(
        "/api/users/me",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert stranger.headers.get("access-control-allow-origin") != "http://evil.example"
