"""Migrations on a database that already has rows: nothing is lost, and the service reads it all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from alembic.config import Config
from alembic.script import ScriptDirectory
from history_rows import attempt, delivery, event, opened, partition_of, receipt, webhook

from fakes import FakeNotifications, FakeSecrets
from webhookd.domain.history import LogFilter
from webhookd.domain.inbound import InboundTarget, Stored
from webhookd.domain.scope import Scope
from webhookd.domain.webhooks import Ordering, RetryPolicy, SignatureScheme
from webhookd.services.webhooks import Webhooks
from webhookd.store import migrate, partitions
from webhookd.store.database import Database
from webhookd.store.history import HistoryStore
from webhookd.store.inbound import InboundStore
from webhookd.store.webhooks import WebhookStore

TENANT = "tnt_migrations"
HISTORY = {
    "deliveries": "SELECT * FROM deliveries ORDER BY id",
    "attempts": "SELECT * FROM attempts ORDER BY seq",
    "inbound_events": "SELECT * FROM inbound_events ORDER BY seq",
    "events": "SELECT * FROM events ORDER BY id",
}


async def history(database: Database) -> dict[str, list[Any]]:
    return {table: await database.fetch_all(statement) for table, statement in HISTORY.items()}


async def test_0007_partitions_existing_history_keeping_every_row_readable(own_database) -> None:
    await migrate.upgrade(own_database, revision="0006")
    now = datetime.now(UTC)
    weeks_ago = [now - timedelta(weeks=3), now - timedelta(weeks=1), now]
    async with opened(own_database) as db:
        outbound = await webhook(db, TENANT)
        inbound = await webhook(db, TENANT, inbound=True)
        target = InboundTarget(inbound, TENANT, None, SignatureScheme.STANDARD_WEBHOOKS, "webhookd/test", "fp")
        made = []
        for n, at in enumerate(weeks_ago):
            event_id = await event(db, TENANT, at)
            for status in ("succeeded", "pending"):
                delivery_id = await delivery(db, TENANT, outbound, event_id, at, status=status)
                await attempt(db, TENANT, outbound, delivery_id, at)
                await attempt(db, TENANT, outbound, delivery_id, at + timedelta(seconds=40))
                made.append((delivery_id, at))
            stored = await InboundStore(db).record(target, receipt(f"msg_{n}", at), rate_per_second=1.0, burst=100)
            assert stored.receipt_id is not None
        await db.execute(
            "INSERT INTO deliveries (id, tenant_id, event_id, webhook_id, status, created_at, updated_at)"
            " VALUES ('dlv_imported', %(t)s, 'evt_imported', %(w)s, 'succeeded', now(), now())",
            {"t": TENANT, "w": outbound},
        )
        before = await history(db)

    await migrate.upgrade(own_database, revision="0007")
    async with opened(own_database) as db:
        after = await history(db)  # every column as 0007 left it (0009 adds some)

    # Then the current schema, which the service reads the history from.
    await migrate.upgrade(own_database)

    async with opened(own_database) as db:
        where = {delivery_id: await partition_of(db, "deliveries", "id", delivery_id) for delivery_id, _ in made}
        imported = await partition_of(db, "deliveries", "id", "dlv_imported")
        log_after = (
            await HistoryStore(db).read_log(Scope(TENANT), LogFilter(), after=None, since=None, limit=100)
        ).entries
        oldest, oldest_attempts = await HistoryStore(db).get_delivery(Scope(TENANT), made[0][0])
        receipts = (await InboundStore(db).read(Scope(TENANT), webhook_id=inbound, after=None, limit=10)).entries
        retried = await InboundStore(db).record(target, receipt("msg_0", now), rate_per_second=1.0, burst=100)
        _, next_seq = await attempt(db, TENANT, outbound, made[0][0], now)

    assert after == before
    assert len(after["attempts"]) == 15  # two per delivery, one per receipt
    assert where == {
        delivery_id: partitions.DELIVERIES.partition_name(partitions.Period.of(at)) for delivery_id, at in made
    }
    assert imported == "deliveries_default"
    assert [(entry.position.txid, entry.position.seq) for entry in log_after] == sorted(
        (row[1], row[0]) for row in before["attempts"]
    )
    assert {entry.kind.value for entry in log_after} == {"attempt"}  # 0009's default for the rows it found
    assert (oldest.id, [entry.delivery_id for entry in oldest_attempts]) == (made[0][0], [made[0][0]] * 2)
    assert [received.message_id for received in receipts] == ["msg_0", "msg_1", "msg_2"]
    assert retried == Stored(None)  # a receipt from before the migration still catches its retry
    assert next_seq > max(row[0] for row in before["attempts"])


async def test_0010_gives_existing_webhooks_and_events_no_channels_no_limit_and_no_order(own_database) -> None:
    await migrate.upgrade(own_database, revision="0009")
    now = datetime.now(UTC)
    async with opened(own_database) as db:
        webhook_id = await webhook(db, TENANT)
        event_id = await event(db, TENANT, now)
        delivery_id = await delivery(db, TENANT, webhook_id, event_id, now, status="pending")

    await migrate.upgrade(own_database)

    async with opened(own_database) as db:
        stored = await WebhookStore(db).get(Scope(TENANT), webhook_id)
        [(channels,)] = await db.fetch_all("SELECT channels FROM events WHERE id = %(e)s", {"e": event_id})
        [(fifo_seq,)] = await db.fetch_all("SELECT fifo_seq FROM deliveries WHERE id = %(d)s", {"d": delivery_id})
        catalog = await db.fetch_all("SELECT count(*) FROM event_types")
    spec = stored.spec
    assert (spec.channels, spec.rate_limit_per_second, spec.ordering) == ((), 0, Ordering.UNORDERED)
    assert (channels, fifo_seq, catalog) == ([], None, [(0,)])


def revision_before(revision: str) -> str:
    """The revision `revision` upgrades from, as its migration names it."""
    config = Config()
    config.set_main_option("script_location", str(migrate.MIGRATIONS))
    before = ScriptDirectory.from_config(config).get_revision(revision).down_revision
    assert isinstance(before, str)
    return before


async def test_0019_keeps_the_time_of_a_pending_retry_as_its_retry_time(own_database) -> None:
    """Before 0019 a held-back delivery and one waiting for its retry could not be told apart: one
    already attempted is taken to wait for its retry, as the claimer's releases took it before."""
    await migrate.upgrade(own_database, revision=revision_before("0019"))
    now = datetime.now(UTC)
    later = now + timedelta(hours=1)
    async with opened(own_database) as db:
        webhook_id = await webhook(db, TENANT)
        event_id = await event(db, TENANT, now)
        retrying = await delivery(db, TENANT, webhook_id, event_id, now - timedelta(seconds=2), due=later)
        held_back = await delivery(db, TENANT, webhook_id, event_id, now - timedelta(seconds=1), due=later)
        due = await delivery(db, TENANT, webhook_id, event_id, now)
        await db.execute("UPDATE deliveries SET attempts = 1 WHERE id = ANY(%(d)s)", {"d": [retrying, due]})

    await migrate.upgrade(own_database)

    async with opened(own_database) as db:
        rows = await db.fetch_all("SELECT id, retry_at, next_attempt_at FROM deliveries ORDER BY id")
    assert [(row[0], row[1]) for row in rows] == [(retrying, rows[0][2]), (held_back, None), (due, None)]
    assert rows[0][2] == later


