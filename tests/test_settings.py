"""The settings: every documented variable is read once, into its section, with its default;
a bad value stops the start with the variable named."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import Settings


def test_every_section_reads_its_variables() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://u@db/x",
            "DB_POOL_MIN": "0",
            "DB_POOL_MAX": "40",
            "DB_MIGRATE_ON_START": "false",
            "DB_STATEMENT_TIMEOUT": "2.5",
            "HOST": "0.0.0.0",
            "PORT": "9000",
            "ACCESS_LOG": "yes",
            "CORS_ORIGINS": "https://a.example, https://b.example",
            "AUTH_COOKIE_NAME": "sid",
            "COOKIE_SECURE": "true",
            "TRUSTED_PROXIES": "10.0.0.0/8",
            "OPENAPI_FILE": "/srv/openapi.json",
            "TOKEN_TTL_SECONDS": "60",
            "LOGIN_MAX_FAILURES": "3",
            "REGISTER_WINDOW_SECONDS": "10",
            "PASSWORD_HASH_QUEUE": "0",
            "PASSWORD_HASH_MEMORY_KIB": "2048",
            "PASSWORD_HASH_TIME_COST": "2",
            "MAX_FILE_BYTES": "100",
            "MAX_WORKSPACE_ENTRIES": "10",
            "MAX_WORKSPACE_BYTES": "1000",
            "MAX_SESSIONS_PER_USER": "7",
            "MAX_TERMINALS_PER_SESSION": "2",
            "SYNC_IGNORE": "",
            "LOG_LEVEL": "WARNING",
        }
    )
    database, http, auth = settings.database, settings.http, settings.auth
    assert (database.url, database.pool_min, database.pool_max) == ("postgresql://u@db/x", 0, 40)
    assert not database.migrate_on_start and database.statement_timeout == 2.5
    assert (http.host, http.port, http.access_log) == ("0.0.0.0", 9000, True)
    assert http.cors_origins == ("https://a.example", "https://b.example")
    assert (http.cookie_name, http.cookie_secure, http.trusted_proxies) == (
        "sid",
        True,
        ("10.0.0.0/8",),
    )
    assert http.openapi_file == Path("/srv/openapi.json")
    assert (auth.token_ttl_seconds, auth.login_max_failures, auth.register_window_seconds) == (
        60,
        3,
        10,
    )
    assert auth.password_hash_queue == 0
    assert (auth.password_hash_memory_kib, auth.password_hash_time_cost) == (2048, 2)
    workspace = settings.workspace
    assert (workspace.max_file_bytes, workspace.max_entries, workspace.max_bytes) == (100, 10, 1000)
    assert (settings.quotas.sessions_per_user, settings.quotas.terminals_per_session) == (7, 2)
    assert settings.execution.sync_ignore == ()  # set but empty: nothing is ignored
    assert settings.log_level == "warning"


def test_unset_and_empty_variables_take_the_defaults() -> None:
    assert Settings.from_env({}) == Settings()
    assert Settings.from_env({"MAX_FILE_BYTES": "", "COOKIE_SECURE": " "}) == Settings()
    assert Settings().workspace.max_file_bytes == 1024 * 1024
    assert Settings().http.cors_origins[0] == "http://localhost:3000"
    # argon2id at RFC 9106's low-memory profile unless told otherwise.
    auth = Settings().auth
    assert (auth.password_hash_memory_kib, auth.password_hash_time_cost) == (65536, 3)


def test_data_dir_is_where_the_sandboxes_live_unless_execution_root_says_otherwise() -> None:
    assert Settings.from_env({"DATA_DIR": "/srv/cep"}).execution.sandbox.root == Path(
        "/srv/cep/sandboxes"
    )
    settings = Settings.from_env({"DATA_DIR": "/srv/cep", "EXECUTION_ROOT": "/mnt/s"})
    assert settings.data_dir == Path("/srv/cep") and settings.execution.sandbox.root == Path(
        "/mnt/s"
    )


@pytest.mark.parametrize(
    "env",
    [
        {"DB_POOL_MAX": "many"},
        {"DB_POOL_MIN": "20", "DB_POOL_MAX": "10"},
        {"DB_CONNECT_TIMEOUT": "0"},
        {"PORT": "70000"},
        {"COOKIE_SECURE": "maybe"},
        {"TOKEN_TTL_SECONDS": "0"},
        {"MAX_WORKSPACE_BYTES": "-1"},
        {"LOG_LEVEL": "loud"},
        {"SANDBOX_CPU_LIMIT": "-1"},
        {"PASSWORD_HASH_MEMORY_KIB": "64"},
    ],
)
def test_a_bad_value_names_its_variable(env: dict[str, str]) -> None:
    name = next(iter(env)) if len(env) == 1 else "DB_POOL_MIN"
    with pytest.raises(ValueError, match=name):
        Settings.from_env(env)
