"""Workspace paths as the API takes them: relative POSIX, no tricks (the rule itself lives in
``agent.paths``, shared with the environment agent's scan).

Anything that is not a plain relative path of plain names is refused with 400 before any
write: empty, "." or ".." components, a leading "/", backslashes, NUL or other control
characters, components over 255 bytes, paths over 1024 bytes or deeper than 32.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from litestar.connection import ASGIConnection

from shared.agent.paths import (
    MAX_COMPONENT_BYTES,
    MAX_DEPTH,
    MAX_PATH_BYTES,
    name_of,
    parents_of,
    path_problem,
)
from shared.errors import BadRequest

__all__ = [
    "MAX_COMPONENT_BYTES",
    "MAX_DEPTH",
    "MAX_PATH_BYTES",
    "name_of",
    "normalize_path",
    "parents_of",
    "url_path",
]


def normalize_path(raw: str, field: str = "path") -> str:
    """The validated path (a trailing "/" is tolerated and dropped), or BadRequest."""
    if not isinstance(raw, str) or raw == "":
        raise BadRequest(f"{field}: must not be empty")
    if raw.startswith("/"):
        raise BadRequest(f"{field}: must be relative (no leading '/')")
    path = raw[:-1] if raw.endswith("/") else raw
    problem = path_problem(path)
    if problem is not None:
        raise BadRequest(f"{field}: {problem}")
    return path


def url_path(request: ASGIConnection, parameter: str, field: str) -> str:
    """The path parameter exactly as the client wrote it in the URL, validated.

    Litestar collapses "//" and trims slashes in its path parameter, so "files//etc/passwd"
    or "files/a//b" would arrive as harmless-looking "etc/passwd" and "a/b". The raw request
    path (before any normalization; %-escapes such as "..%2F" decoded here) is what the client
    meant, so that is what is checked and refused.
    """
    raw = request.scope.get("raw_path")
    if raw:
        _, marker, rest = raw.partition(b"/files/")
        if marker:
            try:
                text = unquote_to_bytes(rest).decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest(f"{field}: must be valid UTF-8") from None
            return normalize_path(text, field)
    # Without raw_path (not every ASGI server sends it): the parameter has one leading "/".
    return normalize_path(parameter[1:] if parameter.startswith("/") else parameter, field)
