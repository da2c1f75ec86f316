"""The front door: what matches no prefix of the route table.

``GET /`` (browsers are sent to the IDE, API clients get the JSON root document),
``/api/health/``, the merged OpenAPI of every function at ``/openapi.json`` with its pages
``/docs`` and ``/redoc`` (ingress/pages.py), and the favicon. The local gateway sends it
everything outside the prefixes; on Kubernetes it is its own Deployment, the Ingress's
defaultBackend (``uvicorn ingress.front:app``), built from docker/front.Dockerfile.

Its ``/api/health/`` is every function's: a database round trip, so the public health URL
answers for the one dependency every function shares.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.response import Redirect

from ingress.pages import page_handlers
from ingress.routes import FUNCTIONS, WEB, prefixes_of
from shared.app_factory import create_app
from shared.config import get_settings
from shared.docs import API_TITLE, API_VERSION
from shared.envelope import Envelope, ok

IDE_URL = prefixes_of(WEB)[0] + "/"


class RootInfo(msgspec.Struct):
    name: str
    version: str
    docs: str
    redoc: str
    openapi: str
    ide: str
    functions: list[str]


@get(
    "/",
    operation_id="root",
    tags=["health"],
    summary="What this API is",
    responses={
        302: ResponseSpec(
            data_container=None, description="A browser (Accept: text/html) is sent to the IDE"
        )
    },
)
async def root(request: Request) -> Response[Envelope[RootInfo]]:
    """The API's name, version, where its documentation is, and its functions. A browser
    asking for HTML is redirected to the web IDE instead."""
    vary = {"Vary": "Accept"}
    if request.accept.best_match(["application/json", "text/html"]) == "text/html":
        return Redirect(IDE_URL, status_code=302, headers=vary)  # type: ignore[return-value]
    info = RootInfo(
        name=API_TITLE,
        version=API_VERSION,
        docs="/docs",
        redoc="/redoc",
        openapi="/openapi.json",
        ide=IDE_URL,
        functions=list(FUNCTIONS),
    )
    return Response(ok(info, "Code Execution Platform API"), headers=vary)


_http = get_settings().http  # read once, as the app is created


def front_document(front: Litestar) -> dict[str, Any]:
    """The merged document: baked into the image (``OPENAPI_FILE``), or computed here."""
    if _http.openapi_file is None:
        from ingress.openapi import merged_openapi

        return merged_openapi()
    document = json.loads(_http.openapi_file.read_text())
    # The cookie's name is configuration; the image was built with the default.
    schemes = document.get("components", {}).get("securitySchemes", {})
    if "cookie" in schemes:
        schemes["cookie"]["name"] = _http.cookie_name
    return document


app = create_app("front", [root, *page_handlers()], docs=front_document)
