"""The kubernetes execution backend against a fake API server that speaks the real wire
protocol to the unmodified official client, and whose pods really run the agent in network
namespaces of their own (see tests/fake_k8s). What every backend does is in
tests/conformance; this is what is particular to a cluster: pods, replicas, the watch-fed
cache and the ways a cluster fails."""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import anyio
import httpx
import pytest

from shared.execution.agent_client import AgentEndpoint, client_for
from shared.execution.base import (
    ExecutionBackend,
    ExecutionError,
    ExecutionState,
    WorkspaceEntry,
)
from shared.execution.kubernetes import KubernetesBackend
from shared.execution.pod_spec import SECRET_ENV, pod_name
from tests.conftest import running_platform
from tests.fake_k8s import FakeKubernetes
from tests.fake_k8s.factory import settings_for
from tests.helpers import Platform, eventually, new_user, new_workspace
from tests.terminal_client import opened_shell

pytestmark = pytest.mark.anyio
OWNER = 7


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def fake_k8s() -> Iterator[FakeKubernetes]:
    with FakeKubernetes() as fake:
        yield fake


@pytest.fixture
def kubeconfig(fake_k8s: FakeKubernetes, tmp_path: Path) -> Path:
    return fake_k8s.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
async def replicas(kubeconfig: Path) -> AsyncIterator[Callable[..., KubernetesBackend]]:
    """Makes started backends (each one a replica of the platform); closes them after."""
    made: list[KubernetesBackend] = []

    def make(**overrides: Any) -> KubernetesBackend:
        backend = KubernetesBackend(settings_for(overrides.pop("kubeconfig", kubeconfig),
                                                 **overrides))  # fmt: skip
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.aclose()


@pytest.fixture
async def backend(replicas: Callable[..., KubernetesBackend]) -> KubernetesBackend:
    backend = replicas()
    await backend.start()
    return backend


@pytest.fixture
async def session(backend: KubernetesBackend) -> AsyncIterator[UUID]:
    session_id = uuid4()
    _, started = await backend.ensure_started(session_id, OWNER)
    assert started is True
    yield session_id
    await backend.stop(session_id)


def the_pod(fake: FakeKubernetes, session_id: UUID) -> dict[str, Any]:
    (pod,) = [p for p in fake.pods() if p["metadata"]["name"] == pod_name(session_id)]
    return pod


def pod_names(fake: FakeKubernetes) -> set[str]:
    return {p["metadata"]["name"] for p in fake.pods()}


# --- the pod and its agent ----------------------------------------------------------------


async def test_a_start_creates_a_restricted_pod_whose_agent_answers_on_the_pod_ip(
    backend: KubernetesBackend, session: UUID, fake_k8s: FakeKubernetes
) -> None:
    pod = the_pod(fake_k8s, session)
    assert pod["metadata"]["labels"] == {"app": "execution", "session": str(session), "owner": "7"}
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["automountServiceAccountToken"] is False
    endpoint = await backend.find(session)
    assert endpoint is not None
    assert endpoint.address == f"tcp:{pod['status']['podIP']}:7681"
    assert (await client_for(endpoint).status()).uptime_seconds > 0
    status = await backend.status(session)
    assert status.state is ExecutionState.RUNNING
    assert status.backend == "kubernetes" and status.since is not None
    assert await backend.ensure_started(session, OWNER) == (endpoint, False)
    assert isinstance(backend, ExecutionBackend) and backend.scope == "k8s:coding-platform"


async def test_files_reach_the_pods_workspace_through_the_agent_never_through_exec(
    backend: KubernetesBackend, session: UUID, fake_k8s: FakeKubernetes
) -> None:
    before = len(fake_k8s.requests)
    endpoint = await backend.find(session)
    assert endpoint is not None
    agent = client_for(endpoint)
    await agent.materialize([WorkspaceEntry("main.py", "file", b"print('hi')\n")])
    await agent.write_file("deep/data.bin", bytes(range(256)), None)
    workspace = fake_k8s.workspace_dir(pod_name(session))
    assert (workspace / "main.py").read_bytes() == b"print('hi')\n"
    assert (workspace / "deep" / "data.bin").read_bytes() == bytes(range(256))
    assert await agent.read_files(["main.py"], 1024) == {"main.py": b"print('hi')\n"}
    assert fake_k8s.requests[before:] == []  # not one request to the API server
    assert not [path for _, path, _ in fake_k8s.requests if path.endswith("/exec")]


