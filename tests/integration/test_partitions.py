"""Weekly partitions of deliveries, attempts and inbound receipts: where rows land, reading across a
week's boundary, writes to old weeks, partitions made ahead, and duplicate receipts across weeks."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from history_rows import ATTEMPT, attempt, delivery, event, id_at, opened, partition_of, receipt, webhook

from support import new_tenant_id, running_service
from webhookd.app import Backends, DeliveryWorkers, Service
from webhookd.domain import ids
from webhookd.domain.deliveries import AttemptRecord
from webhookd.domain.history import LogEntry, LogFilter
from webhookd.domain.inbound import InboundTarget
from webhookd.domain.scope import Scope
from webhookd.domain.statuses import DeliveryStatus, Outcome
from webhookd.domain.webhooks import SignatureScheme
from webhookd.store import migrate, partitions, retention
from webhookd.store.conninfo import conninfo
from webhookd.store.database import Database
from webhookd.store.deliveries import DeliveryStore
from webhookd.store.history import HistoryStore
from webhookd.store.inbound import InboundStore

WEEK = partitions.WIDTH
TENANT = "tnt_partitions"


def week_partition(table: str, at: datetime) -> str:
    return f"{table}_p{partitions.Period.of(at).start:%Y%m%d}"


async def settled_log(history: HistoryStore, scope: Scope, *, count: int) -> list[LogEntry]:
    """The scope's log once `count` lines are readable (a line waits for older transactions anywhere)."""
    deadline = time.monotonic() + 10
    while True:
        entries = (await history.read_log(scope, LogFilter(), after=None, since=None, limit=count + 1)).entries
        if len(entries) >= count or time.monotonic() > deadline:
            return entries
        await asyncio.sleep(0.05)


def succeeded_at(at: datetime) -> AttemptRecord:
    return AttemptRecord(Outcome.SUCCEEDED, 200, 5, "", "ok", gone=False, next_attempt_at=None, occurred_at=at)


async def test_a_published_delivery_lands_in_the_partition_of_its_week(caller, database) -> None:
    await caller.CreateWebhook(pb.CreateWebhookRequest(webhook=wpb.Webhook(name="p", url="http://127.0.0.1:9/h")))
    published = await caller.PublishEvent(pb.PublishEventRequest(event_type="rfp.created"))

    [row] = await database.rows(
        "SELECT tableoid::regclass::text AS partition FROM deliveries WHERE event_id = :e", e=published.event_id
    )
    assert row.partition == week_partition("deliveries", datetime.now(UTC))


async def test_rows_land_in_their_week_and_the_rest_in_the_default(own_database) -> None:
    await migrate.upgrade(own_database)
    now = datetime.now(UTC)
    async with opened(own_database) as db:
        await partitions.ensure(db, now=now - WEEK)  # last week too
        webhook_id = await webhook(db, TENANT)
        event_id = await event(db, TENANT, now)
        this_week = await delivery(db, TENANT, webhook_id, event_id, now)
        last_week = await delivery(db, TENANT, webhook_id, event_id, now - WEEK)
        not_a_ulid = "dlv_imported-7"
        await db.execute(
            "INSERT INTO deliveries (id, tenant_id, event_id, webhook_id, status, created_at, updated_at)"
            " VALUES (%(id)s, %(t)s, %(e)s, %(w)s, 'pending', now(), now())",
            {"id": not_a_ulid, "t": TENANT, "e": event_id, "w": webhook_id},
        )
        _, attempt_now = await attempt(db, TENANT, webhook_id, this_week, now)
        _, attempt_last_week = await attempt(db, TENANT, webhook_id, last_week, now - WEEK)
        _, attempt_far_future = await attempt(db, TENANT, webhook_id, this_week, now + 52 * WEEK)

        assert await partition_of(db, "deliveries", "id", this_week) == week_partition("deliveries", now)
        assert await partition_of(db, "deliveries", "id", last_week) == week_partition("deliveries", now - WEEK)
        assert await partition_of(db, "deliveries", "id", not_a_ulid) == "deliveries_default"
        assert await partition_of(db, "attempts", "seq", attempt_now) == week_partition("attempts", now)
        assert await partition_of(db, "attempts", "seq", attempt_last_week) == week_partition("attempts", now - WEEK)
        assert await partition_of(db, "attempts", "seq", attempt_far_future) == "attempts_default"


