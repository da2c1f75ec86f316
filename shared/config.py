"""Configuration: one attrs class read from the environment, with safe defaults.

Every variable is documented in the README's configuration table.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path

import attrs

from shared.execution.sandbox_limits import SandboxLimits

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_CORS_ORIGINS = (
    "http://localhost:3000,http://localhost:3001,http://localhost:3002,"
    "http://127.0.0.1:3000,http://127.0.0.1:3001,http://127.0.0.1:3002"
)


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _list(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.replace(",", " ").split() if part.strip())


class _Env:
    """Typed reads of environment variables with defaults; a bad value names its variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def raw(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def str(self, name: str, default: str, choices: tuple[str, ...] = ()) -> str:
        value = (self.raw(name) or default).lower() if choices else (self.raw(name) or default)
        if choices and value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value

    def int(self, name: str, default: int, minimum: int = 1) -> int:
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"{name} must be an integer, got {raw!r}") from None
        if value < minimum:
            raise ValueError(f"{name} must be at least {minimum}, got {value}")
        return value

    def float(self, name: str, default: float, minimum: float = 0.0) -> float:
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{name} must be a number, got {raw!r}") from None
        if value <= minimum:
            raise ValueError(f"{name} must be greater than {minimum:g}, got {raw!r}")
        return value

    def bool(self, name: str, default: bool) -> bool:
        raw = self.raw(name)
        return default if raw is None else _bool(raw)


DEFAULT_SYNC_IGNORE = (".venv/", "__pycache__/", "node_modules/", ".git/")


