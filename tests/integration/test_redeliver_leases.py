"""Leases that no worker holds: a delivery being attempted is not redelivered beside its attempt, whatever
the server's clock says; a lease that ran out does not outlive a redelivery; and a claim whose answer
was lost gives its leases back."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from history_rows import delivery, event, opened, webhook

from webhookd.domain.deliveries import AttemptRecord
from webhookd.domain.errors import FailedPrecondition, Unavailable
from webhookd.domain.scope import Scope
from webhookd.domain.statuses import DeliveryStatus, Outcome
from webhookd.store import migrate
from webhookd.store.deliveries import DeliveryStore
from webhookd.store.history import HistoryStore

TENANT = "tnt_redeliver"


@contextlib.asynccontextmanager
async def one_due_delivery(database_url: str) -> AsyncIterator[tuple[Any, str, DeliveryStore]]:
    """A migrated database holding one delivery due now: its pool, the delivery's id, and the queue."""
    await migrate.upgrade(database_url)
    async with opened(database_url) as db:
        now = datetime.now(UTC)
        delivery_id = await delivery(db, TENANT, await webhook(db, TENANT), await event(db, TENANT, now), now)
        yield db, delivery_id, DeliveryStore(db, pause_after_failures=5)


def succeeded_at(at: datetime) -> AttemptRecord:
    return AttemptRecord(Outcome.SUCCEEDED, 200, 5, "", "ok", gone=False, next_attempt_at=None, occurred_at=at)


async def test_a_server_whose_clock_runs_ahead_does_not_redeliver_a_delivery_under_a_live_lease(own_database) -> None:
    async with one_due_delivery(own_database) as (db, delivery_id, queue):
        [claimed] = await queue.claim(10, per_webhook=5, per_tenant=10)  # leased for its timeout + 30 s

        # The lease is on the database's clock; this server's runs five minutes ahead of it.
        with pytest.raises(FailedPrecondition):
            await HistoryStore(db).redeliver(Scope(TENANT), delivery_id, now=datetime.now(UTC) + timedelta(minutes=5))
        beside = await queue.claim(10, per_webhook=5, per_tenant=10)

    assert claimed.delivery_id == delivery_id
    assert beside == []


async def test_a_workers_result_recorded_after_its_lease_ran_out_does_not_undo_a_redelivery(own_database) -> None:
    async with one_due_delivery(own_database) as (db, delivery_id, queue):
        history = HistoryStore(db)
        [claimed] = await queue.claim(10, per_webhook=5, per_tenant=10)
        # What time passing does to a lease whose worker stalled.
        await db.execute("UPDATE deliveries SET lease_expires_at = now() WHERE id = %(id)s", {"id": delivery_id})
        redelivered = await history.redeliver(Scope(TENANT), delivery_id, now=datetime.now(UTC))

        late = await queue.record([(claimed, succeeded_at(datetime.now(UTC)))])
        after, _ = await history.get_delivery(Scope(TENANT), delivery_id)

    assert redelivered.status is DeliveryStatus.PENDING
    assert late.kept == [False]
    assert (after.status, after.attempts) == (DeliveryStatus.PENDING, 0)


async def test_a_claim_whose_answer_was_lost_gives_its_leases_back_before_the_next_claim(own_database) -> None:
    """A claim is sent whole (BEGIN to COMMIT): a server frozen under it commits it when it resumes,
    after the claimer was told UNAVAILABLE. Its leases belong to no worker; the next claim gives them
    back instead of leaving the delivery until they run out (its timeout and 30 s)."""
    async with one_due_delivery(own_database) as (db, delivery_id, queue):
        answered = db.fetch_all_after

        async def committed_but_unanswered(*args: Any) -> Any:
            await answered(*args)
            raise Unavailable("database unavailable: no answer in time")

        db.fetch_all_after = committed_but_unanswered  # type: ignore[method-assign]
        with pytest.raises(Unavailable):
            await queue.claim(10, per_webhook=5, per_tenant=10)
        db.fetch_all_after = answered  # type: ignore[method-assign]
        [leased] = await db.fetch_all("SELECT lease_token FROM deliveries WHERE id = %(id)s", {"id": delivery_id})

        again = await queue.claim(10, per_webhook=5, per_tenant=10)

    assert leased[0] is not None  # the lost claim did lease it
    assert [claimed.delivery_id for claimed in again] == [delivery_id]


async def test_redelivering_a_pending_delivery_again_and_again_queues_it_once(own_database) -> None:
    async with one_due_delivery(own_database) as (db, delivery_id, queue):
        history = HistoryStore(db)
        for _ in range(3):
            await history.redeliver(Scope(TENANT), delivery_id, now=datetime.now(UTC))

        claimed = await queue.claim(10, per_webhook=5, per_tenant=10)
        beside = await queue.claim(10, per_webhook=5, per_tenant=10)
        rows = await db.fetch_all("SELECT id FROM deliveries WHERE tenant_id = %(t)s", {"t": TENANT})

    assert [c.delivery_id for c in claimed] == [delivery_id]
    assert beside == []
    assert [row[0] for row in rows] == [delivery_id]
