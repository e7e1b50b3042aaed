"""DeliveryLog as a log: backlog then live with no gap and no duplicate, resumable, scoped and filtered.

Attempt rows are written two ways: by the real workers delivering published events to a loopback
receiver, and by plain SQL (every column filled, as `DeliveryQueue.record` does) when a test needs
to hold a writer's transaction open or shape the rows exactly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import timestamp_pb2
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from ulid import ULID
from webhook_calls import create_webhook, field_violations, rpc_error

from log_streams import Tail, until
from support import make_caller
from webhookd.ports import Topic
from webhookd.store.partitions import Period

TABLE_ORDER = "SELECT delivery_id, attempt FROM attempts WHERE tenant_id = :t ORDER BY txid, seq"
INSERT_ATTEMPTS = text(
    """
INSERT INTO attempts (id, tenant_id, app_id, delivery_id, event_id, event_type, webhook_id, attempt, outcome,
    http_status, latency_ms, error, response_excerpt, next_attempt_at, occurred_at)
SELECT 'att_' || :tag || n, :tenant, :app, 'dlv_' || :tag || n, 'evt_' || :tag || n, :event_type, :webhook, 1,
    :outcome, 200, 7, '', 'ok', NULL, coalesce(CAST(:occurred_at AS timestamptz), clock_timestamp())