async def test_a_pod_has_a_network_of_its_own_and_no_route_out(
    backend: KubernetesBackend, session: UUID
) -> None:
    endpoint = await backend.find(session)
    assert endpoint is not None
    terminal = await client_for(endpoint).attach(120, 40)
    probe = (
        "python3 -c \"import socket; print('IF', sorted(n for _, n in socket.if_nameindex())); "
        "s = socket.socket(); s.settimeout(2)\n"
        "try: s.connect(('192.0.2.1', 80))\nexcept OSError as e: print('OUT', e.errno)\"\n"
    )
    await terminal.write(probe.encode())
    seen = b""
    with anyio.fail_after(15):
        while not re.search(rb"OUT \d+\r\n", seen):
            item = await terminal.next()
            assert item is not None, seen
            if isinstance(item, bytes):
                seen += item
    await terminal.close()
    assert b"IF ['eth0', 'lo']" in seen
    assert b"OUT 101\r\n" in seen  # ENETUNREACH: no default route


# --- replicas and the cache --------------------------------------------------------------


async def test_a_second_replica_finds_and_attaches_to_the_pod_the_first_created(
    backend: KubernetesBackend,
    session: UUID,
    replicas: Callable[..., KubernetesBackend],
    fake_k8s: FakeKubernetes,
) -> None:
    first = await backend.find(session)
    assert first is not None
    await client_for(first).write_file("from_first.txt", b"one", None)
    other = replicas()
    assert session in [e.session_id for e in await other.running()]
    assert (await other.status(session)).state is ExecutionState.RUNNING
    endpoint, started = await other.ensure_started(session, OWNER)
    assert started is False and endpoint == first  # same address, same secret
    fresh = client_for(AgentEndpoint(endpoint.address, endpoint.secret), timeout=5)
    assert await fresh.read_files(["from_first.txt"], 100) == {"from_first.txt": b"one"}
    assert [n for n in pod_names(fake_k8s) if n == pod_name(session)] == [pod_name(session)]


async def test_two_replicas_starting_one_session_at_once_make_one_pod(
    replicas: Callable[..., KubernetesBackend], fake_k8s: FakeKubernetes
) -> None:
    one, two = replicas(), replicas()
    session_id = uuid4()
    results: list[tuple[AgentEndpoint, bool]] = []

    async def start(backend: KubernetesBackend) -> None:
        results.append(await backend.ensure_started(session_id, OWNER))

    async with anyio.create_task_group() as tg:
        tg.start_soon(start, one)
        tg.start_soon(start, two)
    assert sorted(started for _, started in results) == [False, True]
    assert results[0][0] == results[1][0]
    assert await one.stop(session_id) is True
    assert pod_name(session_id) not in pod_names(fake_k8s)


async def test_status_find_and_running_are_served_from_the_cache_without_api_calls(
    backend: KubernetesBackend, session: UUID, fake_k8s: FakeKubernetes
) -> None:
    before = len(fake_k8s.requests)
    for _ in range(50):
        assert (await backend.status(session)).state is ExecutionState.RUNNING
        assert (await backend.status(uuid4())).state is ExecutionState.STOPPED
        assert await backend.find(session) is not None
        assert await backend.find(uuid4()) is None
        assert session in [e.session_id for e in await backend.running()]
        assert (await backend.ensure_started(session, OWNER))[1] is False
    assert fake_k8s.requests[before:] == []


