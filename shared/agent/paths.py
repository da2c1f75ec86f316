"""What a workspace path may be: the one rule, used by the API and by the agent's scan.

Relative POSIX paths of plain names: no empty, "." or ".." components, no leading "/", no
backslash, NUL or other control/format characters, each component at most 255 bytes of
UTF-8, the whole at most 1024 bytes, at most 32 levels deep. Stdlib only (the agent runs
inside the sandbox with the system Python).
"""

from __future__ import annotations

import unicodedata

MAX_COMPONENT_BYTES = 255
MAX_PATH_BYTES = 1024
MAX_DEPTH = 32
_FORBIDDEN_CATEGORIES = {"Cc", "Cf", "Zl", "Zp"}


def path_problem(path: str) -> str | None:
    """Why ``path`` is not a valid workspace path, or None when it is."""
    if not isinstance(path, str) or path == "":
        return "must not be empty"
    if path.startswith("/"):
        return "must be relative (no leading '/')"
    if "\\" in path:
        return "must not contain a backslash"
    # Printable ASCII (most paths) has no control or format character: no per-character look.
    if not (path.isascii() and path.isprintable()):
        for char in path:
            # U+200D (zero-width joiner) is a format character emoji sequences need.
            if char == "\x00" or (
                unicodedata.category(char) in _FORBIDDEN_CATEGORIES and char != "\u200d"
            ):
                return "must not contain control characters"
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid UTF-8"
    if len(encoded) > MAX_PATH_BYTES:
        return f"must be at most {MAX_PATH_BYTES} bytes"
    parts = path.split("/")
    if len(parts) > MAX_DEPTH:
        return f"must be at most {MAX_DEPTH} levels deep"
    for part in parts:
        if part in {"", ".", ".."}:
            return "must not contain empty, '.' or '..' components"
        if len(part.encode("utf-8")) > MAX_COMPONENT_BYTES:
            return f"each component must be at most {MAX_COMPONENT_BYTES} bytes"
    return None


def display(path: str) -> str:
    """A path as a person can read it and JSON can carry it: bytes that are not UTF-8
    (surfaced by the OS as surrogate escapes) appear as ``\\xe9``."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def parents_of(path: str) -> list[str]:
    """Every ancestor directory of ``path``, outermost first: "a/b/c" -> ["a", "a/b"]."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def is_under(path: str, root: str) -> bool:
    """``path`` is ``root`` or inside it."""
    return path == root or path.startswith(root + "/")


def name_of(path: str) -> str:
    return path.rsplit("/", 1)[-1]