async def test_the_log_reads_in_order_across_a_week_boundary(own_database) -> None:
    await migrate.upgrade(own_database)
    now = datetime.now(UTC)
    async with opened(own_database) as db:
        await partitions.ensure(db, now=now - WEEK)
        webhook_id = await webhook(db, TENANT)
        # Commit order, not the week, is the log's order: the third line lands in the older partition.
        written = [
            await attempt(db, TENANT, webhook_id, f"dlv_{n}", at)
            for n, at in enumerate((now - WEEK, now, now - WEEK + timedelta(seconds=1), now))
        ]
        history = HistoryStore(db)
        scope = Scope(TENANT)

        everything = await settled_log(history, scope, count=len(written))
        one_at_a_time = []
        position = None
        for _ in range(len(written)):
            [entry] = (await history.read_log(scope, LogFilter(), after=position, since=None, limit=1)).entries
            one_at_a_time.append(entry)
            position = entry.position
        rest = (await history.read_log(scope, LogFilter(), after=position, since=None, limit=10)).entries

    assert [(entry.position.txid, entry.position.seq) for entry in everything] == written
    assert [entry.delivery_id for entry in everything] == ["dlv_0", "dlv_1", "dlv_2", "dlv_3"]
    assert one_at_a_time == everything
    assert rest == []


async def test_claim_record_release_and_redeliver_work_on_a_delivery_of_an_old_week(own_database) -> None:
    await migrate.upgrade(own_database)
    now = datetime.now(UTC)
    made = now - 5 * WEEK
    async with opened(own_database) as db:
        await partitions.ensure(db, now=made, ahead=0)
        webhook_id = await webhook(db, TENANT)
        event_id = await event(db, TENANT, made)
        # Made five weeks ago, due now: a retry waiting on a webhook that was paused until today.
        delivery_id = await delivery(db, TENANT, webhook_id, event_id, made, due=now)
        queue = DeliveryStore(db, pause_after_failures=5)
        history = HistoryStore(db)

        [claimed] = await queue.claim(10, per_webhook=5, per_tenant=10)
        await queue.release(claimed, after=timedelta(seconds=-1))
        [claimed_again] = await queue.claim(10, per_webhook=5, per_tenant=10)
        recorded = await queue.record([(claimed_again, succeeded_at(now))])
        succeeded, attempts = await history.get_delivery(Scope(TENANT), delivery_id)
        redelivered = await history.redeliver(Scope(TENANT), delivery_id, now=now)
        partition = await partition_of(db, "deliveries", "id", delivery_id)

    assert claimed.delivery_id == claimed_again.delivery_id == delivery_id
    assert recorded.kept == [True]
    assert (succeeded.status, succeeded.attempts, [entry.outcome for entry in attempts]) == (
        DeliveryStatus.SUCCEEDED,
        1,
        [Outcome.SUCCEEDED],
    )
    assert redelivered.status is DeliveryStatus.PENDING
    assert partition == week_partition("deliveries", made)


async def test_migrate_leaves_this_week_and_the_next_ones_in_place(own_database) -> None:
    await migrate.upgrade(own_database)
    async with opened(own_database) as db:
        existing = await db.run(partitions.partitions_of)

    weeks = partitions.Period.of(datetime.now(UTC)).and_following(partitions.AHEAD)
    for table in partitions.TABLES:
        assert {table.partition_name(week) for week in weeks} | {table.default_partition} <= existing[table.name]


