"""Two worker processes recording results for one webhook at the same moment: each batch counts on
top of the other's, and a pause is made, logged and announced once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from test_claim_routing import webhook_with

from support import Database
from webhookd.domain.deliveries import AttemptRecord, ClaimedDelivery, RecordedBatch
from webhookd.domain.errors import Unavailable
from webhookd.domain.statuses import Outcome
from webhookd.store.database import Database as Pool
from webhookd.store.deliveries import DeliveryStore

WAIT_ROUNDS = 100  # for the two batches to queue on the row: at most 5 s


def failed() -> AttemptRecord:
    now = datetime.now(UTC)
    return AttemptRecord(Outcome.FAILED, 500, 5, "HTTP 500", "", gone=False, next_attempt_at=now, occurred_at=now)


async def record_together(
    own_database: str, webhook_id: str, claimed: Sequence[ClaimedDelivery], pause_after: int
) -> list[RecordedBatch]:
    """Each of `claimed` recorded as failed by a store of its own (a worker process each), both
    queued on the webhook's row while a third writer holds it, then let go together."""
    pools = [Pool(own_database, size=2) for _ in claimed]
    database = Database(own_database)
    try:
        for pool in pools:
            await pool.open()
        async with database.engine.connect() as holder:
            await holder.begin()
            await holder.exec_driver_sql(f"SELECT 1 FROM webhooks WHERE id = '{webhook_id}' FOR UPDATE")
            batches = [
                asyncio.create_task(DeliveryStore(pool, pause_after_failures=pause_after).record([(one, failed())]))
                for pool, one in zip(pools, claimed, strict=True)
            ]
            for _ in range(WAIT_ROUNDS):
                waiting = await database.value(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND datname = current_database()"
                )
                if waiting == len(claimed):
                    break
                await asyncio.sleep(0.05)
            assert waiting == len(claimed), "the batches never queued on the webhook's row"
            await holder.commit()
        return list(await asyncio.gather(*batches))
    finally:
        await database.close()
        for pool in pools:
            await pool.close()


async def test_two_batches_failing_at_once_both_count_and_pause_the_webhook(
    settings, backends, own_database, delivery_store
) -> None:
    webhook_id = await webhook_with(settings, backends, own_database, 2)
    claimed = await delivery_store.claim(10, per_webhook=10, per_tenant=10)

    await record_together(own_database, webhook_id, claimed, pause_after=2)

    database = Database(own_database)
    try:
        [row] = await database.rows(
            "SELECT consecutive_failures, paused_at, version FROM webhooks WHERE id = :w", w=webhook_id
        )
        pauses = await database.value(
            "SELECT count(*) FROM attempts WHERE webhook_id = :w AND kind = 'webhook.paused'", w=webhook_id
        )
    finally:
        await database.close()
    # Before: each read the count as 0 and wrote 1, and the webhook went on unpaused.
    assert (row.consecutive_failures, row.paused_at is not None, row.version, pauses) == (2, True, 2, 1)


async def test_a_pause_reached_by_two_batches_at_once_is_made_and_logged_once(
    settings, backends, own_database, delivery_store
) -> None:
    webhook_id = await webhook_with(settings, backends, own_database, 3)
    first, *rest = await delivery_store.claim(10, per_webhook=10, per_tenant=10)
    await DeliveryStore(delivery_store._db, pause_after_failures=2).record([(first, failed())])

    batches = await record_together(own_database, webhook_id, rest, pause_after=2)

    database = Database(own_database)
    try:
        pauses = await database.value(
            "SELECT count(*) FROM attempts WHERE webhook_id = :w AND kind = 'webhook.paused'", w=webhook_id
        )
        version = await database.value("SELECT version FROM webhooks WHERE id = :w", w=webhook_id)
    finally:
        await database.close()
    # Before: both batches paused it: two log entries, two operational events, two new versions.
    assert [batch.paused_webhooks for batch in batches].count([webhook_id]) == 1
    assert (pauses, version) == (1, 2)


def attempt_at(outcome: Outcome, occurred_at: datetime) -> AttemptRecord:
    succeeded = outcome is Outcome.SUCCEEDED
    return AttemptRecord(
        outcome,
        200 if succeeded else 500,
        5,
        "" if succeeded else "HTTP 500",
        "",
        gone=False,
        next_attempt_at=None if succeeded else occurred_at,
        occurred_at=occurred_at,
    )


@pytest.mark.parametrize(
    ("newer", "older", "expected"),
    [
        # A failure made before a success that is already recorded is no longer a consecutive one.
        (Outcome.SUCCEEDED, Outcome.FAILED, ("succeeded", 0)),
        # A success made before a failure already recorded ends no run of failures.
        (Outcome.FAILED, Outcome.SUCCEEDED, ("failed", 1)),
        # Failures count whatever order they are recorded in.
        (Outcome.FAILED, Outcome.TIMED_OUT, ("failed", 2)),
    ],
    ids=["failure-behind-success", "success-behind-failure", "failure-behind-failure"],
)
async def test_an_attempt_recorded_after_a_newer_one_leaves_the_webhook_showing_the_newer(
    settings, backends, own_database, delivery_store, newer: Outcome, older: Outcome, expected: tuple[str, int]
) -> None:
    """Two worker processes: the one that attempted first records last (its recorder was busy, or
    its lease had run out). last_delivery_at and last_delivery_status say what the last attempt did."""
    webhook_id = await webhook_with(settings, backends, own_database, 2)
    first, second = await delivery_store.claim(10, per_webhook=10, per_tenant=10)
    last = datetime.now(UTC)
    earlier = last - timedelta(seconds=2)

    await delivery_store.record([(first, attempt_at(newer, last))])
    await delivery_store.record([(second, attempt_at(older, earlier))])

    database = Database(own_database)
    try:
        [row] = await database.rows(
            "SELECT last_delivery_at, last_delivery_status, consecutive_failures FROM webhooks WHERE id = :w",
            w=webhook_id,
        )
    finally:
        await database.close()
    assert (row.last_delivery_at, row.last_delivery_status, row.consecutive_failures) == (last, *expected)


async def test_a_batch_recorded_again_after_its_answer_was_lost_is_logged_and_counted_once(
    settings, backends, own_database, delivery_store
) -> None:
    """The recorder writes a batch again when the database did not answer in time, but the first write
    may have committed (a frozen server carries it out when it resumes; a slow one commits just past the
    bound). The retry must not log the attempt twice, nor count its failure twice towards the pause."""
    webhook_id = await webhook_with(settings, backends, own_database, 1)
    [claimed] = await delivery_store.claim(10, per_webhook=10, per_tenant=10)
    batch = [(claimed, failed())]

    answered = delivery_store._db.run

    async def committed_but_unanswered(work: Any) -> Any:
        await answered(work)
        raise Unavailable("database unavailable: no answer in time")

    delivery_store._db.run = committed_but_unanswered  # type: ignore[method-assign]
    with pytest.raises(Unavailable):
        await delivery_store.record(batch)
    delivery_store._db.run = answered  # type: ignore[method-assign]
    retried = await delivery_store.record(batch)

    database = Database(own_database)
    try:
        logged = await database.value("SELECT count(*) FROM attempts WHERE delivery_id = :d", d=claimed.delivery_id)
        failures = await database.value("SELECT consecutive_failures FROM webhooks WHERE id = :w", w=webhook_id)
        attempts = await database.value("SELECT attempts FROM deliveries WHERE id = :d", d=claimed.delivery_id)
    finally:
        await database.close()
    assert (logged, failures, attempts) == (1, 1, 1)
    assert retried.kept == [False]  # the first write ended the lease
