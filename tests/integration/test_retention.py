"""Retention drops weeks of history whole, removes what the weeks do not hold row by row, and keeps
what is still owed or recent."""

import asyncio
import signal
import sys
from datetime import UTC, datetime, timedelta, tzinfo
from unittest.mock import ANY

import plans
import psycopg
import pytest
import sqlalchemy as sa
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from history_rows import attempt, delivery, event, opened, receipt, tables, webhook

from webhookd import app
from webhookd.domain.deliveries import AttemptRecord
from webhookd.domain.inbound import InboundTarget
from webhookd.domain.statuses import Outcome
from webhookd.domain.webhooks import SignatureScheme
from webhookd.store import migrate, partitions, retention
from webhookd.store.conninfo import conninfo
from webhookd.store.database import Database
from webhookd.store.deliveries import DeliveryStore
from webhookd.store.inbound import InboundStore


async def _publish(caller) -> str:
    published = await caller.PublishEvent(pb.PublishEventRequest(event_type="rfp.created"))
    return published.event_id


_DELIVERY = sa.text(
    "INSERT INTO deliveries (id, tenant_id, event_id, webhook_id, status, attempts, created_at, updated_at)"
    " VALUES ('dlv_' || :event_id, :tenant, :event_id, :webhook_id, :status, 1, :at, :at)"
)


async def test_sweep_removes_old_finished_history_and_keeps_pending_and_recent(
    caller, service, backends, database
) -> None:
    # Disabled, so no worker touches the deliveries this test writes itself; subscribed to nothing it
    # publishes, so publishing records no skipped delivery of its own.
    webhook = wpb.Webhook(name="r", url="http://127.0.0.1:9/hook", enabled=False, event_types=["unrelated.*"])
    created = await caller.CreateWebhook(pb.CreateWebhookRequest(webhook=webhook))
    engine = database.engine
    swept = Database(backends.database_url, size=2)
    await swept.open()
    try:
        old_finished = await _publish(caller)
        old_pending = await _publish(caller)
        recent = await _publish(caller)
        long_ago = datetime.now(UTC) - timedelta(days=40)
        async with engine.begin() as connection:
            for event_id, status, at in (
                (old_finished, "succeeded", long_ago),
                (old_pending, "pending", long_ago),
                (recent, "succeeded", datetime.now(UTC)),
            ):
                await connection.execute(
                    sa.text("UPDATE events SET created_at = :at WHERE id = :id"), {"at": at, "id": event_id}
                )
                await connection.execute(
                    _DELIVERY,
                    {
                        "event_id": event_id,
                        "tenant": caller.tenant_id,
                        "webhook_id": created.webhook.id,
                        "status": status,
                        "at": at,
                    },
                )
        removed = (await retention.sweep(swept, cutoff=datetime.now(UTC) - timedelta(days=30), batch=1)).deleted
        async with engine.connect() as connection:
            remaining = set(
                (
                    await connection.execute(
                        sa.text("SELECT id FROM events WHERE tenant_id = :t"), {"t": caller.tenant_id}
                    )
                ).scalars()
            )
        assert removed >= 2  # the old finished delivery and its event
        assert remaining == {old_pending, recent}
    finally:
        await swept.close()


# -- weeks dropped whole -------------------------------------------------------------------------------

TENANT = "tnt_retention"
WEEK = partitions.WIDTH


def succeeded_at(at: datetime) -> AttemptRecord:
    return AttemptRecord(Outcome.SUCCEEDED, 200, 5, "", "ok", gone=False, next_attempt_at=None, occurred_at=at)


