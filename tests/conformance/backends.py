"""The registry the conformance suite runs over: one factory per execution backend.

A factory is an async context manager taking pytest's ``tmp_path`` and yielding a ready
backend; it tears down everything it started. Add a backend by adding an entry.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from shared.config import SandboxSettings
from shared.execution.base import ExecutionBackend
from shared.execution.local import LocalBackend

BackendFactory = Callable[[Path], AbstractAsyncContextManager[ExecutionBackend]]


@contextlib.asynccontextmanager
async def local_bwrap(tmp_path: Path) -> AsyncIterator[ExecutionBackend]:
    # Not under tmp_path: sandboxes run as unprivileged host uids that must be able to reach
    # their directory, and pytest's temp root is private to root.
    root = Path(tempfile.mkdtemp(prefix="cep-sandboxes-"))
    os.chmod(root, 0o711)
    backend = LocalBackend(SandboxSettings(root=root / "sandboxes"))
    await backend.start()
    try:
        yield backend
    finally:
        await backend.aclose()
        backend.destroy_everything()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.asynccontextmanager
async def kubernetes_fake(tmp_path: Path) -> AsyncIterator[ExecutionBackend]:
    from tests.fake_k8s.factory import kubernetes_backend

    async with kubernetes_backend(tmp_path) as backend:
        yield backend


# Both backends, always: a machine without bwrap fails here rather than skipping quietly
# (`make test` installs bubblewrap). The Kubernetes one runs against tests/fake_k8s.
BACKENDS: dict[str, BackendFactory] = {
    "local-bwrap": local_bwrap,
    "kubernetes-fake": kubernetes_fake,
}