_VERSION_AND_UPDATE = "SELECT version, updated_at FROM webhooks WHERE id = %(id)s"
# The row without the columns later revisions added (0021's mark, which it sets on every row).
_AS_0020_LEFT_IT = "SELECT to_jsonb(w) - 'secret_overlap_ends_at' FROM webhooks w WHERE id = %(id)s"


async def test_0020_clears_delivery_settings_of_an_inbound_webhook_so_it_can_be_updated_again(own_database) -> None:
    """An inbound webhook stored before validation refused delivery settings on it refused every
    update until the update cleared them: 0020 resets them, which never did anything for it, with a
    new version (what a read shows changed, so must its ETag), and leaves an outbound webhook as it was."""
    await migrate.upgrade(own_database, revision=revision_before("0020"))
    settings = (
        "UPDATE webhooks SET channels = ARRAY['eu'], rate_limit_per_second = 5, ordering = 'fifo',"
        " headers = '{\"X-Team\": \"a\"}', retry_max_attempts = 2, retry_backoff = 'fixed', retry_timeout_ms = 900,"
        " source = 'edm'"
        " WHERE id = ANY(%(w)s)"
    )
    async with opened(own_database) as db:
        inbound = await webhook(db, TENANT, inbound=True)
        outbound = await webhook(db, TENANT)
        await db.execute(settings, {"w": [inbound, outbound]})
        # In SQL: the store reads the columns of the newest revision.
        before = await db.fetch_one(_VERSION_AND_UPDATE, {"id": inbound})
        kept = await db.fetch_one(_AS_0020_LEFT_IT, {"id": outbound})

    await migrate.upgrade(own_database)

    async with opened(own_database) as db:
        store = WebhookStore(db)
        webhooks = Webhooks(
            store, FakeSecrets(), FakeNotifications(), public_url="https://hooks.test", allow_insecure_urls=True
        )
        migrated = await store.get(Scope(TENANT), inbound)
        renamed = await webhooks.update(
            Scope(TENANT),
            inbound,
            expected_version=migrated.version,
            paths=["name"],
            changes_for=lambda paths: {"name": "renamed"},
        )
        untouched = await db.fetch_one(_AS_0020_LEFT_IT, {"id": outbound})
    spec = migrated.spec
    assert (spec.channels, spec.rate_limit_per_second, spec.ordering) == ((), 0, Ordering.UNORDERED)
    assert (dict(spec.headers), spec.retry_policy) == ({}, RetryPolicy())
    assert before is not None
    assert (migrated.version, migrated.updated_at) == (before[0] + 1, before[1])
    assert (renamed.spec.name, renamed.version) == ("renamed", before[0] + 2)
    assert untouched == kept