FROM generate_series(1, :count) AS n
"""
)


async def insert_attempts(
    connection: AsyncConnection,
    tenant_id: str,
    *,
    count: int = 1,
    app_id: str | None = None,
    event_type: str = "log.test",
    webhook_id: str = "whk_sql",
    outcome: str = "succeeded",
    occurred_at: datetime | None = None,
) -> list[str]:
    """Inserts attempt rows in the connection's open transaction; returns their delivery ids in
    insert order. Whoever commits wakes the followers (`database.notify`)."""
    tag = f"{str(ULID()).lower()}_"
    await connection.execute(
        INSERT_ATTEMPTS,
        {
            "tag": tag,
            "tenant": tenant_id,
            "app": app_id,
            "event_type": event_type,
            "webhook": webhook_id,
            "outcome": outcome,
            "occurred_at": occurred_at,
            "count": count,
        },
    )
    return [f"dlv_{tag}{n}" for n in range(1, count + 1)]


async def committed_attempts(database: Any, tenant_id: str, **fields: Any) -> list[str]:
    async with database.engine.begin() as connection:
        written = await insert_attempts(connection, tenant_id, **fields)
    database.notify(Topic.ATTEMPTS)
    return written


@pytest.fixture
async def follow() -> AsyncIterator[Callable[..., Tail]]:
    """Opens follow streams for the test; whatever the test leaves open is cancelled after it."""
    opened: list[Tail] = []

    def open_stream(caller: Any, **fields: Any) -> Tail:
        opened.append(Tail(caller.DeliveryLog(pb.DeliveryLogRequest(follow=True, **fields))))
        return opened[-1]

    yield open_stream
    for tail in opened:
        await tail.close()


def keys(entries: list[pb.DeliveryLogEntry]) -> list[tuple[str, int]]:
    return [(entry.delivery_id, entry.attempt) for entry in entries]


def timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


# -- exactly once, in order ------------------------------------------------------------------------------


@pytest.mark.slow
async def test_follow_under_concurrent_publishing_matches_the_table_exactly(
    follow, service, caller, workers, receiver, database
) -> None:
    await create_webhook(caller, url=receiver.url, event_types=["*"])
    tail = follow(caller)
    await until(lambda: service.core.notifications.subscribers(Topic.ATTEMPTS) >= 1)

    async def publisher(name: str, events: int) -> None:
        for _ in range(events):
            await caller.PublishEvent(pb.PublishEventRequest(event_type=f"load.{name}"))

    await asyncio.gather(*(publisher(f"p{n}", 20) for n in range(5)))
    await database.wait_for(TABLE_ORDER, lambda rows: len(rows) == 100, within=30, t=caller.tenant_id)
    # A last attempt, written after the 100: anything the stream repeated would show before it.
    sentinel = await caller.PublishEvent(pb.PublishEventRequest(event_type="load.sentinel"))
    table = await database.wait_for(TABLE_ORDER, lambda rows: len(rows) == 101, within=30, t=caller.tenant_id)
    entries = await tail.wait_for(101, within=30)
    await tail.close()

    assert entries[-1].event_id == sentinel.event_id
    assert keys(entries) == [(row.delivery_id, row.attempt) for row in table]
    assert len(set(keys(entries))) == 101


async def test_attempt_committed_late_is_streamed_once_in_txid_order(follow, service, caller, database) -> None:
    tail = follow(caller)
    await until(lambda: service.core.notifications.subscribers(Topic.ATTEMPTS) >= 1)
    first = await committed_attempts(database, caller.tenant_id)
    await tail.wait_for(1)

    async with (
        database.engine.connect() as older,
        database.engine.connect() as earlier,
        database.engine.connect() as late,
    ):
        older_transaction = await older.begin()
        before = await insert_attempts(older, caller.tenant_id)  # txid b
        earlier_transaction = await earlier.begin()
        sentinel = await insert_attempts(earlier, caller.tenant_id)  # txid e > b, kept open for now
        late_transaction = await late.begin()
        held = await insert_attempts(late, caller.tenant_id)  # txid a > e, kept open
        await older_transaction.commit()
        database.notify(Topic.ATTEMPTS)
        # b committed after a began and is older than a: it is readable while a is still open.
        assert keys(await tail.wait_for(2)) == [(first[0], 1), (before[0], 1)]

        after = await committed_attempts(database, caller.tenant_id)  # txid c > a, commits first
        # e is older than a, so committing it makes it readable: once the follower streams it, it has read
        # after c committed, and c, behind the still-open a, must not have come with it.
        await earlier_transaction.commit()
        database.notify(Topic.ATTEMPTS)
        streamed = await tail.wait_for(3)
        assert keys(streamed) == [(first[0], 1), (before[0], 1), (sentinel[0], 1)], (
            "an entry behind a still-open transaction was streamed early"
        )

        await late_transaction.commit()
        database.notify(Topic.ATTEMPTS)
    await tail.wait_for(5)
    # A last attempt, committed after every other: a duplicate would be streamed before it.
    last = await committed_attempts(database, caller.tenant_id)
    entries = await tail.wait_for(6)
    await tail.close()

    table = await database.rows(TABLE_ORDER, t=caller.tenant_id)
    assert [row.delivery_id for row in table] == [first[0], before[0], sentinel[0], held[0], after[0], last[0]]
    assert keys(entries) == [(row.delivery_id, row.attempt) for row in table]


# -- starting points -------------------------------------------------------------------------------------


async def test_stream_resumed_after_a_cursor_continues_with_the_next_entry(follow, service, caller, database) -> None:
    written = await committed_attempts(database, caller.tenant_id, count=5)
    tail = follow(caller)
    first_read = await tail.wait_for(5)
    await tail.close()
    assert [entry.delivery_id for entry in first_read] == written

    resumed = follow(caller, after_cursor=first_read[2].cursor)
    assert keys(await resumed.wait_for(2)) == keys(first_read[3:5])
    live = await committed_attempts(database, caller.tenant_id)
    entries = await resumed.wait_for(3)
    await resumed.close()
    assert [entry.delivery_id for entry in entries] == [*written[3:5], *live]
    assert [entry.cursor for entry in entries[:2]] == [entry.cursor for entry in first_read[3:5]]


async def test_stream_since_a_time_starts_with_attempts_at_or_after_it(caller, database) -> None:
    now = datetime.now(UTC)
    await committed_attempts(database, caller.tenant_id, count=3, occurred_at=now - timedelta(hours=2))
    recent = await committed_attempts(database, caller.tenant_id, count=2, occurred_at=now - timedelta(minutes=5))

    since = Tail(caller.DeliveryLog(pb.DeliveryLogRequest(since=timestamp(now - timedelta(hours=1)))))
    assert [entry.delivery_id for entry in await since.ended()] == recent
    everything = Tail(caller.DeliveryLog(pb.DeliveryLogRequest()))
    assert len(await everything.ended()) == 5


async def test_since_rules_out_what_occurred_before_it_whichever_read_comes_to_it(caller, database) -> None:
    """Reads go through at most LOG_SCAN_ROWS rows each (store/sql.py) and a stream goes on past them:
    `since` is a filter of the whole stream, so what it rules out does not depend on where a read stopped."""
    now = datetime.now(UTC)
    before = now - timedelta(hours=2)
    await committed_attempts(database, caller.tenant_id, count=1_500, occurred_at=now - timedelta(minutes=5))
    await committed_attempts(database, caller.tenant_id, outcome="failed", occurred_at=before)
    await committed_attempts(database, caller.tenant_id, count=1_500, occurred_at=now - timedelta(minutes=5))
    first = await committed_attempts(database, caller.tenant_id, outcome="failed", occurred_at=now)
    await committed_attempts(database, caller.tenant_id, outcome="failed", occurred_at=before)
    last = await committed_attempts(database, caller.tenant_id, outcome="failed", occurred_at=now)

    request = pb.DeliveryLogRequest(since=timestamp(now - timedelta(hours=1)), outcomes=["failed"])
    assert [entry.delivery_id for entry in await Tail(caller.DeliveryLog(request)).ended()] == [*first, *last]


async def test_since_a_time_after_thousands_of_its_weeks_rows_hands_out_exactly_its_entries(
    caller, database, follow
) -> None:
    """A read goes through at most LOG_SCAN_ROWS rows of the week of `since`, those that occurred before
    it too (store/history.py): the stream steps over them a bounded read at a time. An entry at or after
    `since` may come before rows that occurred earlier (occurred_at and log order differ)."""
    since = Period.of(datetime.now(UTC)).start + timedelta(hours=2)
    earlier, later = since - timedelta(hours=1), since + timedelta(minutes=1)
    tenant = caller.tenant_id
    await committed_attempts(database, tenant, count=2_500, occurred_at=earlier)
    first = await committed_attempts(database, tenant, occurred_at=later)
    await committed_attempts(database, tenant, count=1_500, occurred_at=earlier)
    at_since = await committed_attempts(database, tenant, occurred_at=since)
    await committed_attempts(database, tenant, count=2_500, occurred_at=earlier)

    once = Tail(caller.DeliveryLog(pb.DeliveryLogRequest(since=timestamp(since))))
    assert [entry.delivery_id for entry in await once.ended()] == [*first, *at_since]
    followed = follow(caller, since=timestamp(since))
    # Nothing yet after the 6,500 rows of the week before it: a follower whose reads found none of its own.
    nothing_yet = follow(caller, since=timestamp(later + timedelta(minutes=1)))
    assert [entry.delivery_id for entry in await followed.wait_for(2)] == [*first, *at_since]

    await committed_attempts(database, tenant, occurred_at=earlier)
    live = await committed_attempts(database, tenant, occurred_at=later + timedelta(minutes=2))
    assert [entry.delivery_id for entry in await followed.wait_for(3)] == [*first, *at_since, *live]
    assert [entry.delivery_id for entry in await nothing_yet.wait_for(1)] == live


async def test_since_the_first_or_last_instant_a_timestamp_names(caller, database) -> None:
    """The scan starts at the week of `since` (store/history.py): those of protobuf's first and last instants
    are still instants a datetime holds (0001-01-01 is a Monday)."""
    written = await committed_attempts(database, caller.tenant_id, count=2)
    first, last = timestamp_pb2.Timestamp(seconds=-62_135_596_800), timestamp_pb2.Timestamp(seconds=253_402_300_799)

    everything = Tail(caller.DeliveryLog(pb.DeliveryLogRequest(since=first)))
    assert [entry.delivery_id for entry in await everything.ended()] == written
    assert await Tail(caller.DeliveryLog(pb.DeliveryLogRequest(since=last))).ended() == []


async def test_malformed_cursor_is_invalid_argument(caller) -> None:
    for cursor in ("not a cursor", "MS4yLjM", "YWJj", "%%%"):
        call = caller.DeliveryLog(pb.DeliveryLogRequest(after_cursor=cursor, follow=True))
        error = await rpc_error(call.read())
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, cursor
        assert "after_cursor" in field_violations(error)


# -- scope and filters -----------------------------------------------------------------------------------


async def test_another_tenants_stream_sees_nothing(follow, service, channel, caller, database) -> None:
    other = make_caller(channel, subject="person_2")
    await committed_attempts(database, caller.tenant_id, count=3)
    others_tail = follow(other)
    await until(lambda: service.core.notifications.subscribers(Topic.ATTEMPTS) >= 1)
    await committed_attempts(database, caller.tenant_id, count=2)
    own = await committed_attempts(database, other.tenant_id)
    await committed_attempts(database, caller.tenant_id)
    # Committed last: anything of the first tenant's that leaked would be streamed before it.
    own_last = await committed_attempts(database, other.tenant_id)

    entries = await others_tail.wait_for(2)
    await others_tail.close()
    assert [entry.delivery_id for entry in entries] == [*own, *own_last]


async def test_webhook_filter_naming_another_tenants_webhook_is_not_found(channel, caller) -> None:
    webhook = await create_webhook(caller)
    other = make_caller(channel, subject="person_2")
    call = other.DeliveryLog(pb.DeliveryLogRequest(webhook_id=webhook.id, follow=True))
    error = await rpc_error(call.read())
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_app_scoped_stream_sees_only_its_apps_attempts(channel, caller, database) -> None:
    crm = make_caller(channel, tenant_id=caller.tenant_id, subject="svc", app_id="app_crm")
    await committed_attempts(database, caller.tenant_id, app_id="app_erp")
    mine = await committed_attempts(database, caller.tenant_id, app_id="app_crm")

    assert [entry.delivery_id for entry in await Tail(crm.DeliveryLog(pb.DeliveryLogRequest())).ended()] == mine
    assert len(await Tail(caller.DeliveryLog(pb.DeliveryLogRequest())).ended()) == 2


async def test_outcome_and_event_type_filters_apply_to_backlog_and_live_entries(
    follow, service, caller, database
) -> None:
    async def write(outcome: str, event_type: str) -> str:
        [delivery_id] = await committed_attempts(database, caller.tenant_id, outcome=outcome, event_type=event_type)
        return delivery_id

    wanted = [await write("failed", "order.created"), await write("timed_out", "order.paid")]
    await write("succeeded", "order.created")
    await write("failed", "invoice.sent")

    tail = follow(caller, outcomes=["failed", "timed_out"], event_types=["order.*"])
    await tail.wait_for(2)
    await write("failed", "orders.created")  # `order.*` does not match the `orders` prefix
    await write("succeeded", "order.paid")
    wanted.append(await write("failed", "order.shipped"))
    await write("succeeded", "order.shipped")
    # Matching, and committed last: whatever the filters let through wrongly would be streamed before it.
    wanted.append(await write("timed_out", "order.closed"))
    entries = await tail.wait_for(4)
    await tail.close()
    assert [entry.delivery_id for entry in entries] == wanted
    assert [entry.outcome for entry in entries] == ["failed", "timed_out", "failed", "timed_out"]

    exact = Tail(caller.DeliveryLog(pb.DeliveryLogRequest(event_types=["order.paid"])))
    assert [entry.outcome for entry in await exact.ended()] == ["timed_out", "succeeded"]


async def test_a_follower_gets_the_entry_it_wants_written_after_30000_it_does_not(
    follow, service, caller, database
) -> None:
    """Each read goes through at most LOG_SCAN_ROWS rows of the log (store/sql.py) and the stream goes on
    after the last: a follower whose filter matched none of them read all 30,000 at every wake."""
    tail = follow(caller, outcomes=["failed"])
    await until(lambda: service.core.notifications.subscribers(Topic.ATTEMPTS) >= 1)

    await committed_attempts(database, caller.tenant_id, count=30_000)  # succeeded: one statement
    wanted = await committed_attempts(database, caller.tenant_id, outcome="failed")
    assert keys(await tail.wait_for(1)) == [(wanted[0], 1)]

    await committed_attempts(database, caller.tenant_id, count=3_000)
    # Wanted too, and written last: an entry read twice, or one the stream went past, would show before it.
    last = await committed_attempts(database, caller.tenant_id, outcome="failed")
    entries = await tail.wait_for(2)
    await tail.close()
    assert keys(entries) == [(wanted[0], 1), (last[0], 1)]
    backlog = Tail(caller.DeliveryLog(pb.DeliveryLogRequest(outcomes=["failed"])))
    assert [entry.cursor for entry in await backlog.ended()] == [entry.cursor for entry in entries]


async def test_unknown_outcome_filter_is_invalid_argument(caller) -> None:
    call = caller.DeliveryLog(pb.DeliveryLogRequest(outcomes=["exploded"], follow=True))
    error = await rpc_error(call.read())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "outcomes[0]" in field_violations(error)
