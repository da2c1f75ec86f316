"""Workspaces: a session IS a workspace, and PostgreSQL holds the durable copy of its files."""

from piccolo.columns import (
    JSONB,
    UUID,
    Boolean,
    Bytea,
    ForeignKey,
    Integer,
    OnDelete,
    Serial,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.table import Table

from shared.tables.accounts import User


class Session(Table, tablename="sessions"):
    id = UUID(primary_key=True)
    user_id = ForeignKey(references=User, on_delete=OnDelete.cascade, null=False, index=True)
    name = Varchar(length=255)
    language = Varchar(length=32, default="python")
    is_active = Boolean(default=True)
    created_at = Timestamptz()
    updated_at = Timestamptz()
    # What the last sync from the execution environment could not bring back, and when it ran.
    sync_skipped = JSONB(default="[]")
    last_synced_at = Timestamptz(null=True, default=None)
    # Last time any replica had a terminal attached: the idle reaper of every replica reads it.
    terminal_seen_at = Timestamptz(null=True, default=None)
    # Why the last sync from the environment failed (NULL once one succeeds), and when.
    sync_error = Text(null=True, default=None)
    sync_failed_at = Timestamptz(null=True, default=None)
    # Paths where the environment and the database both changed: [{path, kept_as}].
    sync_conflicts = JSONB(default="[]")


class WorkspaceFile(Table, tablename="workspace_files"):
    """A file or directory of a workspace; (session_id, path) is unique (see the migration)."""

    id = Serial(primary_key=True)
    session_id = ForeignKey(references=Session, on_delete=OnDelete.cascade, null=False)
    path = Varchar(length=1024)
    type = Varchar(length=16, default="file")  # "file" | "directory"
    content = Bytea(null=True, default=None)
    size = Integer(default=0)
    sha256 = Varchar(length=64, null=True, default=None)
    version = Integer(default=1)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class EnvironmentFile(Table, tablename="environment_files"):
    """What a running environment held at the last agreement with the database (its
    materialization, the last sync or push): the base of the three-way sync. (session_id,
    path) is unique; rows go when the environment stops."""

    id = Serial(primary_key=True)
    session_id = ForeignKey(references=Session, on_delete=OnDelete.cascade, null=False)
    path = Varchar(length=1024)
    type = Varchar(length=16)
    sha256 = Varchar(length=64, null=True, default=None)
