"""The three-way merge of a workspace (``shared.execution.sync_plan``), without an
environment: every case of the table of the database (D), the environment (E) and their last
agreement (B), the paths a scan skipped, and the names of displaced files and delete
manifests. How a sync then applies the plan is in test_terminal_ws.py and test_restart.py."""

from __future__ import annotations

import pytest

from shared.execution.sync_plan import Entry, SyncPlan, conflict_path, plan_sync, subtree

OLD: Entry = ("file", "old")
NEW: Entry = ("file", "new")
OTHER: Entry = ("file", "other")
DIR: Entry = ("directory", None)


def plan_one(d: Entry | None, b: Entry | None, e: Entry | None) -> SyncPlan:
    """The plan for one path "p", with each side holding the given entry (None: absent)."""
    d_side, b_side, e_side = ({} if x is None else {"p": x} for x in (d, b, e))
    return plan_sync(d_side, b_side, e_side)


@pytest.mark.parametrize(
    ("d", "b", "e"),
    [(OLD, OLD, OLD), (DIR, DIR, DIR)],
    ids=["file unchanged", "directory unchanged"],
)
def test_nothing_changed_nothing_to_do(d: Entry, b: Entry, e: Entry) -> None:
    assert plan_one(d, b, e).empty


@pytest.mark.parametrize(
    ("d", "b", "e"),
    [(OLD, OLD, NEW), (None, None, NEW), (OLD, OLD, None), (OLD, OLD, DIR), (DIR, DIR, OLD)],
    ids=["edited", "created", "deleted", "file became directory", "directory became file"],
)
def test_a_change_made_only_in_the_environment_goes_to_the_database(
    d: Entry | None, b: Entry | None, e: Entry | None
) -> None:
    plan = plan_one(d, b, e)
    assert plan.to_db == {"p": e} and not plan.conflicts
    assert not plan.to_env and not plan.agreed


@pytest.mark.parametrize(
    ("d", "b", "e"),
    [(NEW, OLD, OLD), (NEW, None, None), (None, OLD, OLD), (DIR, None, None)],
    ids=["edited", "created", "deleted", "directory made"],
)
def test_a_change_made_only_through_the_api_is_pushed_into_the_environment(
    d: Entry | None, b: Entry | None, e: Entry | None
) -> None:
    plan = plan_one(d, b, e)
    assert plan.to_env == {"p": d}
    assert not plan.to_db and not plan.agreed and not plan.conflicts


@pytest.mark.parametrize(
    ("d", "b", "e"),
    [(NEW, OLD, NEW), (NEW, None, NEW), (None, OLD, None), (DIR, OLD, DIR)],
    ids=["same edit", "same file created", "deleted on both sides", "same directory"],
)
def test_the_same_change_on_both_sides_only_moves_the_baseline(
    d: Entry | None, b: Entry | None, e: Entry | None
) -> None:
    plan = plan_one(d, b, e)
    assert plan.agreed == {"p": e}
    assert not plan.to_db and not plan.to_env and not plan.conflicts


@pytest.mark.parametrize(
    ("d", "b", "e", "kept_aside"),
    [
        (NEW, OLD, OTHER, True),
        (NEW, None, OTHER, True),
        (NEW, OLD, None, True),
        (NEW, OLD, DIR, True),
        (None, OLD, NEW, False),
        (DIR, OLD, NEW, False),
        (DIR, None, NEW, False),
    ],
    ids=[
        "both edited",
        "both created",
        "deleted in the environment, edited through the api",
        "became a directory there, edited here",
        "deleted through the api, edited in the environment",
        "became a directory here, edited there",
        "a directory here, a new file there",
    ],
)
def test_different_changes_on_both_sides_keep_the_environments_and_never_lose_a_file(
    d: Entry | None, b: Entry | None, e: Entry | None, kept_aside: bool
) -> None:
    plan = plan_one(d, b, e)
    assert plan.to_db == {"p": e}  # the environment's version wins in the database...
    assert plan.conflicts == (("p",) if kept_aside else ())  # ...and a displaced FILE is kept
    assert not plan.to_env and not plan.agreed


def test_paths_under_what_the_scan_skipped_are_left_alone_on_both_sides() -> None:
    db = {"big": NEW, "node_modules": DIR, "node_modules/x.js": NEW, "src": DIR, "src/a.py": NEW}
    base = {"big": OLD, "src": DIR, "src/a.py": OLD}
    env = {"src": DIR, "src/a.py": OLD}
    plan = plan_sync(db, base, env, skipped=["big", "node_modules"])
    assert plan.to_env == {"src/a.py": NEW}  # only what the scan could see
    assert not plan.to_db and not plan.agreed


def test_a_directory_deleted_through_the_api_is_one_delete_in_the_environment() -> None:
    base = {"d": DIR, "d/a": OLD, "d/e": DIR, "d/e/b": OLD, "keep": OLD}
    env = dict(base)
    plan = plan_sync({"keep": OLD}, base, env)
    assert plan.to_env == {"d": None}


def test_pushes_come_in_path_order_so_parents_come_first() -> None:
    db = {"b": DIR, "b/x": NEW, "a": NEW}
    plan = plan_sync(db, {}, {})
    assert list(plan.to_env) == ["a", "b", "b/x"]


def test_a_displaced_file_is_kept_beside_the_path_under_a_free_name() -> None:
    assert conflict_path("src/a.py", 3, []) == "src/a.py.conflict-3"
    taken = ["src/a.py.conflict-3", "src/a.py.conflict-3-2"]
    assert conflict_path("src/a.py", 3, taken) == "src/a.py.conflict-3-3"


def test_a_delete_manifest_lists_the_subtree_relative_to_its_root() -> None:
    entries = {"d": DIR, "d/a": OLD, "d/e": DIR, "d/e/b": NEW, "dx": OLD, "other": NEW}
    assert subtree(entries, "d") == {"": "directory", "a": "old", "e": "directory", "e/b": "new"}
    assert subtree(entries, "d/a") == {"": "old"}
    assert subtree(entries, "missing") == {}
