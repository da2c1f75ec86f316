"""The terminal function (its WebSocket route arrives with the execution backends)."""

from shared.app_factory import create_app

app = create_app("terminal", [])