@attrs.frozen
class SandboxSettings:
    """The local backend: a bubblewrap sandbox with its agent per environment."""

    isolation: str = "bwrap"  # EXECUTION_SANDBOX: "bwrap" | "none" (unsandboxed, explicit)
    root: Path = PROJECT_ROOT / ".data" / "sandboxes"  # EXECUTION_ROOT, default DATA_DIR/...
    python: str = "/usr/bin/python3"  # SANDBOX_PYTHON: runs the agent inside the sandbox
    warm_spares: int = 1  # SANDBOX_WARM_SPARES: sandboxes kept ready for a fast first prompt
    max_memory_mb: int = 1024  # address space per process (the rlimit)
    max_file_mb: int = 100
    max_open_files: int = 1024
    cpu_seconds: int = 3600  # per process
    # The whole sandbox's cgroup, workspace volume, host uid and tmpfs sizes.
    limits: SandboxLimits = attrs.field(factory=SandboxLimits)
    terminal_grace_seconds: float = 300.0  # TERMINAL_GRACE_SECONDS (the agent applies it)
    slow_viewer_seconds: float = 5.0  # TERMINAL_SLOW_CLIENT_SECONDS (likewise)

    @classmethod
    def read(cls, env: _Env, data_dir: Path) -> SandboxSettings:
        root = env.raw("EXECUTION_ROOT")
        return cls(
            isolation=env.str("EXECUTION_SANDBOX", "bwrap", ("bwrap", "none")),
            root=Path(root) if root else data_dir / "sandboxes",
            python=env.str("SANDBOX_PYTHON", "/usr/bin/python3"),
            warm_spares=env.int("SANDBOX_WARM_SPARES", 1, minimum=0),
            max_memory_mb=env.int("SANDBOX_MAX_MEMORY_MB", 1024),
            max_file_mb=env.int("SANDBOX_MAX_FILE_MB", 100),
            max_open_files=env.int("SANDBOX_MAX_OPEN_FILES", 1024),
            cpu_seconds=env.int("SANDBOX_CPU_SECONDS", 3600),
            limits=SandboxLimits.from_env(env.env),
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
    """Execution environments: which backend, their lifecycle, sync and per-user limits."""

    backend: str = "local"  # EXECUTION_BACKEND: local | kubernetes
    idle_seconds: float = 900.0  # EXECUTION_IDLE_SECONDS
    sync_interval_seconds: float = 30.0  # SYNC_INTERVAL_SECONDS
    sync_quiet_seconds: float = 1.0  # SYNC_QUIET_SECONDS: after terminal output goes quiet
    sync_retry_max_seconds: float = 30.0  # SYNC_RETRY_MAX_SECONDS: backoff cap of retries
    sync_ignore: tuple[str, ...] = DEFAULT_SYNC_IGNORE  # SYNC_IGNORE
    agent_timeout_seconds: float = 10.0  # AGENT_TIMEOUT_SECONDS: one request to an agent
    max_environments_per_user: int = 3  # MAX_ENVIRONMENTS_PER_USER: running at once
    max_terminals_per_session: int = 8  # MAX_TERMINALS_PER_SESSION: WebSocket connections
    sandbox: SandboxSettings = SandboxSettings()
    kubernetes: KubernetesSettings = KubernetesSettings()

    @classmethod
    def read(cls, env: _Env, data_dir: Path) -> ExecutionSettings:
        ignore = env.env.get("SYNC_IGNORE")
        sandbox = SandboxSettings.read(env, data_dir)
        return cls(
            backend=env.str("EXECUTION_BACKEND", "local", ("local", "kubernetes")),
            idle_seconds=env.float("EXECUTION_IDLE_SECONDS", 900.0),
            sync_interval_seconds=env.float("SYNC_INTERVAL_SECONDS", 30.0),
            sync_quiet_seconds=env.float("SYNC_QUIET_SECONDS", 1.0),
            sync_retry_max_seconds=env.float("SYNC_RETRY_MAX_SECONDS", 30.0),
            sync_ignore=DEFAULT_SYNC_IGNORE if ignore is None else _list(ignore),
            agent_timeout_seconds=env.float("AGENT_TIMEOUT_SECONDS", 10.0),
            max_environments_per_user=env.int("MAX_ENVIRONMENTS_PER_USER", 3),
            max_terminals_per_session=env.int("MAX_TERMINALS_PER_SESSION", 8),
            sandbox=sandbox,
            kubernetes=KubernetesSettings.read(env, sandbox),
        )


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
    register_max_per_address: int = 20
    register_window_seconds: int = 3600
    # CIDRs of the proxies whose X-Forwarded-For is believed; empty: the socket peer is the client
    trusted_proxies: tuple[str, ...] = ()
    # Account requests (register, login) per client address, refused in memory past this.
    auth_requests_per_second: float = 10.0
    auth_requests_burst: float = 30.0
    password_hash_concurrency: int = 1  # argon2 hashes at once (64 MiB and a core each)
    password_hash_queue: int = 32  # requests waiting for a hash slot before 503
    max_sessions_per_user: int = 100

    max_file_bytes: int = 1024 * 1024
    max_workspace_entries: int = 2000
    max_workspace_bytes: int = 50 * 1024 * 1024

    log_level: str = "info"
    execution: ExecutionSettings = ExecutionSettings()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        d = cls()
        data_dir = Path(env.get("DATA_DIR", str(d.data_dir)))
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            data_dir=data_dir,
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
            login_window_seconds=int(env.get("LOGIN_WINDOW_SECONDS", d.login_window_seconds)),
            register_max_per_address=int(
                env.get("REGISTER_MAX_PER_ADDRESS", d.register_max_per_address)
            ),
            register_window_seconds=int(
                env.get("REGISTER_WINDOW_SECONDS", d.register_window_seconds)
            ),
            trusted_proxies=_list(env.get("TRUSTED_PROXIES", "")),
            auth_requests_per_second=_Env(env).float("AUTH_REQUESTS_PER_SECOND", 10.0),
            auth_requests_burst=_Env(env).float("AUTH_REQUESTS_BURST", 30.0, minimum=0.99),
            password_hash_concurrency=int(
                env.get("PASSWORD_HASH_CONCURRENCY", d.password_hash_concurrency)
            ),
            password_hash_queue=int(env.get("PASSWORD_HASH_QUEUE", d.password_hash_queue)),
            max_sessions_per_user=int(env.get("MAX_SESSIONS_PER_USER", d.max_sessions_per_user)),
            max_file_bytes=int(env.get("MAX_FILE_BYTES", d.max_file_bytes)),
            max_workspace_entries=int(env.get("MAX_WORKSPACE_ENTRIES", d.max_workspace_entries)),
            max_workspace_bytes=int(env.get("MAX_WORKSPACE_BYTES", d.max_workspace_bytes)),
            log_level=env.get("LOG_LEVEL", d.log_level),
            execution=ExecutionSettings.read(_Env(env), data_dir),
        )


@cache
def get_settings() -> Settings:
    return Settings.from_env()
