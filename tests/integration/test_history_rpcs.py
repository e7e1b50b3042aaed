"""Delivery history: ListDeliveries, GetDelivery, RedeliverDelivery and RecoverWebhook against real deliveries.

Deliveries are made by the session workers posting to loopback receivers; a webhook whose retry
policy allows one attempt fails at once when its receiver answers 500. A scheduled retry is made
due with `database.make_due`, which is what waiting would do.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from cpod.integration.v1 import operations_pb2 as ops
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import field_mask_pb2, timestamp_pb2
from webhook_calls import create_webhook, field_violations, rpc_error

from log_streams import Tail
from receivers import Receiver, failing_first, ok, status
from support import make_caller
from webhookd.domain.history import DELIVERY_ATTEMPTS_SHOWN

FINISHED = "SELECT id, created_at FROM deliveries WHERE tenant_id = :t AND status <> 'pending' ORDER BY created_at, id"
ONE_ATTEMPT = wpb.RetryPolicy(max_attempts=1)


def timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


async def publish(caller: Any, event_type: str = "order.created") -> str:
    return str((await caller.PublishEvent(pb.PublishEventRequest(event_type=event_type))).event_id)


async def finished(database: Any, tenant_id: str, count: int) -> list[Any]:
    """The tenant's deliveries, oldest first, once `count` of them are finished."""
    return await database.wait_for(FINISHED, lambda rows: len(rows) >= count, within=20, t=tenant_id)


async def listed(caller: Any, **fields: Any) -> list[str]:
    """Every page of ListDeliveries with these filters, two at a time."""
    ids: list[str] = []
    token = ""
    while True:
        page = await caller.ListDeliveries(pb.ListDeliveriesRequest(page_size=2, page_token=token, **fields))
        ids += [delivery.id for delivery in page.deliveries]
        token = page.next_page_token
        if not token:
            return ids


@pytest.fixture
async def failing_receiver() -> AsyncIterator[Receiver]:
    started = await Receiver(respond=status(500)).start()
    yield started
    await started.stop()


async def test_list_deliveries_pages_newest_first_and_filters(
    caller, workers, receiver, failing_receiver, database
) -> None:
    good = await create_webhook(caller, url=receiver.url, event_types=["*"])
    bad = await create_webhook(caller, url=failing_receiver.url, event_types=["order.*"], retry_policy=ONE_ATTEMPT)
    for event_type in ("order.created", "invoice.sent", "order.paid"):
        await publish(caller, event_type)
    oldest_first = await finished(database, caller.tenant_id, 5)
    newest_first = [row.id for row in reversed(oldest_first)]

    assert await listed(caller) == newest_first
    failed = await listed(caller, webhook_id=bad.id)
    assert len(failed) == 2
    assert await listed(caller, status="failed") == failed
    assert await listed(caller, last_outcome="failed") == failed
    assert await listed(caller, status="succeeded") == await listed(caller, webhook_id=good.id)
    assert len(await listed(caller, status="succeeded")) == 3
    assert len(await listed(caller, event_type="order.*")) == 4
    assert len(await listed(caller, event_type="invoice.sent")) == 1
    assert await listed(caller, status="pending") == []

    pivot = oldest_first[2].created_at
    at_or_after = [row.id for row in reversed(oldest_first) if row.created_at >= pivot]
    before = [row.id for row in reversed(oldest_first) if row.created_at < pivot]
    assert await listed(caller, start_time=timestamp(pivot)) == at_or_after
    assert await listed(caller, end_time=timestamp(pivot)) == before

    [delivery] = (await caller.ListDeliveries(pb.ListDeliveriesRequest(webhook_id=bad.id, page_size=1))).deliveries
    assert (delivery.status, delivery.attempts, delivery.last_http_status) == ("failed", 1, 500)
    assert delivery.event_type.startswith("order.") and delivery.HasField("completed_at")


