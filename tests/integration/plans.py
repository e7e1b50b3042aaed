"""The plans PostgreSQL makes for a store's statements, read with EXPLAIN (never run), for the tests
that prove a statement reaches its table by index: a plan's shape, not a time."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql

from webhookd.store.conninfo import conninfo
from webhookd.store.database import GENERIC_PLAN


def prepared(statement: str) -> tuple[str, list[str]]:
    """The statement with psycopg's %(name)s placeholders as $1..$n, and the names in that order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return re.sub(r"%\((\w+)\)s", number, statement), names


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def generic_plan(
    database: str, settings_statement: str, statement: str, types: dict[str, str], values: dict[str, Any]
) -> dict[str, Any]:
    """The statement's plan (EXPLAIN, not run) after `settings_statement`, as the store runs it on a
    connection that has run it often: PostgreSQL's generic plan, unless the settings ask otherwise."""
    with psycopg.connect(conninfo(database), autocommit=True) as connection:
        numbered, names = prepared(statement)
        connection.execute(f"PREPARE planned({', '.join(types[name] for name in names)}) AS {numbered}")
        with connection.transaction(force_rollback=True):
            connection.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            connection.execute(settings_statement)
            arguments = sql.SQL(", ").join(sql.Literal(values[name]) for name in names)
            explain = sql.SQL("EXPLAIN (FORMAT JSON) EXECUTE planned({})").format(arguments)
            [document] = connection.execute(explain).fetchone()
    return dict((json.loads(document) if isinstance(document, str) else document)[0]["Plan"])


def analyzed_plan(database: str, settings_statement: str, statement: str, values: dict[str, Any]) -> dict[str, Any]:
    """The statement's plan, run (EXPLAIN ANALYZE with BUFFERS, for a read only: in a transaction rolled
    back), after `settings_statement`: what each node read, to count the rows and pages a statement goes
    through."""
    with (
        psycopg.connect(conninfo(database), autocommit=True) as connection,
        connection.transaction(force_rollback=True),
    ):
        connection.execute(settings_statement)
        explain = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ") + sql.SQL(statement)
        [document] = connection.execute(explain, values).fetchone()
    return dict((json.loads(document) if isinstance(document, str) else document)[0]["Plan"])


def analyzed_generic_plan(database: str, statement: str, values: dict[str, Any]) -> dict[str, Any]:
    """The statement's generic plan, run (EXPLAIN ANALYZE with BUFFERS, in a transaction rolled back), as
    the store runs it on a connection that asks for it (store/database.py GENERIC_PLAN): planned without
    the values, which `analyzed_plan` plans with (a `since` whose rows the statistics show few, say)."""
    with psycopg.connect(conninfo(database), autocommit=True) as connection:
        numbered, names = prepared(statement)
        connection.execute(f"PREPARE planned AS {numbered}")
        with connection.transaction(force_rollback=True):
            connection.execute(GENERIC_PLAN)
            arguments = sql.SQL(", ").join(sql.Literal(values[name]) for name in names)
            explain = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE planned({})").format(arguments)
            [document] = connection.execute(explain).fetchone()
    return dict((json.loads(document) if isinstance(document, str) else document)[0]["Plan"])


def rows_read(plan: dict[str, Any], relation_prefix: str) -> int:
    """The rows the plan's scans of `relation_prefix`'s tables (a partitioned one's partitions) read: those
    they returned and those their filters removed."""
    return sum(
        int(node.get("Actual Rows", 0) * node.get("Actual Loops", 1)) + int(node.get("Rows Removed by Filter", 0))
        for node in nodes(plan)
        if str(node.get("Relation Name", "")).startswith(relation_prefix)
    )


def pages_under(plan: dict[str, Any], alias: str) -> int:
    """The pages (index and table, in shared buffers or read) the part of the plan under the node named
    `alias` (a subquery's) went through: an index scan walking entries its conditions rule out reads
    their pages without returning or filtering a row."""
    [part] = [node for node in nodes(plan) if node.get("Alias") == alias]
    return int(part.get("Shared Hit Blocks", 0)) + int(part.get("Shared Read Blocks", 0))
