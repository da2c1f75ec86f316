"""A ready-made kubernetes backend on a fake API server, for suites parameterized over
backends (tests/conformance): ``async with kubernetes_backend(tmp_path) as backend: ...``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import attrs

from shared.config import KubernetesSettings
from shared.execution.kubernetes import KubernetesBackend

from .server import FakeKubernetes

TEST_SETTINGS = KubernetesSettings(ready_timeout_seconds=15.0, stop_timeout_seconds=15.0)


def settings_for(kubeconfig: Path | str, **overrides: object) -> KubernetesSettings:
    return attrs.evolve(TEST_SETTINGS, kubeconfig=str(kubeconfig), **overrides)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def kubernetes_backend(
    tmp_path: Path, **overrides: object
) -> AsyncIterator[KubernetesBackend]:
    """Starts a fake API server, yields a started backend pointed at it through a
    kubeconfig, and tears both down (every pod's processes and network go with the server)."""
    with FakeKubernetes() as fake:
        backend = KubernetesBackend(
            settings_for(fake.write_kubeconfig(tmp_path / "kubeconfig"), **overrides)
        )
        await backend.start()
        try:
            yield backend
        finally:
            await backend.aclose()
