"""What each running environment held at the last agreement with the database, and whether
the last sync of a workspace failed (kept until a sync succeeds)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

ID = "2026-11-26T15:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Environment baselines and sync failures"

STATEMENTS = (
    "CREATE TABLE environment_files ("
    " id SERIAL PRIMARY KEY,"
    " session_id UUID NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,"
    " path VARCHAR(1024) NOT NULL,"
    " type VARCHAR(16) NOT NULL,"
    " sha256 VARCHAR(64),"
    " CONSTRAINT environment_files_session_path_key UNIQUE (session_id, path))",
    "ALTER TABLE sessions ADD COLUMN sync_error TEXT",
    "ALTER TABLE sessions ADD COLUMN sync_failed_at TIMESTAMPTZ",
    "ALTER TABLE sessions ADD COLUMN sync_conflicts JSONB NOT NULL DEFAULT '[]'",
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
