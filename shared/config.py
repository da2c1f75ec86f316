"""Configuration: one attrs class read from the environment, with safe defaults.

Every variable is documented in the README's configuration table.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path

import attrs

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_CORS_ORIGINS = (
    "http://localhost:3000,http://localhost:3001,http://localhost:3002,"
    "http://127.0.0.1:3000,http://127.0.0.1:3001,http://127.0.0.1:3002"
)


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _list(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.replace(",", " ").split() if part.strip())


def _seconds(value: str | None, default: float) -> float:
    """A positive number of seconds; unset or empty means the default."""
    if value is None or not value.strip():
        return default
    seconds = float(value)
    if seconds <= 0:
        raise ValueError(f"a timeout must be positive, got {value!r}")
    return seconds


@attrs.frozen
class Settings:
    database_url: str | None = None
    data_dir: Path = PROJECT_ROOT / ".data"
    db_pool_min: int = 2
    db_pool_max: int = 16
    db_migrate_on_start: bool = True
    # Bounds on every wait for the database, in seconds: a stalled server is a 503, not a hang.
    db_connect_timeout: float = 5.0
    db_acquire_timeout: float = 5.0
    db_statement_timeout: float = 5.0

    cors_origins: tuple[str, ...] = _list(DEFAULT_CORS_ORIGINS)
    cookie_name: str = "cep_token"
    cookie_secure: bool = False
    token_ttl_seconds: int = 7 * 24 * 3600

    login_max_failures: int = 5  # per username
    login_max_failures_per_address: int = 20
    login_window_seconds: int = 300
    trust_proxy_headers: bool = False  # take the client address from X-Forwarded-For

    max_file_bytes: int = 1024 * 1024
    max_workspace_entries: int = 2000
    max_workspace_bytes: int = 50 * 1024 * 1024

    log_level: str = "info"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        d = cls()
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            data_dir=Path(env.get("DATA_DIR", str(d.data_dir))),
            db_pool_min=int(env.get("DB_POOL_MIN", d.db_pool_min)),
            db_pool_max=int(env.get("DB_POOL_MAX", d.db_pool_max)),
            db_migrate_on_start=_bool(env.get("DB_MIGRATE_ON_START", "true")),
            db_connect_timeout=_seconds(env.get("DB_CONNECT_TIMEOUT"), d.db_connect_timeout),
            db_acquire_timeout=_seconds(env.get("DB_ACQUIRE_TIMEOUT"), d.db_acquire_timeout),
            db_statement_timeout=_seconds(env.get("DB_STATEMENT_TIMEOUT"), d.db_statement_timeout),
            cors_origins=_list(env.get("CORS_ORIGINS", DEFAULT_CORS_ORIGINS)),
            cookie_name=env.get("AUTH_COOKIE_NAME", d.cookie_name),
            cookie_secure=_bool(env.get("COOKIE_SECURE", "false")),
            token_ttl_seconds=int(env.get("TOKEN_TTL_SECONDS", d.token_ttl_seconds)),
            login_max_failures=int(env.get("LOGIN_MAX_FAILURES", d.login_max_failures)),
            login_max_failures_per_address=int(
                env.get("LOGIN_MAX_FAILURES_PER_ADDRESS", d.login_max_failures_per_address)
            ),
            trust_proxy_headers=_bool(env.get("TRUST_PROXY_HEADERS", "false")),
            login_window_seconds=int(env.get("LOGIN_WINDOW_SECONDS", d.login_window_seconds)),
            max_file_bytes=int(env.get("MAX_FILE_BYTES", d.max_file_bytes)),
            max_workspace_entries=int(env.get("MAX_WORKSPACE_ENTRIES", d.max_workspace_entries)),
            max_workspace_bytes=int(env.get("MAX_WORKSPACE_BYTES", d.max_workspace_bytes)),
            log_level=env.get("LOG_LEVEL", d.log_level),
        )


@cache
def get_settings() -> Settings:
    return Settings.from_env()
