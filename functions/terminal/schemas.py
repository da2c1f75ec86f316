"""Request and response types of the terminal function."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

Dimension = Annotated[int, msgspec.Meta(ge=2, le=1000)]


class TerminalResize(msgspec.Struct):
    """The terminal's size in character cells."""

    cols: Dimension
    rows: Dimension


class TerminalState(msgspec.Struct):
    """The session's shell as the platform sees it."""

    state: Literal["stopped", "starting", "running"]  # the execution environment
    since: datetime | None
    connections: int  # WebSocket viewers attached to the shell
    cols: int | None  # the shell's size (the smallest viewer's), None without a shell
    rows: int | None
