"""The editor's save as one statement: the SQL function ``platform_save_file``
(``shared/file_save.py`` builds it from the platform's rules; this is its text as of this
migration, and test_file_save.py checks that the two agree)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

ID = "2026-11-26T16:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "The save function"

STATEMENT = """CREATE OR REPLACE FUNCTION platform_save_file(
    p_token_hash text, p_session uuid, p_path text, p_content bytea, p_sha256 text,
    p_now timestamptz, p_max_bytes bigint, p_lock bigint, p_check boolean, p_versions integer[],
    OUT outcome text, OUT file_version integer
) LANGUAGE plpgsql AS $body$
DECLARE
    v_user integer;
    v_reviewer boolean;
    v_owner integer;
    v_locked boolean;
BEGIN
    SELECT t.user_id, u.is_reviewer, s.user_id, pg_try_advisory_xact_lock(p_lock)
    INTO v_user, v_reviewer, v_owner, v_locked
    FROM login_tokens t JOIN users u ON u.id = t.user_id LEFT JOIN sessions s ON s.id = p_session
    WHERE t.token_hash = p_token_hash AND t.revoked_at IS NULL AND t.expires_at > now();
    IF NOT FOUND THEN
        outcome := 'unauthorized';
        RETURN;
    END IF;
    IF v_owner IS DISTINCT FROM v_user THEN
        IF v_owner IS NOT NULL AND (v_reviewer AND EXISTS (SELECT 1 FROM review_requests r
    WHERE r.session_id = p_session AND r.assigned_to = v_user
    AND r.status IN ('pending', 'in_review', 'requires_changes'))) THEN
            outcome := 'forbidden';
        ELSE
            outcome := 'not_found';
        END IF;
        RETURN;
    END IF;
    IF NOT v_locked THEN
        outcome := 'slow';
        RETURN;
    END IF;
    WITH saved AS (
        UPDATE workspace_files f
        SET content = p_content,
            size = octet_length(p_content),
            sha256 = p_sha256,
            version = f.version + 1,
            updated_at = p_now
        WHERE f.session_id = p_session AND f.path = p_path AND f.type = 'file'
          AND (NOT p_check OR p_versions IS NULL OR f.version = ANY (p_versions))
          AND (octet_length(p_content) <= f.size OR (
              SELECT coalesce(sum(w.size), 0) FROM workspace_files w WHERE w.session_id = p_session
          ) - f.size + octet_length(p_content) <= p_max_bytes)
        RETURNING f.version
    ), touched AS (
        UPDATE sessions SET updated_at = p_now WHERE sessions.id = p_session
          AND EXISTS (SELECT 1 FROM saved)
    )
    SELECT saved.version INTO file_version FROM saved;
    IF FOUND THEN
        outcome := 'saved';
        RETURN;
    END IF;
    SELECT f.version INTO file_version FROM workspace_files f
    WHERE f.session_id = p_session AND f.path = p_path;
    IF p_check AND (file_version IS NULL
                    OR NOT (p_versions IS NULL OR file_version = ANY (p_versions))) THEN
        outcome := 'precondition';
    ELSE
        outcome := 'slow';
        file_version := NULL;
    END IF;
END
$body$"""


class _Raw(Table):
    pass


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="platform", description=DESCRIPTION)

    async def install():
        await _Raw.raw(STATEMENT).run()

    manager.add_raw(install)
    return manager
