"""The registry the conformance suite runs over: one factory per execution backend.

A factory is an async context manager taking pytest's ``tmp_path`` and yielding a ready
backend; it tears down everything it started. Add a backend by adding an entry.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from shared.config import SandboxSettings
from shared.execution.base import ExecutionBackend
from shared.execution.local import LocalBackend

BackendFactory = Callable[[Path], AbstractAsyncContextManager[ExecutionBackend]]


@contextlib.contextmanager
def sandbox_root(prefix: str = "cep-sandboxes-") -> Iterator[Path]:
    """A fresh directory sandboxes can reach (their unprivileged host uids need o+x on every
    parent, and pytest's temp root is private to root); removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(root, 0o711)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.asynccontextmanager
async def started_local(root: Path, **options: Any) -> AsyncIterator[LocalBackend]:
    """A started local backend with its sandboxes under ``root``; closed, and everything it
    made destroyed, afterwards."""
    backend = LocalBackend(SandboxSettings(root=root, **options))
    await backend.start()
    try:
        yield backend
    finally:
        await backend.aclose()
        backend.destroy_everything()


@contextlib.asynccontextmanager
async def local_bwrap(tmp_path: Path) -> AsyncIterator[ExecutionBackend]:
    with sandbox_root() as root:
        async with started_local(root / "sandboxes") as backend:
            yield backend


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