async def test_a_pod_deleted_behind_our_back_is_seen_as_stopped(
    backend: KubernetesBackend, session: UUID, fake_k8s: FakeKubernetes
) -> None:
    fake_k8s.delete_pod(pod_name(session))

    async def stopped() -> bool:
        return (await backend.status(session)).state is ExecutionState.STOPPED

    await eventually(stopped, "the environment stopped", 15)
    assert await backend.find(session) is None
    assert session not in [e.session_id for e in await backend.running()]
    _, started = await backend.ensure_started(session, OWNER)  # a fresh one
    assert started is True


async def test_a_pod_whose_agent_died_is_reported_removed_and_replaced_on_the_next_start(
    backend: KubernetesBackend, session: UUID, fake_k8s: FakeKubernetes
) -> None:
    fake_k8s.stop_container(pod_name(session))
    await eventually(lambda: pod_name(session) not in pod_names(fake_k8s), "the pod gone", 15)
    status = await backend.status(session)
    assert status.state is ExecutionState.STOPPED
    assert status.message == "The execution environment stopped unexpectedly."
    assert await backend.find(session) is None
    _, started = await backend.ensure_started(session, OWNER)
    assert started is True
    assert (await backend.status(session)).message is None


async def test_the_cache_lists_again_when_its_watch_expires(
    backend: KubernetesBackend, session: UUID, fake_k8s: FakeKubernetes
) -> None:
    def lists() -> int:
        return sum(1 for m, _, q in fake_k8s.requests if m == "GET" and "watch" not in q)

    listed = lists()
    fake_k8s.expire_watches()  # the resumed watch gets 410 Gone: a new list follows
    fake_k8s.delete_pod(pod_name(session))

    async def stopped() -> bool:
        return (await backend.status(session)).state is ExecutionState.STOPPED

    await eventually(stopped, "the environment stopped", 15)
    await eventually(lambda: lists() > listed, "a new list of pods", 15)
    other = uuid4()
    await backend.ensure_started(other, OWNER)  # the new watch follows new pods
    assert (await backend.status(other)).state is ExecutionState.RUNNING
    await backend.stop(other)


async def test_stop_deletes_the_pod_and_its_agent(
    backend: KubernetesBackend, fake_k8s: FakeKubernetes
) -> None:
    session_id = uuid4()
    endpoint, _ = await backend.ensure_started(session_id, OWNER)
    agent = client_for(endpoint, timeout=5)
    assert await backend.stop(session_id) is True
    assert pod_name(session_id) not in pod_names(fake_k8s)
    assert (await backend.status(session_id)).state is ExecutionState.STOPPED
    assert await backend.find(session_id) is None
    assert session_id not in [e.session_id for e in await backend.running()]
    assert await backend.stop(session_id) is False
    with pytest.raises(ExecutionError):
        await agent.status()


# --- when the cluster fails ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "ready_timeout", "message"),
    [
        ("fail/imagepull", 15.0, "could not be pulled"),
        ("fail/unschedulable", 1.0, "No node in the cluster has room"),
        ("fail/slow", 1.0, "did not become ready within 1 s"),
    ],
)
async def test_start_failures_are_reported_and_leave_no_pod(
    replicas: Callable[..., KubernetesBackend],
    fake_k8s: FakeKubernetes,
    image: str,
    ready_timeout: float,
    message: str,
) -> None:
    backend = replicas(image=image, ready_timeout_seconds=ready_timeout)
    session_id = uuid4()
    with pytest.raises(ExecutionError, match=message):
        await backend.ensure_started(session_id, OWNER)
    assert pod_name(session_id) not in pod_names(fake_k8s)
    status = await backend.status(session_id)
    assert status.state is ExecutionState.STOPPED
    assert status.message is not None and message in status.message


async def test_a_wrong_token_is_a_clear_error(
    fake_k8s: FakeKubernetes, tmp_path: Path, replicas: Callable[..., KubernetesBackend]
) -> None:
    kubeconfig = fake_k8s.write_kubeconfig(tmp_path / "bad", token="wrong")
    backend = replicas(kubeconfig=str(kubeconfig))
    with pytest.raises(ExecutionError, match=r"refused the request \(401"):
        await backend.ensure_started(uuid4(), OWNER)