async def test_the_migrate_command_leaves_this_week_and_the_next_ones_in_place(own_database) -> None:
    command = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "webhookd"),
        "migrate",
        env=os.environ | {"WEBHOOKD_DATABASE_URL": own_database},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(command.communicate(), 60)
    async with opened(own_database) as db:
        existing = await db.run(partitions.partitions_of)

    assert command.returncode == 0, err.decode()
    assert "database schema is up to date" in out.decode()
    this_week = partitions.Period.of(datetime.now(UTC))
    assert {table.partition_name(this_week) for table in partitions.TABLES} <= set().union(*existing.values())


async def _drop_the_farthest_weeks(db: Database) -> list[str]:
    """Drops the farthest week `ensure` keeps ahead of every table, as if the weeks had moved on."""
    farthest = await _weeks_ahead_on_the_database_clock(db)
    for name in farthest:
        await db.execute(f"DROP TABLE {name}")
    return farthest


async def test_migrate_refused_by_the_database_says_so_in_one_line(own_database) -> None:
    # A role that may read but owns no table: the schema is at its head, the weeks ahead cannot be made.
    role = new_tenant_id().replace("tnt_", "reader_").lower()
    async with opened(own_database) as db:
        await migrate.upgrade(own_database)
        await _drop_the_farthest_weeks(db)
        await db.execute(f"CREATE ROLE {role} LOGIN")
        await db.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
        try:
            command = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).parent / "webhookd"),
                "migrate",
                env=os.environ | {"WEBHOOKD_DATABASE_URL": _as_role(own_database, role)},
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            _, err = await asyncio.wait_for(command.communicate(), 60)
        finally:
            await db.execute(f"DROP OWNED BY {role}")
            await db.execute(f"DROP ROLE {role}")

    said = [line for line in err.decode().splitlines() if line.startswith("webhookd:")]
    assert command.returncode == 2, err.decode()
    assert said == ["webhookd: cannot migrate: database schema: permission denied for table deliveries"], err.decode()
    assert "Traceback" not in err.decode()


def _as_role(url: str, role: str) -> str:
    return sa.make_url(url).set(username=role).render_as_string(hide_password=False)


async def test_start_up_goes_on_while_a_table_stays_busy_and_the_next_round_creates_its_week(own_database) -> None:
    await migrate.upgrade(own_database)
    async with (
        opened(own_database) as db,
        await psycopg.AsyncConnection.connect(conninfo(own_database)) as reading,
    ):
        farthest = await _drop_the_farthest_weeks(db)
        # A long read of attempts, open for longer than partition creation waits for the table.
        await reading.execute("LOCK TABLE attempts IN ACCESS SHARE MODE")
        await asyncio.wait_for(migrate.upgrade(own_database), 60)
        at_start = set().union(*(await db.run(partitions.partitions_of)).values())
        await reading.rollback()
        next_round = await partitions.ensure(db)

    busy = next(name for name in farthest if name.startswith("attempts_"))
    assert set(farthest) - at_start == {busy}  # the other tables' weeks were created all the same
    assert next_round == [busy]


async def test_a_round_in_a_process_with_a_short_database_timeout_creates_the_weeks_of_the_tables_not_busy(
    own_database,
) -> None:
    await migrate.upgrade(own_database)
    async with (
        opened(own_database) as db,
        await psycopg.AsyncConnection.connect(conninfo(own_database)) as reading,
    ):
        farthest = await _drop_the_farthest_weeks(db)
        await reading.execute("LOCK TABLE attempts IN ACCESS SHARE MODE")
        # Each call to the database is bounded by this; a busy table's tries together take longer.
        async with opened(own_database, timeout_seconds=2) as bounded:
            created = await asyncio.wait_for(partitions.ensure(bounded), 60)
        await reading.rollback()

    assert sorted(created) == sorted(name for name in farthest if not name.startswith("attempts_"))


