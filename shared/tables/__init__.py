"""Piccolo tables, one module per concern, re-exported: ``from shared.tables import User``."""

from shared.tables.accounts import LoginToken, RateEvent, User
from shared.tables.reviews import ReviewHistory, ReviewRequest
from shared.tables.terminal import TerminalTicket
from shared.tables.workspaces import EnvironmentFile, Session, WorkspaceFile

__all__ = [
    "EnvironmentFile",
    "LoginToken",
    "RateEvent",
    "ReviewHistory",
    "ReviewRequest",
    "Session",
    "TerminalTicket",
    "User",
    "WorkspaceFile",
]
