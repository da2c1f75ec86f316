"""A fake Kubernetes API server speaking the real wire protocol, backed by local processes."""

from .server import ALL_PROTOCOLS, V4, V5, FakeKubernetes

__all__ = ["ALL_PROTOCOLS", "V4", "V5", "FakeKubernetes"]