async def test_processes_creating_the_same_partitions_at_once_each_create_some_and_none_fails(own_database) -> None:
    await migrate.upgrade(own_database)
    later = datetime.now(UTC) + 10 * WEEK
    expected = {
        table.partition_name(week)
        for table in partitions.TABLES
        for week in partitions.Period.of(later).and_following(partitions.AHEAD)
    }
    async with opened(own_database) as a, opened(own_database) as b, opened(own_database) as c:
        created = await asyncio.gather(*(partitions.ensure(db, now=later) for db in (a, b, c)))
        again = await partitions.ensure(a, now=later)
        existing = await a.run(partitions.partitions_of)

    names = [name for each in created for name in each]
    assert sorted(names) == sorted(expected)  # every one created, and by one process only
    assert again == []
    assert expected <= set().union(*existing.values())


async def test_a_new_week_takes_over_the_rows_the_default_partition_held_for_it(own_database) -> None:
    await migrate.upgrade(own_database)
    later = datetime.now(UTC) + 8 * WEEK
    async with opened(own_database) as db:
        webhook_id = await webhook(db, TENANT)
        event_id = await event(db, TENANT, later)
        delivery_id = await delivery(db, TENANT, webhook_id, event_id, later)  # a clock eight weeks fast
        _, seq = await attempt(db, TENANT, webhook_id, delivery_id, later)
        before = [
            await partition_of(db, "deliveries", "id", delivery_id),
            await partition_of(db, "attempts", "seq", seq),
        ]

        await partitions.ensure(db, now=later, ahead=0)

        after = [
            await partition_of(db, "deliveries", "id", delivery_id),
            await partition_of(db, "attempts", "seq", seq),
        ]
        [(status, moved_event)] = await db.fetch_all(
            "SELECT status, event_id FROM deliveries WHERE id = %(id)s", {"id": delivery_id}
        )

    assert before == ["deliveries_default", "attempts_default"]
    assert after == [week_partition("deliveries", later), week_partition("attempts", later)]
    assert (status, moved_event) == ("pending", event_id)


async def test_a_week_with_too_many_rows_in_the_default_partition_stays_there_and_still_takes_writes(
    own_database,
) -> None:
    limit = 3  # as if a week had more than 20,000 rows there
    await migrate.upgrade(own_database)
    later = datetime.now(UTC) + 8 * WEEK
    async with opened(own_database) as db:
        webhook_id = await webhook(db, TENANT)
        event_id = await event(db, TENANT, later)
        delivery_id = await delivery(db, TENANT, webhook_id, event_id, later)  # one: few enough to move
        for n in range(limit + 1):  # more than may move
            await attempt(db, TENANT, webhook_id, delivery_id, later + timedelta(minutes=n))

        created = await partitions.ensure(db, now=later, ahead=0, max_rows_moved=limit)
        await attempt(db, TENANT, webhook_id, delivery_id, later)  # a write of the week still lands
        attempts_now = await db.fetch_all(
            "SELECT tableoid::regclass::text, count(*) FROM attempts WHERE delivery_id = %(d)s GROUP BY 1",
            {"d": delivery_id},
        )
        moved = await partition_of(db, "deliveries", "id", delivery_id)
        again = await partitions.ensure(db, now=later, ahead=0, max_rows_moved=limit)

    week = partitions.Period.of(later)
    assert sorted(created) == sorted(
        table.partition_name(week) for table in (partitions.DELIVERIES, partitions.INBOUND_EVENTS)
    )
    assert attempts_now == [("attempts_default", limit + 2)]
    assert moved == week_partition("deliveries", later)
    assert again == []  # left there round after round
    assert partitions.MAX_ROWS_MOVED == 20_000  # what the service moves at most, the tests' limit aside


async def _attempts_by_partition(db: Database, delivery_id: str) -> list[tuple[str, int]]:
    return await db.fetch_all(
        "SELECT tableoid::regclass::text, count(*) FROM attempts WHERE delivery_id = %(d)s GROUP BY 1",
        {"d": delivery_id},
    )


