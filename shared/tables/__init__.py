"""Piccolo tables, one module per concern, re-exported: ``from shared.tables import User``."""

from shared.tables.accounts import LoginFailure, LoginToken, User
from shared.tables.reviews import ReviewHistory, ReviewRequest
from shared.tables.workspaces import EnvironmentFile, Session, WorkspaceFile

__all__ = [
    "EnvironmentFile",
    "LoginFailure",
    "LoginToken",
    "ReviewHistory",
    "ReviewRequest",
    "Session",
    "User",
    "WorkspaceFile",
]
