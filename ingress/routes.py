"""The single route table: which service serves which path prefix.

The local gateway dispatches with it and the Kubernetes Ingress in ``k8s/`` is derived from it
(a test compares the two), so a prefix is added here and nowhere else. A service is one of the
five functions or the web IDE; what matches no prefix goes to the front door.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Route:
    prefix: str
    service: str


FUNCTIONS: tuple[str, ...] = ("users", "sessions", "workspace", "reviews", "terminal")

# The web IDE's static files (web/dist, built for the base path /ide/); its own image on Kubernetes.
WEB = "web"

# Everything outside the prefixes (``/``, ``/api/health/``, ``/docs``, ``/redoc``,
# ``/openapi.json``, the favicon, the docs' assets) goes to the front door: ingress/front.py
# locally, its own Deployment on Kubernetes (the Ingress's defaultBackend).
FRONT_DOOR = "front"

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
    Route("/ide", WEB),
)


def service_for_path(path: str) -> str:
    """The service that serves ``path``: a function, the web IDE, or the front door."""
    best: Route | None = None
    for route in ROUTE_TABLE:
        if path == route.prefix or path.startswith(route.prefix + "/"):
            if best is None or len(route.prefix) > len(best.prefix):
                best = route
    return best.service if best else FRONT_DOOR


def prefixes_of(service: str) -> list[str]:
    return [route.prefix for route in ROUTE_TABLE if route.service == service]