async def test_a_week_left_in_the_default_partition_while_its_table_was_busy_moves_out_once_it_is_past(
    own_database,
) -> None:
    await migrate.upgrade(own_database)
    later = datetime.now(UTC) + 8 * WEEK  # a clock eight weeks fast wrote rows of a week not made yet
    async with (
        opened(own_database) as db,
        await psycopg.AsyncConnection.connect(conninfo(own_database)) as reading,
    ):
        webhook_id = await webhook(db, TENANT)
        delivery_id = id_at(ids.DELIVERY_PREFIX, later)
        for n in range(3):
            await attempt(db, TENANT, webhook_id, delivery_id, later + timedelta(minutes=n))
        # A long read of attempts through the round that makes the week: its rows stay in the default.
        await reading.execute("LOCK TABLE attempts IN ACCESS SHARE MODE")
        busy_round = await partitions.ensure(db, now=later, ahead=0)
        await reading.rollback()
        await attempt(db, TENANT, webhook_id, delivery_id, later + timedelta(days=1))  # the week goes on
        # The week is past by the next round: no longer one of the weeks made ahead.
        next_round = await partitions.ensure(db, now=later + WEEK, ahead=0)
        where = await _attempts_by_partition(db, delivery_id)

    week, following = partitions.Period.of(later).and_following(1)
    left = partitions.ATTEMPTS.partition_name(week)
    assert left not in busy_round
    # Moved out, and nothing else made: the empty weeks between the ones made ahead stay unmade.
    assert sorted(next_round) == sorted([left] + [table.partition_name(following) for table in partitions.TABLES])
    assert where == [(left, 4)]  # every row once


async def test_a_week_too_big_to_move_stays_readable_round_after_round_and_moves_once_it_may(own_database) -> None:
    await migrate.upgrade(own_database)
    later = datetime.now(UTC) + 8 * WEEK
    limit = 3  # as if a week had more than 20,000 rows there
    async with opened(own_database) as db:
        webhook_id = await webhook(db, TENANT)
        delivery_id = id_at(ids.DELIVERY_PREFIX, later)
        for n in range(limit + 1):
            await attempt(db, TENANT, webhook_id, delivery_id, later + timedelta(minutes=n))

        rounds = [await partitions.ensure(db, now=later + n * WEEK, ahead=0, max_rows_moved=limit) for n in range(3)]
        still_left = await _attempts_by_partition(db, delivery_id)
        # Once it may move (here: a limit it fits under; in service: fewer rows of the week left there).
        moved_round = await partitions.ensure(db, now=later + 3 * WEEK, ahead=0, max_rows_moved=limit + 1)
        moved = await _attempts_by_partition(db, delivery_id)

    left = partitions.ATTEMPTS.partition_name(partitions.Period.of(later))
    assert all(left not in each for each in rounds)
    assert still_left == [("attempts_default", limit + 1)]
    assert left in moved_round
    assert moved == [(left, limit + 1)]


async def test_a_week_retention_dropped_is_not_made_again_for_the_pending_deliveries_it_kept(own_database) -> None:
    await migrate.upgrade(own_database)
    now = datetime.now(UTC)
    old = now - 6 * WEEK
    async with opened(own_database) as db:
        await partitions.ensure(db, now=old - WEEK, ahead=1)  # two old weeks; retention drops the older
        webhook_id = await webhook(db, TENANT, paused_at=old)
        event_id = await event(db, TENANT, old)
        kept = await delivery(db, TENANT, webhook_id, event_id, old - WEEK)  # owed still when its week goes
        await retention.sweep(db, cutoff=old)
        next_round = await partitions.ensure(db)
        where = await partition_of(db, "deliveries", "id", kept)

    assert next_round == []
    assert where == "deliveries_default"


