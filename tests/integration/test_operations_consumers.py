"""Resumable DeliveryLog consumers: a named consumer restarts exactly after what it acknowledged, and a
consumer belongs to its tenant and app."""

from __future__ import annotations

import grpc
from cpod.integration.v1 import operations_pb2 as ops
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf.duration_pb2 import Duration
from rest_calls import rest_caller, violated_fields
from webhook_calls import create_webhook, field_violations, rpc_error

from log_streams import Tail, positions, unbound_cursor
from support import make_caller, new_tenant_id


async def rotations(stub, webhook_id: str, count: int) -> None:
    """`count` lifecycle entries on the log, one per rotation: without overlap, so no count is refused
    for the secrets earlier ones left signing (at most four)."""
    for _ in range(count):
        await stub.RotateWebhookSecret(pb.RotateWebhookSecretRequest(id=webhook_id, overlap=Duration(seconds=0)))


async def read(stub, **request: object) -> list[pb.DeliveryLogEntry]:
    return await Tail(stub.DeliveryLog(pb.DeliveryLogRequest(**request))).ended()


async def test_a_consumer_that_acks_and_reconnects_gets_exactly_the_entries_after_its_ack(caller, channel) -> None:
    crm = make_caller(channel, tenant_id=caller.tenant_id, subject="svc", app_id="app_crm")
    erp = make_caller(channel, tenant_id=caller.tenant_id, subject="svc", app_id="app_erp")
    ours = await create_webhook(crm, event_types=["rfp.*"])
    theirs = await create_webhook(erp, event_types=["rfp.*"])
    await rotations(crm, ours.id, 4)
    await rotations(erp, theirs.id, 2)

    first = await read(crm, consumer="alerts")
    assert [entry.webhook_id for entry in first] == [ours.id] * 4
    acked = await crm.AckDeliveryLog(ops.AckDeliveryLogRequest(consumer="alerts", cursor=first[1].cursor))
    assert (acked.consumer, acked.cursor) == ("alerts", first[1].cursor)

    again = await read(crm, consumer="alerts")

    assert [entry.cursor for entry in again] == [entry.cursor for entry in first[2:]]
    # Another app's consumer of the same name starts from the beginning of its own app's log.
    assert [entry.webhook_id for entry in await read(erp, consumer="alerts")] == [theirs.id] * 2
    # A stale acknowledgement never moves a consumer back.
    stale = await crm.AckDeliveryLog(ops.AckDeliveryLogRequest(consumer="alerts", cursor=first[0].cursor))
    assert stale.cursor == first[1].cursor
    # Live: an entry written after the reconnect arrives after the ones left to read.
    tail = Tail(crm.DeliveryLog(pb.DeliveryLogRequest(consumer="alerts", follow=True)))
    try:
        await tail.wait_for(2)
        await rotations(crm, ours.id, 1)
        entries = await tail.wait_for(3)
        assert [entry.kind for entry in entries] == ["webhook.secret_rotated"] * 3
        assert entries[:2] == first[2:]
    finally:
        await tail.close()


async def test_consumer_names_and_cursors_are_checked(caller) -> None:
    bad_name = await rpc_error(caller.AckDeliveryLog(ops.AckDeliveryLogRequest(consumer="no spaces", cursor="x")))
    assert bad_name.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "consumer" in field_violations(bad_name)
    bad_cursor = await rpc_error(caller.AckDeliveryLog(ops.AckDeliveryLogRequest(consumer="alerts", cursor="!!")))
    assert "cursor" in field_violations(bad_cursor)


