"""The workspace function: /api/workspace/* (files, status, default files) and
/workspace/{id}/shutdown."""

from functions.workspace.routes import ShutdownController, WorkspaceController, read_file_lane
from shared.app_factory import create_app

app = create_app(
    "workspace",
    [WorkspaceController, ShutdownController],
    uses_execution=True,
    lane=read_file_lane,
)