async def test_a_week_made_ahead_does_not_scan_the_default_partition_under_the_tables_lock(own_database) -> None:
    await migrate.upgrade(own_database)
    now = datetime.now(UTC)
    old = now - 6 * WEEK
    async with opened(own_database) as db:
        await partitions.ensure(db, now=old, ahead=0)
        webhook_id = await webhook(db, TENANT, paused_at=old)
        event_id = await event(db, TENANT, old)
        kept = await delivery(db, TENANT, webhook_id, event_id, old)
        await retention.sweep(db, cutoff=old + WEEK)  # the default now holds a pending delivery it kept
        assert await partition_of(db, "deliveries", "id", kept) == "deliveries_default"
    notices: list[str] = []
    async with await psycopg.AsyncConnection.connect(conninfo(own_database), autocommit=True) as connection:
        connection.add_notice_handler(lambda notice: notices.append(notice.message_primary or ""))
        # PostgreSQL says at DEBUG1 when a valid constraint spares it the default's scan; it says nothing when it scans.
        await connection.execute("SET client_min_messages = debug1")
        created = await partitions.ensure_on(connection, now=now + WEEK)  # makes the week after the two ahead
        own_constraints = await (
            await connection.execute(
                "SELECT conrelid::regclass::text, conname FROM pg_constraint"
                " WHERE conrelid = ANY(CAST(%(defaults)s AS regclass[])) AND coninhcount = 0",
                {"defaults": [table.default_partition for table in partitions.TABLES]},
            )
        ).fetchall()

    assert sorted(created) == sorted(
        table.partition_name(partitions.Period.of(now + 3 * WEEK)) for table in partitions.TABLES
    )
    defaults = {table.default_partition for table in partitions.TABLES}
    assert {name for name in defaults if implied(name) in notices} == defaults  # none of them scanned
    assert own_constraints == []  # the week's partition keeps its rows out of the default from now on


async def test_a_week_made_ahead_still_takes_over_the_rows_a_fast_clock_left_in_the_default(own_database) -> None:
    await migrate.upgrade(own_database)
    now = datetime.now(UTC)
    async with opened(own_database) as db:
        webhook_id = await webhook(db, TENANT)
        event_id = await event(db, TENANT, now)
        fast = await delivery(db, TENANT, webhook_id, event_id, now + 3 * WEEK)  # a clock three weeks fast
        created = await partitions.ensure(db, now=now + WEEK)
        where = await partition_of(db, "deliveries", "id", fast)
        own_constraints = await db.fetch_all(
            "SELECT conname FROM pg_constraint WHERE conrelid = CAST('deliveries_default' AS regclass)"
            " AND coninhcount = 0"
        )
        # The default takes rows of weeks not made yet, as before.
        farther = await delivery(db, TENANT, webhook_id, event_id, now + 9 * WEEK)
        farther_where = await partition_of(db, "deliveries", "id", farther)

    assert week_partition("deliveries", now + 3 * WEEK) in created
    assert where == week_partition("deliveries", now + 3 * WEEK)
    assert own_constraints == []
    assert farther_where == "deliveries_default"


def implied(default_partition: str) -> str:
    return (
        f'updated partition constraint for default partition "{default_partition}" is implied by existing constraints'
    )


async def test_a_retried_inbound_message_is_a_duplicate_across_a_week_boundary(own_database) -> None:
    await migrate.upgrade(own_database)
    now = datetime.now(UTC)
    last_week = now - WEEK
    async with opened(own_database, size=8) as db:
        await partitions.ensure(db, now=last_week)
        webhook_id = await webhook(db, TENANT, inbound=True)
        target = InboundTarget(webhook_id, TENANT, None, SignatureScheme.STANDARD_WEBHOOKS, "webhookd/test", "fp")
        store = InboundStore(db)

        async def record(message_id: str, at: datetime, *, accepted: bool = True) -> str | None:
            stored = await store.record(
                target, receipt(message_id, at, accepted=accepted), rate_per_second=1.0, burst=100
            )
            assert stored.retry_after_seconds is None
            return stored.receipt_id

        first = await record("msg_1", last_week)
        retry = await record("msg_1", now)
        # Concurrent retries of one message, half of them received on each side of the boundary.
        racing = await asyncio.gather(*(record("msg_2", now if n % 2 else last_week) for n in range(8)))
        rejected_twice = [await record("msg_3", at, accepted=False) for at in (last_week, now)]
        stored = await db.fetch_all(
            "SELECT message_id, count(*) FROM inbound_events WHERE status = 'accepted' GROUP BY message_id"
        )

    assert first is not None and first.startswith(ids.RECEIPT_PREFIX)
    assert retry is None
    assert sum(result is not None for result in racing) == 1
    assert all(result is not None for result in rejected_twice)  # a rejected receipt is no original
    assert sorted(stored) == [("msg_1", 1), ("msg_2", 1)]


