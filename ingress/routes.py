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


_SERVICE_OF_PREFIX = {route.prefix: route.service for route in ROUTE_TABLE}
_PREFIX_DEPTH = max(route.prefix.count("/") for route in ROUTE_TABLE)


def service_for_path(path: str) -> str:
    """The service that serves ``path``: a function, the web IDE, or the front door.

    Every request asks, so it costs a few dictionary lookups: the path's first segments, up to
    as many as the deepest prefix has, the longest first.
    """
    ends: list[int] = []
    end = 0
    for _ in range(_PREFIX_DEPTH):
        end = path.find("/", end + 1)
        if end < 0:
            ends.append(len(path))
            break
        ends.append(end)
    for end in reversed(ends):
        service = _SERVICE_OF_PREFIX.get(path[:end])
        if service is not None:
            return service
    return FRONT_DOOR


def prefixes_of(service: str) -> list[str]:
    return [route.prefix for route in ROUTE_TABLE if route.service == service]