async def test_sweep_drops_old_weeks_whole_and_keeps_pending_deliveries_and_their_events(own_database) -> None:
    await migrate.upgrade(own_database)
    now = datetime.now(UTC)
    old = now - 6 * WEEK
    cutoff = now - timedelta(days=30)
    async with opened(own_database) as db:
        await partitions.ensure(db, now=old, ahead=0)
        old_weeks = sorted(table.partition_name(partitions.Period.of(old)) for table in partitions.TABLES)
        # Paused for six weeks: its delivery is still owed when the week it was made in ages out.
        paused = await webhook(db, TENANT, paused_at=old)
        finished_event = await event(db, TENANT, old)
        finished = await delivery(db, TENANT, paused, finished_event, old, status="succeeded")
        owed_event = await event(db, TENANT, old)
        owed = await delivery(db, TENANT, paused, owed_event, old)
        for delivery_id in (finished, owed):
            await attempt(db, TENANT, paused, delivery_id, old)
        inbound = await webhook(db, TENANT, inbound=True)
        target = InboundTarget(inbound, TENANT, None, SignatureScheme.STANDARD_WEBHOOKS, "webhookd/test", "fp")
        await InboundStore(db).record(target, receipt("msg_old", old), rate_per_second=1.0, burst=100)
        recent_event = await event(db, TENANT, now)
        recent = await delivery(db, TENANT, paused, recent_event, now, status="succeeded")
        await attempt(db, TENANT, paused, recent, now)

        swept = await retention.sweep(db, cutoff=cutoff)

        left = await tables(db)
        deliveries_left = await db.fetch_all(
            "SELECT id, tableoid::regclass::text, status, event_id FROM deliveries ORDER BY id"
        )
        events_left = {row[0] for row in await db.fetch_all("SELECT id FROM events")}
        old_lines = await db.fetch_one(
            "SELECT (SELECT count(*) FROM attempts WHERE occurred_at < %(c)s),"
            " (SELECT count(*) FROM inbound_events WHERE received_at < %(c)s),"
            " (SELECT count(*) FROM attempts)",
            {"c": cutoff},
        )

        # The kept delivery is as deliverable as before: resumed, it is claimed with its event's body.
        await db.execute("UPDATE webhooks SET paused_at = NULL WHERE id = %(id)s", {"id": paused})
        await db.execute("UPDATE deliveries SET next_attempt_at = now() WHERE id = %(id)s", {"id": owed})
        queue = DeliveryStore(db, pause_after_failures=5)
        [claimed] = await queue.claim(10, per_webhook=5, per_tenant=10)
        assert (await queue.record([(claimed, succeeded_at(datetime.now(UTC)))])).kept == [True]
        # Once delivered it is finished history like any other, and goes with its event.
        second = await retention.sweep(db, cutoff=cutoff)
        events_after_second = {row[0] for row in await db.fetch_all("SELECT id FROM events")}

    assert sorted(swept.dropped) == old_weeks
    assert swept.kept_pending == 1
    assert not set(old_weeks) & left
    assert deliveries_left == [(owed, "deliveries_default", "pending", owed_event), (recent, ANY, "succeeded", ANY)]
    assert events_left == {owed_event, recent_event}  # the finished delivery's event went with it
    assert old_lines == (0, 0, 1)
    assert (claimed.delivery_id, claimed.body) == (owed, b'{"n": 1}')
    assert (second.dropped, second.deleted) == ([], 2)  # the delivered one and its event
    assert events_after_second == {recent_event}


async def test_a_week_whose_table_stays_busy_waits_for_the_next_round(own_database, backends) -> None:
    await migrate.upgrade(own_database)
    old = datetime.now(UTC) - 6 * WEEK
    async with opened(own_database) as db:
        await partitions.ensure(db, now=old, ahead=0)
        async with await psycopg.AsyncConnection.connect(conninfo(own_database)) as reader:
            await reader.execute("SELECT 1 FROM attempts LIMIT 1")  # a transaction left open on attempts
            busy_round = await retention.sweep(db, cutoff=old + 3 * WEEK)
        next_round = await retention.sweep(db, cutoff=old + 3 * WEEK)

    week = partitions.Period.of(old)
    assert busy_round.dropped == [
        partitions.DELIVERIES.partition_name(week),
        partitions.INBOUND_EVENTS.partition_name(week),
    ]
    assert next_round.dropped == [partitions.ATTEMPTS.partition_name(week)]


async def test_only_one_process_sweeps(own_database) -> None:
    await migrate.upgrade(own_database)
    old = datetime.now(UTC) - 6 * WEEK
    async with opened(own_database) as db:
        await partitions.ensure(db, now=old, ahead=0)
        async with await psycopg.AsyncConnection.connect(conninfo(own_database), autocommit=True) as other:
            await other.execute(f"SELECT pg_advisory_lock({retention.RETENTION_LOCK_ID})")
            skipped = await retention.sweep(db, cutoff=old + 3 * WEEK)
            # Let go before the next round: a closed connection's backend drops its locks only as it
            # exits, which may come after that round has tried the lock.
            await other.execute(f"SELECT pg_advisory_unlock({retention.RETENTION_LOCK_ID})")
        swept = await retention.sweep(db, cutoff=old + 3 * WEEK)

    assert (skipped.dropped, skipped.deleted) == ([], 0)
    assert len(swept.dropped) == 3


