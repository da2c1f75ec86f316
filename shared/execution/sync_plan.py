"""The three-way merge of a workspace: the database, the environment, and their last agreement.

Pure: given what the database holds (D), what the environment holds (E, from a scan) and
what both held at their last agreement (B, the baseline), it says what goes where. Per path:

* neither changed since B: nothing;
* both changed to the same thing: they agree again (B moves, nothing is written);
* only the environment changed: its version goes to the database;
* only the database changed (an API write not yet in the environment): it is pushed in;
* both changed differently: the environment's version goes to the database and the
  database's displaced file is kept beside it (``<path>.conflict-<version>``), so neither
  side silently overwrites the other.

Paths under something the scan skipped (ignored, symlink, invalid name, too large ...) are
left alone on both sides: the environment holds something there the platform cannot see.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from shared.agent.paths import is_under, parents_of

Entry = tuple[str, str | None]  # ("file", sha256) | ("directory", None)


@attrs.frozen
class SyncPlan:
    to_db: dict[str, Entry | None]  # path -> the environment's entry (None: deleted there)
    conflicts: tuple[str, ...]  # paths of ``to_db`` whose database version must be kept aside
    agreed: dict[str, Entry | None]  # baseline updates where both sides already agree
    to_env: dict[str, Entry | None]  # path -> the database's entry to push (None: delete)

    @property
    def empty(self) -> bool:
        return not (self.to_db or self.agreed or self.to_env)


def _protected(path: str, roots: set[str]) -> bool:
    """``path`` is one of ``roots`` or inside one: a lookup per directory level, not a scan
    of every root per path (a shell can make a thousand skipped entries)."""
    return path in roots or any(parent in roots for parent in parents_of(path))


def plan_sync(
    db: Mapping[str, Entry],
    base: Mapping[str, Entry],
    env: Mapping[str, Entry],
    skipped: Iterable[str] = (),
) -> SyncPlan:
    roots = set(skipped)
    to_db: dict[str, Entry | None] = {}
    agreed: dict[str, Entry | None] = {}
    to_env: dict[str, Entry | None] = {}
    conflicts: list[str] = []
    for path in sorted(db.keys() | base.keys() | env.keys()):
        if roots and _protected(path, roots):
            continue
        d, b, e = db.get(path), base.get(path), env.get(path)
        env_changed, db_changed = e != b, d != b
        if not env_changed and not db_changed:
            continue
        if e == d:
            agreed[path] = e
        elif env_changed:
            to_db[path] = e
            if db_changed and d is not None and d[0] == "file":
                conflicts.append(path)
        else:
            to_env[path] = d
    # A directory deleted in the environment takes its subtree with it: pushing a file of
    # that subtree back (the database changed it meanwhile) would need the directory again.
    return SyncPlan(to_db, tuple(conflicts), agreed, _outermost_deletes(to_env))


def _outermost_deletes(to_env: dict[str, Entry | None]) -> dict[str, Entry | None]:
    """Deleting a directory deletes what is under it: keep only the outermost deletes."""
    deletes = sorted(p for p, entry in to_env.items() if entry is None)
    keep: dict[str, Entry | None] = {p: e for p, e in to_env.items() if e is not None}
    last: str | None = None
    for path in deletes:
        if last is not None and is_under(path, last):
            continue
        keep[path] = None
        last = path
    return dict(sorted(keep.items()))


def conflict_path(path: str, version: int, taken: Iterable[str]) -> str:
    """Where the database's displaced version of ``path`` is kept."""
    used = set(taken)
    candidate = f"{path}.conflict-{version}"
    counter = 2
    while candidate in used:
        candidate = f"{path}.conflict-{version}-{counter}"
        counter += 1
    return candidate


def subtree(entries: Mapping[str, Entry], root: str) -> dict[str, str]:
    """The delete manifest of ``root``: relative path -> sha256 or "directory"."""
    manifest: dict[str, str] = {}
    for path, (kind, digest) in entries.items():
        if is_under(path, root):
            rel = path[len(root) + 1 :] if path != root else ""
            manifest[rel] = "directory" if kind == "directory" else str(digest)
    return manifest
