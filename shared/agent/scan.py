"""The agent's scan of its workspace: every entry with sizes and sha256 digests, and what it
skipped and why; one bad entry never stops the rest, and an unchanged file is never hashed
again (digests are cached by inode, size, mtime and ctime)."""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Sequence
from typing import Any

from .fsutil import DIR_FLAGS as _DIR
from .fsutil import READ_FLAGS as _READ
from .fsutil import read_bounded, sha256_hex
from .paths import display, path_problem


class Scanner:
    def __init__(self, root: str) -> None:
        self.root = root
        # path -> (inode, size, mtime_ns, ctime_ns, sha256): an unchanged file is not rehashed
        self._digests: dict[str, tuple[int, int, int, int, str]] = {}

    def scan(
        self,
        ignore: Sequence[str],
        max_file_bytes: int,
        max_entries: int,
        max_skipped: int,
    ) -> dict[str, Any]:
        """Every file and directory with sizes and sha256 digests, and what was skipped why:
        ignored names, invalid paths (shown escaped), symlinks, special files, files over
        ``max_file_bytes``, entries past ``max_entries``. One bad entry never stops the rest."""
        dir_names = {p[:-1] for p in ignore if p.endswith("/")}
        globs = [p for p in ignore if not p.endswith("/")]
        entries: list[list[Any]] = []
        skipped: list[list[str]] = []
        unlisted = 0
        seen: set[str] = set()

        def skip(path: str, reason: str) -> None:
            nonlocal unlisted
            if len(skipped) < max_skipped:
                skipped.append([display(path), reason])
            else:
                unlisted += 1

        def walk(dir_fd: int, prefix: str) -> None:
            try:
                names = sorted(os.listdir(dir_fd))
            except OSError:
                return
            for name in names:
                path = prefix + name
                try:
                    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                except OSError:
                    continue
                is_dir = stat.S_ISDIR(st.st_mode)
                if (is_dir and name in dir_names) or any(
                    fnmatch.fnmatchcase(name, g) or fnmatch.fnmatchcase(path, g) for g in globs
                ):
                    skip(path, "ignored")
                elif path_problem(path) is not None:
                    skip(path, "invalid path")
                elif stat.S_ISLNK(st.st_mode):
                    skip(path, "symlink")
                elif not (is_dir or stat.S_ISREG(st.st_mode)):
                    skip(path, "special file")
                elif len(entries) >= max_entries:
                    skip(path, "too many entries")
                elif is_dir:
                    entries.append([path, "directory", 0, None])
                    try:
                        child = os.open(name, _DIR, dir_fd=dir_fd)
                    except OSError:
                        continue
                    try:
                        walk(child, path + "/")
                    finally:
                        os.close(child)
                elif st.st_size > max_file_bytes:
                    skip(path, "too large")
                else:
                    found = self._digest(dir_fd, name, path, st, max_file_bytes)
                    if found == "too large":
                        skip(path, "too large")
                    elif found is not None:
                        seen.add(path)
                        entries.append([path, "file", found[0], found[1]])

        try:
            root_fd = os.open(self.root, _DIR)
        except OSError:
            return {"entries": [], "skipped": [], "unlisted": 0}
        try:
            walk(root_fd, "")
        finally:
            os.close(root_fd)
        for gone in self._digests.keys() - seen:
            del self._digests[gone]
        return {"entries": entries, "skipped": skipped, "unlisted": unlisted}

    def _digest(
        self, dir_fd: int, name: str, path: str, st: os.stat_result, limit: int
    ) -> tuple[int, str] | str | None:
        """(size, sha256) of a regular file read up to ``limit`` bytes, "too large" when it
        grew past it, None when it vanished or changed type."""
        key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        cached = self._digests.get(path)
        if cached is not None and cached[:4] == key:
            return st.st_size, cached[4]
        try:
            fd = os.open(name, _READ, dir_fd=dir_fd)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            data = read_bounded(fd, limit)
        finally:
            os.close(fd)
        if data is None:
            return "too large"
        digest = sha256_hex(data)
        # Keyed by the stat taken before reading: a write racing the read changes mtime and
        # forces a rehash next time instead of caching a stale digest.
        self._digests[path] = (*key, digest)
        return len(data), digest
