"""A fake Kubernetes API server speaking the real wire protocol, whose pods run for real."""

from .server import FakeKubernetes

__all__ = ["FakeKubernetes"]
