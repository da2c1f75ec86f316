"""File operations on a sandbox's host directory that a sandboxed user cannot turn against the host.

The server touches the session directory with more rights than the sandbox (often as root)
while the user inside can plant symlinks, FIFOs or odd names there at any moment. So every
path is walked component by component from a directory fd with ``O_NOFOLLOW``, files are
opened non-blocking and checked to be regular, and nothing ever follows a symlink. The scan
caches digests by (inode, size, mtime) so rescanning an unchanged tree hashes nothing.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

from shared.execution.base import ScannedEntry, ScanResult, WorkspaceEntry

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_SKIPPED_REPORTED = 1000
MAX_PATH_BYTES = 1024
MAX_DEPTH = 32


class UnsafePath(Exception):
    """A component of the path is a symlink or not a directory; nothing was done."""


def _parts(path: str) -> list[str]:
    parts = path.split("/")
    if not path or any(p in ("", ".", "..") for p in parts):
        raise UnsafePath(path)
    return parts


class WorkspaceDir:
    """One session's host directory, with the host uid that owns what the sandbox sees."""

    def __init__(self, root: Path, owner_uid: int | None) -> None:
        self.root = root
        self.owner_uid = owner_uid
        # rel path -> (inode, size, mtime_ns, sha256)
        self._digests: dict[str, tuple[int, int, int, str]] = {}

    def _chown(self, fd: int) -> None:
        if self.owner_uid is not None:
            os.fchown(fd, self.owner_uid, self.owner_uid)

    def _open_parent(self, parts: list[str], create: bool) -> int:
        """An fd of the directory holding ``parts[-1]``, walking without following links."""
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            for name in parts[:-1]:
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(name, 0o755, dir_fd=fd)
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                    self._chown(child)
                except OSError as exc:  # ELOOP: a symlink; ENOTDIR: a file in the way
                    raise UnsafePath("/".join(parts)) from exc
                os.close(fd)
                fd = child
            return fd
        except BaseException:
            os.close(fd)
            raise

    # -- whole tree ------------------------------------------------------------------------

    def reset(self, files: Iterable[WorkspaceEntry]) -> None:
        """Wipe the directory and materialize ``files`` into it."""
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, mode=0o755)
        root_fd = os.open(self.root, _DIR_FLAGS)
        try:
            self._chown(root_fd)
        finally:
            os.close(root_fd)
        self._digests.clear()
        for entry in files:
            if entry.type == "directory":
                self.make_directory(entry.path)
            else:
                self.write_file(entry.path, entry.content or b"")

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        self._digests.clear()

    # -- single paths ----------------------------------------------------------------------

    def write_file(self, path: str, content: bytes) -> None:
        parts = _parts(path)
        dir_fd = self._open_parent(parts, create=True)
        try:
            name = parts[-1]
            mode = 0o644
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                if stat.S_ISREG(st.st_mode):
                    mode = stat.S_IMODE(st.st_mode)  # keep an executable bit set in the shell
                elif stat.S_ISDIR(st.st_mode):
                    _rmtree_at(dir_fd, name)
            except FileNotFoundError:
                pass
            tmp = f".{name[:200]}.{os.getpid()}.tmp"
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
            fd = os.open(tmp, flags, mode, dir_fd=dir_fd)
            try:
                self._chown(fd)
                os.fchmod(fd, mode)
                view = memoryview(content)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            # rename replaces a symlink or file atomically and never follows it
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        finally:
            os.close(dir_fd)

    def make_directory(self, path: str) -> None:
        parts = _parts(path)
        dir_fd = self._open_parent(parts + ["x"], create=True)
        os.close(dir_fd)

    def delete_path(self, path: str) -> None:
        parts = _parts(path)
        try:
            dir_fd = self._open_parent(parts, create=False)
        except (FileNotFoundError, UnsafePath):
            return
        try:
            _rmtree_at(dir_fd, parts[-1])
        finally:
            os.close(dir_fd)

    def read_files(self, paths: Sequence[str], max_bytes: int) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for path in paths:
            try:
                dir_fd = self._open_parent(_parts(path), create=False)
            except (FileNotFoundError, UnsafePath):
                continue
            try:
                fd = os.open(path.rsplit("/", 1)[-1], _READ_FLAGS, dir_fd=dir_fd)
            except OSError:  # vanished, became a symlink (ELOOP), ...
                continue
            finally:
                os.close(dir_fd)
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode) or st.st_size > max_bytes:
                    continue
                os.set_blocking(fd, True)
                chunks = []
                remaining = max_bytes + 1
                while remaining > 0:
                    chunk = os.read(fd, min(remaining, 1 << 20))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    remaining -= len(chunk)
                data = b"".join(chunks)
                if len(data) <= max_bytes:
                    out[path] = data
            finally:
                os.close(fd)
        return out

    # -- scan ------------------------------------------------------------------------------

    def scan(self, ignore: Sequence[str], max_file_bytes: int, max_entries: int) -> ScanResult:
        dir_names = {p[:-1] for p in ignore if p.endswith("/")}
        globs = [p for p in ignore if not p.endswith("/")]
        entries: list[ScannedEntry] = []
        skipped: list[tuple[str, str]] = []
        seen: set[str] = set()

        def skip(path: str, reason: str) -> None:
            if len(skipped) < MAX_SKIPPED_REPORTED:
                skipped.append((path, reason))

        def walk(dir_fd: int, prefix: str, depth: int) -> None:
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
                    continue
                if not _valid_name(path, depth):
                    skip(path, "invalid path")
                    continue
                if stat.S_ISLNK(st.st_mode):
                    skip(path, "symlink")
                    continue
                if not (is_dir or stat.S_ISREG(st.st_mode)):
                    skip(path, "special file")
                    continue
                if len(entries) >= max_entries:
                    skip(path, "too many entries")
                    continue
                if is_dir:
                    entries.append(ScannedEntry(path=path, type="directory"))
                    try:
                        child = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
                    except OSError:
                        continue
                    try:
                        walk(child, path + "/", depth + 1)
                    finally:
                        os.close(child)
                    continue
                if st.st_size > max_file_bytes:
                    skip(path, "too large")
                    continue
                digest = self._digest(dir_fd, name, path, st)
                if digest is None:
                    continue
                seen.add(path)
                entries.append(ScannedEntry(path=path, type="file", size=st.st_size, sha256=digest))

        try:
            root_fd = os.open(self.root, _DIR_FLAGS)
        except FileNotFoundError:
            return ScanResult(entries=())
        try:
            walk(root_fd, "", 1)
        finally:
            os.close(root_fd)
        for gone in self._digests.keys() - seen:
            del self._digests[gone]
        return ScanResult(entries=tuple(entries), skipped=tuple(skipped))

    def _digest(self, dir_fd: int, name: str, path: str, st: os.stat_result) -> str | None:
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        cached = self._digests.get(path)
        if cached is not None and cached[:3] == key:
            return cached[3]
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
        except OSError:
            return None
        try:
            fst = os.fstat(fd)
            if not stat.S_ISREG(fst.st_mode):
                return None
            os.set_blocking(fd, True)
            h = hashlib.sha256()
            while chunk := os.read(fd, 1 << 20):
                h.update(chunk)
        finally:
            os.close(fd)
        digest = h.hexdigest()
        # Key by the stat taken before hashing: a write racing the hash changes mtime and
        # forces a rehash next time instead of caching a stale digest.
        self._digests[path] = (*key, digest)
        return digest


def _valid_name(path: str, depth: int) -> bool:
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes surfaced as surrogates
        return False
    if len(encoded) > MAX_PATH_BYTES or depth > MAX_DEPTH or "\\" in path:
        return False
    name = path.rsplit("/", 1)[-1]
    return len(name.encode()) <= 255 and not any(ord(c) < 32 or ord(c) == 127 for c in name)


def _rmtree_at(dir_fd: int, name: str) -> None:
    """Remove ``name`` in ``dir_fd``: a file, a symlink (not its target) or a whole tree."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)  # the fd-based variant: never follows symlinks
    else:
        os.unlink(name, dir_fd=dir_fd)
