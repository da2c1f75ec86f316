"""The fake API server's pods: Kubernetes JSON objects, resourceVersions, watch events and a
kubelet's lifecycle: Pending -> scheduled -> the pod gets a network namespace and an IP, its
container's command runs (``sandbox.py``) -> Ready once the readiness probe (a TCP connect to
the probe's port) succeeds -> Failed (or Succeeded) when the process exits. Deleting a pod
kills its processes at once and removes it (and its network) a moment later.

Everything here runs on the server's event loop thread, so there is no locking; the
network's blocking ``ip`` commands run in worker threads.

Failure injection by image name: ``fail/imagepull`` (ErrImagePull -> ImagePullBackOff),
``fail/unschedulable`` (stays Pending, PodScheduled False/Unschedulable), ``fail/slow``
(scheduled but its container never starts). A container without a command (the fake has no
images to take an entrypoint from) runs nothing and is Ready at once.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import os
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .network import NetworkBlock
from .sandbox import PodSandbox, container_command

Pod = dict[str, Any]
Matcher = Callable[[Pod], bool]


class ApiError(Exception):
    """Becomes a v1 Status response."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


def timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def label_matcher(selector: str) -> Matcher:
    """``a=b,c!=d,e,!f`` against metadata.labels (equality-based selectors)."""
    tests: list[Callable[[dict[str, str]], bool]] = []
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            tests.append(lambda labels, k=key, v=value: labels.get(k) != v)
        elif "=" in term:
            key, value = (s.strip() for s in term.replace("==", "=").split("=", 1))
            tests.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif term.startswith("!"):
            tests.append(lambda labels, k=term[1:]: k not in labels)
        else:
            tests.append(lambda labels, k=term: k in labels)
    return lambda pod: all(t(pod["metadata"].get("labels") or {}) for t in tests)


def field_matcher(selector: str) -> Matcher:
    """``metadata.name=x,status.phase!=Failed`` (the fields the API supports for pods)."""
    getters: dict[str, Callable[[Pod], str]] = {
        "metadata.name": lambda p: p["metadata"]["name"],
        "metadata.namespace": lambda p: p["metadata"]["namespace"],
        "status.phase": lambda p: p["status"].get("phase", ""),
        "spec.nodeName": lambda p: p["spec"].get("nodeName", ""),
    }
    tests: list[Matcher] = []
    for term in filter(None, (t.strip() for t in selector.split(","))):
        negate = "!=" in term
        key, value = term.replace("!=", "=").replace("==", "=").split("=", 1)
        if key not in getters:
            raise ApiError(400, "BadRequest", f'field label not supported: "{key}"')
        get = getters[key]
        tests.append(lambda p, g=get, v=value, n=negate: (g(p) == v) != n)
    return lambda pod: all(t(pod) for t in tests)


@dataclass(eq=False)
class Watcher:
    namespace: str
    matches: Matcher
    queue: asyncio.Queue[tuple[str, Pod | None]] = field(default_factory=asyncio.Queue)


PROBE_INTERVAL = 0.02  # the fake kubelet probes faster than a real one (periodSeconds >= 1)


