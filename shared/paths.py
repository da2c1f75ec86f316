"""Workspace paths: relative POSIX, no tricks (DESIGN.md section 4, "Paths").

Anything that is not a plain relative path of plain names is refused with 400 before any
write: empty, "." or ".." components, a leading "/", backslashes, NUL or other control
characters, components over 255 bytes, paths over 1024 bytes or deeper than 32.
"""

from __future__ import annotations

import unicodedata

from shared.errors import BadRequest

MAX_COMPONENT_BYTES = 255
MAX_PATH_BYTES = 1024
MAX_DEPTH = 32


def normalize_path(raw: str, field: str = "path") -> str:
    """The validated path (a trailing "/" is tolerated and dropped), or BadRequest."""
    if not isinstance(raw, str) or raw == "":
        raise BadRequest(f"{field}: must not be empty")
    if raw.startswith("/"):
        raise BadRequest(f"{field}: must be relative (no leading '/')")
    path = raw[:-1] if raw.endswith("/") else raw
    if "\\" in path:
        raise BadRequest(f"{field}: must not contain a backslash")
    for char in path:
        if (
            char == "\x00"
            or unicodedata.category(char) in {"Cc", "Cf", "Zl", "Zp"}
            and char != "\u200d"
        ):
            raise BadRequest(f"{field}: must not contain control characters")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise BadRequest(f"{field}: must be at most {MAX_PATH_BYTES} bytes")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{field}: must be valid UTF-8") from None
    parts = path.split("/")
    if len(parts) > MAX_DEPTH:
        raise BadRequest(f"{field}: must be at most {MAX_DEPTH} levels deep")
    for part in parts:
        if part in {"", ".", ".."}:
            raise BadRequest(f"{field}: must not contain empty, '.' or '..' components")
        if len(part.encode("utf-8")) > MAX_COMPONENT_BYTES:
            raise BadRequest(f"{field}: each component must be at most {MAX_COMPONENT_BYTES} bytes")
    return path


def parents_of(path: str) -> list[str]:
    """Every ancestor directory of ``path``, outermost first: "a/b/c" -> ["a", "a/b"]."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def name_of(path: str) -> str:
    return path.rsplit("/", 1)[-1]
