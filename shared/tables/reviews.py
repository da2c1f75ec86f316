"""Reviews: a request to review a workspace, and every change made to it."""

from piccolo.columns import (
    JSONB,
    ForeignKey,
    OnDelete,
    Serial,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.table import Table

from shared.tables.accounts import User
from shared.tables.workspaces import Session


class ReviewRequest(Table, tablename="review_requests"):
    id = Serial(primary_key=True)
    session_id = ForeignKey(references=Session, on_delete=OnDelete.cascade, null=False, index=True)
    title = Varchar(length=200)
    description = Text(default="")
    priority = Varchar(length=16, default="medium")
    status = Varchar(length=24, default="pending", index=True)
    submitted_by = ForeignKey(references=User, on_delete=OnDelete.cascade, null=False, index=True)
    assigned_to = ForeignKey(
        references=User, on_delete=OnDelete.set_null, null=True, default=None, index=True
    )
    created_at = Timestamptz()
    updated_at = Timestamptz()
    reviewed_at = Timestamptz(null=True, default=None)


class ReviewHistory(Table, tablename="review_history"):
    id = Serial(primary_key=True)
    review_id = ForeignKey(
        references=ReviewRequest, on_delete=OnDelete.cascade, null=False, index=True
    )
    actor_id = ForeignKey(references=User, on_delete=OnDelete.cascade, null=False)
    action = Varchar(length=32)  # "created" | "updated" | "status"
    from_status = Varchar(length=24, null=True, default=None)
    to_status = Varchar(length=24, null=True, default=None)
    comment = Text(default="")
    changes = JSONB(default="{}")
    created_at = Timestamptz()
