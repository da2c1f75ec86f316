"""The agent's file operations on its workspace, safe against whatever the shell plants there.

The user's programs share the workspace with the agent and can create symlinks, FIFOs, odd
names or huge files at any moment. So every path is walked component by component from a
directory fd with ``O_NOFOLLOW``, files are opened non-blocking and checked to be regular,
nothing follows a symlink, and sizes are enforced while reading, not only when scanning.
Writes are conditional: the caller says what it expects to find, and a file that changed
meanwhile is reported as a conflict instead of being overwritten. An existing file is
rewritten in place under a write lease (``leases``: no program can write it meanwhile, and
one that opens it meanwhile appends after the new content); when it is open elsewhere, a
new file is renamed over it and the old inode is checked after the rename (a write that
raced the replacement is put back and reported). A new file never replaces one that
appeared meanwhile.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Iterable, Sequence
from typing import Any

from . import leases
from .fsutil import DIR_FLAGS, READ_FLAGS, FileError, read_bounded, sha256_hex
from .paths import display, path_problem
from .scan import Scanner

# Files larger than this are never compared by content (they cannot match a pushed file).
HASH_LIMIT = 64 * 1024 * 1024
_DIR, _READ = DIR_FLAGS, READ_FLAGS


def _split(path: str) -> list[str]:
    problem = path_problem(path)
    if problem is not None:
        raise FileError("invalid", f"{display(path)}: {problem}")
    return path.split("/")


def _os_error(exc: OSError, path: str) -> FileError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return FileError("no_space", "the workspace is full")
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return FileError("unsafe", f"{path}: a symlink or a file is in the way")
    return FileError("failed", f"{path}: {exc.strerror}")


def _state(dir_fd: int, name: str) -> tuple[str, os.stat_result | None]:
    """What is at ``name``: "absent", "file", "directory" or "other" (symlink, FIFO...)."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return "absent", None
    if stat.S_ISREG(st.st_mode):
        return "file", st
    if stat.S_ISDIR(st.st_mode):
        return "directory", st
    return "other", st


_read_fd = read_bounded


