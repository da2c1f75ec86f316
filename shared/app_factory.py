"""The ONE wiring point: every function's Litestar app is built here.

It sets the envelope and error mapping, authentication, CORS, the web-layer guard (header
size, the Origin rule) and JSON body checks, OpenAPI and docs, the liveness route, and the
lifespan that opens the database pool (and the execution runtime for the
functions that drive execution environments). A function's ``app.py`` is a few lines.
"""

from __future__ import annotations

import functools
import gc
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import Provide
from litestar.logging import LoggingConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from shared import db
from shared.auth import authenticator
from shared.config import Settings, get_settings
from shared.docs import API_TITLE, API_VERSION, app_openapi, docs_handlers
from shared.errors import EXCEPTION_HANDLERS, error_responses
from shared.execution.runtime import process_runtime, running_runtime
from shared.health import health, liveness, readiness
from shared.request_body import check_json_body
from shared.throttle import TokenBuckets
from shared.web_security import STATE_CHANGING, Lane, guard

# Every route can fail these ways regardless of what it does (503/507: the database fails).
_ALWAYS = (400, 431, 500, 503, 507)
REQUEST_MAX_BODY_BYTES = 4 * 1024 * 1024  # a 1 MiB file as base64 JSON fits with room


def _document_errors(handlers: Sequence[Any]) -> None:
    """Add the always-possible error statuses (and 401 for authenticated routes) to the docs."""
    from litestar import Controller
    from litestar.handlers import HTTPRouteHandler

    flat: list[Any] = []
    for item in handlers:
        if isinstance(item, type) and issubclass(item, Controller):
            # A controller's handlers are class attributes; document them before registration.
            flat.extend(vars(item).values())
        else:
            flat.append(item)
    for handler in flat:
        if not isinstance(handler, HTTPRouteHandler):
            continue
        codes = list(_ALWAYS)
        if "user" in inspect.signature(handler.fn).parameters:
            codes.append(401)
        if "data" in inspect.signature(handler.fn).parameters:
            codes.append(415)
        if STATE_CHANGING & set(handler.http_methods):
            codes.append(403)  # the cross-site (Origin) rule for cookie-authenticated calls
        extra = error_responses(*codes)
        handler.responses = {**extra, **(handler.responses or {})}


@functools.cache
def _tune_gc() -> None:
    """Once per process, after start-up: everything imported so far lives as long as the
    process, so keep it out of the collector's way, and collect young objects less often
    (requests allocate many short-lived ones); this cuts tail latency under load."""
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def app_settings(connection: ASGIConnection) -> Settings:
    """The settings of the app serving ``connection``: what the ``settings`` dependency
    gives, for the hottest routes, where one dependency fewer is measurable (Litestar
    resolves two or more dependencies in a task group: ~8% of a file GET's time)."""
    return connection.app.state.settings  # type: ignore[no-any-return]


def create_app(
    name: str,
    route_handlers: Sequence[Any],
    *,
    uses_execution: bool = False,
    docs: Callable[[Litestar], dict[str, Any]] | None = None,
    extra_handlers: Sequence[Any] = (),
    lane: Lane | None = None,
) -> Litestar:
    """A function's app: its own routes plus liveness, health and its OpenAPI docs.

    ``docs`` overrides what /openapi.json serves (the gateway's front door serves the merge
    of every function); by default a function documents itself. ``lane`` answers one hot
    request below Litestar's routing (see ``shared.web_security.guard``).
    """
    settings = get_settings()
    handlers = list(route_handlers) + list(extra_handlers)
    _document_errors(handlers)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await db.start(settings)
        _tune_gc()
        runtime = None
        try:
            if uses_execution:
                runtime = process_runtime(settings)
                await runtime.start()
            yield
        finally:
            if runtime is not None:
                await runtime.aclose()
            await db.stop()

    app_holder: dict[str, Litestar] = {}
    document = (
        (lambda: docs(app_holder["app"])) if docs else (lambda: app_openapi(app_holder["app"]))
    )
    title = f"{API_TITLE}: {name}" if docs is None else API_TITLE

    app = Litestar(
        route_handlers=[*handlers, liveness, health, readiness, *docs_handlers(document, title)],
        dependencies={
            "user": Provide(authenticator(settings)),
            "settings": Provide(lambda: settings, sync_to_thread=False),
            "runtime": Provide(running_runtime, sync_to_thread=False),
        },
        before_request=check_json_body,
        state=State({"settings": settings}),
        exception_handlers=EXCEPTION_HANDLERS,
        cors_config=CORSConfig(
            allow_origins=list(settings.http.cors_origins),
            allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "If-Match"],
            expose_headers=["ETag", "Retry-After"],
        ),
        openapi_config=OpenAPIConfig(
            title=title,
            version=API_VERSION,
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer"),
                    "cookie": SecurityScheme(
                        type="apiKey", name=settings.http.cookie_name, security_scheme_in="cookie"
                    ),
                }
            ),
            security=[{"bearer": []}, {"cookie": []}],
            use_handler_docstrings=True,
        ),
        lifespan=[lifespan],
        request_max_body_size=REQUEST_MAX_BODY_BYTES,
        logging_config=LoggingConfig(
            root={"level": settings.log_level.upper(), "handlers": ["queue_listener"]},
            log_exceptions="never",
        ),
    )
    app_holder["app"] = app
    # Outside CORS and routing: oversized headers and cross-site requests stop here, and a
    # flood of account requests from one address costs microseconds each. One layer, and no
    # Litestar middleware at all: a route without middleware skips a second exception layer.
    buckets = TokenBuckets(settings.auth.requests_per_second, settings.auth.requests_burst)
    app.asgi_handler = guard(app, settings.http, buckets, lane)
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    return app
