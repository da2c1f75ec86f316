"""The front door: ``GET /`` and the merged OpenAPI of every function.

The gateway serves these locally; in a cluster the users function does (the Ingress sends
everything outside the function prefixes to it), so both places show the same documents.
"""

from __future__ import annotations

import importlib
from typing import Any

import msgspec
from litestar import Litestar, get

from ingress.routes import FUNCTIONS
from shared.docs import API_TITLE, API_VERSION, app_openapi, merge_openapi
from shared.envelope import Envelope, ok


class RootInfo(msgspec.Struct):
    name: str
    version: str
    docs: str
    redoc: str
    openapi: str
    functions: list[str]


@get("/", operation_id="root", tags=["health"], summary="What this API is")
async def root() -> Envelope[RootInfo]:
    info = RootInfo(
        name=API_TITLE,
        version=API_VERSION,
        docs="/docs",
        redoc="/redoc",
        openapi="/openapi.json",
        functions=list(FUNCTIONS),
    )
    return ok(info, "Code Execution Platform API")


def front_door_handlers() -> list[Any]:
    return [root]


def function_app(name: str) -> Litestar:
    return importlib.import_module(f"functions.{name}.app").app


def merged_openapi(front: Litestar | None = None) -> dict[str, Any]:
    """Every function's OpenAPI document merged into one."""
    documents = [app_openapi(function_app(name)) for name in FUNCTIONS]
    return merge_openapi(documents)
