"""The kubernetes execution backend against a fake API server that speaks the real wire
protocol to the unmodified official client (see tests/fake_k8s)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from uuid import UUID, uuid4

import anyio
import pytest

from shared.execution.base import (
    ExecutionBackend,
    ExecutionError,
    ExecutionState,
    Shell,
    WorkspaceEntry,
)
from shared.execution.kubernetes import KubernetesBackend, KubernetesBackendConfig
from shared.execution.pod_spec import pod_name
from tests.fake_k8s import V4, V5, FakeKubernetes
from tests.fake_k8s.factory import kubernetes_backend

pytestmark = pytest.mark.anyio
BINARY = bytes(range(256)) * 4
OWNER = 7


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def fake_k8s() -> Iterator[FakeKubernetes]:
    with FakeKubernetes() as fake:
        yield fake


@pytest.fixture
def kubeconfig(fake_k8s: FakeKubernetes, tmp_path: Path) -> str:
    return str(fake_k8s.write_kubeconfig(tmp_path / "kubeconfig"))


def make_backend(kubeconfig: str, **overrides: object) -> KubernetesBackend:
    settings: dict[str, object] = {"kubeconfig": kubeconfig, "ready_timeout_s": 15.0}
    settings.update(overrides)
    return KubernetesBackend(KubernetesBackendConfig(**settings))  # type: ignore[arg-type]


@pytest.fixture
async def backend(kubeconfig: str) -> AsyncIterator[KubernetesBackend]:
    backend = make_backend(kubeconfig)
    yield backend
    await backend.aclose()


@pytest.fixture
async def session(backend: KubernetesBackend) -> AsyncIterator[UUID]:
    """A running session with a small workspace; stopped afterwards."""
    session_id = uuid4()
    files = [
        WorkspaceEntry("main.py", "file", b"print('hello')\n"),
        WorkspaceEntry("data/blob.bin", "file", BINARY),
        WorkspaceEntry("empty", "directory"),
    ]
    assert await backend.ensure_started(session_id, OWNER, files) is True
    yield session_id
    await backend.stop(session_id)


async def read_until(shell: Shell, needle: bytes, wait_s: float = 10) -> bytes:
    seen = b""
    with anyio.move_on_after(wait_s):
        while needle not in seen:
            chunk = await shell.read()
            if not chunk:
                break
            seen += chunk
    assert needle in seen, seen[-2000:]
    return seen


def pod_names(fake: FakeKubernetes) -> set[str]:
    return {p["metadata"]["name"] for p in fake.pods()}


# --- lifecycle ---------------------------------------------------------------------------


async def test_start_creates_a_labelled_restricted_pod_and_reports_running(
    backend: KubernetesBackend, session: UUID, fake_k8s: FakeKubernetes
) -> None:
    (pod,) = [p for p in fake_k8s.pods() if p["metadata"]["name"] == pod_name(session)]
    assert pod["metadata"]["labels"] == {"app": "execution", "session": str(session), "owner": "7"}
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["automountServiceAccountToken"] is False
    status = await backend.status(session)
    assert status.state is ExecutionState.RUNNING
    assert status.backend == "kubernetes" and status.since is not None
    assert await backend.ensure_started(session, OWNER, []) is False


async def test_files_are_materialized_byte_for_byte(
    backend: KubernetesBackend, session: UUID, fake_k8s: FakeKubernetes
) -> None:
    workspace = fake_k8s.workspace_dir(pod_name(session))
    assert (workspace / "main.py").read_bytes() == b"print('hello')\n"
    assert (workspace / "data" / "blob.bin").read_bytes() == BINARY
    assert (workspace / "empty").is_dir()
    files = await backend.read_files(session, ["main.py", "data/blob.bin", "gone.txt"])
    assert files == {"main.py": b"print('hello')\n", "data/blob.bin": BINARY}


async def test_a_second_replica_attaches_to_the_same_pod(
    backend: KubernetesBackend, session: UUID, kubeconfig: str, fake_k8s: FakeKubernetes
) -> None:
    other = make_backend(kubeconfig)
    try:
        assert session in await other.running_sessions()
        assert (
            await other.ensure_started(session, OWNER, [WorkspaceEntry("x", "file", b"")]) is False
        )
        assert (await other.status(session)).state is ExecutionState.RUNNING
        await backend.write_file(session, "from_first.txt", b"one")
        assert await other.read_files(session, ["from_first.txt"]) == {"from_first.txt": b"one"}
        shell = await other.open_shell(session, 80, 24)
        await shell.write(b"cat from_first.txt; echo END\n")
        await read_until(shell, b"oneEND")
        await shell.close()
    finally:
        await other.aclose()
    assert len([n for n in pod_names(fake_k8s) if n == pod_name(session)]) == 1


async def test_stop_deletes_the_pod(
    backend: KubernetesBackend, kubeconfig: str, fake_k8s: FakeKubernetes
) -> None:
    session_id = uuid4()
    await backend.ensure_started(session_id, OWNER, [])
    assert pod_name(session_id) in pod_names(fake_k8s)
    shell = await backend.open_shell(session_id, 80, 24)
    assert await backend.stop(session_id) is True
    with anyio.fail_after(10):  # the pod's processes went with it: the shell ends
        while await shell.read():
            pass
    await shell.close()
    assert pod_name(session_id) not in pod_names(fake_k8s)
    assert (await backend.status(session_id)).state is ExecutionState.STOPPED
    assert session_id not in await backend.running_sessions()
    assert await backend.stop(session_id) is False
    await backend.write_file(session_id, "ignored.txt", b"no-op when stopped")
    assert await backend.read_files(session_id, ["ignored.txt"]) == {}
    assert (await backend.scan(session_id, [], 1024, 10)).entries == ()
    with pytest.raises(ExecutionError):
        await backend.open_shell(session_id, 80, 24)


async def test_running_sessions_are_found_by_label(
    backend: KubernetesBackend, fake_k8s: FakeKubernetes
) -> None:
    first, second = uuid4(), uuid4()
    await backend.ensure_started(first, OWNER, [])
    await backend.ensure_started(second, OWNER + 1, [])
    unrelated = {
        "metadata": {"name": "not-an-execution-pod", "labels": {"app": "backend"}},
        "spec": {"containers": [{"name": "web", "image": "web:1"}]},
    }
    fake_k8s.call(_create(fake_k8s, unrelated))
    try:
        running = await backend.running_sessions()
        assert first in running and second in running
        assert all(isinstance(s, UUID) for s in running)
        assert len(running) == len({p for p in pod_names(fake_k8s) if p.startswith("exec-")})
    finally:
        await backend.stop(first)
        await backend.stop(second)
    assert not {first, second} & set(await backend.running_sessions())


async def _create(fake: FakeKubernetes, body: dict) -> None:
    fake.server.store.create(fake.namespace, body)


@pytest.mark.parametrize(
    ("image", "ready_timeout", "message"),
    [
        ("fail/imagepull", 15.0, "could not be pulled"),
        ("fail/unschedulable", 1.0, "No node in the cluster has room"),
        ("fail/slow", 1.0, "did not become ready within 1 s"),
    ],
)
async def test_start_failures_are_reported_and_leave_no_pod(
    kubeconfig: str, fake_k8s: FakeKubernetes, image: str, ready_timeout: float, message: str
) -> None:
    backend = make_backend(kubeconfig, image=image, ready_timeout_s=ready_timeout)
    session_id = uuid4()
    try:
        with pytest.raises(ExecutionError, match=message):
            await backend.ensure_started(session_id, OWNER, [WorkspaceEntry("a", "file", b"")])
        assert pod_name(session_id) not in pod_names(fake_k8s)
        status = await backend.status(session_id)
        assert status.state is ExecutionState.STOPPED
        assert status.message is not None and message in status.message
    finally:
        await backend.aclose()


async def test_a_wrong_token_is_a_clear_error(fake_k8s: FakeKubernetes, tmp_path: Path) -> None:
    kubeconfig = fake_k8s.write_kubeconfig(tmp_path / "bad", token="wrong")
    backend = make_backend(str(kubeconfig))
    try:
        with pytest.raises(ExecutionError, match="refused"):
            await backend.ensure_started(uuid4(), OWNER, [])
    finally:
        await backend.aclose()


async def test_backend_and_shell_implement_the_protocols(tmp_path: Path) -> None:
    async with kubernetes_backend(tmp_path) as backend:
        assert isinstance(backend, ExecutionBackend) and backend.name == "kubernetes"
        session_id = uuid4()
        await backend.ensure_started(session_id, OWNER, [])
        shell = await backend.open_shell(session_id, 80, 24)
        assert isinstance(shell, Shell) and shell.exit_code is None
        await shell.close()


# --- shell -------------------------------------------------------------------------------


async def test_shell_echoes_in_the_workspace(backend: KubernetesBackend, session: UUID) -> None:
    shell = await backend.open_shell(session, 80, 24)
    await shell.write(b'echo "cwd=$(pwd) term=$TERM home=$HOME"\n')
    await read_until(shell, b"cwd=/workspace term=xterm-256color home=/workspace")
    await shell.write(b"python3 main.py\n")
    await read_until(shell, b"hello\r\n")
    await shell.close()
    await shell.close()  # idempotent


async def test_shell_passes_utf8_bytes_exactly(backend: KubernetesBackend, session: UUID) -> None:
    shell = await backend.open_shell(session, 80, 24)
    text = "héllo €uro 😀 日本"
    await shell.write(f"printf '%s\\n' '{text}' | od -An -tx1 | tr -d ' \\n'; echo\n".encode())
    await read_until(shell, text.encode().hex().encode())
    await shell.write(b"printf '\\xc3\\xa9\\xf0\\x9f\\x98\\x80=done\\n'\n")
    await read_until(shell, "é😀=done".encode())
    await shell.close()


async def test_resize_changes_stty_size(backend: KubernetesBackend, session: UUID) -> None:
    shell = await backend.open_shell(session, 100, 30)
    await shell.write(b'echo "SIZE=$(stty size)"\n')
    await read_until(shell, b"SIZE=30 100")
    await shell.resize(120, 40)
    await shell.write(b'echo "SIZE=$(stty size)"\n')
    await read_until(shell, b"SIZE=40 120")
    await shell.close()


async def test_shell_reports_its_exit_code(backend: KubernetesBackend, session: UUID) -> None:
    shell = await backend.open_shell(session, 80, 24)
    await shell.write(b"exit 3\n")
    with anyio.fail_after(10):
        while await shell.read():
            pass
    assert shell.exit_code == 3
    assert await shell.read() == b""
    await shell.close()


async def test_a_cancelled_read_loses_no_output(backend: KubernetesBackend, session: UUID) -> None:
    shell = await backend.open_shell(session, 80, 24)
    await shell.write(b"echo RE''ADY\n")
    await read_until(shell, b"READY\r\n")
    for _ in range(5):  # cancel reads at arbitrary points while output is flowing
        with anyio.move_on_after(0.05):
            await shell.read()
        await shell.write(b"")
    await shell.write(b"for i in $(seq 1 300); do echo line-$i; done\n")
    seen = b""
    while b"line-300\r\n" not in seen:
        with anyio.move_on_after(0.01):  # many reads are cancelled mid-wait
            seen += await shell.read(7)
    assert re.findall(rb"line-(\d+)\r\n", seen) == [str(i).encode() for i in range(1, 301)]
    await shell.close()


async def test_large_output_arrives_complete_in_bounded_reads(
    backend: KubernetesBackend, session: UUID
) -> None:
    shell = await backend.open_shell(session, 80, 24)
    await shell.write(b"head -c 3000000 /dev/zero | tr '\\0' x; echo; echo END-OF-$((6*7))\n")
    count, largest, tail = 0, 0, b""
    with anyio.fail_after(30):
        while b"END-OF-42\r\n" not in tail:
            chunk = await shell.read(16384)
            assert chunk
            largest = max(largest, len(chunk))
            count += chunk.count(b"x")
            tail = (tail + chunk)[-64:]
    assert count >= 3_000_000 and largest <= 16384
    await shell.close()


# --- files -------------------------------------------------------------------------------


async def test_write_read_delete_round_trip(
    backend: KubernetesBackend, session: UUID, fake_k8s: FakeKubernetes
) -> None:
    await backend.write_file(session, "deep/er/bin.dat", BINARY)
    await backend.write_file(session, "main.py", "print('ünïcode')\n".encode())
    await backend.make_directory(session, "made/here")
    files = await backend.read_files(session, ["deep/er/bin.dat", "main.py"])
    assert files == {"deep/er/bin.dat": BINARY, "main.py": "print('ünïcode')\n".encode()}
    workspace = fake_k8s.workspace_dir(pod_name(session))
    assert (workspace / "made" / "here").is_dir()
    await backend.delete_path(session, "deep")
    await backend.delete_path(session, "main.py")
    await backend.delete_path(session, "never-existed")
    assert not (workspace / "deep").exists() and not (workspace / "main.py").exists()
    assert await backend.read_files(session, ["deep/er/bin.dat", "main.py"]) == {}
    with pytest.raises(ValueError):
        await backend.delete_path(session, "../escape")


async def test_scan_reports_entries_digests_and_what_it_skipped(
    backend: KubernetesBackend, session: UUID
) -> None:
    await backend.write_file(session, "pkg/mod.py", b"x = 1\n")
    await backend.write_file(session, "pkg/mod.pyc", b"\0compiled")
    await backend.write_file(session, ".venv/lib/site.py", b"ignored")
    await backend.write_file(session, "sub/.venv/x", b"ignored anywhere")
    await backend.write_file(session, "big.bin", b"b" * 5000)
    result = await backend.scan(session, [".venv/", "*.pyc"], 4096, 100)
    by_path = {e.path: e for e in result.entries}
    assert by_path["data/blob.bin"].sha256 == hashlib.sha256(BINARY).hexdigest()
    assert by_path["data/blob.bin"].size == len(BINARY)
    assert by_path["pkg"].type == "directory" and by_path["empty"].type == "directory"
    assert by_path["pkg/mod.py"].sha256 == hashlib.sha256(b"x = 1\n").hexdigest()
    assert not any(p.startswith(".venv") or "/.venv" in p or p.endswith(".pyc") for p in by_path)
    skipped = dict(result.skipped)
    assert skipped[".venv"] == "ignored" and skipped["sub/.venv"] == "ignored"
    assert skipped["pkg/mod.pyc"] == "ignored"
    assert skipped["big.bin"] == "too large"

    limited = await backend.scan(session, [], 1 << 20, 3)
    assert len(limited.entries) == 3
    assert any(reason == "too many entries" for _, reason in limited.skipped)


async def test_files_made_in_the_shell_are_seen_by_scan_and_read(
    backend: KubernetesBackend, session: UUID
) -> None:
    shell = await backend.open_shell(session, 80, 24)
    await shell.write(b"mkdir -p out && printf 'from shell' > out/made.txt && echo MA''DE\n")
    await read_until(shell, b"MADE\r\n")
    await shell.write(b"ln -s /etc/passwd out/link && mkfifo out/fifo && echo LI''NKED\n")
    await read_until(shell, b"LINKED\r\n")
    await shell.close()
    result = await backend.scan(session, [], 1 << 20, 100)
    assert "out/made.txt" in {e.path for e in result.entries}
    skipped = dict(result.skipped)
    assert skipped["out/link"] == "symlink" and skipped["out/fifo"] == "special file"
    assert await backend.read_files(session, ["out/made.txt"]) == {"out/made.txt": b"from shell"}


# --- protocol versions -------------------------------------------------------------------


async def test_exec_negotiates_v5_with_the_official_client(
    backend: KubernetesBackend, session: UUID, fake_k8s: FakeKubernetes
) -> None:
    await backend.read_files(session, ["main.py"])
    protocols = {proto for pod, _, _, proto in fake_k8s.exec_log if pod == pod_name(session)}
    assert protocols == {V5}


async def test_files_and_shell_work_on_a_v4_only_server(tmp_path: Path) -> None:
    """v4 has no stdin close: tar must stop at the end of the archive by itself."""
    with FakeKubernetes(protocols=(V4,)) as fake:
        backend = make_backend(str(fake.write_kubeconfig(tmp_path / "kubeconfig")))
        session_id = uuid4()
        try:
            files = [WorkspaceEntry("a/b.bin", "file", BINARY)]
            assert await backend.ensure_started(session_id, OWNER, files) is True
            await backend.write_file(session_id, "c.txt", b"v4")
            got = await backend.read_files(session_id, ["a/b.bin", "c.txt"])
            assert got == {"a/b.bin": BINARY, "c.txt": b"v4"}
            shell = await backend.open_shell(session_id, 90, 20)
            await shell.write(b'echo "SIZE=$(stty size)"\n')
            await read_until(shell, b"SIZE=20 90")
            await shell.close()
            assert {proto for *_, proto in fake.exec_log} == {V4}
        finally:
            await backend.stop(session_id)
            await backend.aclose()