async def _weeks_ahead_on_the_database_clock(db: Database) -> list[str]:
    """The partitions of the farthest week `ensure` keeps ahead, by the database's clock."""
    row = await db.fetch_one("SELECT now()")
    assert row is not None
    farthest = partitions.Period.of(row[0]).and_following(partitions.AHEAD)[-1]
    return [table.partition_name(farthest) for table in partitions.TABLES]


async def _until_they_exist(db: Database, names: list[str]) -> None:
    for _ in range(500):
        existing = set().union(*(await db.run(partitions.partitions_of)).values())
        if set(names) <= existing:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{names} were not created again")


@pytest.mark.parametrize("role", ["server", "worker"])
async def test_every_process_that_writes_keeps_creating_the_weeks_ahead(
    role, own_database, backends, settings, monkeypatch
) -> None:
    # A fleet of server processes alone (workers stopped, or elsewhere) must not run out of weeks.
    monkeypatch.setattr(partitions, "UPKEEP_SECONDS", 0.05)
    await migrate.upgrade(own_database)
    own = Backends(own_database, backends.vault_addr, backends.vault_token)
    process = Service(settings, own) if role == "server" else DeliveryWorkers(settings, own)
    await process.start()
    try:
        async with opened(own_database) as db:
            farthest = await _weeks_ahead_on_the_database_clock(db)
            await _until_they_exist(db, farthest)  # in place since the migration
            for name in farthest:  # as if the weeks had moved on since the process started
                await db.execute(f"DROP TABLE IF EXISTS {name}")

            await _until_they_exist(db, farthest)
    finally:
        await process.stop()


async def _waiting_for_a_lock(db: Database, connection: psycopg.AsyncConnection, locktype: str) -> None:
    """Returns once `connection`'s backend waits for a lock of `locktype` (advisory: the partitions lock)."""
    for _ in range(500):
        row = await db.fetch_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = %(type)s AND NOT granted AND pid = %(pid)s",
            {"type": locktype, "pid": connection.info.backend_pid},
        )
        if row and row[0]:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the process never waited for a lock of type {locktype}")


async def test_a_process_that_waited_while_another_created_the_weeks_finds_them_made(own_database) -> None:
    await migrate.upgrade(own_database)
    later = datetime.now(UTC) + 10 * WEEK
    weeks = partitions.Period.of(later).and_following(partitions.AHEAD)
    names = [table.partition_name(week) for table in partitions.TABLES for week in weeks]
    async with (
        opened(own_database) as db,
        await psycopg.AsyncConnection.connect(conninfo(own_database), autocommit=True) as winner,
        await psycopg.AsyncConnection.connect(conninfo(own_database), autocommit=True) as loser,
    ):
        for name in names:  # as an earlier round or try on this connection did, when they were missing
            await loser.execute("SELECT to_regclass(%(name)s)", {"name": name})
        await winner.execute(f"SELECT pg_advisory_lock({partitions.PARTITIONS_LOCK_ID})")
        deciding = asyncio.create_task(partitions.ensure_on(loser, now=later))
        await _waiting_for_a_lock(db, loser, "advisory")  # it listed them missing, and waits to create one
        made_by_winner = await partitions.ensure_on(winner, now=later)
        await winner.execute(f"SELECT pg_advisory_unlock({partitions.PARTITIONS_LOCK_ID})")
        made_by_loser = await asyncio.wait_for(deciding, 30)

    assert sorted(made_by_winner) == sorted(names)
    assert made_by_loser == []  # it looked again under the lock, and saw them


