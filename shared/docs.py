"""OpenAPI documents: a function's own ``/openapi.json``, and the merge of several into one.

Every function serves its own document; the front door (ingress/front.py) serves the merge of
every function's, with the pages that render it (``/docs``, ``/redoc``), so a function's image
needs no JavaScript.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
from litestar import Litestar, Response, get

API_VERSION = "1.0.0"
API_TITLE = "Code Execution Platform"
OPENAPI_MEDIA_TYPE = "application/vnd.oai.openapi+json"

# An operation that can answer 401 needs a credential: the login cookie or a bearer token.
AUTHENTICATED = [{"bearer": []}, {"cookie": []}]


def merge_openapi(documents: Iterable[dict[str, Any]], title: str = API_TITLE) -> dict[str, Any]:
    """One document from several: paths and every kind of component united (conflicts refused
    loudly), and each operation's security stated on the operation itself."""
    merged: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": API_VERSION},
        "paths": {},
        "components": {"schemas": {}, "securitySchemes": {}},
        "tags": [],
    }
    seen_tags: set[str] = set()
    for document in documents:
        for path, item in document.get("paths", {}).items():
            if path in merged["paths"] and merged["paths"][path] != item:
                raise ValueError(f"two functions document the path {path}")
            merged["paths"][path] = copy.deepcopy(item)
        for section, entries in document.get("components", {}).items():
            target = merged["components"].setdefault(section, {})
            for name, value in entries.items():
                if name in target and target[name] != value:
                    raise ValueError(f"two functions define {section}/{name} differently")
                target[name] = copy.deepcopy(value)
        for tag in document.get("tags", []) or []:
            if tag["name"] not in seen_tags:
                seen_tags.add(tag["name"])
                merged["tags"].append(tag)
    if not merged["tags"]:
        del merged["tags"]
    _state_security(merged)
    return merged


def _state_security(document: dict[str, Any]) -> None:
    """Per operation, not globally: register, login, root and health need no credential."""
    schemes = document["components"].get("securitySchemes", {})
    if not schemes:
        return
    for item in document["paths"].values():
        for operation in item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            if "401" in operation["responses"] and operation["operationId"] != "login":
                operation["security"] = copy.deepcopy(AUTHENTICATED)
            else:
                operation.pop("security", None)


def app_openapi(app: Litestar) -> dict[str, Any]:
    return app.openapi_schema.to_schema()


def docs_handlers(document: Callable[[], dict[str, Any]], title: str) -> list[Any]:
    """``/openapi.json`` serving ``document()``, computed once. (``title`` names the app in
    logs; the pages that render the document belong to the front door.)"""
    cache: dict[str, bytes] = {}

    @get("/openapi.json", include_in_schema=False, media_type=OPENAPI_MEDIA_TYPE)
    async def openapi_json() -> Response[bytes]:
        if "json" not in cache:
            cache["json"] = msgspec.json.encode(document())
        return Response(cache["json"], media_type=OPENAPI_MEDIA_TYPE)

    return [openapi_json]
