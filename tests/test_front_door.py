"""The front door and the web IDE's files: docs that work offline, the root's content
negotiation, the favicon, and the IDE's static serving.

The docs pages are read through the real gateway; the IDE server is ``uvicorn ingress.ide:app``
(what the web image runs) in a subprocess over a real socket, on a build made here.
"""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import assert_error, free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent

EXPECTED_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".ico": "image/x-icon",
    ".svg": "image/svg+xml",
}


def referenced_urls(html: str) -> list[str]:
    return re.findall(r'(?:src|href|spec-url)="([^"]+)"', html)


# ---- the docs pages ----------------------------------------------------------------------


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_local_assets_and_each_answers_with_its_type(
    api: httpx.Client, page: str
) -> None:
    response = api.get(page)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "http:" not in response.text and "https:" not in response.text
    urls = referenced_urls(response.text)
    assert len(urls) >= 3, urls
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = api.get(url)
        assert asset.status_code == 200, f"{url}: {asset.status_code}"
        suffix = Path(url.split("?")[0]).suffix
        if suffix in EXPECTED_TYPES:
            assert asset.headers["content-type"].startswith(EXPECTED_TYPES[suffix]), url
            assert asset.headers["x-content-type-options"] == "nosniff"
        elif url == "/openapi.json":
            assert asset.json()["openapi"].startswith("3.")
        else:
            pytest.fail(f"{page} references {url}, of no known type")


def test_swagger_ui_and_redoc_scripts_are_the_real_bundles(api: httpx.Client) -> None:
    scripts = referenced_urls(api.get("/docs").text) + referenced_urls(api.get("/redoc").text)
    bodies = {url.split("?")[0]: api.get(url).text for url in scripts if ".js" in url}
    assert "SwaggerUIBundle" in bodies["/docs/assets/swagger-ui-bundle.js"]
    assert len(bodies["/docs/assets/swagger-ui-bundle.js"]) > 500_000
    assert "Redoc" in bodies["/docs/assets/redoc.standalone.js"]
    assert len(bodies["/docs/assets/redoc.standalone.js"]) > 500_000
    # Swagger UI's default validator badge would send the document to a public service.
    assert "validatorUrl: null" in bodies["/docs/assets/swagger-init.js"]


def test_docs_pages_forbid_loading_anything_from_another_origin(api: httpx.Client) -> None:
    for page in ("/docs", "/redoc"):
        policy = api.get(page).headers["content-security-policy"]
        directives = dict(
            (part.split()[0], part.split()[1:]) for part in policy.split(";") if part.strip()
        )
        assert directives["default-src"] == ["'self'"]
        assert directives["script-src"] == ["'self'"]
        assert directives["connect-src"] == ["'self'"]
        for sources in directives.values():
            assert not any("." in source or source == "*" for source in sources), policy


