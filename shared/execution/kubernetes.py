"""The ``kubernetes`` execution backend: one pod ``exec-<session-id>`` per session.

State lives in the cluster, not in this process: any replica finds a session's pod by name
and every live environment by the label ``app=execution``, so terminals need no affinity and
any replica can reap. All calls of the (blocking) official client run in worker threads.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar
from uuid import UUID

import anyio
import urllib3
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from shared.execution.base import (
    EnvironmentStatus,
    ExecutionError,
    ExecutionState,
    ScanResult,
    WorkspaceEntry,
)
from shared.execution.k8s_config import KubernetesBackendConfig
from shared.execution.k8s_exec import ExecStream, run_command
from shared.execution.k8s_files import (
    EXTRACT_COMMAND,
    WORKSPACE,
    build_tar,
    check_relative,
    parse_scan,
    read_commands,
    read_tar,
    scan_command,
)
from shared.execution.k8s_shell import SHELL_COMMAND, KubernetesShell
from shared.execution.pod_spec import APP_LABEL, build_pod_manifest, pod_name

__all__ = ["KubernetesBackend", "KubernetesBackendConfig", "pod_phase"]

log = logging.getLogger(__name__)
T = TypeVar("T")

READY, FAILED, PENDING = "ready", "failed", "pending"
IMAGE_REASONS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
START_REASONS = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError",
                 "CrashLoopBackOff"}  # fmt: skip


def pod_phase(pod: Any) -> tuple[str, str | None]:
    """(READY | FAILED | PENDING, a user-safe message) for a V1Pod."""
    if pod.metadata.deletion_timestamp is not None:
        return FAILED, "The execution environment is being removed."
    status = pod.status
    if status is None:
        return PENDING, None
    if status.phase in ("Failed", "Succeeded"):
        return FAILED, "The execution environment stopped unexpectedly."
    for container in status.container_statuses or []:
        state = container.state
        waiting = state.waiting if state else None
        if waiting is not None and waiting.reason in IMAGE_REASONS:
            return FAILED, f"The execution image could not be pulled ({waiting.reason})."
        if waiting is not None and waiting.reason in START_REASONS:
            return FAILED, f"The execution environment could not start ({waiting.reason})."
        if state is not None and state.terminated is not None:
            return FAILED, "The execution environment stopped unexpectedly."
    conditions = {c.type: c for c in status.conditions or []}
    scheduled = conditions.get("PodScheduled")
    if (
        scheduled is not None
        and scheduled.status == "False"
        and scheduled.reason == "Unschedulable"
    ):
        # Not final: a cluster autoscaler may add a node, so this only explains a timeout.
        log.info("pod %s unschedulable: %s", pod.metadata.name, scheduled.message)
        return PENDING, "No node in the cluster has room for the execution environment."
    ready = conditions.get("Ready")
    if status.phase == "Running" and ready is not None and ready.status == "True":
        return READY, None
    return PENDING, None


class KubernetesBackend:
    name = "kubernetes"

    def __init__(self, config: KubernetesBackendConfig | None = None) -> None:
        self.config = config or KubernetesBackendConfig()
        self._configuration: client.Configuration | None = None
        self._api_client: client.ApiClient | None = None
        self._core: Any = None
        self._connect_lock = threading.Lock()
        self._failures: dict[UUID, str] = {}  # why this replica's last start failed
        self._stream_limiter: anyio.CapacityLimiter | None = None

    # --- plumbing ----------------------------------------------------------------------

    def _connect(self) -> Any:
        """Load the client configuration once (kubeconfig path, else in-cluster, else the
        default kubeconfig) into our own Configuration, leaving the global default alone."""
        with self._connect_lock:
            if self._core is None:
                configuration = client.Configuration()
                if self.config.kubeconfig:
                    config.load_kube_config(
                        config_file=self.config.kubeconfig, client_configuration=configuration
                    )
                else:
                    try:
                        config.load_incluster_config(client_configuration=configuration)
                    except config.ConfigException:
                        config.load_kube_config(client_configuration=configuration)
                self._configuration = configuration
                self._api_client = client.ApiClient(configuration)
                self._core = client.CoreV1Api(self._api_client)
            return self._core

    async def _call(self, fn: Callable[..., T], *args: Any, abandon: bool = False, **kw: Any) -> T:
        """Run a blocking call in a worker thread; cluster trouble becomes ExecutionError.
        ApiException 404 and 409 pass through for the callers that expect them."""
        try:
            return await anyio.to_thread.run_sync(
                functools.partial(fn, *args, **kw), abandon_on_cancel=abandon
            )
        except ApiException as exc:
            if exc.status in (404, 409):
                raise
            raise self._refused(exc) from exc
        except (urllib3.exceptions.HTTPError, OSError, config.ConfigException) as exc:
            log.warning("kubernetes API unreachable: %s", exc)
            raise ExecutionError("The cluster API is not reachable.") from exc

    @property
    def _limiter(self) -> anyio.CapacityLimiter:
        # Shell reads hold a thread while waiting for output; keep them off the default
        # pool (40 threads) so many idle shells cannot starve other thread work.
        if self._stream_limiter is None:
            self._stream_limiter = anyio.CapacityLimiter(256)
        return self._stream_limiter

    async def _read_pod(self, name: str) -> Any | None:
        try:
            return await self._call(self._core_call("read_namespaced_pod"), name, self._ns)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise self._refused(exc) from exc

    def _core_call(self, method: str) -> Callable[..., Any]:
        return lambda *args, **kw: getattr(self._connect(), method)(*args, **kw)

    @property
    def _ns(self) -> str:
        return self.config.namespace

    @staticmethod
    def _refused(exc: ApiException) -> ExecutionError:
        log.warning("kubernetes API error %s: %s", exc.status, exc.reason)
        return ExecutionError(f"The cluster refused the request ({exc.status} {exc.reason}).")

    def _exec(self, name: str, command: list[str], **kw: Any) -> tuple[int, bytes, bytes]:
        self._connect()
        return run_command(self._configuration, self._ns, name, command, **kw)

    def _open_stream(self, name: str, command: list[str], **kw: Any) -> ExecStream:
        self._connect()
        return ExecStream.open(self._configuration, self._ns, name, command, **kw)

    async def _run(self, name: str, command: list[str], **kw: Any) -> bytes:
        """Run a command in the pod; its stdout, or ExecutionError if it failed."""
        code, out, err = await self._call(self._exec, name, command, **kw)
        if code != 0:
            log.warning("%s in %s exited %s: %s", command[0], name, code, err[:500])
            raise ExecutionError("A file operation in the execution environment failed.")
        return out

    async def _running_pod(self, session_id: UUID) -> str | None:
        pod = await self._read_pod(pod_name(session_id))
        if pod is None or pod_phase(pod)[0] != READY:
            return None
        return str(pod.metadata.name)

    # --- following a pod ---------------------------------------------------------------

    def _follow(self, name: str, decide: Callable[[Any | None], T | None], timeout: float) -> T:
        """Call ``decide`` with the pod (None once gone) now and after every change until it
        returns something; list-then-watch from the list's resourceVersion, so no change
        between the two is missed. Raises TimeoutError."""
        core = self._connect()
        selector = f"metadata.name={name}"
        deadline = time.monotonic() + timeout
        while True:
            listed = core.list_namespaced_pod(self._ns, field_selector=selector)
            result = decide(listed.items[0] if listed.items else None)
            if result is not None:
                return result
            version = listed.metadata.resource_version
            watcher = watch.Watch()
            try:
                while (remaining := deadline - time.monotonic()) > 0:
                    events = watcher.stream(
                        core.list_namespaced_pod,
                        self._ns,
                        field_selector=selector,
                        resource_version=version,
                        timeout_seconds=max(1, math.ceil(remaining)),
                        _request_timeout=remaining + 10,
                    )
                    for event in events:
                        version = event["object"].metadata.resource_version
                        pod = None if event["type"] == "DELETED" else event["object"]
                        result = decide(pod)
                        if result is not None:
                            return result
                        if time.monotonic() >= deadline:
                            break
                raise TimeoutError
            except ApiException as exc:
                if exc.status != 410:  # 410 Gone: our version expired; list again
                    raise
            finally:
                watcher.stop()

    def _wait_ready(self, name: str, timeout: float) -> None:
        problem: list[str] = []

        def decide(pod: Any | None) -> bool | None:
            if pod is None:
                raise ExecutionError("The execution environment was removed while starting.")
            phase, message = pod_phase(pod)
            if phase == FAILED:
                raise ExecutionError(message or "The execution environment failed to start.")
            if message:
                problem[:] = [message]
            return True if phase == READY else None

        try:
            self._follow(name, decide, timeout)
        except TimeoutError:
            reason = f" {problem[0]}" if problem else ""
            raise ExecutionError(
                f"The execution environment did not become ready within {timeout:g} s.{reason}"
            ) from None

    def _wait_gone(self, name: str, timeout: float) -> None:
        try:
            self._follow(name, lambda pod: True if pod is None else None, timeout)
        except TimeoutError:
            log.warning("pod %s still present %s s after its deletion", name, timeout)

    async def _delete(self, name: str) -> bool:
        """Delete the pod at once (grace 0) and wait until it is gone. False if absent."""
        try:
            await self._call(
                self._core_call("delete_namespaced_pod"),
                name,
                self._ns,
                grace_period_seconds=0,
                propagation_policy="Background",
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise self._refused(exc) from exc
        await self._call(self._wait_gone, name, self.config.stop_timeout_s, abandon=True)
        return True

    # --- ExecutionBackend --------------------------------------------------------------

    async def ensure_started(
        self, session_id: UUID, owner_id: int, files: Iterable[WorkspaceEntry]
    ) -> bool:
        files = list(files)
        try:
            started = await self._start(session_id, owner_id, files)
        except ExecutionError as exc:
            self._failures[session_id] = str(exc)
            raise
        self._failures.pop(session_id, None)
        return started

    async def _start(self, session_id: UUID, owner_id: int, files: list[WorkspaceEntry]) -> bool:
        name = pod_name(session_id)
        timeout = self.config.ready_timeout_s
        existing = await self._read_pod(name)
        if existing is not None and pod_phase(existing)[0] == FAILED:
            await self._delete(name)  # a dead or dying pod is replaced, not reused
            existing = None
        if existing is None:
            manifest = build_pod_manifest(self.config, session_id, owner_id)
            try:
                await self._call(self._core_call("create_namespaced_pod"), self._ns, manifest)
            except ApiException as exc:
                if exc.status != 409:  # 409: another replica created it just now
                    raise self._refused(exc) from exc
            else:
                try:
                    await self._call(self._wait_ready, name, timeout, abandon=True)
                    if files:
                        archive = await anyio.to_thread.run_sync(build_tar, files)
                        await self._run(name, EXTRACT_COMMAND, stdin=archive)
                except BaseException:
                    with anyio.CancelScope(shield=True):
                        await self._delete_quietly(name)
                    raise
                return True
        # Someone (this or another replica) started it: attach once it is ready.
        await self._call(self._wait_ready, name, timeout, abandon=True)
        return False

    async def _delete_quietly(self, name: str) -> None:
        try:
            await self._delete(name)
        except ExecutionError:
            log.exception("could not remove the failed pod %s", name)

    async def status(self, session_id: UUID) -> EnvironmentStatus:
        try:
            pod = await self._read_pod(pod_name(session_id))
        except ExecutionError as exc:
            return EnvironmentStatus(ExecutionState.STOPPED, self.name, message=str(exc))
        if pod is None:
            message = self._failures.get(session_id)
            return EnvironmentStatus(ExecutionState.STOPPED, self.name, message=message)
        phase, message = pod_phase(pod)
        if phase == READY:
            ready = next(c for c in pod.status.conditions if c.type == "Ready")
            since = ready.last_transition_time or pod.status.start_time
            return EnvironmentStatus(ExecutionState.RUNNING, self.name, since=since)
        if phase == FAILED:
            return EnvironmentStatus(ExecutionState.STOPPED, self.name, message=message)
        since = pod.metadata.creation_timestamp
        return EnvironmentStatus(ExecutionState.STARTING, self.name, since=since, message=message)

    async def running_sessions(self) -> Sequence[UUID]:
        """Sessions with a pod that is not being deleted, whatever its phase, so the reaper
        also finds (and stops) pods that died."""
        try:
            pods = await self._call(
                self._core_call("list_namespaced_pod"), self._ns, label_selector=f"app={APP_LABEL}"
            )
        except ApiException as exc:
            raise self._refused(exc) from exc
        sessions: list[UUID] = []
        for pod in pods.items:
            if pod.metadata.deletion_timestamp is not None:
                continue
            try:
                sessions.append(UUID((pod.metadata.labels or {}).get("session", "")))
            except ValueError:
                continue
        return sessions

    async def open_shell(self, session_id: UUID, cols: int, rows: int) -> KubernetesShell:
        name = await self._running_pod(session_id)
        if name is None:
            raise ExecutionError("The execution environment is not running.")
        stream = await self._call(self._open_stream, name, SHELL_COMMAND, stdin=True, tty=True)
        shell = KubernetesShell(stream, self._limiter)
        await shell.resize(cols, rows)
        return shell

    async def write_file(self, session_id: UUID, path: str, content: bytes) -> None:
        entry = WorkspaceEntry(path=check_relative(path), type="file", content=content)
        if (name := await self._running_pod(session_id)) is not None:
            archive = await anyio.to_thread.run_sync(build_tar, [entry])
            await self._run(name, EXTRACT_COMMAND, stdin=archive)

    async def make_directory(self, session_id: UUID, path: str) -> None:
        target = f"{WORKSPACE}/{check_relative(path)}"
        if (name := await self._running_pod(session_id)) is not None:
            await self._run(name, ["mkdir", "-p", "--", target])

    async def delete_path(self, session_id: UUID, path: str) -> None:
        target = f"{WORKSPACE}/{check_relative(path)}"
        if (name := await self._running_pod(session_id)) is not None:
            await self._run(name, ["rm", "-rf", "--", target])

    async def scan(
        self, session_id: UUID, ignore: Sequence[str], max_file_bytes: int, max_entries: int
    ) -> ScanResult:
        name = await self._running_pod(session_id)
        if name is None:  # as the local backend: nothing running, nothing to report
            return ScanResult(entries=())
        output = await self._run(name, scan_command(ignore, max_file_bytes, max_entries))
        return parse_scan(output)

    async def read_files(self, session_id: UUID, paths: Sequence[str]) -> dict[str, bytes]:
        name = await self._running_pod(session_id)
        if name is None or not paths:
            return {}
        files: dict[str, bytes] = {}
        for command in read_commands(paths):
            archive = await self._run(name, command)
            files.update(await anyio.to_thread.run_sync(read_tar, archive))
        wanted = set(paths)
        return {path: data for path, data in files.items() if path in wanted}

    async def stop(self, session_id: UUID) -> bool:
        self._failures.pop(session_id, None)
        return await self._delete(pod_name(session_id))

    async def aclose(self) -> None:
        if self._api_client is not None:
            await anyio.to_thread.run_sync(self._api_client.close)
            self._api_client = self._core = None
