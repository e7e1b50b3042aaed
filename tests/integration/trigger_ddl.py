"""DDL of the tests' own triggers on tables the session's workers use."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

TRIES = 20


async def trigger_ddl(connection: psycopg.AsyncConnection[Any], statement: sql.Composed | sql.SQL) -> None:
    """Creating or dropping a trigger on partitioned `deliveries` locks every partition, in an order the
    session's workers' statements may cross: PostgreSQL then ends one side as a deadlock. The DDL is
    tried again rather than failing the test."""
    for _ in range(TRIES):
        try:
            await connection.execute(statement)
            return
        except psycopg.errors.DeadlockDetected:
            continue
    raise AssertionError(f"{statement!r} deadlocked {TRIES} times")
