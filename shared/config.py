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


@attrs.frozen
class Settings:
    database_url: str | None = None
    data_dir: Path = PROJECT_ROOT / ".data"
    db_pool_min: int = 2
    db_pool_max: int = 16
    db_migrate_on_start: bool = True

    cors_origins: tuple[str, ...] = _list(DEFAULT_CORS_ORIGINS)
    cookie_name: str = "cep_token"
    cookie_secure: bool = False
    token_ttl_seconds: int = 7 * 24 * 3600

    login_max_failures: int = 5  # per username
    login_max_failures_per_address: int = 20
    login_window_seconds: int = 300
    register_max_per_address: int = 20
    register_window_seconds: int = 3600
    # CIDRs of the proxies whose X-Forwarded-For is believed; empty: the socket peer is the client
    trusted_proxies: tuple[str, ...] = ()
    password_hash_concurrency: int = 2  # argon2 hashes at once (64 MiB each)
    password_hash_queue: int = 32  # requests waiting for a hash slot before 503
    max_sessions_per_user: int = 100

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
            cors_origins=_list(env.get("CORS_ORIGINS", DEFAULT_CORS_ORIGINS)),
            cookie_name=env.get("AUTH_COOKIE_NAME", d.cookie_name),
            cookie_secure=_bool(env.get("COOKIE_SECURE", "false")),
            token_ttl_seconds=int(env.get("TOKEN_TTL_SECONDS", d.token_ttl_seconds)),
            login_max_failures=int(env.get("LOGIN_MAX_FAILURES", d.login_max_failures)),
            login_max_failures_per_address=int(
                env.get("LOGIN_MAX_FAILURES_PER_ADDRESS", d.login_max_failures_per_address)
            ),
            login_window_seconds=int(env.get("LOGIN_WINDOW_SECONDS", d.login_window_seconds)),
            register_max_per_address=int(
                env.get("REGISTER_MAX_PER_ADDRESS", d.register_max_per_address)
            ),
            register_window_seconds=int(
                env.get("REGISTER_WINDOW_SECONDS", d.register_window_seconds)
            ),
            trusted_proxies=_list(env.get("TRUSTED_PROXIES", "")),
            password_hash_concurrency=int(
                env.get("PASSWORD_HASH_CONCURRENCY", d.password_hash_concurrency)
            ),
            password_hash_queue=int(env.get("PASSWORD_HASH_QUEUE", d.password_hash_queue)),
            max_sessions_per_user=int(env.get("MAX_SESSIONS_PER_USER", d.max_sessions_per_user)),
            max_file_bytes=int(env.get("MAX_FILE_BYTES", d.max_file_bytes)),
            max_workspace_entries=int(env.get("MAX_WORKSPACE_ENTRIES", d.max_workspace_entries)),
            max_workspace_bytes=int(env.get("MAX_WORKSPACE_BYTES", d.max_workspace_bytes)),
            log_level=env.get("LOG_LEVEL", d.log_level),
        )


@cache
def get_settings() -> Settings:
    return Settings.from_env()
