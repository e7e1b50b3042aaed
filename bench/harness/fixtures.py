"""Bulk fixtures: many copies of one row the service itself wrote.

Some benchmarks need more rows than the public API can make in the time a benchmark has (10,000
webhooks for a fan-out, tens of thousands of log entries for a backlog). Rather than spell out the
schema here, they make one row through the API and copy it in SQL: every column the row has is
copied, but those with a default (identities, txid) take their default, and a few are overridden by
SQL expressions over the template row `t` and the copy's number `g` (1..count). The copies stay as
the service shapes its rows as the schema changes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg import sql


def wait_for_value(database: str, query: str, params: Sequence[Any], limit: float) -> Any:
    """The first column of `query`'s first row once there is one (polled); TimeoutError after `limit` s."""
    deadline = time.monotonic() + limit
    with psycopg.connect(database, autocommit=True) as connection:
        while True:
            row = connection.execute(query, params).fetchone()
            if row is not None and row[0] is not None:
                return row[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing from {query.split()[0:6]} after {limit:.0f} s")
            time.sleep(0.05)


def same_shape_id(column: str) -> sql.Composable:
    """A unique id of the same length and alphabet as the template's: its last 8 characters numbered."""
    return sql.SQL("left(t.{0}, -8) || lpad(g::text, 8, '0')").format(sql.Identifier(column))


def clone_rows(database: str, table: str, template_id: str, count: int, overrides: Mapping[str, sql.Composable]) -> int:
    """Inserts `count` copies of `table`'s row `template_id` in one statement; returns the rows inserted."""
    with psycopg.connect(database) as connection:
        cursor = connection.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = %s"
            " AND is_identity = 'NO' AND is_generated = 'NEVER' AND column_default IS NULL"
            " ORDER BY ordinal_position",
            (table,),
        )
        columns = [str(name) for (name,) in cursor.fetchall()]
        columns += [name for name in overrides if name not in columns]
        values = [overrides.get(name, sql.SQL("t.{}").format(sql.Identifier(name))) for name in columns]
        statement = sql.SQL(
            "INSERT INTO {table} ({columns}) SELECT {values} FROM {table} t, generate_series(1, %s) g WHERE t.id = %s"
        ).format(
            table=sql.Identifier(table),
            columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
            values=sql.SQL(", ").join(values),
        )
        inserted = connection.execute(statement, (count, template_id)).rowcount
        connection.commit()
        connection.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
    return inserted