async def test_a_process_kept_waiting_by_another_creating_the_weeks_ends_its_round_without_failing(
    own_database,
) -> None:
    await migrate.upgrade(own_database)
    later = datetime.now(UTC) + 10 * WEEK
    async with (
        opened(own_database) as db,
        await psycopg.AsyncConnection.connect(conninfo(own_database), autocommit=True) as creating,
    ):
        # Another process creating partitions for longer than this one waits: a default partition
        # full of a week's rows to move, or a busy table it is trying again.
        await creating.execute(f"SELECT pg_advisory_lock({partitions.PARTITIONS_LOCK_ID})")
        left_to_the_other = await asyncio.wait_for(partitions.ensure(db, now=later), 30)
        await creating.execute(f"SELECT pg_advisory_unlock({partitions.PARTITIONS_LOCK_ID})")
        next_round = await partitions.ensure(db, now=later)

    assert left_to_the_other == []
    assert len(next_round) == len(partitions.TABLES) * (partitions.AHEAD + 1)


async def test_a_week_created_while_its_first_row_is_being_written_takes_that_row(own_database) -> None:
    await migrate.upgrade(own_database)
    later = datetime.now(UTC) + 8 * WEEK  # a week not created yet: its rows go to the default partition
    async with (
        opened(own_database) as db,
        await psycopg.AsyncConnection.connect(conninfo(own_database)) as writing,
        await psycopg.AsyncConnection.connect(conninfo(own_database), autocommit=True) as creating,
    ):
        # The week's first row, not committed yet when the creator looks for rows of the week.
        row = await (
            await writing.execute(
                ATTEMPT,
                {
                    "id": id_at(ids.ATTEMPT_PREFIX, later),
                    "tenant_id": TENANT,
                    "webhook_id": "whk_x",
                    "delivery_id": "dlv_x",
                    "event_id": "evt_x",
                    "at": later,
                },
            )
        ).fetchone()
        assert row is not None
        creation = asyncio.create_task(partitions.ensure_on(creating, now=later, ahead=0))
        await _waiting_for_a_lock(db, creating, "relation")  # for the table the row is being written to
        await writing.commit()
        created = await asyncio.wait_for(creation, 30)
        where = await partition_of(db, "attempts", "seq", row[1])

    assert partitions.ATTEMPTS.partition_name(partitions.Period.of(later)) in created
    assert where == week_partition("attempts", later)


async def test_after_an_outage_longer_than_the_weeks_ahead_a_publish_lands_in_its_week(
    own_database, backends, settings
) -> None:
    await migrate.upgrade(own_database)
    async with opened(own_database) as db:
        row = await db.fetch_one("SELECT now()")
        assert row is not None
        # Down for longer than the weeks made ahead: none of this week's or the next ones are there.
        for table in partitions.TABLES:
            for week in partitions.Period.of(row[0]).and_following(partitions.AHEAD):
                await db.execute(f"DROP TABLE {table.partition_name(week)}")
        async with running_service(settings, Backends(own_database, backends.vault_addr, backends.vault_token)) as stub:
            await stub.CreateWebhook(pb.CreateWebhookRequest(webhook=wpb.Webhook(name="p", url="http://127.0.0.1:9/h")))
            published = await stub.PublishEvent(pb.PublishEventRequest(event_type="rfp.created"))
        [(where,)] = await db.fetch_all(
            "SELECT tableoid::regclass::text FROM deliveries WHERE event_id = %(e)s", {"e": published.event_id}
        )

    assert where == week_partition("deliveries", row[0])
