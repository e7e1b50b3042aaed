"""A log read's scan of settled entries (store/sql.py `settled_and_held_back`) reads a bounded number of
rows past the reader's position, however many of them the reader's filters rule out. A follower whose
filters (another app, an outcome, an inbound receipt not accepted) match nothing read every row of the
tenant's log since its position on every read, and woke to read them again at each new entry."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest
from busy_log import FROM_THE_START, TENANT, write_busy_log
from plans import analyzed_plan, pages_under, rows_read

from webhookd.store import history, inbound, migrate
from webhookd.store.conninfo import conninfo
from webhookd.store.database import GENERIC_PLAN
from webhookd.store.sql import HELD_BACK_PROBE_ROWS, LOG_SCAN_ROWS, settled_read

SETTLED = 30_000
# What a read may go through: its scan, the probe past the settled end (none here), and a row either side.
BOUND = LOG_SCAN_ROWS + HELD_BACK_PROBE_ROWS + 2


@pytest.fixture
async def settled_log(own_database: str) -> AsyncIterator[str]:
    """`own_database` with SETTLED attempts and rejected inbound receipts of TENANT's app_a, all settled."""
    await migrate.upgrade(own_database)
    with psycopg.connect(conninfo(own_database), autocommit=True) as writer:
        write_busy_log(writer, SETTLED)
    yield own_database


@pytest.mark.parametrize(
    ("filters", "values"),
    [
        ({"after_txid"}, {"app_id": "app_b"}),  # an integration key of another app
        ({"after_txid", "outcomes"}, {"app_id": None, "outcomes": ["failed"]}),
        ({"after_txid", "webhook_id", "outcomes"}, {"app_id": None, "webhook_id": "whk_a", "outcomes": ["failed"]}),
        ({"after_txid", "kinds"}, {"app_id": None, "kinds": ["webhook.paused"]}),
    ],
)
def test_a_delivery_log_read_scans_a_bounded_number_of_rows(
    settled_log: str, filters: set[str], values: dict[str, object]
) -> None:
    statement = history._log_statement(frozenset(filters))
    arguments = {**FROM_THE_START, **values}

    plan = analyzed_plan(settled_log, GENERIC_PLAN, statement, arguments)
    with psycopg.connect(conninfo(settled_log), autocommit=True) as connection:
        read = settled_read(connection.execute(statement, arguments).fetchall())

    assert rows_read(plan, "attempts") <= BOUND
    # None of them is the reader's; the read says how far it went, and that more rows follow.
    assert (read.entries, read.held_back, read.cut_short) == ([], False, True)
    assert read.scanned_to is not None and read.scanned_to > (0, 0)


def test_an_inbound_stream_read_scans_a_bounded_number_of_rows(settled_log: str) -> None:
    statement = inbound._READS[(False, True)]
    arguments = dict(FROM_THE_START)

    plan = analyzed_plan(settled_log, GENERIC_PLAN, statement, arguments)

    assert rows_read(plan, "inbound_events") <= BOUND


def test_a_read_whose_entries_all_match_stops_at_its_limit(settled_log: str) -> None:
    statement = history._log_statement(frozenset({"after_txid"}))
    arguments = dict(FROM_THE_START)

    plan = analyzed_plan(settled_log, GENERIC_PLAN, statement, arguments)
    with psycopg.connect(conninfo(settled_log), autocommit=True) as connection:
        read = settled_read(connection.execute(statement, arguments).fetchall())

    assert len(read.entries) == 200
    assert rows_read(plan, "attempts") <= 200 + HELD_BACK_PROBE_ROWS + 2


@pytest.mark.parametrize("log", ["attempts", "inbound_events"])
def test_the_probe_past_the_settled_end_starts_there_not_at_the_readers_position(settled_log: str, log: str) -> None:
    """A reader far behind the end: its probe walked the index from its position to the end, 30,000
    entries (182 pages, a millisecond) on every read, the bounded ones that came to none of its own too."""
    if log == "attempts":
        statement = history._log_statement(frozenset({"after_txid", "outcomes"}))
    else:
        statement = inbound._READS[(False, True)]
    arguments = {"tenant_id": TENANT, "app_id": None, "outcomes": ["failed"], "limit": 200, "scan": LOG_SCAN_ROWS}

    plan = analyzed_plan(settled_log, GENERIC_PLAN, statement, arguments | {"after_txid": 0, "after_seq": 0})

    # An index's descent to the end, in each of the log's partitions.
    assert pages_under(plan, "past") <= 16
