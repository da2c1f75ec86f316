from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.execution.base import ExecutionBackend
from tests.conformance.backends import BACKENDS


@pytest.fixture(params=sorted(BACKENDS))
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[ExecutionBackend]:
    async with BACKENDS[request.param](tmp_path) as instance:
        yield instance