async def test_held_skipped_and_discarded_deliveries_expire_with_their_week(own_database) -> None:
    await migrate.upgrade(own_database)
    now = datetime.now(UTC)
    old = now - 6 * WEEK
    async with opened(own_database) as db:
        await partitions.ensure(db, now=old, ahead=0)
        paused = await webhook(db, TENANT, paused_at=old)
        waiting = {
            status: await delivery(db, TENANT, paused, await event(db, TENANT, old), old, status=status)
            for status in ("held", "skipped", "discarded", "pending")
        }

        swept = await retention.sweep(db, cutoff=now - timedelta(days=30))
        left = await db.fetch_all("SELECT id, status FROM deliveries ORDER BY id")

    # History, not owed: only the pending one is kept out of the dropped week.
    assert swept.kept_pending == 1
    assert left == [(waiting["pending"], "pending")]


async def _waiting_on_a_lock(db: Database, statement_start: str) -> None:
    """Returns once a backend running a statement that starts with `statement_start` waits for a lock."""
    for _ in range(500):
        row = await db.fetch_one(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %(q)s",
            {"q": statement_start + "%"},
        )
        if row and row[0]:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no statement {statement_start!r} waited for a lock")


async def test_a_finished_delivery_requeued_while_its_batch_is_deleted_stays(own_database) -> None:
    await migrate.upgrade(own_database)
    old = datetime.now(UTC) - 6 * WEEK
    async with opened(own_database) as db:
        hook = await webhook(db, TENANT)
        # An old week with no partition of its own: the failed delivery sits in the default partition.
        failed = await delivery(db, TENANT, hook, await event(db, TENANT, old), old, status="failed")
        async with await psycopg.AsyncConnection.connect(conninfo(own_database)) as redelivering:
            # A redelivery (or RecoverWebhook) makes it pending again, committing while the sweep waits.
            await redelivering.execute(
                "UPDATE deliveries SET status = 'pending', next_attempt_at = now(), completed_at = NULL"
                " WHERE id = %(id)s",
                {"id": failed},
            )
            sweeping = asyncio.create_task(retention.sweep(db, cutoff=old + 3 * WEEK))
            await _waiting_on_a_lock(db, "DELETE FROM deliveries_default")
            await redelivering.commit()
        await sweeping
        left = await db.fetch_all("SELECT id, status FROM deliveries")

    assert left == [(failed, "pending")]


async def test_a_week_another_process_dropped_meanwhile_is_passed_over(own_database) -> None:
    await migrate.upgrade(own_database)
    old = datetime.now(UTC) - 6 * WEEK
    week = partitions.Period.of(old)
    async with opened(own_database) as db:
        await partitions.ensure(db, now=old, ahead=0)
        async with await psycopg.AsyncConnection.connect(conninfo(own_database)) as reader:
            await reader.execute("SELECT 1 FROM deliveries LIMIT 1")  # holds the sweep at the deliveries week
            sweeping = asyncio.create_task(retention.sweep(db, cutoff=old + 3 * WEEK))
            await _waiting_on_a_lock(db, "LOCK TABLE deliveries")
            # Another process's sweep, between this one's listing of the weeks and its turn at attempts.
            await db.execute(f"DROP TABLE {partitions.ATTEMPTS.partition_name(week)}")
            await reader.commit()
        swept = await sweeping

    assert swept.dropped == [
        partitions.DELIVERIES.partition_name(week),
        partitions.INBOUND_EVENTS.partition_name(week),
    ]


class _TenWeeksAhead(datetime):
    """The clock of a process running ten weeks ahead of the database's."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> datetime:
        return datetime.now(tz) + 10 * WEEK


async def test_a_process_whose_clock_runs_ahead_neither_drops_nor_makes_weeks_by_it(own_database, monkeypatch) -> None:
    await migrate.upgrade(own_database)
    for module in (app, partitions):
        monkeypatch.setattr(module, "datetime", _TenWeeksAhead)
    async with opened(own_database) as db:
        this_week = await tables(db)
        await partitions.ensure(db)
        await app.sweep_history(
            db, retention_days=30, buckets=retention.bucket_limits(inbound_per_second=50.0, inbound_burst=100)
        )
        after = await tables(db)

    assert after == this_week  # this week and the two after it, by the database's clock


_SWEEP_IN_A_PROCESS = """
import asyncio, sys
from datetime import datetime
from webhookd.store import retention
from webhookd.store.database import Database

async def main() -> None:
    database = Database(sys.argv[1], size=1, timeout_seconds=60)
    await database.open()
    await retention.sweep(database, cutoff=datetime.fromisoformat(sys.argv[2]))

