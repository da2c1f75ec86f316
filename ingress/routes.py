"""The single route table: which function serves which path prefix.

The local gateway dispatches with it and the Kubernetes Ingress in ``k8s/`` is derived from it
(a test compares the two), so a prefix is added here and nowhere else.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Route:
    prefix: str
    function: str


FUNCTIONS: tuple[str, ...] = ("users", "sessions", "workspace", "reviews", "terminal")

# Longest prefix wins; every prefix ends without a slash so "/api/users" also matches "/api/users/".
ROUTE_TABLE: tuple[Route, ...] = (
    Route("/api/users", "users"),
    Route("/api/sessions", "sessions"),
    Route("/api/postgres_sessions", "sessions"),
    Route("/api/session_workspace", "sessions"),
    Route("/api/workspace", "workspace"),
    Route("/workspace", "workspace"),
    Route("/api/reviews", "reviews"),
    Route("/api/terminal", "terminal"),
)


def function_for_path(path: str) -> str | None:
    """The function that serves ``path``, or None when no prefix matches."""
    best: Route | None = None
    for route in ROUTE_TABLE:
        if path == route.prefix or path.startswith(route.prefix + "/"):
            if best is None or len(route.prefix) > len(best.prefix):
                best = route
    return best.function if best else None


def prefixes_of(function: str) -> list[str]:
    return [route.prefix for route in ROUTE_TABLE if route.function == function]


# Everything outside the prefixes above (``/``, ``/api/health/``, ``/docs``, ``/redoc``,
# ``/openapi.json``, ``/livez``) goes to this function, the front door.
DEFAULT_FUNCTION = "users"
