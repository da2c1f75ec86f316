"""The sessions function: workspaces, their legacy single-file view, the editor's view."""

from functions.sessions.routes import (
    LegacySessionsController,
    SessionsController,
    SessionWorkspaceController,
)
from shared.app_factory import create_app

app = create_app(
    "sessions", [SessionsController, LegacySessionsController, SessionWorkspaceController]
)