def _link_new(dir_fd: int, tmp: str, name: str, path: str) -> None:
    """Give the written ``tmp`` its ``name`` only if nothing is there (a file the shell
    created meanwhile is never replaced); ``tmp`` goes either way."""
    try:
        os.link(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    except FileExistsError:
        raise FileError("conflict", f"{path}: created in the environment meanwhile") from None
    finally:
        os.unlink(tmp, dir_fd=dir_fd)


def _rmtree_at(dir_fd: int, name: str) -> None:
    kind, _ = _state(dir_fd, name)
    if kind == "directory":
        shutil.rmtree(name, dir_fd=dir_fd)  # the fd-based variant never follows symlinks
    elif kind != "absent":
        os.unlink(name, dir_fd=dir_fd)


class Workspace:
    """The workspace directory as the agent sees it (``/workspace`` inside the sandbox)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.scanner = Scanner(root)

    def scan(
        self, ignore: Sequence[str], max_file_bytes: int, max_entries: int, max_skipped: int
    ) -> dict[str, Any]:
        return self.scanner.scan(ignore, max_file_bytes, max_entries, max_skipped)

    def _open_parent(self, parts: list[str], create: bool) -> int:
        fd = os.open(self.root, _DIR)
        try:
            for name in parts[:-1]:
                try:
                    child = os.open(name, _DIR, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    try:
                        os.mkdir(name, 0o755, dir_fd=fd)
                    except FileExistsError:
                        pass
                    child = os.open(name, _DIR, dir_fd=fd)
                os.close(fd)
                fd = child
            return fd
        except BaseException:
            os.close(fd)
            raise

    # -- reading -------------------------------------------------------------------------

    def read(self, path: str, limit: int) -> bytes:
        parts = _split(path)
        try:
            dir_fd = self._open_parent(parts, create=False)
        except FileNotFoundError:
            raise FileError("missing", f"{path}: no such file") from None
        except OSError as exc:
            raise _os_error(exc, path) from None
        try:
            fd = os.open(parts[-1], _READ, dir_fd=dir_fd)
        except FileNotFoundError:
            raise FileError("missing", f"{path}: no such file") from None
        except OSError as exc:
            raise _os_error(exc, path) from None
        finally:
            os.close(dir_fd)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise FileError("not_file", f"{path}: not a regular file")
            data = _read_fd(fd, limit)
        finally:
            os.close(fd)
        if data is None:
            raise FileError("too_large", f"{path}: larger than {limit} bytes")
        return data

    # -- writing -------------------------------------------------------------------------

    def write(self, path: str, content: bytes, expect: dict[str, Any] | None) -> str:
        """Replace (or create) the file at ``path`` when what is there matches ``expect``:
        None = anything, ``{"type": "absent"}``, ``{"type": "file", "sha256": hex}`` or
        ``{"type": "directory"}`` (replaced by the file). Returns the new sha256."""
        parts = _split(path)
        try:
            dir_fd = self._open_parent(parts, create=True)
        except OSError as exc:
            raise _os_error(exc, path) from None
        try:
            return self._write_at(dir_fd, parts[-1], path, content, expect)
        except OSError as exc:
            raise _os_error(exc, path) from None
        finally:
            os.close(dir_fd)

    def _write_at(
        self, dir_fd: int, name: str, path: str, content: bytes, expect: dict[str, Any] | None
    ) -> str:
        kind, st = _state(dir_fd, name)
        if kind == "file":
            digest = self._rewrite_leased(dir_fd, name, path, content, expect)
            if digest is not None:
                return digest
        old_fd = None
        old_seen: tuple[int, int] | None = None
        try:
            current: dict[str, Any] = {"type": kind}
            if kind == "file":
                old_fd = os.open(name, _READ, dir_fd=dir_fd)
                before = os.fstat(old_fd)  # before reading: a write from now on is seen below
                old_seen = (before.st_size, before.st_mtime_ns)
                if expect is not None and expect.get("type") == "file":
                    old = _read_fd(old_fd, HASH_LIMIT)
                    current["sha256"] = sha256_hex(old) if old is not None else "(too large)"
            if expect is not None and expect != current:
                raise FileError("conflict", f"{path}: changed in the environment", current=current)
            if kind == "directory":
                _rmtree_at(dir_fd, name)
            mode = stat.S_IMODE(st.st_mode) if kind == "file" and st is not None else 0o644
            tmp = f".{name[:200]}.cep-{os.getpid()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode,
                         dir_fd=dir_fd)  # fmt: skip
            try:
                os.fchmod(fd, mode)  # keep an executable bit the shell set
                view = memoryview(content)
                while view:
                    view = view[os.write(fd, view) :]
            except BaseException:
                os.close(fd)
                os.unlink(tmp, dir_fd=dir_fd)
                raise
            os.close(fd)
            if kind == "absent" and expect is not None:
                _link_new(dir_fd, tmp, name, path)
            else:
                os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)  # never follows a link
            new_sha = sha256_hex(content)
            if old_fd is not None and old_seen is not None:
                moved = os.fstat(old_fd)
                if (moved.st_size, moved.st_mtime_ns) != old_seen:
                    # A program wrote to the file between our read and the rename: its write
                    # went to the old inode. Put that version back and report the conflict.
                    racer = _read_fd(old_fd, HASH_LIMIT) or b""
                    self._write_at(dir_fd, name, path, racer, {"type": "file", "sha256": new_sha})
                    raise FileError(
                        "conflict",
                        f"{path}: written in the environment meanwhile",
                        current={"type": "file", "sha256": sha256_hex(racer)},
                    )
            return new_sha
        finally:
            if old_fd is not None:
                os.close(old_fd)

    def _rewrite_leased(
        self, dir_fd: int, name: str, path: str, content: bytes, expect: dict[str, Any] | None
    ) -> str | None:
        """Rewrite the existing file in place while nobody else can open it; None when it
        is open elsewhere (the caller replaces it by a rename instead)."""
        fd = leases.open_leased(dir_fd, name)
        if fd is None:
            return None
        try:
            old = _read_fd(fd, HASH_LIMIT)
            if old is None:
                return None  # too large to keep for putting back
            current = {"type": "file", "sha256": sha256_hex(old)}
            if expect is not None and expect != current:
                raise FileError("conflict", f"{path}: changed in the environment", current=current)
            leases.rewrite(fd, old, content)
        except OSError as exc:
            raise _os_error(exc, path) from None
        finally:
            os.close(fd)  # ends the lease: whoever waits to open the file goes on
        return sha256_hex(content)

    def make_directory(self, path: str) -> None:
        parts = _split(path)
        try:
            fd = self._open_parent([*parts, "x"], create=True)
        except OSError as exc:
            raise _os_error(exc, path) from None
        os.close(fd)

    def delete(self, path: str, expect: dict[str, Any] | None) -> list[str]:
        """Remove ``path``. With ``expect`` (relative path under ``path`` -> sha256 hex or
        "directory", ``""`` for ``path`` itself), only what still matches is removed and the
        paths of everything else are returned (kept: the shell made or changed them)."""
        parts = _split(path)
        try:
            dir_fd = self._open_parent(parts, create=False)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) or exc.errno in (errno.ELOOP, errno.ENOTDIR):
                return []  # nothing there (a symlink or a file is not the directory named)
            raise _os_error(exc, path) from None
        try:
            if expect is None:
                _rmtree_at(dir_fd, parts[-1])
                return []
            kept: list[str] = []
            self._delete_expected(dir_fd, parts[-1], path, "", expect, kept)
            return kept
        except OSError as exc:
            raise _os_error(exc, path) from None
        finally:
            os.close(dir_fd)

    def _delete_expected(
        self, dir_fd: int, name: str, path: str, rel: str, expect: dict[str, Any], kept: list[str]
    ) -> None:
        kind, _ = _state(dir_fd, name)
        wanted = expect.get(rel)
        if kind == "absent":
            return
        if kind == "directory" and wanted == "directory":
            child_fd = os.open(name, _DIR, dir_fd=dir_fd)
            try:
                for child in sorted(os.listdir(child_fd)):
                    child_rel = f"{rel}/{child}" if rel else child
                    self._delete_expected(child_fd, child, path, child_rel, expect, kept)
            finally:
                os.close(child_fd)
            try:
                os.rmdir(name, dir_fd=dir_fd)
            except OSError:
                pass  # something was kept inside
            return
        if kind == "file" and isinstance(wanted, str):
            fd = os.open(name, _READ, dir_fd=dir_fd)
            try:
                data = _read_fd(fd, HASH_LIMIT)
            finally:
                os.close(fd)
            if data is not None and sha256_hex(data) == wanted:
                os.unlink(name, dir_fd=dir_fd)
                return
        kept.append(display(f"{path}/{rel}" if rel else path))

    def materialize(self, entries: Iterable[tuple[str, str, bytes | None]]) -> None:
        """Write directories and files (in the given order) into the workspace."""
        for path, kind, content in entries:
            if kind == "directory":
                self.make_directory(path)
            else:
                self.write(path, content or b"", None)

    # -- scanning ------------------------------------------------------------------------

    def usage(self) -> dict[str, int]:
        try:
            fs = os.statvfs(self.root)
        except OSError:
            return {"total_bytes": 0, "free_bytes": 0}
        return {"total_bytes": fs.f_blocks * fs.f_frsize, "free_bytes": fs.f_bavail * fs.f_frsize}
