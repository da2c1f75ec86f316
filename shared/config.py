"""Configuration: one attrs ``Settings`` of sections, read once from the environment.

``Settings.from_env()`` parses every variable (each documented in the README's configuration
tables) through one reader, ``_Env``, so a bad value fails at start with its variable named.
The app factory reads it once and injects it (the ``settings`` dependency); ``get_settings``
is for that factory and the command-line entry points only.

Sections: ``database``, ``http`` (listening, CORS, the cookie, proxies, the front door's
OpenAPI file), ``auth`` (tokens, login and registration limits, the hashing pool), ``workspace``
(file, entry and byte limits), ``quotas`` (what one user may hold at once) and ``execution``
(the backend, syncs, the local sandbox and its limits; the Kubernetes backend's section goes
next to ``sandbox``).
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import TypeVar

import attrs

from shared.execution.sandbox_limits import SandboxLimits
from shared.execution.sandbox_limits_detect import DEFAULT_PARENT
from shared.execution.sandbox_limits_uid import DEFAULT_LEASE_DIR

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_CORS_ORIGINS = (
    "http://localhost:3000,http://localhost:3001,http://localhost:3002,"
    "http://127.0.0.1:3000,http://127.0.0.1:3001,http://127.0.0.1:3002"
)
DEFAULT_SYNC_IGNORE = (".venv/", "__pycache__/", "node_modules/", ".git/")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
N = TypeVar("N", int, float)
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _list(value: str) -> tuple[str, ...]:
    return tuple(part for part in value.replace(",", " ").split() if part)


class _Env:
    """Typed reads of environment variables with defaults; a bad value names its variable.

    Unset and empty are the same (the default), except for lists, where an empty value is
    an empty list."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def raw(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def str(self, name: str, default: str, choices: tuple[str, ...] = ()) -> str:
        value = self.raw(name) or default
        if choices:
            value = value.lower()
            if value not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value

    def path(self, name: str, default: Path | None) -> Path | None:
        raw = self.raw(name)
        return Path(raw) if raw else default

    def _parse(self, name: str, kind: type[N], what: str) -> N | None:
        raw = self.raw(name)
        if raw is None:
            return None
        try:
            return kind(raw)
        except ValueError:
            raise ValueError(f"{name} must be {what}, got {raw!r}") from None

    def int(self, name: str, default: int, minimum: int = 1, maximum: int | None = None) -> int:
        value = self._parse(name, builtins.int, "an integer")
        if value is None:
            return default
        if maximum is not None and not minimum <= value <= maximum:
            raise ValueError(f"{name} must be between {minimum} and {maximum}, got {value}")
        if value < minimum:
            raise ValueError(f"{name} must be at least {minimum}, got {value}")
        return value

    def float(
        self,
        name: str,
        default: float,
        minimum: float = 0.0,
        maximum: float | None = None,
        *,
        inclusive: bool = False,
    ) -> float:
        """A number above ``minimum`` (or equal to it, with ``inclusive``), at most
        ``maximum``."""
        value = self._parse(name, builtins.float, "a number")
        if value is None:
            return default
        low_ok = value >= minimum if inclusive else value > minimum
        if not low_ok or (maximum is not None and value > maximum):
            low = f"at least {minimum:g}" if inclusive else f"greater than {minimum:g}"
            high = f" and at most {maximum:g}" if maximum is not None else ""
            raise ValueError(f"{name} must be {low}{high}, got {value:g}")
        return value

    def bool(self, name: str, default: bool) -> bool:
        raw = self.raw(name)
        if raw is None:
            return default
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ValueError(f"{name} must be true or false, got {raw!r}")

    def list(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.env.get(name)
        return default if value is None else _list(value)


@attrs.frozen
class DatabaseSettings:
    """Where PostgreSQL is and how long any wait for it may take (a stalled server is a 503)."""

    url: str | None = None  # DATABASE_URL; None: the embedded server under DATA_DIR
    pool_min: int = 2  # DB_POOL_MIN
    pool_max: int = 16  # DB_POOL_MAX
    migrate_on_start: bool = True  # DB_MIGRATE_ON_START
    connect_timeout: float = 5.0  # DB_CONNECT_TIMEOUT, seconds
    acquire_timeout: float = 5.0  # DB_ACQUIRE_TIMEOUT
    statement_timeout: float = 5.0  # DB_STATEMENT_TIMEOUT

    @classmethod
    def read(cls, env: _Env) -> DatabaseSettings:
        pool_min, pool_max = env.int("DB_POOL_MIN", 2, minimum=0), env.int("DB_POOL_MAX", 16)
        if pool_min > pool_max:
            raise ValueError(f"DB_POOL_MIN ({pool_min}) must not exceed DB_POOL_MAX ({pool_max})")
        return cls(
            url=env.raw("DATABASE_URL"),
            pool_min=pool_min,
            pool_max=pool_max,
            migrate_on_start=env.bool("DB_MIGRATE_ON_START", True),
            connect_timeout=env.float("DB_CONNECT_TIMEOUT", 5.0),
            acquire_timeout=env.float("DB_ACQUIRE_TIMEOUT", 5.0),
            statement_timeout=env.float("DB_STATEMENT_TIMEOUT", 5.0),
        )


@attrs.frozen
class HttpSettings:
    """The web layer: where ``make run`` listens, CORS, the login cookie, trusted proxies,
    and the front door's baked OpenAPI document. (``IDE_DIST_DIR`` is read by
    ``ingress/ide.py`` itself: the web image carries the standard library only.)"""

    host: str = "127.0.0.1"  # HOST
    port: int = 8002  # PORT
    access_log: bool = False  # ACCESS_LOG
    cors_origins: tuple[str, ...] = _list(DEFAULT_CORS_ORIGINS)  # CORS_ORIGINS
    cookie_name: str = "cep_token"  # AUTH_COOKIE_NAME
    cookie_secure: bool = False  # COOKIE_SECURE
    # TRUSTED_PROXIES: CIDRs whose X-Forwarded-For is believed; empty: the peer is the client
    trusted_proxies: tuple[str, ...] = ()
    openapi_file: Path | None = None  # OPENAPI_FILE; None: merged at start

    @classmethod
    def read(cls, env: _Env) -> HttpSettings:
        return cls(
            host=env.str("HOST", "127.0.0.1"),
            port=env.int("PORT", 8002, minimum=0, maximum=65535),
            access_log=env.bool("ACCESS_LOG", False),
            cors_origins=env.list("CORS_ORIGINS", _list(DEFAULT_CORS_ORIGINS)),
            cookie_name=env.str("AUTH_COOKIE_NAME", "cep_token"),
            cookie_secure=env.bool("COOKIE_SECURE", False),
            trusted_proxies=env.list("TRUSTED_PROXIES", ()),
            openapi_file=env.path("OPENAPI_FILE", None),
        )


@attrs.frozen
class AuthSettings:
    """Login tokens, the limits on logins and registrations, and the password-hashing pool."""

    token_ttl_seconds: int = 7 * 24 * 3600  # TOKEN_TTL_SECONDS
    login_max_failures: int = 5  # LOGIN_MAX_FAILURES, per username
    login_max_failures_per_address: int = 20  # LOGIN_MAX_FAILURES_PER_ADDRESS
    login_window_seconds: int = 300  # LOGIN_WINDOW_SECONDS
    register_max_per_address: int = 20  # REGISTER_MAX_PER_ADDRESS
    register_window_seconds: int = 3600  # REGISTER_WINDOW_SECONDS
    # AUTH_REQUESTS_PER_SECOND / _BURST: account requests (register, login) per client
    # address, refused in memory past this before any work is done (shared/throttle.py)
    requests_per_second: float = 10.0
    requests_burst: float = 30.0
    password_hash_concurrency: int = 1  # PASSWORD_HASH_CONCURRENCY: argon2 at once (a core each)
    password_hash_queue: int = 32  # PASSWORD_HASH_QUEUE: waiting for a slot before 503
    # argon2id's cost for new hashes (RFC 9106's low-memory profile by default); a stored
    # hash keeps the cost it was made with, so lowering these never locks anybody out.
    password_hash_memory_kib: int = 65536  # PASSWORD_HASH_MEMORY_KIB
    password_hash_time_cost: int = 3  # PASSWORD_HASH_TIME_COST: passes over that memory

    @classmethod
    def read(cls, env: _Env) -> AuthSettings:
        return cls(
            token_ttl_seconds=env.int("TOKEN_TTL_SECONDS", 7 * 24 * 3600),
            login_max_failures=env.int("LOGIN_MAX_FAILURES", 5),
            login_max_failures_per_address=env.int("LOGIN_MAX_FAILURES_PER_ADDRESS", 20),
            login_window_seconds=env.int("LOGIN_WINDOW_SECONDS", 300),
            register_max_per_address=env.int("REGISTER_MAX_PER_ADDRESS", 20),
            register_window_seconds=env.int("REGISTER_WINDOW_SECONDS", 3600),
            requests_per_second=env.float("AUTH_REQUESTS_PER_SECOND", 10.0),
            requests_burst=env.float("AUTH_REQUESTS_BURST", 30.0, minimum=0.99),
            password_hash_concurrency=env.int("PASSWORD_HASH_CONCURRENCY", 1),
            password_hash_queue=env.int("PASSWORD_HASH_QUEUE", 32, minimum=0),
            password_hash_memory_kib=env.int("PASSWORD_HASH_MEMORY_KIB", 65536, 1024, 2**22),
            password_hash_time_cost=env.int("PASSWORD_HASH_TIME_COST", 3, 1, 100),
        )


@attrs.frozen
class WorkspaceSettings:
    """How much one workspace may hold (the API and the syncs both enforce it)."""

    max_file_bytes: int = 1024 * 1024  # MAX_FILE_BYTES
    max_entries: int = 2000  # MAX_WORKSPACE_ENTRIES: files and directories
    max_bytes: int = 50 * 1024 * 1024  # MAX_WORKSPACE_BYTES

    @classmethod
    def read(cls, env: _Env) -> WorkspaceSettings:
        return cls(
            max_file_bytes=env.int("MAX_FILE_BYTES", 1024 * 1024),
            max_entries=env.int("MAX_WORKSPACE_ENTRIES", 2000),
            max_bytes=env.int("MAX_WORKSPACE_BYTES", 50 * 1024 * 1024),
        )


@attrs.frozen
class QuotaSettings:
    """What one user may hold at once."""

    sessions_per_user: int = 100  # MAX_SESSIONS_PER_USER: workspaces owned
    environments_per_user: int = 3  # MAX_ENVIRONMENTS_PER_USER: running at once
    terminals_per_session: int = 8  # MAX_TERMINALS_PER_SESSION: WebSocket connections

    @classmethod
    def read(cls, env: _Env) -> QuotaSettings:
        return cls(
            sessions_per_user=env.int("MAX_SESSIONS_PER_USER", 100),
            environments_per_user=env.int("MAX_ENVIRONMENTS_PER_USER", 3),
            terminals_per_session=env.int("MAX_TERMINALS_PER_SESSION", 8),
        )


def read_sandbox_limits(env: _Env) -> SandboxLimits:
    """The host-side containment of every local sandbox (``SANDBOX_*``), each in its range;
    ``SandboxLimits`` itself checks how the values fit together."""
    return SandboxLimits(
        memory_mb=env.int("SANDBOX_MEMORY_MB", 1024, 16, 2**20),
        max_processes=env.int("SANDBOX_MAX_PROCESSES", 256, 8, 2**22),
        cpu_weight=env.int("SANDBOX_CPU_WEIGHT", 100, 1, 10000),
        cpu_limit=env.float("SANDBOX_CPU_LIMIT", 0.0, 0.0, 1024.0, inclusive=True),
        parent_cpu_weight=env.int("SANDBOX_PARENT_CPU_WEIGHT", 10, 1, 10000),
        total_memory_percent=env.int("SANDBOX_TOTAL_MEMORY_PERCENT", 75, 0, 100),
        total_processes=env.int("SANDBOX_TOTAL_PROCESSES", 0, 0, 2**22),
        workspace_mb=env.int("SANDBOX_WORKSPACE_MB", 1024, 16, 2**24),
        disk_min_free_mb=env.int("SANDBOX_DISK_MIN_FREE_MB", 2048, 0, 2**30),
        tmp_mb=env.int("SANDBOX_MAX_TMP_MB", 256, 1, 2**20),
        shm_mb=env.int("SANDBOX_SHM_MB", 64, 1, 2**20),
        host_uid_base=env.int("SANDBOX_HOST_UID_BASE", 0x70000000, 1000, 2**31 - 2),
        host_uid_count=env.int("SANDBOX_HOST_UID_COUNT", 65536, 1, 2**24),
        cgroup_parent=env.str("SANDBOX_CGROUP_PARENT", DEFAULT_PARENT),
        uid_lease_dir=env.path("SANDBOX_UID_LEASE_DIR", DEFAULT_LEASE_DIR),
    )


@attrs.frozen
class SandboxSettings:
    """The local backend: a bubblewrap sandbox with its agent per environment."""

    isolation: str = "bwrap"  # EXECUTION_SANDBOX: "bwrap" | "none" (unsandboxed, explicit)
    root: Path = PROJECT_ROOT / ".data" / "sandboxes"  # EXECUTION_ROOT, default DATA_DIR/...
    python: str = "/usr/bin/python3"  # SANDBOX_PYTHON: runs the agent inside the sandbox
    warm_spares: int = 1  # SANDBOX_WARM_SPARES: sandboxes kept ready for a fast first prompt
    max_memory_mb: int = 1024  # SANDBOX_MAX_MEMORY_MB: address space per process (rlimit)
    max_file_mb: int = 100  # SANDBOX_MAX_FILE_MB
    max_open_files: int = 1024  # SANDBOX_MAX_OPEN_FILES
    cpu_seconds: int = 3600  # SANDBOX_CPU_SECONDS, per process
    # The whole sandbox's cgroup, workspace volume, host uid and tmpfs sizes (SANDBOX_*).
    limits: SandboxLimits = attrs.field(factory=SandboxLimits)
    terminal_grace_seconds: float = 300.0  # TERMINAL_GRACE_SECONDS (the agent applies it)
    slow_viewer_seconds: float = 5.0  # TERMINAL_SLOW_CLIENT_SECONDS (likewise)

    @classmethod
    def read(cls, env: _Env, data_dir: Path) -> SandboxSettings:
        return cls(
            isolation=env.str("EXECUTION_SANDBOX", "bwrap", ("bwrap", "none")),
            root=env.path("EXECUTION_ROOT", None) or data_dir / "sandboxes",
            python=env.str("SANDBOX_PYTHON", "/usr/bin/python3"),
            warm_spares=env.int("SANDBOX_WARM_SPARES", 1, minimum=0),
            max_memory_mb=env.int("SANDBOX_MAX_MEMORY_MB", 1024),
            max_file_mb=env.int("SANDBOX_MAX_FILE_MB", 100),
            max_open_files=env.int("SANDBOX_MAX_OPEN_FILES", 1024),
            cpu_seconds=env.int("SANDBOX_CPU_SECONDS", 3600),
            limits=read_sandbox_limits(env),
            terminal_grace_seconds=env.float("TERMINAL_GRACE_SECONDS", 300.0),
            slow_viewer_seconds=env.float("TERMINAL_SLOW_CLIENT_SECONDS", 5.0),
        )


def _pairs(name: str, text: str | None) -> dict[str, str]:
    """``"k=v,k2=v2"`` -> ``{"k": "v", "k2": "v2"}``; blanks are ignored."""
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{name}: expected key=value, got {item!r}")
        pairs[key.strip()] = value.strip()
    return pairs


def _str_dict(value: Mapping[str, str]) -> dict[str, str]:
    return dict(value)


@attrs.frozen
class KubernetesSettings:
    """The kubernetes backend (EXECUTION_BACKEND=kubernetes): where and how execution pods run.
    Every default works in a cluster set up by the manifests in ``k8s/``."""

    namespace: str = "coding-platform"  # K8S_NAMESPACE
    kubeconfig: str | None = None  # KUBECONFIG; None: in-cluster, else ~/.kube/config
    api_timeout_seconds: float = 10.0  # K8S_API_TIMEOUT_SECONDS: first answer of the API
    image: str = "code-execution-platform/execution:latest"  # EXECUTION_IMAGE
    image_pull_policy: str = "IfNotPresent"  # EXECUTION_IMAGE_PULL_POLICY
    cpu: str = "500m"  # EXECUTION_CPU (requests = limits)
    memory: str = "512Mi"  # EXECUTION_MEMORY
    workspace_size_limit: str = "1Gi"  # EXECUTION_WORKSPACE_SIZE
    tmp_size_limit: str = "256Mi"  # EXECUTION_TMP_SIZE
    runtime_class: str | None = None  # EXECUTION_RUNTIME_CLASS, e.g. "gvisor"
    node_selector: Mapping[str, str] = attrs.field(factory=dict, converter=_str_dict, hash=False)
    agent_port: int = 7681  # EXECUTION_AGENT_PORT: the agent's port in every pod
    ready_timeout_seconds: float = 60.0  # EXECUTION_READY_TIMEOUT
    stop_timeout_seconds: float = 60.0  # how long a stop waits for the pod to be gone
    # The agent's terminal timings, the same as the local backend's (TERMINAL_*).
    terminal_grace_seconds: float = 300.0
    slow_viewer_seconds: float = 5.0

    @classmethod
    def read(cls, env: _Env, sandbox: SandboxSettings) -> KubernetesSettings:
        port = env.int("EXECUTION_AGENT_PORT", 7681, minimum=1024)
        if port > 65535:
            raise ValueError(f"EXECUTION_AGENT_PORT must be a TCP port, got {port}")
        return cls(
            namespace=env.str("K8S_NAMESPACE", "coding-platform"),
            kubeconfig=env.raw("KUBECONFIG"),
            api_timeout_seconds=env.float("K8S_API_TIMEOUT_SECONDS", 10.0),
            image=env.str("EXECUTION_IMAGE", "code-execution-platform/execution:latest"),
            image_pull_policy=env.str("EXECUTION_IMAGE_PULL_POLICY", "IfNotPresent"),
            cpu=env.str("EXECUTION_CPU", "500m"),
            memory=env.str("EXECUTION_MEMORY", "512Mi"),
            workspace_size_limit=env.str("EXECUTION_WORKSPACE_SIZE", "1Gi"),
            tmp_size_limit=env.str("EXECUTION_TMP_SIZE", "256Mi"),
            runtime_class=env.raw("EXECUTION_RUNTIME_CLASS"),
            node_selector=_pairs("EXECUTION_NODE_SELECTOR", env.raw("EXECUTION_NODE_SELECTOR")),
            agent_port=port,
            ready_timeout_seconds=env.float("EXECUTION_READY_TIMEOUT", 60.0),
            terminal_grace_seconds=sandbox.terminal_grace_seconds,
            slow_viewer_seconds=sandbox.slow_viewer_seconds,
        )


@attrs.frozen
class ExecutionSettings:
    """Execution environments: which backend, their lifecycle and syncs, and the backends'
    own sections (``sandbox`` for the local one)."""

    backend: str = "local"  # EXECUTION_BACKEND: local | kubernetes
    idle_seconds: float = 900.0  # EXECUTION_IDLE_SECONDS
    sync_interval_seconds: float = 30.0  # SYNC_INTERVAL_SECONDS
    sync_quiet_seconds: float = 1.0  # SYNC_QUIET_SECONDS: after terminal output goes quiet
    sync_retry_max_seconds: float = 30.0  # SYNC_RETRY_MAX_SECONDS: backoff cap of retries
    sync_ignore: tuple[str, ...] = DEFAULT_SYNC_IGNORE  # SYNC_IGNORE
    agent_timeout_seconds: float = 10.0  # AGENT_TIMEOUT_SECONDS: one request to an agent
    sandbox: SandboxSettings = SandboxSettings()
    kubernetes: KubernetesSettings = KubernetesSettings()

    @classmethod
    def read(cls, env: _Env, data_dir: Path) -> ExecutionSettings:
        sandbox = SandboxSettings.read(env, data_dir)
        return cls(
            backend=env.str("EXECUTION_BACKEND", "local", ("local", "kubernetes")),
            idle_seconds=env.float("EXECUTION_IDLE_SECONDS", 900.0),
            sync_interval_seconds=env.float("SYNC_INTERVAL_SECONDS", 30.0),
            sync_quiet_seconds=env.float("SYNC_QUIET_SECONDS", 1.0),
            sync_retry_max_seconds=env.float("SYNC_RETRY_MAX_SECONDS", 30.0),
            sync_ignore=env.list("SYNC_IGNORE", DEFAULT_SYNC_IGNORE),
            agent_timeout_seconds=env.float("AGENT_TIMEOUT_SECONDS", 10.0),
            sandbox=sandbox,
            kubernetes=KubernetesSettings.read(env, sandbox),
        )


@attrs.frozen
class Settings:
    data_dir: Path = PROJECT_ROOT / ".data"  # DATA_DIR: the embedded database, sandboxes
    log_level: str = "info"  # LOG_LEVEL
    database: DatabaseSettings = DatabaseSettings()
    http: HttpSettings = HttpSettings()
    auth: AuthSettings = AuthSettings()
    workspace: WorkspaceSettings = WorkspaceSettings()
    quotas: QuotaSettings = QuotaSettings()
    execution: ExecutionSettings = ExecutionSettings()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = _Env(os.environ if environ is None else environ)
        data_dir = env.path("DATA_DIR", None) or cls().data_dir
        return cls(
            data_dir=data_dir,
            log_level=env.str("LOG_LEVEL", "info", LOG_LEVELS),
            database=DatabaseSettings.read(env),
            http=HttpSettings.read(env),
            auth=AuthSettings.read(env),
            workspace=WorkspaceSettings.read(env),
            quotas=QuotaSettings.read(env),
            execution=ExecutionSettings.read(env, data_dir),
        )


@cache
def get_settings() -> Settings:
    """The process's settings, read once: for the app factory and command-line entry points
    (everything else receives them)."""
    return Settings.from_env()
