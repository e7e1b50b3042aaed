"""The claim, the hold-back and the recorder in SQL (store/deliveries.py) for rate-limited and FIFO
webhooks, on a database of the test's own (the session's workers never claim from it)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import struct_pb2

from support import Database, running_service
from webhookd.app import Backends
from webhookd.domain.deliveries import AttemptRecord
from webhookd.domain.routing import RATE_SLOT_HORIZON
from webhookd.domain.statuses import Outcome

PENDING = "SELECT id, next_attempt_at, lease_token FROM deliveries WHERE webhook_id = :w ORDER BY id"


async def webhook_with(settings, backends, own_database, count: int, **fields) -> str:
    """A webhook of its own database with `count` events published to it, one at a time."""
    async with running_service(settings, Backends(own_database, backends.vault_addr, backends.vault_token)) as caller:
        created = await caller.CreateWebhook(
            pb.CreateWebhookRequest(
                webhook=wpb.Webhook(name="routed", url="http://127.0.0.1:9/hook", event_types=["*"], **fields)
            )
        )
        for n in range(count):
            payload = struct_pb2.Struct()
            payload.update({"n": n})
            await caller.PublishEvent(pb.PublishEventRequest(event_type="load.tick", payload=payload))
    return str(created.webhook.id)


def succeeded() -> AttemptRecord:
    now = datetime.now(UTC)
    return AttemptRecord(Outcome.SUCCEEDED, 200, 5, "", "ok", gone=False, next_attempt_at=None, occurred_at=now)


async def test_a_rate_limited_webhook_gets_slots_a_limit_apart_and_the_rest_waits_for_theirs(
    settings, backends, own_database, delivery_store
) -> None:
    webhook_id = await webhook_with(settings, backends, own_database, 10, rate_limit_per_second=4)
    database = Database(own_database)
    try:
        claimed = await delivery_store.claim(10, per_webhook=10, per_tenant=10)
        held = await delivery_store.hold_back(100)
        rows = await database.rows(PENDING, w=webhook_id)
        booked = await database.value(
            "SELECT webhookd_next_slot(:w, 4) - min(send_slot_at) FROM deliveries WHERE webhook_id = :w", w=webhook_id
        )
    finally:
        await database.close()

    assert len(claimed) == 4  # the slots within the horizon: 0, 0.25, 0.5 and 0.75 s from now
    gaps = [(later.send_at - earlier.send_at).total_seconds() for earlier, later in itertools.pairwise(claimed)]
    assert all(abs(gap - 0.25) < 0.01 for gap in gaps), gaps
    # The next slot (a second after the first) is within the horizon by the time the claimer looks
    # again: that one stays due; the five after it wait for theirs, a quarter of a second apart.
    assert held == 5
    unleased = sorted(row.next_attempt_at for row in rows if row.lease_token is None)
    waiting = unleased[1:]
    assert unleased[0] < waiting[0] - timedelta(seconds=1)
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(waiting)] == pytest.approx([0.25] * 4, abs=0.01)
    # The claim booked the horizon's slots from its first: the next free one is a horizon after it. Judged
    # against the first slot, not the clock when the test asks (a busy machine asked 118 ms late).
    assert booked == RATE_SLOT_HORIZON


async def test_a_fifo_webhook_goes_head_first_and_alone_and_its_end_makes_the_next_due(
    settings, backends, own_database, delivery_store
) -> None:
    webhook_id = await webhook_with(settings, backends, own_database, 3, ordering=wpb.ORDERING_FIFO)
    database = Database(own_database)
    try:
        [head] = await delivery_store.claim(10, per_webhook=10, per_tenant=10)
        assert await delivery_store.claim(10, per_webhook=10, per_tenant=10) == []  # one at a time
        assert await delivery_store.hold_back(100) == 2  # the two behind it wait for it
        parked = await database.rows(PENDING, w=webhook_id)

        recorded = await delivery_store.record([(head, succeeded())])
        after = await database.rows(PENDING, w=webhook_id)
        [following] = await delivery_store.claim(10, per_webhook=10, per_tenant=10)
    finally:
        await database.close()

    first, second, third = parked
    assert head.delivery_id == first.id and head.fifo
    assert second.next_attempt_at == third.next_attempt_at == first.next_attempt_at  # the head's lease end
    assert recorded.kept == [True] and recorded.fifo_next_due == 1
    assert after[1].next_attempt_at < after[2].next_attempt_at  # only the next one is due at once
    assert following.delivery_id == second.id