async def test_list_deliveries_rejects_bad_filters_and_foreign_page_tokens(caller, workers, receiver, database) -> None:
    await create_webhook(caller, url=receiver.url, event_types=["*"])
    for _ in range(3):
        await publish(caller)
    await finished(database, caller.tenant_id, 3)

    error = await rpc_error(caller.ListDeliveries(pb.ListDeliveriesRequest(status="lost")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "status" in field_violations(error)
    error = await rpc_error(caller.ListDeliveries(pb.ListDeliveriesRequest(last_outcome="maybe")))
    assert "last_outcome" in field_violations(error)

    page = await caller.ListDeliveries(pb.ListDeliveriesRequest(page_size=1))
    other_filters = pb.ListDeliveriesRequest(page_size=1, page_token=page.next_page_token, status="failed")
    error = await rpc_error(caller.ListDeliveries(other_filters))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in field_violations(error)


async def test_other_tenant_lists_none_of_the_deliveries(channel, caller, workers, receiver, database) -> None:
    await create_webhook(caller, url=receiver.url, event_types=["*"])
    await publish(caller)
    await finished(database, caller.tenant_id, 1)
    other = make_caller(channel, subject="person_2")
    assert await listed(other) == []


async def test_get_delivery_returns_its_attempts_oldest_first(channel, caller, workers, receiver, database) -> None:
    receiver.respond = failing_first(1)
    hook = await create_webhook(
        caller, url=receiver.url, event_types=["*"], retry_policy=wpb.RetryPolicy(max_attempts=2)
    )
    event_id = await publish(caller)
    [row] = await database.wait_for(
        "SELECT id FROM deliveries WHERE event_id = :e AND attempts = 1 AND lease_token IS NULL", bool, e=event_id
    )
    assert await database.make_due(row.id) == 1
    await finished(database, caller.tenant_id, 1)

    got = await caller.GetDelivery(pb.GetDeliveryRequest(id=row.id))
    assert (got.delivery.id, got.delivery.event_id, got.delivery.webhook_id) == (row.id, event_id, hook.id)
    assert (got.delivery.status, got.delivery.attempts, got.delivery.last_outcome) == ("succeeded", 2, "succeeded")
    assert [(a.attempt, a.outcome, a.http_status) for a in got.attempts] == [(1, "failed", 500), (2, "succeeded", 200)]
    assert got.attempts[0].HasField("next_attempt_at") and not got.attempts[1].HasField("next_attempt_at")
    assert got.attempts[0].cursor != got.attempts[1].cursor

    other = make_caller(channel, subject="person_2")
    error = await rpc_error(other.GetDelivery(pb.GetDeliveryRequest(id=row.id)))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    error = await rpc_error(caller.GetDelivery(pb.GetDeliveryRequest(id="dlv_01J00000000000000000000000")))
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_redeliver_sends_a_succeeded_delivery_again_with_the_same_webhook_id(
    channel, caller, workers, receiver, database
) -> None:
    await create_webhook(caller, url=receiver.url, event_types=["*"])
    event_id = await publish(caller)
    [first] = await receiver.wait_for(1)
    [row] = await finished(database, caller.tenant_id, 1)

    other = make_caller(channel, subject="person_2")
    error = await rpc_error(other.RedeliverDelivery(pb.RedeliverDeliveryRequest(id=row.id)))
    assert error.code() == grpc.StatusCode.NOT_FOUND

    queued = await caller.RedeliverDelivery(pb.RedeliverDeliveryRequest(id=row.id))
    assert queued.delivery.status == "pending" and not queued.delivery.HasField("completed_at")
    second = (await receiver.wait_for(2))[1]
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == event_id
    assert second.body == first.body

    await database.wait_for(
        "SELECT 1 FROM deliveries WHERE id = :d AND status = 'succeeded' AND attempts = 2", bool, d=row.id
    )
    got = await caller.GetDelivery(pb.GetDeliveryRequest(id=row.id))
    assert [(a.attempt, a.outcome) for a in got.attempts] == [(1, "succeeded"), (2, "succeeded")]
    assert len(receiver.received) == 2


async def test_recover_queues_failed_deliveries_since_a_time_again(
    channel, caller, workers, failing_receiver, database
) -> None:
    hook = await create_webhook(caller, url=failing_receiver.url, event_types=["*"], retry_policy=ONE_ATTEMPT)
    await publish(caller)
    [earlier] = await finished(database, caller.tenant_id, 1)
    for _ in range(3):
        await publish(caller)
    rows = await finished(database, caller.tenant_id, 4)
    recent = [row.id for row in rows[1:]]
    assert rows[0].id == earlier.id and rows[1].created_at > earlier.created_at
    failed = await database.rows(
        "SELECT id FROM deliveries WHERE tenant_id = :t AND status = 'failed'", t=caller.tenant_id
    )
    assert len(failed) == 4

    failing_receiver.respond = ok
    since = timestamp(rows[1].created_at)
    recovered = await caller.RecoverWebhook(pb.RecoverWebhookRequest(id=hook.id, since=since))
    assert recovered.deliveries_queued == 3
    done = await database.wait_for(
        "SELECT id FROM deliveries WHERE tenant_id = :t AND status = 'succeeded' ORDER BY created_at, id",
        lambda found: len(found) == 3,
        t=caller.tenant_id,
    )
    assert [row.id for row in done] == recent
    assert [
        row.id
        for row in await database.rows(
            "SELECT id FROM deliveries WHERE tenant_id = :t AND status = 'failed'", t=caller.tenant_id
        )
    ] == [earlier.id]
    await failing_receiver.wait_for(7)
    again = await caller.RecoverWebhook(pb.RecoverWebhookRequest(id=hook.id, since=since))
    assert again.deliveries_queued == 0


async def test_recover_queues_a_failed_real_delivery_but_not_a_failed_test_event(
    caller, workers, failing_receiver, database
) -> None:
    """A test ping was for then: recovery resends what the customer missed, not old pings."""
    hook = await create_webhook(caller, url=failing_receiver.url, event_types=["*"], retry_policy=ONE_ATTEMPT)
    tested = await caller.SendTestEvent(ops.SendTestEventRequest(webhook_id=hook.id, event_type="order.created"))
    assert tested.outcome == "failed"
    await publish(caller)
    rows = await finished(database, caller.tenant_id, 2)
    [real] = [row.id for row in rows if row.id != tested.delivery_id]

    since = timestamp(datetime.now(UTC) - timedelta(hours=1))
    recovered = await caller.RecoverWebhook(pb.RecoverWebhookRequest(id=hook.id, since=since))

    assert recovered.deliveries_queued == 1
    test_delivery = await caller.GetDelivery(pb.GetDeliveryRequest(id=tested.delivery_id))
    assert (test_delivery.delivery.status, test_delivery.delivery.attempts) == ("failed", 1)
    await database.wait_for("SELECT 1 FROM deliveries WHERE id = :d AND attempts = 2", bool, d=real)


async def test_a_test_event_redelivered_is_sent_again_and_stays_out_of_recovery(
    caller, workers, receiver, database
) -> None:
    """A dashboard's "resend" of a test ping resends it, through the queue; it is still a test."""
    hook = await create_webhook(caller, url=receiver.url, event_types=["order.*"])
    tested = await caller.SendTestEvent(ops.SendTestEventRequest(webhook_id=hook.id))

    await caller.RedeliverDelivery(pb.RedeliverDeliveryRequest(id=tested.delivery_id))

    first, second = await receiver.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == tested.event_id
    assert second.body == first.body
    await database.wait_for(
        "SELECT 1 FROM deliveries WHERE id = :d AND status = 'succeeded' AND attempts = 2 AND is_test",
        bool,
        d=tested.delivery_id,
    )


async def test_recover_refuses_a_start_beyond_14_days_and_other_tenants_webhooks(channel, caller) -> None:
    hook = await create_webhook(caller)
    too_old = timestamp(datetime.now(UTC) - timedelta(days=14, minutes=1))
    error = await rpc_error(caller.RecoverWebhook(pb.RecoverWebhookRequest(id=hook.id, since=too_old)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "since" in field_violations(error)
    error = await rpc_error(caller.RecoverWebhook(pb.RecoverWebhookRequest(id=hook.id)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "since" in field_violations(error)

    other = make_caller(channel, subject="person_2")
    recent = timestamp(datetime.now(UTC) - timedelta(days=1))
    error = await rpc_error(other.RecoverWebhook(pb.RecoverWebhookRequest(id=hook.id, since=recent)))
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_redeliver_and_recover_need_a_webhook_that_sends_what_they_queue(
    caller, workers, receiver, database
) -> None:
    deleted = await create_webhook(caller, url=receiver.url, event_types=["order.*"])
    disabled = await create_webhook(caller, url=f"{receiver.url}/off", event_types=["invoice.*"])
    await publish(caller, "order.created")
    await publish(caller, "invoice.sent")
    rows = await finished(database, caller.tenant_id, 2)
    await caller.DeleteWebhook(pb.DeleteWebhookRequest(id=deleted.id))
    off = pb.UpdateWebhookRequest(
        webhook=wpb.Webhook(id=disabled.id, enabled=False), update_mask=field_mask_pb2.FieldMask(paths=["enabled"])
    )
    await caller.UpdateWebhook(off)
    inbound = await create_webhook(caller, direction=wpb.DIRECTION_INBOUND, url="")
    since = timestamp(datetime.now(UTC) - timedelta(hours=1))

    refused = [
        *[await rpc_error(caller.RedeliverDelivery(pb.RedeliverDeliveryRequest(id=row.id))) for row in rows],
        await rpc_error(caller.RecoverWebhook(pb.RecoverWebhookRequest(id=deleted.id, since=since))),
        await rpc_error(caller.RecoverWebhook(pb.RecoverWebhookRequest(id=inbound.id, since=since))),
    ]

    assert [error.code() for error in refused] == [grpc.StatusCode.FAILED_PRECONDITION] * 4
    assert [
        next(word for word in ("deleted", "disabled", "inbound") if word in error.details()) for error in refused
    ] == ["deleted", "disabled", "deleted", "inbound"]
    statuses = await database.rows("SELECT status FROM deliveries WHERE tenant_id = :t", t=caller.tenant_id)
    assert [row.status for row in statuses] == ["succeeded", "succeeded"]
    logged = await database.value(
        "SELECT count(*) FROM attempts WHERE tenant_id = :t AND kind = 'webhook.recovered'", t=caller.tenant_id
    )
    assert logged == 0


async def test_get_delivery_shows_only_attempts_of_the_callers_own_scope(caller, workers, receiver, database) -> None:
    # Every query takes the caller's scope: a row of another tenant naming the same delivery id (which
    # only a bug or a hand-written row could make) is not shown as one of its attempts.
    await create_webhook(caller, url=receiver.url, event_types=["*"])
    await publish(caller)
    [row] = await finished(database, caller.tenant_id, 1)
    await database.execute(
        "INSERT INTO attempts (id, tenant_id, delivery_id, event_id, event_type, webhook_id, attempt, outcome,"
        " http_status, latency_ms, error, response_excerpt, occurred_at)"
        " VALUES ('att_foreign' || :d, :t || '_other', :d, 'evt_x', 'secret.type', 'whk_x', 9, 'failed', 500,"
        " 1, 'theirs', 'their body', now())",
        d=row.id,
        t=caller.tenant_id,
    )

    got = await caller.GetDelivery(pb.GetDeliveryRequest(id=row.id))

    assert [(a.attempt, a.outcome) for a in got.attempts] == [(1, "succeeded")]


async def test_get_delivery_of_a_much_redelivered_delivery_returns_its_newest_attempts_oldest_first(
    caller, workers, receiver, database
) -> None:
    # Every redelivery adds attempts; all of them with their excerpts and headers would outgrow gRPC's
    # 4 MiB message limit, and GetDelivery would fail for that delivery for good. Recorded with plain
    # SQL, as the recorder would have, after the one real attempt.
    hook = await create_webhook(caller, url=receiver.url, event_types=["*"])
    event_id = await publish(caller)
    [row] = await finished(database, caller.tenant_id, 1)
    total = DELIVERY_ATTEMPTS_SHOWN + 5
    for number in range(2, total + 1):
        await database.execute(
            "INSERT INTO attempts (id, tenant_id, delivery_id, event_id, event_type, webhook_id, attempt, outcome,"
            " http_status, latency_ms, error, response_excerpt, occurred_at)"
            " SELECT 'att_' || :d || :n, tenant_id, delivery_id, event_id, event_type, webhook_id, :n, 'failed',"
            " 500, 1, 'HTTP 500', 'no', now() FROM attempts WHERE delivery_id = :d AND attempt = 1",
            d=row.id,
            n=number,
        )

    got = await caller.GetDelivery(pb.GetDeliveryRequest(id=row.id))

    assert [a.attempt for a in got.attempts] == list(range(total - DELIVERY_ATTEMPTS_SHOWN + 1, total + 1))
    assert {a.event_id for a in got.attempts} == {event_id}
    # The whole history, as the proto says: the webhook's log.
    tail = Tail(caller.DeliveryLog(pb.DeliveryLogRequest(webhook_id=hook.id, follow=True)))
    try:
        logged = await tail.wait_for(total)
    finally:
        await tail.close()
    assert [entry.attempt for entry in logged if entry.delivery_id == row.id] == list(range(1, total + 1))
