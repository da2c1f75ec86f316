"""Moving files in and out of an execution pod: tar archives and the scan script.

Pure functions; the backend sends what they build over exec and parses what comes back.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Iterable, Sequence

from shared.execution.base import ExecutionError, ScannedEntry, ScanResult, WorkspaceEntry

WORKSPACE = "/workspace"
# GNU tar stops at the end-of-archive blocks, so extraction also works on the v4 exec
# protocol, which has no way to close stdin.
EXTRACT_COMMAND = ["tar", "-x", "-m", "--no-same-owner", "--no-overwrite-dir", "-f", "-",
                   "-C", WORKSPACE]  # fmt: skip
MAX_ARGV_BYTES = 64 * 1024  # paths per `tar -c`, well below ARG_MAX and URL length limits
MAX_SKIPPED_REPORTED = 1000


def check_relative(path: str) -> str:
    """A last guard: the callers validate paths, but nothing here may leave /workspace."""
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"not a relative workspace path: {path!r}")
    return path


def build_tar(entries: Iterable[WorkspaceEntry]) -> bytes:
    """An archive of ``entries`` (directories and files, parents implied)."""
    buffer = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for entry in entries:
            info = tarfile.TarInfo(check_relative(entry.path))
            info.mtime = now
            if entry.type == "directory":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                archive.addfile(info)
            else:
                content = entry.content or b""
                info.size, info.mode = len(content), 0o644
                archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def read_tar(data: bytes) -> dict[str, bytes]:
    """Regular files in an archive made by ``tar -c``, by path."""
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
        for member in archive:
            if member.isreg():
                extracted = archive.extractfile(member)
                if extracted is not None:
                    files[member.name.removeprefix("./")] = extracted.read()
    return files


def read_commands(paths: Sequence[str]) -> list[list[str]]:
    """``tar -c`` commands for ``paths``, batched to keep each command line small; a path
    that vanished is a warning (--ignore-failed-read), not a failure."""
    base = ["tar", "-c", "-f", "-", "--no-recursion", "--ignore-failed-read", "-C", WORKSPACE,
            "--"]  # fmt: skip
    commands: list[list[str]] = []
    batch: list[str] = []
    size = 0
    for path in paths:
        check_relative(path)
        if batch and size + len(path.encode()) > MAX_ARGV_BYTES:
            commands.append(base + batch)
            batch, size = [], 0
        batch.append(path)
        size += len(path.encode()) + 1
    if batch:
        commands.append(base + batch)
    return commands


# Runs inside the pod with python3 (the execution image has it): walks /workspace without
# following symlinks, honours ignore names and the limits, prints one JSON document. The
# rules and skip reasons are the local backend's (local_files.WorkspaceDir.scan).
SCAN_SCRIPT = r"""
import fnmatch, hashlib, json, os, stat, sys
root = "/workspace"
ignore, max_bytes, max_entries = json.loads(sys.argv[1])
dir_names = {p[:-1] for p in ignore if p.endswith("/")}
globs = [p for p in ignore if not p.endswith("/")]
entries, skipped = [], []
def valid(path, depth):
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    if len(encoded) > 1024 or depth > 32 or "\\" in path:
        return False
    name = path.rsplit("/", 1)[-1]
    return len(name.encode()) <= 255 and not any(ord(c) < 32 or ord(c) == 127 for c in name)
def digest(path):
    h, size = hashlib.sha256(), 0
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError("not a regular file")
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()
def walk(rel, depth):
    try:
        names = sorted(os.listdir(os.path.join(root, rel) if rel else root))
    except OSError:
        return
    for name in names:
        path = rel + "/" + name if rel else name
        full = os.path.join(root, path)
        try:
            st = os.lstat(full)
        except OSError:
            continue
        is_dir = stat.S_ISDIR(st.st_mode)
        if (is_dir and name in dir_names) or any(
            fnmatch.fnmatchcase(name, g) or fnmatch.fnmatchcase(path, g) for g in globs
        ):
            skipped.append([path, "ignored"])
        elif not valid(path, depth):
            skipped.append([path.encode("utf-8", "replace").decode(), "invalid path"])
        elif stat.S_ISLNK(st.st_mode):
            skipped.append([path, "symlink"])
        elif not (is_dir or stat.S_ISREG(st.st_mode)):
            skipped.append([path, "special file"])
        elif len(entries) >= max_entries:
            skipped.append([path, "too many entries"])
        elif is_dir:
            entries.append([path, "directory", 0, None])
            walk(path, depth + 1)
        elif st.st_size > max_bytes:
            skipped.append([path, "too large"])
        else:
            try:
                size, hexdigest = digest(full)
            except OSError:
                continue
            if size > max_bytes:
                skipped.append([path, "too large"])
            else:
                entries.append([path, "file", size, hexdigest])
walk("", 1)
limit = int(os.environ.get("SCAN_MAX_SKIPPED", "1000"))
unlisted = max(0, len(skipped) - limit)
json.dump({"entries": entries, "skipped": skipped[:limit], "unlisted": unlisted}, sys.stdout)
"""


def scan_command(ignore: Sequence[str], max_file_bytes: int, max_entries: int) -> list[str]:
    arguments = json.dumps([list(ignore), int(max_file_bytes), int(max_entries)])
    return ["env", f"SCAN_MAX_SKIPPED={MAX_SKIPPED_REPORTED}", "python3", "-c", SCAN_SCRIPT,
            arguments]  # fmt: skip


def parse_scan(output: bytes) -> ScanResult:
    try:
        document = json.loads(output)
        entries = tuple(
            ScannedEntry(path=p, type=t, size=s, sha256=h) for p, t, s, h in document["entries"]
        )
        skipped = [(str(p), str(r)) for p, r in document["skipped"]]
        unlisted = int(document.get("unlisted", 0))
    except (ValueError, KeyError, TypeError) as exc:
        raise ExecutionError("The workspace scan returned something unexpected.") from exc
    if unlisted:
        skipped.append(("...", f"{unlisted} more skipped entries not listed"))
    return ScanResult(entries=entries, skipped=tuple(skipped))
