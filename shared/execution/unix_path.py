"""Unix socket paths of any length.

A socket address holds at most 107 bytes of path, and a slot's socket lives deep below
``DATA_DIR`` (``.../sandboxes/slots/<id>/agent.sock``): a checkout in a long directory would
make every sandbox fail to start. A longer path is reached through its directory instead,
opened for the moment and named as ``/proc/self/fd/<n>/<name>`` (the kernel resolves it like
the path itself, so binding and connecting behave the same)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

MAX_PATH = 107  # sizeof(sun_path) - 1: the path and its terminating NUL


@contextlib.contextmanager
def usable(path: str) -> Iterator[str]:
    """``path`` itself when it fits a socket address, else a short name of it valid for the
    block."""
    if len(os.fsencode(path)) <= MAX_PATH:
        yield path
        return
    directory, name = os.path.split(path)
    fd = os.open(directory or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{name}"
    finally:
        os.close(fd)