async def test_an_unreachable_api_server_is_an_execution_error(
    tmp_path: Path, replicas: Callable[..., KubernetesBackend]
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        '{"apiVersion": "v1", "kind": "Config", "current-context": "x",'
        f'"clusters": [{{"name": "x", "cluster": {{"server": "http://127.0.0.1:{port}"}}}}],'
        '"users": [{"name": "x", "user": {"token": "t"}}],'
        '"contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}]}'
    )
    backend = replicas(kubeconfig=str(kubeconfig), api_timeout_seconds=5.0)
    with pytest.raises(ExecutionError, match="not reachable"):
        await backend.ensure_started(uuid4(), OWNER)
    with pytest.raises(ExecutionError, match="not reachable"):
        await backend.find(uuid4())
    status = await backend.status(uuid4())
    assert status.state is ExecutionState.STOPPED and "not reachable" in (status.message or "")


async def test_the_agent_secret_never_appears_in_a_log_line(
    replicas: Callable[..., KubernetesBackend],
    fake_k8s: FakeKubernetes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    backend = replicas()
    session_id = uuid4()
    endpoint, _ = await backend.ensure_started(session_id, OWNER)
    await client_for(endpoint).status()
    (secret,) = [
        e["value"]
        for e in the_pod(fake_k8s, session_id)["spec"]["containers"][0]["env"]
        if e["name"] == SECRET_ENV
    ]
    assert endpoint.secret == secret.encode() and secret not in repr(endpoint)
    fake_k8s.stop_container(pod_name(session_id))  # failure paths log too
    await eventually(lambda: pod_name(session_id) not in pod_names(fake_k8s), "the pod gone", 15)
    failing = replicas(image="fail/imagepull")
    with pytest.raises(ExecutionError):
        await failing.ensure_started(uuid4(), OWNER)
    assert caplog.records
    for record in caplog.records:
        assert secret not in record.getMessage(), record.name


# --- the platform on a cluster -----------------------------------------------------------


@pytest.fixture(scope="module")
def platform_on_k8s(
    database_url: str, fake_k8s: FakeKubernetes, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    kubeconfig = fake_k8s.write_kubeconfig(tmp_path_factory.mktemp("k8s") / "kubeconfig")
    env = {"EXECUTION_BACKEND": "kubernetes", "KUBECONFIG": str(kubeconfig)}
    with running_platform(database_url, env) as platform:
        yield platform


async def test_the_platforms_terminal_runs_in_a_pod_and_what_it_writes_is_saved(
    platform_on_k8s: Platform, fake_k8s: FakeKubernetes
) -> None:
    with httpx.Client(base_url=platform_on_k8s.base_url, timeout=30) as api:
        owner = new_user(api)
    workspace = new_workspace(owner)
    created = owner.client.post(
        f"/api/workspace/{workspace}/files", json={"path": "given.txt", "content": "from api\n"}
    )
    assert created.status_code == 201, created.text
    async with opened_shell(platform_on_k8s, owner, workspace) as term:
        assert await term.run("hostname") == pod_name(workspace)  # the shell is the pod's
        assert await term.run("cat given.txt") == "from api"
        await term.run("echo made-in-pod > pod.txt")
    saved = owner.client.get(f"/api/workspace/{workspace}/files/pod.txt")
    assert saved.status_code == 200 and saved.json()["data"]["content"] == "made-in-pod\n"
    execution = owner.client.get(f"/api/workspace/{workspace}/status").json()["data"]["execution"]
    assert execution["state"] == "running" and execution["backend"] == "kubernetes"
    shutdown = owner.client.post(f"/workspace/{workspace}/shutdown")
    assert shutdown.status_code == 200 and shutdown.json()["data"]["container_cleaned"] is True
    assert pod_name(workspace) not in pod_names(fake_k8s)
