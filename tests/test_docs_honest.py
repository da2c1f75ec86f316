"""The user-facing docs stay true: docs/api.md lists exactly the endpoints the platform
serves (as its merged OpenAPI document says), and no doc points outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
METHODS = ("get", "post", "put", "patch", "delete")
TERMINAL_PREFIX = "/api/terminal"

# An endpoint is documented by a heading of its own: ### `POST /api/users/register`
HEADING = re.compile(r"^#{2,4} `(GET|POST|PUT|PATCH|DELETE) (/\S*)`\s*$", re.MULTILINE)
MENTION = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) (/\S*)`")


def normalized(method: str, path: str) -> tuple[str, str]:
    # The API answers with and without the trailing slash; the docs write what clients call.
    return method.upper(), path.rstrip("/") or "/"


def documented(text: str, pattern: re.Pattern[str] = HEADING) -> list[tuple[str, str]]:
    return [normalized(method, path) for method, path in pattern.findall(text)]


def served(api: httpx.Client) -> set[tuple[str, str]]:
    paths = api.get("/openapi.json").json()["paths"]
    return {
        normalized(method, path)
        for path, item in paths.items()
        for method in item
        if method in METHODS
    }


def test_api_md_lists_exactly_the_endpoints_the_platform_serves(api: httpx.Client) -> None:
    in_docs = documented((DOCS / "api.md").read_text())
    assert len(in_docs) == len(set(in_docs)), "an endpoint is documented twice"
    operations = served(api)
    # The terminal's HTTP endpoints may live with its protocol, in docs/terminal.md.
    terminal_md = DOCS / "terminal.md"
    elsewhere = set(documented(terminal_md.read_text(), MENTION)) if terminal_md.exists() else set()
    expected = {
        op for op in operations if not (op[1].startswith(TERMINAL_PREFIX) and op in elsewhere)
    }
    missing = sorted(expected - set(in_docs))
    stale = sorted(set(in_docs) - operations)
    assert not missing, f"served but not in docs/api.md: {missing}"
    assert not stale, f"in docs/api.md but not served: {stale}"


def test_every_documented_endpoint_has_an_example() -> None:
    text = (DOCS / "api.md").read_text()
    sections = HEADING.split(text)[1:]
    for method, path, body in zip(sections[::3], sections[1::3], sections[2::3], strict=True):
        assert "```" in body, f"{method} {path} has no example"


def test_the_docs_link_only_to_files_of_the_repository() -> None:
    pages = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    for page in pages:
        text = page.read_text()
        assert "DESIGN.md" not in text and "../shared" not in text, page.name
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith("#"):
                continue
            assert "://" not in target, f"{page.name} links outside the repository: {target}"
            linked = page.parent / target.split("#")[0]
            assert linked.exists(), f"{page.name}: {target}"


def test_the_readme_points_users_at_the_api_guide() -> None:
    assert "docs/api.md" in (ROOT / "README.md").read_text()
