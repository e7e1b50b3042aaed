"""Reading back what was sent (GetEvent, ListEvents, GetDelivery's headers) and testing an endpoint now
(SendTestEvent)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import grpc
from cpod.integration.v1 import operations_pb2 as ops
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import timestamp_pb2
from rest_calls import EVENTS, rest_caller
from webhook_calls import create, create_webhook, field_violations, rpc_error

from log_streams import Tail
from receivers import NOT_UTF8_HEADER, raw_answer, status
from support import make_caller
from webhookd.domain import signing
from webhookd.domain.webhooks import SignatureScheme

EXACT = '{"order": 1234567890123456789, "price": 0.10}'


def timestamp(at: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(at)
    return stamp


async def test_get_event_returns_the_payload_exactly_as_published_with_its_deliveries(caller, gateway) -> None:
    hook = await create_webhook(caller, url="http://127.0.0.1:9/hook", event_types=["rfp.*"])
    published = await caller.PublishEvent(pb.PublishEventRequest(event_type="rfp.created", payload_json=EXACT))

    got = await caller.GetEvent(ops.GetEventRequest(id=published.event_id))

    assert got.event.payload_json == EXACT
    assert (got.event.id, got.event.event_type) == (published.event_id, "rfp.created")
    assert [(d.webhook_id, d.status) for d in got.deliveries] == [(hook.id, "pending")]
    async with rest_caller(gateway.url, caller.tenant_id) as rest:
        response = await rest.get(f"{EVENTS}/{published.event_id}")
    assert response.status_code == 200
    assert response.json()["event"]["payload_json"] == EXACT
    missing = await rpc_error(caller.GetEvent(ops.GetEventRequest(id="evt_01J00000000000000000000000")))
    assert missing.code() is grpc.StatusCode.NOT_FOUND


async def test_list_events_pages_newest_first_and_filters_by_type_and_time(caller, channel) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    ids = []
    for n in range(5):
        event_type = "rfp.created" if n % 2 == 0 else "invoice.paid"
        request = pb.PublishEventRequest(event_type=event_type, payload_json=f'{{"n": {n}}}')
        ids.append((await caller.PublishEvent(request)).event_id)

    pages, tokens, token = [], [], ""
    while True:
        page = await caller.ListEvents(ops.ListEventsRequest(page_size=2, page_token=token, event_type="rfp.*"))
        pages.append([event.id for event in page.events])
        token = page.next_page_token
        if not token:
            break
        tokens.append(token)
    assert pages == [[ids[4], ids[2]], [ids[0]]]
    later = await caller.ListEvents(ops.ListEventsRequest(start_time=timestamp(datetime.now(UTC) + timedelta(1))))
    assert list(later.events) == []
    window = ops.ListEventsRequest(start_time=timestamp(start), end_time=timestamp(datetime.now(UTC)))
    assert [event.id for event in (await caller.ListEvents(window)).events] == ids[::-1]
    assert list((await make_caller(channel).ListEvents(ops.ListEventsRequest())).events) == []
    other_filters = ops.ListEventsRequest(page_size=2, page_token=tokens[0], event_type="invoice.*")
    reused = await rpc_error(caller.ListEvents(other_filters))
    assert reused.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_send_test_event_keeps_a_header_that_is_not_utf8_with_the_replacement_character(caller) -> None:
    async with raw_answer(NOT_UTF8_HEADER) as url:
        hook = (await create(caller, url=url, event_types=["rfp.*"])).webhook

        sent = await caller.SendTestEvent(ops.SendTestEventRequest(webhook_id=hook.id))

    assert (sent.outcome, sent.http_status) == ("succeeded", 200)
    got = await caller.GetDelivery(pb.GetDeliveryRequest(id=sent.delivery_id))
    assert got.attempts[0].response_headers["X-Note"] == "caf\ufffd \ufffd"


async def test_send_test_event_to_a_503_receiver_answers_failed_503_synchronously(caller, receiver, database) -> None:
    receiver.respond = status(503, {"X-Receiver": "busy"})
    made = await create(caller, url=receiver.url, event_types=["rfp.*"])
    hook = made.webhook
    await database.execute(
        "UPDATE webhooks SET paused_at = now() WHERE id = :id", id=hook.id
    )  # paused: sent all the same

    sent = await caller.SendTestEvent(ops.SendTestEventRequest(webhook_id=hook.id))

    assert (sent.outcome, sent.http_status, sent.response_excerpt) == ("failed", 503, "status 503")
    assert sent.latency_ms >= 0 and sent.error == "HTTP 503"
    [request] = receiver.received  # already there when the call returned
    assert request.headers["webhook-id"] == sent.event_id
    signing.verify(
        SignatureScheme.STANDARD_WEBHOOKS, [made.signing_secret], request.headers, request.body, int(time.time())
    )
    assert json.loads(request.body)["type"] == "webhookd.ping"
    # Kept in history like any attempt, headers included, and never retried.
    got = await caller.GetDelivery(pb.GetDeliveryRequest(id=sent.delivery_id))
    assert (got.delivery.status, got.delivery.attempts) == ("failed", 1)
    [attempt] = got.attempts
    assert (attempt.outcome, attempt.http_status, attempt.kind) == ("failed", 503, "attempt")
    assert attempt.request_headers["webhook-signature"] == request.headers["webhook-signature"]
    assert attempt.request_headers["webhook-id"] == sent.event_id
    assert attempt.response_headers["X-Receiver"] == "busy"
    typed = await caller.SendTestEvent(ops.SendTestEventRequest(webhook_id=hook.id, event_type="rfp.created"))
    assert json.loads(receiver.received[1].body)["data"]["event_type"] == "rfp.created"
    assert typed.outcome == "failed"


async def test_send_test_event_checks_its_input(caller) -> None:
    inbound = await create_webhook(caller, name="in", url="", direction=2)
    refused = await rpc_error(caller.SendTestEvent(ops.SendTestEventRequest(webhook_id=inbound.id)))
    assert refused.code() is grpc.StatusCode.FAILED_PRECONDITION
    hook = await create_webhook(caller, event_types=["rfp.*"])
    bad = await rpc_error(caller.SendTestEvent(ops.SendTestEventRequest(webhook_id=hook.id, event_type="Not A Type")))
    assert "event_type" in field_violations(bad)


async def test_get_delivery_shows_the_headers_a_worker_sent_and_received(caller, workers, receiver, database) -> None:
    hook = await create_webhook(caller, url=receiver.url, event_types=["rfp.*"], headers={"X-Team": "orders"})
    published = await caller.PublishEvent(pb.PublishEventRequest(event_type="rfp.created", payload_json="{}"))
    [request] = await receiver.wait_for(1)
    [row] = await database.wait_for(
        "SELECT id FROM deliveries WHERE event_id = :e AND status = 'succeeded'", bool, e=published.event_id
    )

    got = await caller.GetDelivery(pb.GetDeliveryRequest(id=row.id))

    [attempt] = got.attempts
    assert attempt.request_headers["X-Team"] == "orders"
    assert attempt.request_headers["webhook-signature"] == request.headers["webhook-signature"]
    assert attempt.request_headers["User-Agent"].startswith("webhookd/")
    assert attempt.response_headers["Content-Type"].startswith("text/plain")
    # The log stream leaves headers out: they are GetDelivery's.
    [entry] = [e for e in await Tail(caller.DeliveryLog(pb.DeliveryLogRequest(webhook_id=hook.id))).ended()]
    assert entry.cursor == attempt.cursor and not entry.request_headers
