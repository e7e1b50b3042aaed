"""Internal consumers of inbound events over gRPC: at least once, resumable from an acknowledged cursor,
live with follow, and scoped to the caller's tenant.

Events are put in the way an external system does it: signed POSTs (official `standardwebhooks` library)
to the webhook's callback url on the session gateway.
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime
from typing import Any

import grpc
import httpx
import pytest
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from standardwebhooks.webhooks import Webhook as StandardWebhook
from webhook_calls import field_violations, rpc_error

from support import make_caller, new_tenant_id

PUBLIC_URL = "http://127.0.0.1:8080"  # the session settings' public_url: callback urls start with it
READ_WITHIN = 5.0


class Sender:
    """The external system: posts signed events n to one inbound webhook, with message id `msg_<n>`."""

    def __init__(self, created: pb.CreateWebhookResponse, gateway_url: str) -> None:
        self.webhook_id = created.webhook.id
        self.url = created.webhook.url.replace(PUBLIC_URL, gateway_url)
        self.signer = StandardWebhook(created.signing_secret)

    async def send(self, *numbers: int, padding: int = 0) -> None:
        """padding: that many characters more in each body."""
        async with httpx.AsyncClient(timeout=10.0) as http:
            for n in numbers:
                body = json.dumps({"type": "ticket.opened", "n": n, **({"padding": "x" * padding} if padding else {})})
                now = datetime.now(UTC)
                headers = {
                    "webhook-id": f"msg_{n}",
                    "webhook-timestamp": str(int(now.timestamp())),
                    "webhook-signature": self.signer.sign(f"msg_{n}", now, body),
                    "content-type": "application/json",
                }
                response = await http.post(self.url, content=body, headers=headers)
                assert response.status_code == 200, response.text


async def sender_for(caller: Any, gateway_url: str) -> Sender:
    created = await caller.CreateWebhook(
        pb.CreateWebhookRequest(webhook=wpb.Webhook(name="in", direction=wpb.DIRECTION_INBOUND))
    )
    return Sender(created, gateway_url)


async def take(call: Any, count: int) -> list[pb.InboundEvent]:
    """The next `count` events of an open stream; fails if they do not come within READ_WITHIN seconds."""
    events = []
    for _ in range(count):
        response = await asyncio.wait_for(call.read(), READ_WITHIN)
        assert response is not grpc.aio.EOF, f"stream ended after {len(events)} of {count} events"
        events.append(response.event)
    return events


async def backlog(caller: Any, **fields: Any) -> list[pb.InboundEvent]:
    call = caller.StreamInboundEvents(pb.StreamInboundEventsRequest(**fields))
    return [response.event async for response in call]


def numbers(events: list[pb.InboundEvent]) -> list[int]:
    return [json.loads(event.body)["n"] for event in events]


async def test_reconnecting_consumer_resumes_after_its_acknowledged_cursor(caller, gateway) -> None:
    sender = await sender_for(caller, gateway.url)
    await sender.send(1, 2, 3)
    first = caller.StreamInboundEvents(pb.StreamInboundEventsRequest(consumer="c1", follow=True))
    read = await take(first, 3)
    acked = await caller.AckInboundEvents(pb.AckInboundEventsRequest(consumer="c1", cursor=read[1].cursor))
    first.cancel()  # the consumer goes away with event 3 read but not acknowledged

    await sender.send(4, 5, 6)
    again = await backlog(caller, consumer="c1")

    assert numbers(read) == [1, 2, 3]
    assert (acked.consumer, acked.cursor) == ("c1", read[1].cursor)
    assert numbers(again) == [3, 4, 5, 6]
    assert again[0].id == read[2].id


async def test_followed_stream_delivers_new_events_live(caller, gateway) -> None:
    sender = await sender_for(caller, gateway.url)
    await sender.send(1)
    call = caller.StreamInboundEvents(pb.StreamInboundEventsRequest(consumer="live", follow=True))
    try:
        assert numbers(await take(call, 1)) == [1]
        await sender.send(2)
        assert numbers(await take(call, 1)) == [2]
    finally:
        call.cancel()


REJECTED = """
INSERT INTO inbound_events (id, tenant_id, app_id, webhook_id, message_id, status, reason, event_type,
    content_type, body, received_at)
SELECT 'ibe_' || :tag || '_' || n, :tenant, NULL, :webhook, NULL, 'rejected', 'signature', '',
    'application/json', NULL, now()
