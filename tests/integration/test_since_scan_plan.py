"""A DeliveryLog read of a stream started `since` a time goes through a bounded number of rows
(store/sql.py LOG_SCAN_ROWS), however many rows of the week of `since` occurred before it. The scan starts
at the week's partition and walks it in (txid, seq) order: with `since` judged as a filter before the
bound, each row of that week before `since` was stepped over uncounted, so the stream's first read (and
each read of a follower that had found none of its entries yet) went through all of them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import psycopg
import pytest
from busy_log import TENANT, WEBHOOK, write_attempts
from plans import analyzed_generic_plan, rows_read

from webhookd.domain.history import LogFilter, LogPosition
from webhookd.domain.scope import Scope
from webhookd.domain.statuses import Outcome
from webhookd.store import history, migrate
from webhookd.store.conninfo import conninfo
from webhookd.store.partitions import WIDTH, Period
from webhookd.store.sql import HELD_BACK_PROBE_ROWS, LOG_SCAN_ROWS, SettledRead, settled_read

BEFORE_SINCE = 20_000
# `since`, into its week: BEFORE_SINCE attempts occurred an hour before it, three an hour after.
SINCE = timedelta(hours=2)
# What a read may go through: its scan, the probe past the settled end (none here), and a row either side.
BOUND = LOG_SCAN_ROWS + HELD_BACK_PROBE_ROWS + 2


class Log(NamedTuple):
    database: str
    week: datetime  # the database's current week, whose partition holds the rows


@pytest.fixture
async def log(own_database: str) -> AsyncIterator[Log]:
    await migrate.upgrade(own_database)
    with psycopg.connect(conninfo(own_database), autocommit=True) as writer:
        [now] = writer.execute("SELECT now()").fetchone() or [None]
        week = Period.of(now).start
        writer.execute(WEBHOOK, {"tenant": TENANT})
        write_attempts(writer, BEFORE_SINCE, week + SINCE - timedelta(hours=1))
        write_attempts(writer, 3, week + SINCE + timedelta(hours=1))
        writer.execute("ANALYZE attempts")
    yield Log(own_database, week)


def read(
    log: Log, query: LogFilter, *, after: LogPosition | None, since: datetime
) -> tuple[dict[str, Any], SettledRead]:
    """The plan of the store's read of `query` (the generic one it runs), and what the read returns."""
    statement, values = history.log_read(Scope(TENANT), query, after=after, since=since, limit=200, scan=LOG_SCAN_ROWS)
    plan = analyzed_generic_plan(log.database, statement, values)
    with psycopg.connect(conninfo(log.database), autocommit=True) as connection:
        return plan, settled_read(connection.execute(statement, values).fetchall())


@pytest.mark.parametrize(
    ("query", "after"),
    [
        (LogFilter(), None),  # a stream's first read: no position yet
        (LogFilter(), LogPosition(0, 0)),
        (LogFilter(webhook_id="whk_a"), None),  # the webhook's index
        (LogFilter(outcomes=(Outcome.FAILED,)), None),
    ],
)
def test_a_read_since_a_time_counts_the_rows_of_its_week_before_it(
    log: Log, query: LogFilter, after: LogPosition | None
) -> None:
    plan, settled = read(log, query, after=after, since=log.week + SINCE)

    assert rows_read(plan, "attempts") <= BOUND
    # None of them is the reader's; the read says how far it went, and that more rows follow.
    assert (settled.entries, settled.held_back, settled.cut_short) == ([], False, True)
    assert settled.scanned_to is not None


def test_a_read_since_a_later_week_does_not_go_through_the_weeks_before(log: Log) -> None:
    """The weeks before that of `since` are pruned: not one of their rows is read."""
    plan, settled = read(log, LogFilter(), after=None, since=log.week + WIDTH + SINCE)

    assert rows_read(plan, "attempts") == 0
    assert (settled.entries, settled.scanned_to) == ([], None)
