"""Terminal tickets: single-use, short-lived proofs that let a browser open a terminal."""

from piccolo.columns import ForeignKey, OnDelete, Serial, Timestamptz, Varchar
from piccolo.table import Table

from shared.tables.accounts import User
from shared.tables.workspaces import Session


class TerminalTicket(Table, tablename="terminal_tickets"):
    """A ticket is shown to its user once; only its sha256 is kept, with the login token
    (by hash) it was issued under, so a logout also voids the tickets of that login."""

    id = Serial(primary_key=True)
    ticket_hash = Varchar(length=64, unique=True)
    user_id = ForeignKey(references=User, on_delete=OnDelete.cascade, null=False)
    session_id = ForeignKey(references=Session, on_delete=OnDelete.cascade, null=False)
    token_hash = Varchar(length=64)
    expires_at = Timestamptz(index=True)