FROM generate_series(1, :rows) AS n
"""


async def test_a_follower_gets_the_event_received_after_30000_receipts_it_does_not_read(
    caller, gateway, database
) -> None:
    """Each read goes through at most LOG_SCAN_ROWS receipts (store/sql.py) and the stream goes on after
    the last: a follower read all 30,000 rejected ones at every wake."""
    sender = await sender_for(caller, gateway.url)
    await sender.send(1)
    call = caller.StreamInboundEvents(pb.StreamInboundEventsRequest(webhook_id=sender.webhook_id, follow=True))
    try:
        assert numbers(await take(call, 1)) == [1]
        await database.execute(
            REJECTED, tag=f"{sender.webhook_id}_a", tenant=caller.tenant_id, webhook=sender.webhook_id, rows=30_000
        )
        await sender.send(2)
        await database.execute(
            REJECTED, tag=f"{sender.webhook_id}_b", tenant=caller.tenant_id, webhook=sender.webhook_id, rows=3_000
        )
        await sender.send(3)  # last: an event read twice, or one the stream went past, would show before it
        assert numbers(await take(call, 2)) == [2, 3]
    finally:
        call.cancel()
    assert numbers(await backlog(caller, webhook_id=sender.webhook_id)) == [1, 2, 3]


async def test_acknowledgement_never_moves_a_consumer_back(caller, gateway) -> None:
    sender = await sender_for(caller, gateway.url)
    await sender.send(1, 2, 3)
    events = await backlog(caller)

    await caller.AckInboundEvents(pb.AckInboundEventsRequest(consumer="c1", cursor=events[1].cursor))
    older = await caller.AckInboundEvents(pb.AckInboundEventsRequest(consumer="c1", cursor=events[0].cursor))

    assert older.cursor == events[1].cursor
    assert numbers(await backlog(caller, consumer="c1")) == [3]


async def test_a_cursor_past_the_end_of_the_stream_is_refused(caller, gateway) -> None:
    """Acknowledged, it would make the consumer skip every event still to come."""
    sender = await sender_for(caller, gateway.url)
    await sender.send(1)
    ahead = _cursor_of(f"{2**62}.1")

    refused = await rpc_error(caller.AckInboundEvents(pb.AckInboundEventsRequest(consumer="c1", cursor=ahead)))
    await sender.send(2)

    assert refused.code() is grpc.StatusCode.INVALID_ARGUMENT and "cursor" in field_violations(refused)
    assert numbers(await backlog(caller, consumer="c1")) == [1, 2]


async def test_after_cursor_overrides_the_consumers_position(caller, gateway) -> None:
    sender = await sender_for(caller, gateway.url)
    await sender.send(1, 2, 3)
    events = await backlog(caller)
    await caller.AckInboundEvents(pb.AckInboundEventsRequest(consumer="c1", cursor=events[2].cursor))

    assert numbers(await backlog(caller, consumer="c1", after_cursor=events[0].cursor)) == [2, 3]


async def test_consumers_and_webhooks_are_read_separately(caller, gateway) -> None:
    first = await sender_for(caller, gateway.url)
    second = await sender_for(caller, gateway.url)
    await first.send(1)
    await second.send(2)
    events = await backlog(caller)
    await caller.AckInboundEvents(pb.AckInboundEventsRequest(consumer="c1", cursor=events[-1].cursor))

    assert numbers(await backlog(caller, webhook_id=second.webhook_id)) == [2]
    assert numbers(await backlog(caller, consumer="c2")) == [1, 2]
    assert await backlog(caller, consumer="c1") == []


async def test_another_tenants_consumer_sees_nothing(caller, gateway, channel) -> None:
    sender = await sender_for(caller, gateway.url)
    await sender.send(1)
    [event] = await backlog(caller)
    stranger = make_caller(channel, subject="person_2")

    assert await backlog(stranger, consumer="c1") == []
    assert await backlog(stranger) == []
    error = await rpc_error(backlog(stranger, webhook_id=sender.webhook_id))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    # The other tenant's cursor is none the stranger was handed: refused, though it would skip nothing.
    refused = await rpc_error(stranger.AckInboundEvents(pb.AckInboundEventsRequest(consumer="c1", cursor=event.cursor)))
    assert refused.code() is grpc.StatusCode.INVALID_ARGUMENT and "cursor" in field_violations(refused)
    streamed = await rpc_error(backlog(stranger, after_cursor=event.cursor))
    assert streamed.code() is grpc.StatusCode.INVALID_ARGUMENT and "after_cursor" in field_violations(streamed)
    assert numbers(await backlog(caller, consumer="c1")) == [1]


def _cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


MALFORMED_CURSORS = ["not a cursor", "%%%", _cursor_of("12"), _cursor_of("a.b"), _cursor_of("9" * 30 + ".1")]


@pytest.mark.parametrize("cursor", MALFORMED_CURSORS)
async def test_malformed_cursor_is_invalid_argument(caller, cursor) -> None:
    streamed = await rpc_error(backlog(caller, after_cursor=cursor))
    acked = await rpc_error(caller.AckInboundEvents(pb.AckInboundEventsRequest(consumer="c1", cursor=cursor)))

    assert streamed.code() == acked.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "after_cursor" in field_violations(streamed)
    assert "cursor" in field_violations(acked)


async def test_malformed_consumer_name_is_invalid_argument(caller) -> None:
    error = await rpc_error(backlog(caller, consumer="no spaces/or slashes"))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "consumer" in field_violations(error)


async def two_apps_receiving(channel, gateway) -> tuple[Any, Any, Sender]:
    """Two apps of one tenant, each with an inbound webhook: the first app's received 1 and 2, then the
    second's 10. Returns both callers and the first app's sender."""
    tenant_id = new_tenant_id()
    first_app = make_caller(channel, tenant_id, app_id="app_1")
    second_app = make_caller(channel, tenant_id, app_id="app_2")
    ours = await sender_for(first_app, gateway.url)
    theirs = await sender_for(second_app, gateway.url)
    await ours.send(1, 2)
    await theirs.send(10)
    return first_app, second_app, ours


async def test_another_apps_acknowledgement_does_not_move_this_apps_consumer(channel, gateway) -> None:
    first_app, second_app, _ = await two_apps_receiving(channel, gateway)
    last = (await backlog(second_app))[-1].cursor  # past everything the first app's consumer has read

    acked = await second_app.AckInboundEvents(pb.AckInboundEventsRequest(consumer="billing", cursor=last))

    assert acked.cursor == last  # the second app's own consumer moved
    assert numbers(await backlog(first_app, consumer="billing")) == [1, 2]
    assert await backlog(second_app, consumer="billing") == []


async def test_a_cursor_from_another_apps_stream_is_refused_and_the_consumer_keeps_its_place(channel, gateway) -> None:
    first_app, second_app, ours = await two_apps_receiving(channel, gateway)
    await ours.send(3)
    first = (await backlog(first_app))[0]
    [foreign] = await backlog(second_app)
    await first_app.AckInboundEvents(pb.AckInboundEventsRequest(consumer="billing", cursor=first.cursor))

    refused = await rpc_error(
        first_app.AckInboundEvents(pb.AckInboundEventsRequest(consumer="billing", cursor=foreign.cursor))
    )

    assert refused.code() is grpc.StatusCode.INVALID_ARGUMENT and "cursor" in field_violations(refused)
    assert numbers(await backlog(first_app, consumer="billing")) == [2, 3]


async def test_a_delivery_log_cursor_is_refused_as_an_inbound_position(caller, gateway, database) -> None:
    """The log's `received` line of a receipt is another stream's entry: as an inbound position it
    would skip receipts the consumer never read."""
    # The two logs number their entries apart, but a receipt writes one entry in each in one
    # transaction: while both numberings stand alike (a database with only inbound traffic), its two
    # positions are the same, and acknowledging either one is acknowledging that receipt.
    numbering = "pg_get_serial_sequence('attempts', 'seq')"
    await database.execute(f"SELECT setval({numbering}, nextval({numbering}) + 1000)")
    sender = await sender_for(caller, gateway.url)
    await sender.send(1, 2, 3)
    lines = [response.entry async for response in caller.DeliveryLog(pb.DeliveryLogRequest())]
    received = [line for line in lines if line.webhook_id == sender.webhook_id]
    assert len(received) == 3

    refused = await rpc_error(
        caller.AckInboundEvents(pb.AckInboundEventsRequest(consumer="c1", cursor=received[-1].cursor))
    )

    assert refused.code() is grpc.StatusCode.INVALID_ARGUMENT and "cursor" in field_violations(refused)
    assert numbers(await backlog(caller, consumer="c1")) == [1, 2, 3]
