"""What Piccolo's columns cannot say: composite and partial uniqueness, a composite index."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

ID = "2026-11-26T06:11:30:000000"
VERSION = "1.38.0"
DESCRIPTION = "Unique file path per workspace, one open review per workspace"

STATEMENTS = (
    "ALTER TABLE workspace_files ADD CONSTRAINT workspace_files_session_path_key "
    "UNIQUE (session_id, path)",
    # At most one pending/in_review/requires_changes review per workspace, even under races.
    "CREATE UNIQUE INDEX review_requests_one_open_per_session ON review_requests (session_id) "
    "WHERE status IN ('pending', 'in_review', 'requires_changes')",
    "CREATE INDEX login_failures_key_created ON login_failures (key, created_at)",
    "CREATE INDEX login_tokens_user ON login_tokens (user_id)",
)


class _Raw(Table):
    pass


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="platform", description=DESCRIPTION)

    async def run_statements():
        for statement in STATEMENTS:
            await _Raw.raw(statement).run()

    manager.add_raw(run_statements)
    return manager
