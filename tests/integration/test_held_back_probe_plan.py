"""A log read's probe for an entry held back past the settled end (store/sql.py `settled_and_held_back`)
reads a bounded number of rows, however many of the tenant's entries past that end the reader's filters
rule out. A transaction left open holds the settled end back, and every entry written since is past it:
the probe went through each of them, on every read of every follower, when its filters (another app, an
outcome, an inbound receipt not accepted) matched none."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest
from busy_log import FROM_THE_START, TENANT, write_busy_log
from plans import analyzed_plan, rows_read

from webhookd.store import history, inbound, migrate
from webhookd.store.conninfo import conninfo
from webhookd.store.database import GENERIC_PLAN
from webhookd.store.sql import HELD_BACK_PROBE_ROWS, LOG_SCAN_ROWS, settled_read

PAST_THE_END = 30_000


@pytest.fixture
async def held_open(own_database: str) -> AsyncIterator[str]:
    """`own_database` with a transaction left open, then PAST_THE_END attempts and rejected inbound receipts
    of TENANT's app_a, all past the settled end while it stays open."""
    await migrate.upgrade(own_database)
    with psycopg.connect(conninfo(own_database)) as long_running:
        long_running.execute("SELECT pg_current_xact_id()")  # holds the snapshot's xmin from here on
        with psycopg.connect(conninfo(own_database), autocommit=True) as writer:
            write_busy_log(writer, PAST_THE_END)
        yield own_database
        long_running.rollback()


@pytest.mark.parametrize(
    ("filters", "values"),
    [
        ({"after_txid"}, {"app_id": "app_b"}),  # an integration key of another app
        ({"after_txid", "outcomes"}, {"app_id": None, "outcomes": ["failed"]}),
        ({"after_txid", "webhook_id", "outcomes"}, {"app_id": None, "webhook_id": "whk_a", "outcomes": ["failed"]}),
    ],
)
def test_the_delivery_logs_probe_reads_a_bounded_number_of_rows(
    held_open: str, filters: set[str], values: dict[str, object]
) -> None:
    statement = history._log_statement(frozenset(filters))
    arguments = {"tenant_id": TENANT, "limit": 200, "scan": LOG_SCAN_ROWS, "after_txid": 0, "after_seq": 0, **values}

    plan = analyzed_plan(held_open, GENERIC_PLAN, statement, arguments)
    with psycopg.connect(conninfo(held_open), autocommit=True) as connection:
        read = settled_read(connection.execute(statement, arguments).fetchall())

    assert rows_read(plan, "attempts") <= HELD_BACK_PROBE_ROWS + 1
    # None of them is the reader's, but past the probe's rows it cannot say so: the reader re-reads soon.
    assert (read.entries, read.held_back) == ([], True)


def test_the_inbound_streams_probe_reads_a_bounded_number_of_rows(held_open: str) -> None:
    statement = inbound._READS[(False, True)]
    arguments = dict(FROM_THE_START)

    plan = analyzed_plan(held_open, GENERIC_PLAN, statement, arguments)

    assert rows_read(plan, "inbound_events") <= HELD_BACK_PROBE_ROWS + 1


def test_fewer_entries_past_the_end_than_the_probe_reads_none_the_readers_are_not_held_back(held_open: str) -> None:
    statement = history._log_statement(frozenset({"after_txid", "outcomes"}))
    with psycopg.connect(conninfo(held_open), autocommit=True) as connection:
        txid, seq = connection.execute(
            "SELECT txid, seq FROM attempts WHERE tenant_id = %s ORDER BY txid DESC, seq DESC OFFSET 50 LIMIT 1",
            (TENANT,),
        ).fetchone() or (0, 0)
        arguments = {"tenant_id": TENANT, "app_id": None, "limit": 200, "scan": LOG_SCAN_ROWS}
        arguments |= {"after_txid": txid, "after_seq": seq}
        failed = connection.execute(statement, arguments | {"outcomes": ["failed"]}).fetchall()
        succeeded = connection.execute(statement, arguments | {"outcomes": ["succeeded"]}).fetchall()
    read = settled_read(failed)

    assert (read.entries, read.held_back) == ([], False)  # the 50 past the reader's position are none of its own
    assert (settled_read(succeeded).entries, settled_read(succeeded).held_back) == ([], True)