asyncio.run(main())
"""


@pytest.mark.slow
async def test_a_sweeper_that_goes_silent_holding_the_deliveries_lock_does_not_stall_the_table(own_database) -> None:
    await migrate.upgrade(own_database)
    old = datetime.now(UTC) - 6 * WEEK
    async with opened(own_database) as db:
        await partitions.ensure(db, now=old, ahead=0)
        async with await psycopg.AsyncConnection.connect(conninfo(own_database)) as reader:
            await reader.execute("SELECT 1 FROM deliveries LIMIT 1")  # the sweeper waits at its LOCK TABLE
            sweeper = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _SWEEP_IN_A_PROCESS, own_database, (old + 3 * WEEK).isoformat()
            )
            try:
                backend = await _waiting_backend(db, "LOCK TABLE deliveries", limit=30.0)
                # Frozen (a stalled host, a network cut): the lock is granted to a client that says nothing more.
                sweeper.send_signal(signal.SIGSTOP)
                await reader.commit()
                holds = await db.fetch_one(
                    "SELECT count(*) FROM pg_locks WHERE pid = %(pid)s AND granted"
                    " AND mode = 'AccessExclusiveLock' AND relation = 'deliveries'::regclass",
                    {"pid": backend},
                )
                async with await psycopg.AsyncConnection.connect(conninfo(own_database), autocommit=True) as hot:
                    await hot.execute("SET statement_timeout = '30s'")
                    read = await (await hot.execute("SELECT count(*) FROM deliveries")).fetchone()
            finally:
                sweeper.kill()
                await sweeper.wait()

    assert holds == (1,)  # the sweeper did hold the table when it went silent
    assert read == (0,)  # and the hot path read it all the same, once the server ended that transaction


async def _waiting_backend(db: Database, statement_start: str, *, limit: float) -> int:
    """The process id of the backend waiting for a lock in a statement that starts with `statement_start`."""
    for _ in range(int(limit / 0.01)):
        row = await db.fetch_one(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %(q)s",
            {"q": statement_start + "%"},
        )
        if row:
            return int(row[0])
        await asyncio.sleep(0.01)
    raise AssertionError(f"no statement {statement_start!r} waited for a lock")


# -- the default partitions' rows, batch by batch ---------------------------------------------------------

# Rows in the default partitions: RECENT of weeks never created (a clock far off, an id not a ULID),
# as many pending deliveries kept from dropped weeks, and a few old finished rows, which retention deletes.
RECENT = 4000
DEFAULT_ROWS = f"""
INSERT INTO deliveries (id, tenant_id, event_id, webhook_id, status, attempts, created_at, updated_at)
SELECT 'dlv_imported-' || n, '{TENANT}', 'evt_x', 'whk_x', CASE WHEN n <= {RECENT} THEN 'succeeded' ELSE 'pending' END,
    1, CASE WHEN n <= {RECENT} THEN now() ELSE now() - interval '60 days' END, now()
FROM generate_series(1, {2 * RECENT}) AS n;
INSERT INTO deliveries (id, tenant_id, event_id, webhook_id, status, attempts, created_at, updated_at)
SELECT 'dlv_old-' || n, '{TENANT}', 'evt_x', 'whk_x', 'succeeded', 1, now() - interval '60 days', now()
FROM generate_series(1, 5) AS n;
INSERT INTO attempts (id, tenant_id, delivery_id, event_id, event_type, webhook_id, attempt, outcome, latency_ms,
    error, response_excerpt, occurred_at)
SELECT 'att_' || n, '{TENANT}', 'dlv_x', 'evt_x', 'e', 'whk_x', 1, 'succeeded', 5, '', '',
    CASE WHEN n <= {RECENT} THEN now() + interval '1 year' ELSE now() - interval '60 days' END
FROM generate_series(1, {RECENT} + 5) AS n;
INSERT INTO inbound_events (id, tenant_id, webhook_id, message_id, status, reason, event_type, content_type,
    body, received_at)
SELECT 'rcv_' || n, '{TENANT}', %(inbound)s, 'msg_' || n, 'accepted', '', 'e', 'application/json', '{{}}',
    CASE WHEN n <= {RECENT} THEN now() + interval '1 year' ELSE now() - interval '60 days' END
