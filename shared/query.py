"""Queries over the Tables of ``shared.tables``: what every store module builds on.

Piccolo's query builder is the default. Where a query needs what the builder cannot say
(joins on arbitrary conditions, advisory locks, ``INSERT ... SELECT``) or sits on a measured
hot path, its SQL is still built from the Table definitions: ``Alias(User, "u")`` renders as
``users u`` and ``u.id`` as ``u.id``; a column the Table lacks is an AttributeError when the
module is imported, so a renamed column cannot leave a query behind.
"""

from __future__ import annotations

from typing import Any

from piccolo.columns import Column
from piccolo.columns.combination import WhereRaw
from piccolo.query import Count, Select
from piccolo.querystring import QueryString
from piccolo.table import Table


class Alias:
    """A Table in hand-built SQL, under a short name (or its own name without one)."""

    def __init__(self, table: type[Table], name: str | None = None) -> None:
        self._table = table
        self._tablename = table._meta.tablename
        self._name = name or self._tablename

    def __str__(self) -> str:
        return (
            self._tablename if self._name == self._tablename else f"{self._tablename} {self._name}"
        )

    def __getattr__(self, column: str) -> str:
        """``alias.column`` -> ``"u.username"``, for a column the Table has."""
        if column.startswith("_"):
            raise AttributeError(column)
        try:
            found = self._table._meta.get_column_by_name(column)
        except ValueError:
            raise AttributeError(f"{self._tablename} has no column {column!r}") from None
        return f"{self._name}.{found._meta.db_column_name}"

    def __call__(self, *columns: Column) -> str:
        """The qualified list of these columns: ``"u.id, u.username"``."""
        return ", ".join(getattr(self, column._meta.name) for column in columns)


def names(*columns: Column) -> str:
    """The unqualified list of these columns: ``"id, username"``."""
    return ", ".join(column._meta.db_column_name for column in columns)


def in_subtree(column: Column, path: str) -> WhereRaw:
    """``path`` itself or anything under it (a path column; no LIKE, whose wildcards a
    path may contain)."""
    sql = f"{column._meta.table._meta.tablename}.{column._meta.db_column_name}"
    return WhereRaw(f"({sql} = {{}} OR starts_with({sql}, {{}}))", path, path + "/")


_TOTAL = QueryString("count(*) OVER ()", alias="total")


async def page(
    query: Select, count: Count, skip: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """Rows ``skip .. skip + limit`` of ``query`` (ordered by the caller) and how many rows
    it has in all (``count``: the same table and condition). One round trip unless the page
    is empty: the total rides along as a window count."""
    rows = await query.columns(_TOTAL).offset(skip).limit(limit)
    total = rows[0]["total"] if rows else await count
    for row in rows:
        del row["total"]
    return rows, total