def test_versioned_assets_are_cached_for_good_revalidated_and_gzipped(api: httpx.Client) -> None:
    (url,) = [u for u in referenced_urls(api.get("/docs").text) if "swagger-ui-bundle" in u]
    first = api.get(url, headers={"Accept-Encoding": "gzip"})
    assert first.headers["content-encoding"] == "gzip"
    assert "immutable" in first.headers["cache-control"]
    plain = api.get(url, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert first.content == plain.content  # httpx decoded the gzip: the same bytes
    unchanged = api.get(url, headers={"If-None-Match": first.headers["etag"]})
    assert unchanged.status_code == 304 and unchanged.content == b""
    # Without the version the same file is served, but revalidated.
    unversioned = api.get(url.split("?")[0])
    assert unversioned.status_code == 200 and unversioned.headers["cache-control"] == "no-cache"
    assert_error(api.get("/docs/assets/nothing.js"), 404)


def test_favicon_is_served_as_an_icon_and_as_svg(api: httpx.Client) -> None:
    ico = api.get("/favicon.ico")
    assert ico.status_code == 200 and ico.headers["content-type"] == "image/x-icon"
    assert ico.content[:4] == b"\x00\x00\x01\x00"  # an ICO header with one image
    svg = api.get("/favicon.svg")
    assert svg.headers["content-type"].startswith("image/svg+xml") and b"<svg" in svg.content


def test_merged_document_declares_bearer_and_cookie_security(api: httpx.Client) -> None:
    document = api.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer"}
    assert schemes["cookie"] == {"type": "apiKey", "in": "cookie", "name": "cep_token"}
    both = [{"bearer": []}, {"cookie": []}]
    paths = document["paths"]
    assert paths["/api/users/me"]["get"]["security"] == both
    assert paths["/api/workspace/{workspace_id}/files/{file_path}"]["put"]["security"] == both
    # What needs no credential says so by declaring none.
    for path, method in [("/api/users/register", "post"), ("/api/users/login", "post"),
                         ("/api/health", "get"), ("/", "get")]:  # fmt: skip
        assert "security" not in paths[path][method], path
    assert "security" not in document  # never a global requirement


# ---- the root: browsers to the IDE, API clients to JSON ----------------------------------


def test_a_browser_asking_for_the_root_is_sent_to_the_ide(api: httpx.Client) -> None:
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    response = api.get("/", headers={"Accept": browser})
    assert response.status_code == 302
    assert response.headers["location"] == "/ide/"
    assert "accept" in response.headers["vary"].lower()


@pytest.mark.parametrize("accept", ["application/json", "*/*", None])
def test_api_clients_get_the_json_root_document(api: httpx.Client, accept: str | None) -> None:
    with httpx.Client(base_url=api.base_url) as client:
        del client.headers["accept"]
        response = client.get("/", headers={"Accept": accept} if accept else {})
    assert response.status_code == 200
    assert response.json()["data"]["ide"] == "/ide/"
    assert "accept" in response.headers["vary"].lower()


def test_the_gateway_sends_the_ide_prefix_to_the_ide_server(api: httpx.Client) -> None:
    redirect = api.get("/ide")
    assert redirect.status_code == 308 and redirect.headers["location"] == "/ide/"
    page = api.get("/ide/")
    # Built or not (web/dist may be absent here), the answer is an HTML page, never the API's 404.
    assert page.status_code in (200, 503)
    assert page.headers["content-type"].startswith("text/html")


# ---- the IDE server (the web image) --------------------------------------------------------


INDEX = '<!doctype html><html><head><script type="module" src="/ide/assets/index-3f2a9c.js">'
INDEX += "</script></head><body><div id=app></div></body></html>"
BUNDLE = "console.log('ide');\n" * 200  # compressible


def _serve_ide(dist: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "IDE_DIST_DIR": str(dist)}
    command = [sys.executable, "-m", "uvicorn", "ingress.ide:app", "--port", str(port)]
    command += ["--log-level", "warning"]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert process.poll() is None, "the IDE server exited at start"
        try:
            return httpx.get(base + "/livez", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(answers, "the IDE server to answer", 30)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def ide(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """The IDE server over a small Vite-shaped build, with a secret next to the build."""
    root = tmp_path_factory.mktemp("ide")
    dist = root / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text(INDEX)
    (dist / "assets" / "index-3f2a9c.js").write_text(BUNDLE)
    (dist / "assets" / "index-77aa01.css").write_text("body{margin:0}")
    (dist / "assets" / "editor-1b2c.woff2").write_bytes(b"wOF2" + bytes(64))
    (dist / "favicon.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (root / "secret.txt").write_text("not for the web")
    for base in _serve_ide(dist):
        with httpx.Client(base_url=base, timeout=10) as client:
            yield client


def test_ide_index_is_served_and_always_revalidated(ide: httpx.Client) -> None:
    page = ide.get("/ide/")
    assert page.status_code == 200 and page.text == INDEX
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-cache"
    again = ide.get("/ide/", headers={"If-None-Match": page.headers["etag"]})
    assert again.status_code == 304


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/ide/assets/index-3f2a9c.js", "text/javascript"),
        ("/ide/assets/index-77aa01.css", "text/css"),
        ("/ide/assets/editor-1b2c.woff2", "font/woff2"),
    ],
)
def test_ide_hashed_assets_have_their_type_and_are_immutable(
    ide: httpx.Client, path: str, content_type: str
) -> None:
    response = ide.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(content_type)
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"


def test_ide_files_outside_assets_are_revalidated(ide: httpx.Client) -> None:
    response = ide.get("/ide/favicon.svg")
    assert response.headers["content-type"].startswith("image/svg+xml")
    assert response.headers["cache-control"] == "no-cache"


def test_ide_scripts_are_gzipped_for_clients_that_accept_it(ide: httpx.Client) -> None:
    with ide.stream(
        "GET", "/ide/assets/index-3f2a9c.js", headers={"Accept-Encoding": "gzip"}
    ) as response:
        raw = b"".join(response.iter_raw())
    assert response.headers["content-encoding"] == "gzip"
    assert len(raw) < len(BUNDLE) / 10 and gzip.decompress(raw).decode() == BUNDLE


@pytest.mark.parametrize("route", ["/ide/workspaces", "/ide/workspaces/3f2a/files/main.py/x"])
def test_ide_client_side_routes_get_the_index(ide: httpx.Client, route: str) -> None:
    response = ide.get(route)
    assert response.status_code == 200 and response.text == INDEX


@pytest.mark.parametrize(
    "path",
    ["/ide/assets/index-000000.js", "/ide/missing.css", "/ide/.env", "/ide/%2e%2e/secret.txt"],
)
def test_ide_missing_files_are_404_never_the_index_and_never_outside_the_build(
    ide: httpx.Client, path: str
) -> None:
    response = ide.get(ide.base_url.copy_with(raw_path=path.encode()))
    assert_error(response, 404)
    assert "not for the web" not in response.text


def test_ide_bare_prefix_redirects_to_the_slash_and_writes_are_refused(ide: httpx.Client) -> None:
    redirect = ide.get("/ide")
    assert redirect.status_code == 308 and redirect.headers["location"] == "/ide/"
    assert_error(ide.post("/ide/", content=b"x"), 405)
    assert_error(ide.get("/api/users/me"), 404)


def test_without_a_build_the_ide_page_says_how_to_build_it(tmp_path: Path) -> None:
    for base in _serve_ide(tmp_path / "dist"):
        page = httpx.get(base + "/ide/workspaces")
        assert page.status_code == 503
        assert page.headers["content-type"].startswith("text/html")
        assert "npm ci && npm run build" in page.text
        assert httpx.get(base + "/ide/assets/index-3f2a9c.js").status_code == 503
