"""What every file operation of the agent shares: open flags that never follow a symlink,
bounded reads, the error the platform is told about, digests."""

from __future__ import annotations

import hashlib
import os
import stat
from typing import Any

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
CHUNK = 1 << 20


class FileError(Exception):
    """An operation failed in a way the caller is told about: ``code`` is a protocol code."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_bounded(fd: int, limit: int) -> bytes | None:
    """At most ``limit`` bytes of an open regular file, from its start whatever was read
    through ``fd`` before; None when it holds more."""
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped for a FIFO since its lstat
        raise FileError("not_file", "not a regular file")
    os.set_blocking(fd, True)
    chunks: list[bytes] = []
    offset = 0
    while offset <= limit:
        chunk = os.pread(fd, min(limit + 1 - offset, CHUNK), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    data = b"".join(chunks)
    return data if len(data) <= limit else None
