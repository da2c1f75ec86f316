"""The ``kubernetes`` execution backend: one pod ``exec-<session-id>`` per session, whose one
process is the environment agent, reached over the pod network at ``<pod ip>:<agent port>``.

State lives in the cluster, not in this process: every replica keeps the same watch-fed
cache of the namespace's ``app=execution`` pods (``k8s_cache``), reads a pod's address and
agent secret from it, and so reaches any pod whichever replica created it. Terminal bytes
and files go straight to the agent; only creating and deleting pods (and the watch) go to
the API server, through the blocking official client in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import anyio
import anyio.to_thread
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from shared.config import KubernetesSettings
from shared.execution.agent_client import AgentEndpoint, forget_client
from shared.execution.base import (
    EnvironmentStatus,
    ExecutionError,
    ExecutionState,
    RunningEnvironment,
)
from shared.execution.k8s_cache import FAILED, PENDING, READY, PodCache, PodView, api_problem
from shared.execution.locks import KeyedLock
from shared.execution.pod_spec import build_pod_manifest, pod_name

__all__ = ["KubernetesBackend"]

log = logging.getLogger(__name__)
TIDY_SECONDS = 30.0  # how often stuck pods are looked for (besides every change)


def endpoint_of(view: PodView | None) -> AgentEndpoint | None:
    """The agent of a pod that is ready and not going away; None otherwise."""
    if view is None or view.phase != READY or view.deleting:
        return None
    if view.address is None or view.secret is None:
        return None
    return AgentEndpoint(view.address, view.secret)


class KubernetesBackend:
    """``ExecutionBackend`` running each environment as a pod of the configured namespace."""

    name = "kubernetes"

    def __init__(self, config: KubernetesSettings | None = None) -> None:
        self.config = config or KubernetesSettings()
        self.scope = f"k8s:{self.config.namespace}"
        self._core: Any = None
        self._api_client: client.ApiClient | None = None
        self._connect_lock = threading.Lock()
        self._cache = PodCache(self._connect, self.config.namespace)
        self._locks = KeyedLock()
        self._starting: dict[UUID, datetime] = {}
        self._failures: dict[UUID, str] = {}  # why this replica's last start failed
        self._tidying: set[str] = set()  # pods this replica asked to delete
        self._tidier: asyncio.Task[None] | None = None
        self._deletions: set[asyncio.Task[None]] = set()

    # -- plumbing ------------------------------------------------------------------------

    def _connect(self) -> Any:
        """Load the client configuration once (the kubeconfig given, else in-cluster, else
        the default kubeconfig) into our own Configuration, leaving the global default."""
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
                self._api_client = client.ApiClient(configuration)
                self._core = client.CoreV1Api(self._api_client)
            return self._core

    async def _call(self, method: str, *args: Any, **kw: Any) -> dict[str, Any]:
        """One CoreV1Api call in a worker thread; its JSON answer. Cluster trouble becomes
        ExecutionError; ApiException 404 and 409 pass through for the callers expecting them."""

        def call() -> dict[str, Any]:
            response = getattr(self._connect(), method)(
                *args, _preload_content=False, _request_timeout=(10, 60), **kw
            )
            return json.loads(response.data)  # type: ignore[no-any-return]

        try:
            return await anyio.to_thread.run_sync(call)
        except ApiException as exc:
            if exc.status in (404, 409):
                raise
            log.warning("kubernetes API: %s refused: %s %s", method, exc.status, exc.reason)
            raise ExecutionError(api_problem(exc)) from None
        except Exception as exc:  # connection, configuration, an unreadable answer
            log.warning("kubernetes API: %s failed: %s", method, type(exc).__name__)
            raise ExecutionError(api_problem(exc)) from None

    async def _pods(self) -> PodCache:
        """The cache, once it holds the cluster's state (ExecutionError when the API cannot
        be reached: the watch keeps trying in the background)."""
        await self.start()
        await self._cache.wait_synced(self.config.api_timeout_seconds)
        return self._cache

    # -- ExecutionBackend --------------------------------------------------------------

    async def start(self) -> None:
        """Start the pod watch (the first list comes in the background) and the tidier."""
        self._cache.start()
        if self._tidier is None:
            self._tidier = asyncio.get_running_loop().create_task(self._tidy())

    async def find(self, session_id: UUID) -> AgentEndpoint | None:
        cache = await self._pods()
        return endpoint_of(cache.get(pod_name(session_id)))

    async def ensure_started(self, session_id: UUID, owner_id: int) -> tuple[AgentEndpoint, bool]:
        cache = await self._pods()
        endpoint = endpoint_of(cache.get(pod_name(session_id)))
        if endpoint is not None:
            return endpoint, False
        async with self._locks.hold(session_id):
            self._starting[session_id] = datetime.now(UTC)
            try:
                result = await self._start(session_id, owner_id)
            except ExecutionError as exc:
                self._failures[session_id] = str(exc)
                raise
            finally:
                self._starting.pop(session_id, None)
            self._failures.pop(session_id, None)
            return result

    async def _start(self, session_id: UUID, owner_id: int) -> tuple[AgentEndpoint, bool]:
        name = pod_name(session_id)
        view = self._cache.get(name)
        if (endpoint := endpoint_of(view)) is not None:
            return endpoint, False
        if view is not None and (view.phase == FAILED or view.deleting):
            await self._delete(name, view.uid)  # a dead or dying pod is replaced, not reused
            view = None
        if view is not None:  # another replica is starting it
            return await self._ready(name, None), False
        manifest = build_pod_manifest(self.config, session_id, owner_id, secrets.token_hex(32))
        try:
            created = await self._call("create_namespaced_pod", self.config.namespace, manifest)
        except ApiException as exc:
            if exc.status != 409:
                raise ExecutionError(api_problem(exc)) from None
            return await self._ready(name, None), False  # another replica, a moment ago
        log.info("created execution pod %s", name)
        uid = created["metadata"]["uid"]
        try:
            return await self._ready(name, uid), True
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._delete_quietly(name, uid)
            raise

    async def _ready(self, name: str, uid: str | None) -> AgentEndpoint:
        """Until the pod (``uid``: that one, not an older namesake) is ready, on the cache."""
        seen: list[PodView] = []

        def check() -> AgentEndpoint | None:
            view = self._cache.get(name)
            if view is None or (uid is not None and view.uid != uid):
                if seen:
                    raise ExecutionError("The execution environment was removed while starting.")
                return None
            seen[:] = [view]
            if view.deleting:
                raise ExecutionError("The execution environment was removed while starting.")
            if view.phase == FAILED:
                raise ExecutionError(view.message or "The execution environment failed to start.")
            endpoint = endpoint_of(view)
            if view.phase == READY and endpoint is None:
                raise ExecutionError("The execution environment has no address.")
            return endpoint

        timeout = self.config.ready_timeout_seconds
        try:
            return await self._cache.wait_for(check, timeout)
        except TimeoutError:
            reason = f" {seen[0].message}" if seen and seen[0].message else ""
            raise ExecutionError(
                f"The execution environment did not become ready within {timeout:g} s.{reason}"
            ) from None

    async def _delete(self, name: str, uid: str | None = None) -> bool:
        """Delete the pod (``uid``: only that one, not a newer namesake) at once (grace 0)
        and wait until the cache saw it go. False if there was none."""
        options = {"gracePeriodSeconds": 0, "propagationPolicy": "Background"}
        if uid is not None:
            options["preconditions"] = {"uid": uid}
        try:
            pod = await self._call(
                "delete_namespaced_pod", name, self.config.namespace, body=options
            )
        except ApiException as exc:
            if exc.status in (404, 409):  # gone, or already another pod of that name
                return False
            raise ExecutionError(api_problem(exc)) from None
        uid = (pod.get("metadata") or {}).get("uid")

        def gone() -> bool | None:
            view = self._cache.get(name)
            return True if view is None or view.uid != uid else None

        try:
            await self._cache.wait_for(gone, self.config.stop_timeout_seconds)
        except TimeoutError:
            log.warning("pod %s still present %g s after its deletion", name,
                        self.config.stop_timeout_seconds)  # fmt: skip
        return True

    async def _delete_quietly(self, name: str, uid: str | None = None) -> None:
        try:
            await self._delete(name, uid)
        except ExecutionError:
            log.warning("could not remove the failed pod %s", name)

    async def status(self, session_id: UUID) -> EnvironmentStatus:
        try:
            view = (await self._pods()).get(pod_name(session_id))
        except ExecutionError as exc:
            return EnvironmentStatus(ExecutionState.STOPPED, self.name, message=str(exc))
        if view is None or view.deleting:
            if session_id in self._starting:
                since = self._starting[session_id]
                return EnvironmentStatus(ExecutionState.STARTING, self.name, since)
            message = self._failures.get(session_id)
            return EnvironmentStatus(ExecutionState.STOPPED, self.name, message=message)
        if view.phase == READY:
            return EnvironmentStatus(ExecutionState.RUNNING, self.name, view.ready_since)
        if view.phase == FAILED:
            return EnvironmentStatus(ExecutionState.STOPPED, self.name, message=view.message)
        return EnvironmentStatus(ExecutionState.STARTING, self.name, view.created, view.message)

    async def running(self) -> Sequence[RunningEnvironment]:
        """Every pod that is starting or running (any replica's), not failed or going away."""
        return [
            RunningEnvironment(view.session_id, view.owner_id, view.ready_since or view.created)
            for view in (await self._pods()).views()
            if view.session_id is not None and view.owner_id is not None
            and not view.deleting and view.phase != FAILED
        ]  # fmt: skip

    async def stop(self, session_id: UUID) -> bool:
        name = pod_name(session_id)
        cache = await self._pods()
        endpoint = endpoint_of(cache.get(name))
        async with self._locks.hold(session_id):
            stopped = await self._delete(name)
        if endpoint is not None:
            forget_client(endpoint)
        self._failures.pop(session_id, None)
        return stopped

    async def aclose(self) -> None:
        """Stop watching (the pods stay: they outlive this process by design)."""
        if self._tidier is not None:
            self._tidier.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tidier
            self._tidier = None
        for task in list(self._deletions):
            task.cancel()
        await self._cache.stop()
        self._cache = PodCache(self._connect, self.config.namespace)  # a later use starts anew
        if self._api_client is not None:
            await anyio.to_thread.run_sync(self._api_client.close)
            self._api_client = self._core = None

    # -- background: pods nobody will use ------------------------------------------------

    async def _tidy(self) -> None:
        """Delete pods that died (their agent is gone: nothing can be synced from them, and a
        new start replaces them) and pods stuck starting long after any start gave up (their
        replica died mid-start). Every replica may do it: a second delete is a 404."""
        stuck_after = 2 * self.config.ready_timeout_seconds + 60
        while True:
            await self._cache.changed(TIDY_SECONDS)
            if not self._cache.synced:
                continue
            now = datetime.now(UTC)
            present = set()
            for view in self._cache.views():
                present.add(view.name)
                if view.deleting or view.name in self._tidying or view.session_id is None:
                    continue
                if view.session_id in self._starting:
                    continue  # its start handles it
                age = (now - view.created).total_seconds() if view.created else 0.0
                if view.phase == FAILED or (view.phase == PENDING and age > stuck_after):
                    self._tidying.add(view.name)
                    self._failures[view.session_id] = view.message or (
                        "The execution environment did not start."
                    )
                    log.info("removing execution pod %s (%s)", view.name, view.phase)
                    deletion = self._delete_quietly(view.name, view.uid)
                    task = asyncio.get_running_loop().create_task(deletion)
                    self._deletions.add(task)
                    task.add_done_callback(self._deletions.discard)
            self._tidying &= present
