"""The pages that render the merged OpenAPI document, offline: ``/docs`` (Swagger UI),
``/redoc`` (ReDoc), their JavaScript and CSS, and the favicon.

The JavaScript and CSS are the npm packages pinned in ``ingress/docs_ui/package-lock.json``,
installed into ``ingress/docs_ui/node_modules`` (``make run`` / ``make test`` do it; the front
door's image copies the few files it needs to the same place). Nothing is fetched from
elsewhere: the pages' Content-Security-Policy allows this origin only.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from functools import cache
from pathlib import Path

import attrs
from litestar import MediaType, Request, Response, get
from litestar.exceptions import NotFoundException

from ingress.static import IMMUTABLE, REVALIDATE, FileCache, file_response
from shared.docs import API_TITLE

DOCS_UI = Path(__file__).resolve().parent / "docs_ui"
NODE_MODULES = DOCS_UI / "node_modules"
INSTALL_COMMAND = "make docs-ui"
ASSETS_PATH = "/docs/assets"

# Scripts and styles from this origin only; ReDoc runs its search in a blob: worker and both
# UIs set inline styles; the document and "Try it out" requests go to this origin.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


@attrs.frozen
class Asset:
    """A file the pages load: from an npm package (``package``) or from docs_ui itself."""

    file: str
    package: str | None = None

    @property
    def path(self) -> Path:
        return NODE_MODULES / self.package / self.file if self.package else DOCS_UI / self.file

    @property
    def version(self) -> str:
        return package_version(self.package) if self.package else _own_version()


ASSETS: dict[str, Asset] = {
    "swagger-ui.css": Asset("swagger-ui.css", "swagger-ui-dist"),
    "swagger-ui-bundle.js": Asset("swagger-ui-bundle.js", "swagger-ui-dist"),
    "swagger-init.js": Asset("swagger-init.js"),
    "redoc.standalone.js": Asset("bundles/redoc.standalone.js", "redoc"),
}
FAVICONS = {"favicon.ico": Asset("favicon.ico"), "favicon.svg": Asset("favicon.svg")}


@cache
def package_version(package: str) -> str:
    manifest = NODE_MODULES / package / "package.json"
    return str(json.loads(manifest.read_text())["version"])


@cache
def _own_version() -> str:
    # A short hash of our own files, so a changed one gets a new URL.
    digest = hashlib.sha256()
    for asset in ("swagger-init.js", "favicon.svg", "favicon.ico"):
        digest.update((DOCS_UI / asset).read_bytes())
    return digest.hexdigest()[:12]


def asset_urls() -> dict[str, str] | None:
    """Each asset's versioned URL, or None while the npm packages are not installed."""
    if not all(asset.path.is_file() for asset in ASSETS.values()):
        return None
    return {name: f"{ASSETS_PATH}/{name}?v={asset.version}" for name, asset in ASSETS.items()}


_HEAD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
<link rel="alternate icon" href="/favicon.ico">
"""

_NOT_INSTALLED = """<h1>The documentation pages are not installed</h1>
<p>Their JavaScript comes from npm packages pinned in <code>ingress/docs_ui</code>. Install
them from the repository root (<code>make run</code> does it too):</p>
<pre>{command}</pre>
<p>The document itself is at <a href="/openapi.json">/openapi.json</a>.</p>
</body></html>"""


_SWAGGER = """<link rel="stylesheet" href="{swagger-ui.css}">
</head><body><div id="swagger-ui"></div>
<script src="{swagger-ui-bundle.js}"></script>
<script src="{swagger-init.js}"></script>
</body></html>"""

_REDOC = """<style>body{margin:0}</style>
</head><body><redoc spec-url="/openapi.json"></redoc>
<script src="{redoc.standalone.js}"></script>
</body></html>"""


async def _page(title: str, body: str) -> Response[str]:
    urls = await asyncio.to_thread(asset_urls)
    head = _HEAD.format(title=title)
    if urls is None:
        html = head + "</head><body>" + _NOT_INSTALLED.format(command=INSTALL_COMMAND)
        return Response(html, status_code=503, media_type=MediaType.HTML)
    for name, url in urls.items():
        body = body.replace("{" + name + "}", url)
    return Response(
        head + body,
        media_type=MediaType.HTML,
        headers={"Content-Security-Policy": CSP, "Cache-Control": REVALIDATE},
    )


@get("/docs", include_in_schema=False)
async def swagger_ui() -> Response[str]:
    return await _page(f"{API_TITLE} - Swagger UI", _SWAGGER)


@get("/redoc", include_in_schema=False)
async def redoc() -> Response[str]:
    return await _page(f"{API_TITLE} - ReDoc", _REDOC)


_cache = FileCache()


async def _serve(request: Request, asset: Asset, cache_control: str) -> Response[bytes]:
    try:
        status, headers, body = await file_response(
            asset.path,
            _cache,
            cache_control,
            if_none_match=request.headers.get("if-none-match", ""),
            accept_encoding=request.headers.get("accept-encoding", ""),
        )
    except FileNotFoundError:
        raise NotFoundException(f"{asset.file} is not installed ({INSTALL_COMMAND})") from None
    fields = dict(headers)
    media_type = fields.pop("content-type").split(";")[0]  # Litestar adds the charset
    return Response(body, status_code=status, media_type=media_type, headers=fields)


@get(ASSETS_PATH + "/{name:str}", include_in_schema=False)
async def docs_asset(request: Request, name: str) -> Response[bytes]:
    asset = ASSETS.get(name)
    if asset is None:
        raise NotFoundException(f"no documentation asset {name}")
    try:
        version = await asyncio.to_thread(lambda: asset.version)
    except FileNotFoundError:
        version = None  # not installed: _serve says so
    # The pages ask for ?v=<version>: that URL never changes content, so cache it for good.
    versioned = version is not None and request.query_params.get("v") == version
    return await _serve(request, asset, IMMUTABLE if versioned else REVALIDATE)


@get(["/favicon.ico", "/favicon.svg"], include_in_schema=False)
async def favicon(request: Request) -> Response[bytes]:
    return await _serve(request, FAVICONS[request.url.path.lstrip("/")], "public, max-age=86400")


def page_handlers() -> list[object]:
    return [swagger_ui, redoc, docs_asset, favicon]
