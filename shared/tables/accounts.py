"""Accounts: users, their login tokens (hash only) and the rate limiters' recent events."""

from piccolo.columns import (
    Boolean,
    ForeignKey,
    Integer,
    OnDelete,
    Serial,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.table import Table


class User(Table, tablename="users"):
    id = Serial(primary_key=True)
    username = Varchar(length=32)
    # Lower-cased copies carry the uniqueness, so "Alice" and "alice" are one name.
    username_key = Varchar(length=32, unique=True)
    email = Varchar(length=320)
    email_key = Varchar(length=320, unique=True)
    password_hash = Text()
    is_reviewer = Boolean(default=False)
    reviewer_level = Integer(null=True, default=None)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class LoginToken(Table, tablename="login_tokens"):
    id = Serial(primary_key=True)
    user_id = ForeignKey(references=User, on_delete=OnDelete.cascade, null=False)
    token_hash = Varchar(length=64, unique=True)  # sha256 hex of the opaque token
    created_at = Timestamptz()
    expires_at = Timestamptz(index=True)
    revoked_at = Timestamptz(null=True, default=None)


class RateEvent(Table, tablename="rate_events"):
    """One row per counted attempt (a failed or in-flight login, a registration), keyed by
    "login-user:<name>", "login-addr:<ip>", "register-addr:<ip>"; rows past expiry are pruned."""

    id = Serial(primary_key=True)
    key = Varchar(length=400, index=True)
    expires_at = Timestamptz(index=True)
