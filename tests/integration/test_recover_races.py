"""RecoverWebhook beside other writers of the same deliveries: a recovery takes only the deliveries that
are still failed (or skipped) when it writes them, not those it saw so before another writer moved
them on. Two recoveries at once queue each delivery once, and neither makes a delivery a worker is
attempting due again beside its attempt."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from history_rows import delivery, event, opened, webhook

from webhookd.domain.scope import Scope
from webhookd.store import migrate
from webhookd.store.conninfo import conninfo
from webhookd.store.deliveries import DeliveryStore
from webhookd.store.history import HistoryStore

TENANT = "tnt_recover_races"
WAITING_FOR_ROWS = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
)
# What another recovery leaves behind, and what a worker's claim then makes of it.
QUEUED_AGAIN = (
    "UPDATE deliveries SET status = 'pending', completed_at = NULL, next_attempt_at = now() WHERE id = %(id)s"
)
QUEUED_AND_CLAIMED = (
    "UPDATE deliveries SET status = 'pending', completed_at = NULL, lease_token = 'worker-a',"
    " lease_expires_at = now() + interval '1 hour', next_attempt_at = now() + interval '1 hour'"
    " WHERE id = %(id)s"
)


async def until_waiting_for_a_row(connection: psycopg.AsyncConnection) -> None:
    """Until a session of this database waits for a row another transaction holds (within 10 s)."""
    deadline = time.monotonic() + 10
    while (await (await connection.execute(WAITING_FOR_ROWS)).fetchone())[0] == 0:
        assert time.monotonic() < deadline, "the recovery never waited for the row"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("meanwhile", [QUEUED_AGAIN, QUEUED_AND_CLAIMED], ids=["queued", "claimed"])
async def test_a_recovery_leaves_alone_a_delivery_another_writer_queued_while_it_waited_for_the_row(
    own_database, meanwhile
) -> None:
    await migrate.upgrade(own_database)
    async with opened(own_database) as db:
        now = datetime.now(UTC)
        webhook_id = await webhook(db, TENANT)
        failed = await delivery(db, TENANT, webhook_id, await event(db, TENANT, now), now, status="failed")
        history, queue = HistoryStore(db), DeliveryStore(db, pause_after_failures=5)
        async with (
            await psycopg.AsyncConnection.connect(conninfo(own_database)) as other_writer,
            await psycopg.AsyncConnection.connect(conninfo(own_database), autocommit=True) as looking,
        ):
            await other_writer.execute(meanwhile, {"id": failed})
            recovering = asyncio.create_task(
                history.recover(Scope(TENANT), webhook_id, since=now - timedelta(minutes=1), now=now)
            )
            await until_waiting_for_a_row(looking)
            await other_writer.commit()
            queued = await recovering
            claimed = await queue.claim(10, per_webhook=5, per_tenant=10)

    assert queued == 0  # the other writer queued it: counted once, by that writer
    # Claimed once: by this claim when it was only queued, never beside the worker that holds it.
    assert len(claimed) == (1 if meanwhile is QUEUED_AGAIN else 0)