async def test_a_cursor_past_the_end_of_the_log_is_refused_and_the_consumer_keeps_its_place(caller) -> None:
    """A forged cursor ahead of every entry, acknowledged, would make the consumer skip everything
    still to come, with no way back: the log has not handed it out."""
    hook = await create_webhook(caller, event_types=["rfp.*"])
    await rotations(caller, hook.id, 1)
    [entry] = await read(caller, consumer="audit")
    ahead = unbound_cursor(2**62, 2**62)

    refused = await rpc_error(caller.AckDeliveryLog(ops.AckDeliveryLogRequest(consumer="audit", cursor=ahead)))
    await rotations(caller, hook.id, 1)

    assert refused.code() is grpc.StatusCode.INVALID_ARGUMENT and "cursor" in field_violations(refused)
    assert [later.kind for later in await read(caller, consumer="audit")] == ["webhook.secret_rotated"] * 2
    acked = await caller.AckDeliveryLog(ops.AckDeliveryLogRequest(consumer="audit", cursor=entry.cursor))
    assert acked.cursor == entry.cursor


async def test_a_cursor_from_another_apps_log_is_refused_and_the_consumer_keeps_its_place(channel) -> None:
    """Acknowledged, a cursor of another app's entry would carry the consumer past entries of its own
    that it never read: it is no position in this consumer's log."""
    tenant_id = new_tenant_id()
    crm = make_caller(channel, tenant_id=tenant_id, subject="svc", app_id="app_crm")
    erp = make_caller(channel, tenant_id=tenant_id, subject="svc", app_id="app_erp")
    ours = await create_webhook(crm, event_types=["rfp.*"])
    theirs = await create_webhook(erp, event_types=["rfp.*"])
    await rotations(crm, ours.id, 2)
    await rotations(erp, theirs.id, 1)
    await rotations(crm, ours.id, 1)
    first, second, third = await read(crm)
    [foreign] = await read(erp)
    await crm.AckDeliveryLog(ops.AckDeliveryLogRequest(consumer="alerts", cursor=first.cursor))

    refused = await rpc_error(crm.AckDeliveryLog(ops.AckDeliveryLogRequest(consumer="alerts", cursor=foreign.cursor)))

    assert refused.code() is grpc.StatusCode.INVALID_ARGUMENT and "cursor" in field_violations(refused)
    assert await read(crm, consumer="alerts") == [second, third]


async def test_a_cursor_from_another_tenants_log_is_refused_even_before_every_entry_of_ours(channel) -> None:
    """Another tenant's entry that lies before every entry of ours would skip nothing, but it is still
    no cursor this tenant was handed: scopes never see each other's logs."""
    theirs = make_caller(channel, subject="svc")
    their_hook = await create_webhook(theirs, event_types=["rfp.*"])
    await rotations(theirs, their_hook.id, 1)
    [foreign] = await read(theirs)
    ours = make_caller(channel, subject="svc")
    hook = await create_webhook(ours, event_types=["rfp.*"])
    await rotations(ours, hook.id, 1)

    refused = await rpc_error(ours.AckDeliveryLog(ops.AckDeliveryLogRequest(consumer="alerts", cursor=foreign.cursor)))

    assert refused.code() is grpc.StatusCode.INVALID_ARGUMENT and "cursor" in field_violations(refused)
    assert [entry.webhook_id for entry in await read(ours, consumer="alerts")] == [hook.id]


async def test_a_cursor_from_another_apps_log_is_refused_even_before_every_entry_of_its_tenant(channel) -> None:
    tenant_id = new_tenant_id()
    crm = make_caller(channel, tenant_id=tenant_id, subject="svc", app_id="app_crm")
    erp = make_caller(channel, tenant_id=tenant_id, subject="svc", app_id="app_erp")
    theirs = await create_webhook(erp, event_types=["rfp.*"])
    await rotations(erp, theirs.id, 1)
    [foreign] = await read(erp)
    ours = await create_webhook(crm, event_types=["rfp.*"])
    await rotations(crm, ours.id, 1)

    refused = await rpc_error(crm.AckDeliveryLog(ops.AckDeliveryLogRequest(consumer="alerts", cursor=foreign.cursor)))

    assert refused.code() is grpc.StatusCode.INVALID_ARGUMENT and "cursor" in field_violations(refused)
    assert [entry.webhook_id for entry in await read(crm, consumer="alerts")] == [ours.id]