class PodStore:
    def __init__(self, root: Path, step_delay: float) -> None:
        self.root = root
        os.chmod(root, 0o711)  # containers run as their own uid and reach their volumes below
        self.step_delay = step_delay  # time between simulated lifecycle steps
        self.pods: dict[tuple[str, str], Pod] = {}
        self.sandboxes: dict[tuple[str, str], PodSandbox] = {}
        self.watchers: set[Watcher] = set()
        self.history: deque[tuple[int, str, Pod]] = deque(maxlen=1000)
        self.compacted = 0  # watches from before this resourceVersion get 410 Gone
        self._versions = itertools.count(1000)
        self.resource_version = next(self._versions)
        self.network = NetworkBlock()
        self._tasks: set[asyncio.Task[None]] = set()

    # --- reads and writes --------------------------------------------------------------

    def create(self, namespace: str, body: Pod) -> Pod:
        metadata = body.get("metadata") or {}
        name = metadata.get("name")
        if not name:
            raise ApiError(422, "Invalid", "Pod is invalid: metadata.name: Required value")
        if body.get("metadata", {}).get("namespace", namespace) != namespace:
            raise ApiError(400, "BadRequest", "the namespace of the object does not match")
        if (namespace, name) in self.pods:
            raise ApiError(409, "AlreadyExists", f'pods "{name}" already exists')
        if not (body.get("spec") or {}).get("containers"):
            raise ApiError(422, "Invalid", "Pod is invalid: spec.containers: Required value")
        pod = copy.deepcopy(body)
        pod.update(apiVersion="v1", kind="Pod")
        pod["metadata"].update(
            namespace=namespace, uid=str(uuid.uuid4()), creationTimestamp=timestamp()
        )
        pod["status"] = {"phase": "Pending", "qosClass": "Guaranteed"}
        self.pods[(namespace, name)] = pod
        self._changed("ADDED", pod)
        self._schedule(namespace, name, self._step_scheduled)
        return copy.deepcopy(pod)

    def get(self, namespace: str, name: str) -> Pod:
        pod = self.pods.get((namespace, name))
        if pod is None:
            raise ApiError(404, "NotFound", f'pods "{name}" not found')
        return pod

    def list(self, namespace: str, matches: Matcher) -> list[Pod]:
        return [
            copy.deepcopy(p)
            for (ns, _), p in sorted(self.pods.items())
            if ns == namespace and matches(p)
        ]

    def delete(self, namespace: str, name: str, uid: str | None = None) -> Pod:
        pod = self.get(namespace, name)
        if uid is not None and pod["metadata"]["uid"] != uid:
            raise ApiError(409, "Conflict", f"Precondition failed: UID in precondition: {uid}")
        if "deletionTimestamp" not in pod["metadata"]:
            pod["metadata"]["deletionTimestamp"] = timestamp()
            pod["metadata"]["deletionGracePeriodSeconds"] = 0
            self._changed("MODIFIED", pod)
            sandbox = self.sandboxes.pop((namespace, name), None)
            if sandbox is not None:
                sandbox.kill()  # the containers stop now; the object goes a moment later
            self._spawn(self._remove(namespace, name, sandbox))
        return copy.deepcopy(pod)

    async def _remove(self, namespace: str, name: str, sandbox: PodSandbox | None) -> None:
        await asyncio.sleep(self.step_delay)
        if sandbox is not None:
            await asyncio.to_thread(self._tear_down, sandbox)
        pod = self.pods.pop((namespace, name), None)
        if pod is not None:
            self._changed("DELETED", pod)

    def _tear_down(self, sandbox: PodSandbox) -> None:
        sandbox.remove()
        if sandbox.network is not None:
            self.network.release(sandbox.network)

    def stop_container(self, namespace: str, name: str) -> None:
        """The container's process dies (as if it crashed): the pod goes Failed."""
        sandbox = self.sandboxes.get((namespace, name))
        if sandbox is not None:
            sandbox.kill()

    def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        for sandbox in self.sandboxes.values():
            self._tear_down(sandbox)
        self.sandboxes.clear()
        self.network.close()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- watch -------------------------------------------------------------------------

    def watch(self, namespace: str, matches: Matcher, since: int | None) -> Watcher:
        """A watcher primed with the current pods as ADDED (since None) or with the events
        after resourceVersion ``since``, like the real API server's watch cache."""
        watcher = Watcher(namespace, matches)
        if since is None:
            for pod in self.list(namespace, matches):
                watcher.queue.put_nowait(("ADDED", pod))
        else:
            if since < self.compacted:
                raise ApiError(410, "Expired", f"too old resource version: {since}")
            for version, kind, pod in self.history:
                if version > since and pod["metadata"]["namespace"] == namespace:
                    if matches(pod):
                        watcher.queue.put_nowait((kind, copy.deepcopy(pod)))
        self.watchers.add(watcher)
        return watcher

    def expire_watches(self) -> None:
        """End every watch and forget the history, as an API server restart or a compaction
        does: clients must list again (their resume gets 410 Gone)."""
        self.history.clear()
        self.resource_version = next(self._versions)
        self.compacted = self.resource_version
        for watcher in self.watchers:
            watcher.queue.put_nowait(("CLOSE", None))

    def _changed(self, kind: str, pod: Pod) -> None:
        self.resource_version = next(self._versions)
        pod["metadata"]["resourceVersion"] = str(self.resource_version)
        snapshot = copy.deepcopy(pod)
        if len(self.history) == self.history.maxlen:
            self.compacted = self.history[0][0]
        self.history.append((self.resource_version, kind, snapshot))
        for watcher in self.watchers:
            if watcher.namespace == pod["metadata"]["namespace"] and watcher.matches(pod):
                watcher.queue.put_nowait((kind, copy.deepcopy(snapshot)))

    # --- simulated lifecycle -----------------------------------------------------------

    def _schedule(self, namespace: str, name: str, step: Callable[[Pod], None]) -> None:
        def run() -> None:
            pod = self._live(namespace, name)
            if pod is not None:
                step(pod)

        asyncio.get_running_loop().call_later(self.step_delay, run)

    def _live(self, namespace: str, name: str) -> Pod | None:
        pod = self.pods.get((namespace, name))
        return pod if pod is not None and "deletionTimestamp" not in pod["metadata"] else None

    @staticmethod
    def _failure(pod: Pod) -> str | None:
        image = pod["spec"]["containers"][0].get("image", "")
        return image.split("fail/", 1)[1].split(":")[0] if "fail/" in image else None

    def _container_status(self, pod: Pod, state: dict[str, Any], ready: bool) -> list[Pod]:
        return [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "ready": ready,
                "started": "running" in state,
                "restartCount": 0,
                "state": state,
            }
            for c in pod["spec"]["containers"]
        ]

    def _step_scheduled(self, pod: Pod) -> None:
        now = timestamp()
        status = pod["status"]
        if self._failure(pod) == "unschedulable":
            status["conditions"] = [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 Insufficient cpu.",
                    "lastTransitionTime": now,
                }
            ]
            self._changed("MODIFIED", pod)
            return
        pod["spec"]["nodeName"] = "fake-node"
        status.update(hostIP="10.0.0.1", startTime=now)
        status["conditions"] = [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": "False", "reason": "ContainersNotReady",
             "lastTransitionTime": now},
            {"type": "Ready", "status": "False", "reason": "ContainersNotReady",
             "lastTransitionTime": now},
        ]  # fmt: skip
        waiting = {"waiting": {"reason": "ContainerCreating"}}
        status["containerStatuses"] = self._container_status(pod, waiting, ready=False)
        self._changed("MODIFIED", pod)
        failure = self._failure(pod)
        if failure == "imagepull":
            self._schedule(*self._key(pod), self._step_image_pull_failed)
        elif failure != "slow":
            self._spawn(self._run_container(*self._key(pod)))

    def _step_image_pull_failed(self, pod: Pod) -> None:
        image = pod["spec"]["containers"][0]["image"]
        for reason, message in (
            ("ErrImagePull", f'failed to pull and unpack image "{image}": not found'),
            ("ImagePullBackOff", f'Back-off pulling image "{image}"'),
        ):
            state = {"waiting": {"reason": reason, "message": message}}
            pod["status"]["containerStatuses"] = self._container_status(pod, state, ready=False)
            self._changed("MODIFIED", pod)

    async def _run_container(self, namespace: str, name: str) -> None:
        """The kubelet's part: network, process, readiness probe, and the exit."""
        pod = self._live(namespace, name)
        if pod is None:
            return
        container = pod["spec"]["containers"][0]
        if not container_command(container):
            self._set_ready(pod, True)
            return
        network = await asyncio.to_thread(self.network.allocate)
        pod = self._live(namespace, name)
        if pod is None:  # deleted while its network was made
            await asyncio.to_thread(self.network.release, network)
            return
        sandbox = PodSandbox(self.root, pod, network)
        self.sandboxes[(namespace, name)] = sandbox
        process = sandbox.start()
        now = timestamp()
        pod["status"].update(phase="Running", podIP=network.ip,
                             podIPs=[{"ip": network.ip}])  # fmt: skip
        state = {"running": {"startedAt": now}}
        pod["status"]["containerStatuses"] = self._container_status(pod, state, ready=False)
        self._changed("MODIFIED", pod)
        exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_exit() -> None:
            if not exited.done():
                exited.set_result(None)

        pidfd = os.pidfd_open(process.pid)  # readable once the process has exited
        asyncio.get_running_loop().add_reader(pidfd, on_exit)
        try:
            port = ((container.get("readinessProbe") or {}).get("tcpSocket") or {}).get("port")
            if port is None or await self._probe(network.ip, int(port), exited):
                if self._live(namespace, name) is pod:
                    self._set_ready(pod, True)
            await exited
        finally:
            asyncio.get_running_loop().remove_reader(pidfd)
            os.close(pidfd)
        code = process.wait()
        if self._live(namespace, name) is pod:
            self._set_exited(pod, code if code >= 0 else 128 - code)

    async def _probe(self, ip: str, port: int, exited: asyncio.Future[None]) -> bool:
        """Until a TCP connect to the probe's port succeeds (True) or the process exits."""
        while not exited.done():
            try:
                async with asyncio.timeout(1):
                    _, writer = await asyncio.open_connection(ip, port)
                writer.close()
                return True
            except (OSError, TimeoutError):
                await asyncio.wait([exited], timeout=PROBE_INTERVAL)
        return False

    def _set_ready(self, pod: Pod, ready: bool) -> None:
        now = timestamp()
        status = pod["status"]
        status["phase"] = "Running"
        for condition in status.get("conditions") or []:
            if condition["type"] in ("Ready", "ContainersReady"):
                condition.update(status="True" if ready else "False", lastTransitionTime=now)
                condition.pop("reason", None)
        for container in status.get("containerStatuses") or []:
            container["ready"] = ready
            if "running" not in container["state"]:
                container.update(state={"running": {"startedAt": now}}, started=True)
        self._changed("MODIFIED", pod)

    def _set_exited(self, pod: Pod, code: int) -> None:
        now = timestamp()
        status = pod["status"]
        status["phase"] = "Succeeded" if code == 0 else "Failed"
        for condition in status.get("conditions") or []:
            if condition["type"] in ("Ready", "ContainersReady"):
                condition.update(status="False", reason="PodCompleted", lastTransitionTime=now)
        terminated = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0
                                     else "Error", "finishedAt": now}}  # fmt: skip
        status["containerStatuses"] = self._container_status(pod, terminated, ready=False)
        self._changed("MODIFIED", pod)

    @staticmethod
    def _key(pod: Pod) -> tuple[str, str]:
        return pod["metadata"]["namespace"], pod["metadata"]["name"]
