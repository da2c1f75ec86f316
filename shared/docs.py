"""OpenAPI documents and the pages that render them: /openapi.json, /docs (Swagger UI), /redoc.

A function serves its own document; the gateway serves the merge of every function's.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

from litestar import Litestar, MediaType, Response, get

API_VERSION = "1.0.0"
API_TITLE = "Code Execution Platform"

_SWAGGER = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title} - Swagger UI</title>
<link rel="stylesheet"
 href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>
SwaggerUIBundle({{url: "/openapi.json", dom_id: "#swagger-ui", withCredentials: true}});
</script>
</body></html>"""

_REDOC = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title} - ReDoc</title></head>
<body><redoc spec-url="/openapi.json"></redoc>
<script src="https://cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js"></script>
</body></html>"""


def merge_openapi(documents: Iterable[dict[str, Any]], title: str = API_TITLE) -> dict[str, Any]:
    """One document from several: paths and components united, conflicts refused loudly."""
    merged: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": API_VERSION},
        "paths": {},
        "components": {"schemas": {}},
        "tags": [],
    }
    seen_tags: set[str] = set()
    for document in documents:
        for path, item in document.get("paths", {}).items():
            if path in merged["paths"] and merged["paths"][path] != item:
                raise ValueError(f"two functions document the path {path}")
            merged["paths"][path] = copy.deepcopy(item)
        for name, schema in document.get("components", {}).get("schemas", {}).items():
            existing = merged["components"]["schemas"].get(name)
            if existing is not None and existing != schema:
                raise ValueError(f"two functions define the schema {name} differently")
            merged["components"]["schemas"][name] = copy.deepcopy(schema)
        for tag in document.get("tags", []) or []:
            if tag["name"] not in seen_tags:
                seen_tags.add(tag["name"])
                merged["tags"].append(tag)
    if not merged["tags"]:
        del merged["tags"]
    return merged


def app_openapi(app: Litestar) -> dict[str, Any]:
    return app.openapi_schema.to_schema()


def docs_handlers(document: Callable[[], dict[str, Any]], title: str) -> list[Any]:
    """Handlers for /openapi.json, /docs and /redoc serving ``document()`` (computed once)."""
    cache: dict[str, bytes] = {}

    @get("/openapi.json", include_in_schema=False, media_type="application/vnd.oai.openapi+json")
    async def openapi_json() -> Response[bytes]:
        if "json" not in cache:
            import msgspec

            cache["json"] = msgspec.json.encode(document())
        return Response(cache["json"], media_type="application/vnd.oai.openapi+json")

    @get("/docs", include_in_schema=False, media_type=MediaType.HTML)
    async def swagger() -> str:
        return _SWAGGER.format(title=title)

    @get("/redoc", include_in_schema=False, media_type=MediaType.HTML)
    async def redoc() -> str:
        return _REDOC.format(title=title)

    return [openapi_json, swagger, redoc]
