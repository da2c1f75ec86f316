"""A ready-made kubernetes backend on a fake API server, for suites parameterized over
backends (tests/conformance): ``async with kubernetes_backend(tmp_path) as backend: ...``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from shared.execution.kubernetes import KubernetesBackend, KubernetesBackendConfig

from .server import FakeKubernetes


@contextlib.asynccontextmanager
async def kubernetes_backend(tmp_path: Path, **config: object) -> AsyncIterator[KubernetesBackend]:
    """Starts a fake API server, yields a backend pointed at it through a kubeconfig, and
    tears both down (every pod's processes are killed with the server)."""
    with FakeKubernetes() as fake:
        kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig")
        settings: dict[str, object] = {"kubeconfig": str(kubeconfig), "ready_timeout_s": 15.0}
        settings.update(config)
        backend = KubernetesBackend(KubernetesBackendConfig(**settings))  # type: ignore[arg-type]
        try:
            yield backend
        finally:
            await backend.aclose()
