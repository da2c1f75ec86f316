"""What this process knows about the execution pods: one list+watch of the namespace's
``app=execution`` pods, kept in memory (an informer, in client-go's terms).

The watch runs in a thread of its own with the official client's (blocking) ``Watch``; every
change wakes the event loop, where ``status``/``find``/``running`` read the cache without
an API call and ``ensure_started`` waits for readiness on it. A watch that ends is resumed
from the last resourceVersion; one that expired (410) or failed starts over with a list.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import anyio
import attrs
from kubernetes import watch
from kubernetes.client.rest import ApiException

from shared.execution.base import ExecutionError
from shared.execution.pod_spec import APP_LABEL, CONTAINER_NAME, PORT_NAME, SECRET_ENV

log = logging.getLogger(__name__)
T = TypeVar("T")

READY, FAILED, PENDING = "ready", "failed", "pending"
IMAGE_REASONS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
START_REASONS = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError",
                 "CrashLoopBackOff"}  # fmt: skip
UNREACHABLE = "The cluster API is not reachable."
WATCH_SECONDS = 240  # one watch request; then it is resumed from where it ended


@attrs.frozen
class PodView:
    """One execution pod as the backend needs it."""

    name: str
    uid: str
    session_id: UUID | None
    owner_id: int | None
    phase: str  # READY | FAILED | PENDING
    message: str | None  # user-safe: why it failed, or why it is not ready yet
    address: str | None  # "tcp:<pod ip>:<agent port>"
    secret: bytes | None = attrs.field(repr=False)
    created: datetime | None
    ready_since: datetime | None
    deleting: bool


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _phase(pod: dict[str, Any]) -> tuple[str, str | None]:
    """(READY | FAILED | PENDING, a user-safe message) of a pod as JSON."""
    status = pod.get("status") or {}
    if status.get("phase") in ("Failed", "Succeeded"):
        return FAILED, "The execution environment stopped unexpectedly."
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        reason = (state.get("waiting") or {}).get("reason")
        if reason in IMAGE_REASONS:
            return FAILED, f"The execution image could not be pulled ({reason})."
        if reason in START_REASONS:
            return FAILED, f"The execution environment could not start ({reason})."
        if state.get("terminated") is not None:
            return FAILED, "The execution environment stopped unexpectedly."
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    scheduled = conditions.get("PodScheduled") or {}
    if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        # Not final: a cluster autoscaler may add a node, so this only explains a timeout.
        return PENDING, "No node in the cluster has room for the execution environment."
    if status.get("phase") == "Running" and (conditions.get("Ready") or {}).get("status") == "True":
        return READY, None
    return PENDING, None


def _agent(pod: dict[str, Any]) -> tuple[str | None, bytes | None]:
    """The agent's address and secret, from the pod's IP and its container spec."""
    containers = (pod.get("spec") or {}).get("containers") or []
    container = next((c for c in containers if c.get("name") == CONTAINER_NAME), None)
    if container is None:
        return None, None
    secret = next((e.get("value") for e in container.get("env") or []
                   if e.get("name") == SECRET_ENV), None)  # fmt: skip
    port = next((p.get("containerPort") for p in container.get("ports") or []
                 if p.get("name") == PORT_NAME), None)  # fmt: skip
    ip = (pod.get("status") or {}).get("podIP")
    address = None
    if isinstance(ip, str) and ip and isinstance(port, int):
        address = f"tcp:[{ip}]:{port}" if ":" in ip else f"tcp:{ip}:{port}"
    return address, secret.encode() if isinstance(secret, str) and secret else None


def pod_view(pod: dict[str, Any]) -> PodView | None:
    """The view of one pod (JSON as the API serves it); None when it is not one of ours."""
    metadata = pod.get("metadata") or {}
    labels = metadata.get("labels") or {}
    if labels.get("app") != APP_LABEL or not metadata.get("name"):
        return None
    try:
        session_id: UUID | None = UUID(labels.get("session", ""))
    except ValueError:
        session_id = None
    owner = labels.get("owner", "")
    phase, message = _phase(pod)
    address, secret = _agent(pod)
    ready_since = None
    if phase == READY:
        ready = next(c for c in pod["status"]["conditions"] if c.get("type") == "Ready")
        since = ready.get("lastTransitionTime") or pod["status"].get("startTime")
        ready_since = _time(since)
    return PodView(
        name=metadata["name"],
        uid=str(metadata.get("uid", "")),
        session_id=session_id,
        owner_id=int(owner) if owner.isdigit() else None,
        phase=phase,
        message=message,
        address=address,
        secret=secret,
        created=_time(metadata.get("creationTimestamp")),
        ready_since=ready_since,
        deleting=metadata.get("deletionTimestamp") is not None,
    )


def api_problem(exc: BaseException) -> str:
    """A user-safe sentence for a failed API call (never the response body: it may hold the
    pod, and the pod holds the agent's secret)."""
    if isinstance(exc, ApiException):
        return f"The cluster refused the request ({exc.status} {exc.reason})."
    return UNREACHABLE


class PodCache:
    """The execution pods of one namespace, fed by a watch running in its own thread."""

    def __init__(self, connect: Callable[[], Any], namespace: str) -> None:
        self._connect = connect  # -> CoreV1Api (blocking: runs in the watch thread)
        self.namespace = namespace
        self._pods: dict[str, PodView] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: watch.Watch | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Event()
        self.synced = False  # a list has succeeded: the cache holds the cluster's state
        self.attempted = False  # the first list has been answered or has failed
        self.problem: str | None = None  # why the last list or watch failed

    # -- reads (event loop) --------------------------------------------------------------

    def get(self, name: str) -> PodView | None:
        return self._pods.get(name)

    def views(self) -> list[PodView]:
        with self._lock:
            return list(self._pods.values())

    async def wait_for(self, check: Callable[[], T | None], seconds: float) -> T:
        """``check()`` now and after every change until it returns something other than
        None (it may raise to give up). TimeoutError after ``seconds``."""
        with anyio.fail_after(seconds):
            while True:
                changed = self._changed
                result = check()
                if result is not None:
                    return result
                await changed.wait()

    async def changed(self, seconds: float) -> None:
        """Until the next change, or ``seconds``."""
        with anyio.move_on_after(seconds):
            await self._changed.wait()

    async def wait_synced(self, seconds: float) -> None:
        """Until the first list has succeeded; ExecutionError once it failed (the watch
        thread keeps trying) or after ``seconds``."""
        if self.synced:
            return
        with contextlib.suppress(TimeoutError):
            await self.wait_for(lambda: True if self.attempted else None, seconds)
        if not self.synced:
            raise ExecutionError(self.problem or UNREACHABLE)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name="k8s-pod-watch", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stopping.set()
        current = self._watch
        if current is not None:
            current.stop()  # shuts the stream's socket: the blocked read returns at once
        thread = self._thread
        if thread is not None:
            await anyio.to_thread.run_sync(thread.join, 5.0, abandon_on_cancel=True)

    # -- the watch thread --------------------------------------------------------------

    def _run(self) -> None:
        version: str | None = None
        delay = 0.5
        expired = False
        while not self._stopping.is_set():
            try:
                if version is None:
                    version = self._list()
                    expired = False
                started = time.monotonic()
                version, events = self._follow(version)
                if events or time.monotonic() - started > 5:
                    delay = 0.5
                    continue
                # A watch that ends at once with nothing: back off rather than hammer the API.
            except ApiException as exc:
                version = None
                if exc.status == 410 and not expired:  # too old to resume from: list again
                    expired = True
                    continue
                self._trouble(api_problem(exc), f"API error {exc.status} {exc.reason}")
            except Exception as exc:  # the connection, the config, a malformed answer
                version = None
                if self._stopping.is_set():
                    break
                self._trouble(api_problem(exc), type(exc).__name__)
            self._stopping.wait(delay)
            delay = min(delay * 2, 10.0)

    def _trouble(self, problem: str, detail: str) -> None:
        log.warning("watching execution pods failed (%s); retrying", detail)
        self.problem = problem
        self.attempted = True
        self._wake()

    def _list(self) -> str:
        core = self._connect()
        response = core.list_namespaced_pod(
            self.namespace, label_selector=f"app={APP_LABEL}",
            _preload_content=False, _request_timeout=(10, 60),
        )  # fmt: skip
        data = json.loads(response.data)
        views = [pod_view(item) for item in data.get("items") or []]
        with self._lock:
            self._pods = {view.name: view for view in views if view is not None}
        self.synced = self.attempted = True
        self.problem = None
        self._wake()
        return str(data["metadata"]["resourceVersion"])

    def _follow(self, version: str) -> tuple[str, int]:
        """Apply the events after ``version`` until the watch ends; the last version seen
        and how many events came."""
        core = self._connect()
        events = 0
        self._watch = watcher = watch.Watch()
        try:
            for event in watcher.stream(
                core.list_namespaced_pod, self.namespace, label_selector=f"app={APP_LABEL}",
                resource_version=version, allow_watch_bookmarks=True,
                timeout_seconds=WATCH_SECONDS, _request_timeout=(10, WATCH_SECONDS + 30),
            ):  # fmt: skip
                if self._stopping.is_set():
                    break
                events += 1
                pod = event["raw_object"]
                version = str((pod.get("metadata") or {}).get("resourceVersion") or version)
                if event["type"] != "BOOKMARK":
                    self._apply(event["type"], pod)
        finally:
            self._watch = None
        return version, events

    def _apply(self, kind: str, pod: dict[str, Any]) -> None:
        name = str((pod.get("metadata") or {}).get("name"))
        view = pod_view(pod)
        with self._lock:
            if kind == "DELETED" or view is None:
                self._pods.pop(name, None)
            else:
                self._pods[view.name] = view
        self._wake()

    def _wake(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._notify)

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