async def test_over_rest_another_tenants_cursor_is_a_400_naming_its_field(channel, gateway) -> None:
    theirs = make_caller(channel, subject="svc")
    their_hook = await create_webhook(theirs, event_types=["rfp.*"])
    await rotations(theirs, their_hook.id, 1)
    [foreign] = await read(theirs)

    async with rest_caller(gateway.url) as ours:
        response = await ours.post(
            "/api/v1/integration/delivery-log-consumers/alerts:ack", json={"cursor": foreign.cursor}
        )

        streamed = await ours.get("/api/v1/integration/delivery-log", params={"after_cursor": foreign.cursor})

    assert response.status_code == 400, response.text
    assert violated_fields(response) == {"cursor"}
    assert streamed.status_code == 400, streamed.text
    assert violated_fields(streamed) == {"after_cursor"}


async def test_a_cursor_whose_entry_retention_removed_is_still_acknowledged(caller, database) -> None:
    """A consumer that took longer than the retention period over an entry can still acknowledge it:
    the position lies before every entry its tenant still has, so moving there skips nothing."""
    hook = await create_webhook(caller, event_types=["rfp.*"])
    await rotations(caller, hook.id, 2)
    first, second = await read(caller)
    txid, seq = (await positions(database, caller.tenant_id))[0]
    await database.execute("DELETE FROM attempts WHERE txid = :txid AND seq = :seq", txid=txid, seq=seq)

    acked = await caller.AckDeliveryLog(ops.AckDeliveryLogRequest(consumer="slow", cursor=first.cursor))

    assert acked.cursor == first.cursor
    assert await read(caller, consumer="slow") == [second]


async def test_a_cursor_handed_out_before_cursors_were_bound_is_still_acknowledged(caller, database) -> None:
    """Unbound, it is checked against the log: an entry of the caller's is acknowledged as before."""
    hook = await create_webhook(caller, event_types=["rfp.*"])
    await rotations(caller, hook.id, 2)
    first, second = await read(caller)
    txid, seq = (await positions(database, caller.tenant_id))[0]

    acked = await caller.AckDeliveryLog(ops.AckDeliveryLogRequest(consumer="old", cursor=unbound_cursor(txid, seq)))

    assert acked.cursor == first.cursor  # answered bound, as every cursor now is
    assert await read(caller, consumer="old") == [second]
    assert await read(caller, after_cursor=unbound_cursor(txid, seq)) == [second]


async def test_an_unbound_cursor_of_another_tenants_entry_is_refused_even_before_every_entry_of_ours(
    channel, database
) -> None:
    """Written unbound from another tenant's cursor, the position would skip nothing of ours; refused
    all the same, as a bound one is, whatever an entry that retention removed could have been."""
    theirs = make_caller(channel, subject="svc")
    their_hook = await create_webhook(theirs, event_types=["rfp.*"])
    await rotations(theirs, their_hook.id, 1)
    [(txid, seq)] = await positions(database, theirs.tenant_id)
    ours = make_caller(channel, subject="svc")
    hook = await create_webhook(ours, event_types=["rfp.*"])
    await rotations(ours, hook.id, 1)

    refused = await rpc_error(
        ours.AckDeliveryLog(ops.AckDeliveryLogRequest(consumer="alerts", cursor=unbound_cursor(txid, seq)))
    )

    assert refused.code() is grpc.StatusCode.INVALID_ARGUMENT and "cursor" in field_violations(refused)
    assert [entry.webhook_id for entry in await read(ours, consumer="alerts")] == [hook.id]


async def test_another_tenants_cursor_cannot_start_a_stream(channel) -> None:
    theirs = make_caller(channel, subject="svc")
    their_hook = await create_webhook(theirs, event_types=["rfp.*"])
    await rotations(theirs, their_hook.id, 1)
    [foreign] = await read(theirs)
    ours = make_caller(channel, subject="svc")

    refused = await rpc_error(read(ours, after_cursor=foreign.cursor))

    assert refused.code() is grpc.StatusCode.INVALID_ARGUMENT and "after_cursor" in field_violations(refused)