FROM generate_series(1, {RECENT} + 5) AS n;
ANALYZE deliveries_default, attempts_default, inbound_events_default;
"""


async def test_each_batch_reaches_the_old_rows_of_the_default_partitions_by_index(own_database) -> None:
    await migrate.upgrade(own_database)
    async with opened(own_database) as db:
        inbound = await webhook(db, TENANT, inbound=True)
        for statement in DEFAULT_ROWS.split(";\n"):
            if statement.strip():
                await db.execute(statement, {"inbound": inbound})
    values = {"cutoff": datetime.now(UTC) - timedelta(days=30), "batch": 1000}
    types = {"cutoff": "timestamptz", "batch": "int"}

    # The plan a pooled connection that ran each batch often would use, unless retention's settings
    # say otherwise: after a few runs PostgreSQL plans once for every cutoff.
    scans = [
        (node["Relation Name"], node["Node Type"])
        for statement in retention._BATCHES
        if "_default" in statement
        for node in plans.nodes(plans.generic_plan(own_database, retention._LOCK, statement, types, values))
        if node.get("Relation Name", "").endswith("_default")
    ]

    assert {name for name, _ in scans} == {table.default_partition for table in partitions.TABLES}
    assert [scan for scan in scans if scan[1] == "Seq Scan"] == []


async def test_bucket_rows_as_good_as_absent_go_and_the_others_stay(own_database) -> None:
    # A missing row is a full bucket (token_buckets.take); so is a row refilled to its burst. A row
    # of a webhook that no longer exists is taken from by nothing.
    await migrate.upgrade(own_database)
    rate, burst = 1.0, 100
    async with opened(own_database) as db:
        inbound = await webhook(db, TENANT, inbound=True)
        outbound = await webhook(db, TENANT)
        gone = "whk_01JGONEGONEGONEGONEGONEGON"
        rows = {
            # (table, key): (tokens, seconds since its last write)
            ("inbound_buckets", inbound): (0.0, 3600.0),  # refilled long since: goes
            ("inbound_buckets", f"{inbound}:refusals"): (0.0, 0.0),  # drained just now: stays
            ("inbound_buckets", gone): (0.0, 0.0),  # its webhook is gone: goes
            ("inbound_buckets", f"{gone}:refusals"): (0.0, 0.0),  # goes with it
            ("ping_buckets", outbound): (0.0, 0.0),  # drained just now: stays
            ("ping_buckets", f"{outbound}x"): (0.0, 0.0),  # no such webhook: goes
        }
        for (table, key), (tokens, idle) in rows.items():
            await db.execute(
                f"INSERT INTO {table} (webhook_id, tokens, updated_at)"
                " VALUES (%(key)s, %(tokens)s, now() - make_interval(secs => %(idle)s))",
                {"key": key, "tokens": tokens, "idle": idle},
            )
        # Drained an hour ago, refilled to its burst since: as good as absent too.
        ping_full = await webhook(db, TENANT)
        await db.execute(
            "INSERT INTO ping_buckets (webhook_id, tokens, updated_at) VALUES (%(key)s, 0, now() - interval '1 hour')",
            {"key": ping_full},
        )

        swept = await retention.sweep(
            db,
            cutoff=datetime.now(UTC) - timedelta(days=30),
            buckets=retention.bucket_limits(inbound_per_second=rate, inbound_burst=burst),
        )
        left = {
            (row[0], row[1])
            for row in await db.fetch_all(
                "SELECT 'inbound_buckets', webhook_id FROM inbound_buckets"
                " UNION ALL SELECT 'ping_buckets', webhook_id FROM ping_buckets"
            )
        }

    assert left == {("inbound_buckets", f"{inbound}:refusals"), ("ping_buckets", outbound)}
    assert swept.deleted == 5


async def test_a_bucket_row_a_token_is_taken_from_while_its_batch_waits_stays(own_database) -> None:
    await migrate.upgrade(own_database)
    limits = retention.bucket_limits(inbound_per_second=1.0, inbound_burst=100)
    async with opened(own_database) as db:
        inbound = await webhook(db, TENANT, inbound=True)
        await db.execute(
            "INSERT INTO inbound_buckets (webhook_id, tokens, updated_at)"
            " VALUES (%(id)s, 0, now() - interval '1 hour')",  # refilled long since
            {"id": inbound},
        )
        async with await psycopg.AsyncConnection.connect(conninfo(own_database)) as taker:
            # A token taken from the full bucket, its transaction still open: the row is locked.
            await taker.execute(
                "UPDATE inbound_buckets SET tokens = 99, updated_at = clock_timestamp() WHERE webhook_id = %(id)s",
                {"id": inbound},
            )
            sweeping = asyncio.create_task(
                retention.sweep(db, cutoff=datetime.now(UTC) - timedelta(days=30), buckets=limits)
            )
            for _ in range(500):
                row = await db.fetch_one(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                    " WHERE NOT l.granted AND a.datname = current_database()"
                )
                if row and row[0]:
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the sweep never waited for the bucket's row")
            await taker.commit()
            swept = await sweeping
        left = await db.fetch_all("SELECT webhook_id, tokens FROM inbound_buckets")

    assert left == [(inbound, 99.0)]
    assert swept.deleted == 0
