"""What each attempt ends as, when the next one comes, and what failures do to the webhook.

Retries are minutes away on the real schedule; `database.make_due` moves a recorded delivery's next
attempt to now, which is what waiting would do.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC

import pytest
from aiohttp import web
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import struct_pb2
from webhook_calls import create_webhook

from receivers import (
    NOT_UTF8_HEADER,
    closed_port_url,
    failing_first,
    ok,
    raw_answer,
    raw_answer_then_hold,
    slow,
    status,
)
from support import FRESH_READ

ATTEMPTS = "SELECT attempt, outcome, http_status, error FROM attempts WHERE delivery_id = :d ORDER BY attempt"
DELIVERY = "SELECT * FROM deliveries WHERE id = :d"
ATTEMPTS_WITH_EXCERPTS = "SELECT outcome, http_status, response_excerpt FROM attempts WHERE delivery_id = :d"


async def publish(caller, event_type: str = "rfp.created") -> pb.PublishEventResponse:
    payload = struct_pb2.Struct()
    payload.update({"rfp_id": 1})
    return await caller.PublishEvent(pb.PublishEventRequest(event_type=event_type, payload=payload))


async def delivery_ids(database, event_id: str) -> list[str]:
    return [row.id for row in await database.rows("SELECT id FROM deliveries WHERE event_id = :e", e=event_id)]


async def recorded(database, delivery_id: str, attempts: int):
    """The delivery once `attempts` attempts are recorded and it is no longer leased."""
    [row] = await database.wait_for(
        "SELECT * FROM deliveries WHERE id = :d AND attempts = :n AND lease_token IS NULL",
        bool,
        d=delivery_id,
        n=attempts,
    )
    return row


async def webhook(caller, webhook_id: str) -> wpb.Webhook:
    # Fresh: the statistics were just written by the workers, and a cached copy may lag a notification.
    request = pb.GetWebhookRequest(id=webhook_id)
    return (await caller.GetWebhook(request, metadata=(*caller.metadata, FRESH_READ))).webhook


async def test_failed_attempt_is_retried_and_success_resets_the_webhook(caller, workers, receiver, database) -> None:
    receiver.respond = failing_first(1)
    hook = await create_webhook(caller, url=receiver.url, event_types=["rfp.*"])
    [delivery_id] = await delivery_ids(database, (await publish(caller)).event_id)
    await recorded(database, delivery_id, 1)
    assert (await webhook(caller, hook.id)).consecutive_failures == 1

    assert await database.make_due(delivery_id) == 1
    delivery = await recorded(database, delivery_id, 2)

    attempts = await database.rows(ATTEMPTS, d=delivery_id)
    assert [(a.attempt, a.outcome, a.http_status) for a in attempts] == [(1, "failed", 500), (2, "succeeded", 200)]
    assert delivery.status == "succeeded"
    assert delivery.completed_at is not None
    after = await webhook(caller, hook.id)
    assert after.consecutive_failures == 0
    assert after.last_delivery_status == "succeeded"
    assert after.is_active
    assert len(receiver.received) == 2


async def test_a_webhook_whose_first_delivery_succeeds_shows_that_delivery(caller, workers, receiver, database) -> None:
    hook = await create_webhook(caller, url=receiver.url, event_types=["rfp.*"])
    [delivery_id] = await delivery_ids(database, (await publish(caller)).event_id)

    delivery = await recorded(database, delivery_id, 1)

    after = await webhook(caller, hook.id)
    # Before: a success on a webhook with no last status yet was taken for one on a healthy webhook
    # written under a second ago, and never written: a webhook that only ever succeeded showed none.
    assert (after.last_delivery_status, after.last_delivery_at.ToDatetime(UTC)) == ("succeeded", delivery.completed_at)
    assert after.consecutive_failures == 0


@pytest.mark.parametrize(
    ("respond", "closed_port", "outcome", "http_status", "error"),
    [
        pytest.param(slow(1.0), False, "timed_out", None, "timed out after 200 ms", id="timeout"),
        pytest.param(status(502), False, "failed", 502, "HTTP 502", id="5xx"),
        pytest.param(ok, True, "connection_error", None, "connection refused", id="closed-port"),
    ],
)
async def test_attempt_is_recorded_as_what_happened(
    caller, workers, receiver, database, respond, closed_port, outcome, http_status, error
) -> None:
    receiver.respond = respond
    url = closed_port_url() if closed_port else receiver.url
    policy = wpb.RetryPolicy(max_attempts=1, timeout_ms=200)
    hook = await create_webhook(caller, url=url, event_types=["rfp.*"], retry_policy=policy)
    [delivery_id] = await delivery_ids(database, (await publish(caller)).event_id)

    delivery = await recorded(database, delivery_id, 1)

    [attempt] = await database.rows(ATTEMPTS, d=delivery_id)
    assert (attempt.outcome, attempt.http_status, attempt.error) == (outcome, http_status, error)
    assert (delivery.status, delivery.last_outcome) == ("failed", outcome)
    after = await webhook(caller, hook.id)
    assert after.last_delivery_status == outcome
    assert after.consecutive_failures == 1


async def test_a_chunk_that_breaks_its_framing_is_recorded_while_the_receiver_still_holds_the_connection(
    caller, workers, database
) -> None:
    """A 200 whose chunked body then breaks its framing, from a receiver that never closes: the worker
    waited for the webhook's timeout (30 s here) before it recorded the attempt. It is recorded at
    the fault, as accepted, with what came of the body."""
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\naccepted\r\nzz\r\n"
    async with raw_answer_then_hold(answer) as receiver:
        policy = wpb.RetryPolicy(max_attempts=1, timeout_ms=30_000)
        await create_webhook(caller, url=receiver.url, event_types=["rfp.*"], retry_policy=policy)
        [delivery_id] = await delivery_ids(database, (await publish(caller)).event_id)

        delivery = await recorded(database, delivery_id, 1)
        assert not receiver.released.is_set()  # recorded while the connection was still held open

    [attempt] = await database.rows(ATTEMPTS_WITH_EXCERPTS, d=delivery_id)
    assert (attempt.outcome, attempt.http_status, delivery.status) == ("succeeded", 200, "succeeded")
    assert attempt.response_excerpt == "accepted…[body cut short: its framing is broken]"


async def test_after_a_chunk_that_breaks_its_framing_the_next_delivery_goes_on_a_new_connection(
    caller, workers, database
) -> None:
    """The broken connection is not kept for the next request to the same receiver (whose parser has
    stopped: that request would wait for the timeout), and the worker's slot is free for it at once:
    the second delivery succeeds on a connection of its own while the first is still held open."""
    broken = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\naccepted\r\nzz\r\n"
    fine = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    released = asyncio.Event()
    requests_by_connection: list[int] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = len(requests_by_connection)
        requests_by_connection.append(0)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                requests_by_connection[connection] += 1
                writer.write(broken if sum(requests_by_connection) == 1 else fine)
                await writer.drain()
        await released.wait()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    async with server:
        try:
            url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"
            policy = wpb.RetryPolicy(max_attempts=1, timeout_ms=30_000)
            await create_webhook(caller, url=url, event_types=["rfp.*"], retry_policy=policy)
            [first] = await delivery_ids(database, (await publish(caller)).event_id)
            await recorded(database, first, 1)
            [second] = await delivery_ids(database, (await publish(caller)).event_id)
            delivery = await recorded(database, second, 1)
            assert not released.is_set()  # recorded while the broken connection was still held open
        finally:
            released.set()

    [attempt] = await database.rows(ATTEMPTS_WITH_EXCERPTS, d=second)
    assert (attempt.outcome, attempt.http_status, attempt.response_excerpt) == ("succeeded", 200, "ok")
    assert delivery.status == "succeeded"
    assert requests_by_connection == [1, 1]  # nothing more was sent on the broken connection


async def test_an_answer_with_nul_bytes_is_recorded_with_them_replaced(caller, workers, receiver, database) -> None:
    async def nul_bytes(request: web.Request, count: int) -> web.StreamResponse:
        return web.Response(status=503, body="down\x00 — «bientôt»\x00".encode(), headers={"X-Note": "ünïcode"})

    receiver.respond = nul_bytes
    policy = wpb.RetryPolicy(max_attempts=1, timeout_ms=1000)
    await create_webhook(caller, url=receiver.url, event_types=["rfp.*"], retry_policy=policy)
    [delivery_id] = await delivery_ids(database, (await publish(caller)).event_id)

    delivery = await recorded(database, delivery_id, 1)

    [attempt] = await database.rows("SELECT * FROM attempts WHERE delivery_id = :d", d=delivery_id)
    assert attempt.response_excerpt == "down\ufffd — «bientôt»\ufffd"
    assert ["x-note", "ünïcode"] in [[name.lower(), value] for name, value in attempt.response_headers]
    assert (delivery.status, delivery.last_http_status) == ("failed", 503)


async def test_an_answer_with_header_bytes_that_are_not_utf8_is_recorded_with_them_replaced(
    caller, workers, database
) -> None:
    # aiohttp hands such bytes over as lone surrogates, which no JSON or text column can hold: left
    # as they were, the attempt could never be written, and its delivery would be sent again forever.
    async with raw_answer(NOT_UTF8_HEADER) as url:
        await create_webhook(caller, url=url, event_types=["rfp.*"])
        [delivery_id] = await delivery_ids(database, (await publish(caller)).event_id)

        delivery = await recorded(database, delivery_id, 1)

    [attempt] = await database.rows("SELECT * FROM attempts WHERE delivery_id = :d", d=delivery_id)
    assert ["x-note", "caf\ufffd \ufffd"] in [[name.lower(), value] for name, value in attempt.response_headers]
    assert (delivery.status, delivery.last_http_status) == ("succeeded", 200)


async def test_a_stored_url_whose_host_cannot_be_decoded_fails_its_attempt_not_the_worker(
    caller, workers, receiver, database
) -> None:
    # Create refuses such a host now; one stored before that must still end as an attempt. Before,
    # reading the host raised in the worker: no attempt was logged and the delivery came round again
    # at every lease end.
    policy = wpb.RetryPolicy(max_attempts=1, timeout_ms=1000)
    hook = await create_webhook(caller, url=receiver.url, event_types=["rfp.*"], retry_policy=policy)
    await database.execute("UPDATE webhooks SET url = 'http://xn--zz.example/hook' WHERE id = :id", id=hook.id)
    [delivery_id] = await delivery_ids(database, (await publish(caller)).event_id)

    delivery = await recorded(database, delivery_id, 1)

    [attempt] = await database.rows(ATTEMPTS, d=delivery_id)
    assert (attempt.outcome, attempt.error) == ("connection_error", "invalid URL")
    assert delivery.status == "failed"
    assert receiver.received == []


async def test_retry_after_on_429_sets_the_next_attempt_beyond_the_schedule(
    caller, workers, receiver, database
) -> None:
    receiver.respond = status(429, {"Retry-After": "120"})
    policy = wpb.RetryPolicy(max_attempts=2)
    await create_webhook(caller, url=receiver.url, event_types=["rfp.*"], retry_policy=policy)
    [delivery_id] = await delivery_ids(database, (await publish(caller)).event_id)

    delivery = await recorded(database, delivery_id, 1)

    [attempt] = await database.rows(ATTEMPTS, d=delivery_id)
    assert (attempt.outcome, attempt.http_status) == ("failed", 429)
    assert delivery.status == "pending"
    # The schedule alone would retry after about 5 s.
    assert await database.value(
        "SELECT next_attempt_at >= now() + interval '110 seconds' FROM deliveries WHERE id = :d", d=delivery_id
    )


async def test_410_gone_pauses_the_webhook_and_keeps_the_delivery(caller, workers, receiver, database) -> None:
    receiver.respond = status(410)
    hook = await create_webhook(caller, url=receiver.url, event_types=["rfp.*"])
    [delivery_id] = await delivery_ids(database, (await publish(caller)).event_id)

    delivery = await recorded(database, delivery_id, 1)

    [attempt] = await database.rows(ATTEMPTS, d=delivery_id)
    assert (attempt.outcome, attempt.http_status) == ("failed", 410)
    assert delivery.status == "pending"
    paused = await webhook(caller, hook.id)
    assert paused.HasField("paused_at")
    assert not paused.is_active
    assert paused.version == hook.version + 1


async def test_exhausted_delivery_is_marked_failed_not_dropped(caller, workers, receiver, database) -> None:
    receiver.respond = status(500)
    policy = wpb.RetryPolicy(max_attempts=2)
    hook = await create_webhook(caller, url=receiver.url, event_types=["rfp.*"], retry_policy=policy)
    [delivery_id] = await delivery_ids(database, (await publish(caller)).event_id)
    await recorded(database, delivery_id, 1)
    assert await database.make_due(delivery_id) == 1

    delivery = await recorded(database, delivery_id, 2)

    assert delivery.status == "failed"
    assert delivery.next_attempt_at is None
    assert delivery.completed_at is not None
    assert [a.outcome for a in await database.rows(ATTEMPTS, d=delivery_id)] == ["failed", "failed"]
    assert (await webhook(caller, hook.id)).consecutive_failures == 2
    assert len(receiver.received) == 2


async def test_consecutive_failures_pause_the_webhook_until_resumed(
    caller, workers, receiver, database, settings
) -> None:
    receiver.respond = status(500)
    hook = await create_webhook(caller, url=receiver.url, event_types=["rfp.*"])
    waiting = []
    for _ in range(settings.pause_after_failures):
        waiting += await delivery_ids(database, (await publish(caller)).event_id)
    for delivery_id in waiting:
        await recorded(database, delivery_id, 1)

    paused = await webhook(caller, hook.id)
    assert paused.HasField("paused_at")
    assert not paused.is_active
    assert paused.consecutive_failures == settings.pause_after_failures
    # Published while paused: held, not dropped (tests/integration/test_operations_held.py has the rest).
    held = await publish(caller)
    assert (held.deliveries_queued, held.deliveries_held) == (0, 1)

    # Due again, but paused: nothing is claimed, nothing is dropped.
    assert await database.make_due(*waiting) == len(waiting)
    # Another webhook's delivery, due after them: the claim that takes it would have taken the paused ones too.
    once = wpb.RetryPolicy(max_attempts=1)  # it gets the 500s too; no retry of it may arrive later
    await create_webhook(caller, url=f"{receiver.url}/active", event_types=["other.*"], retry_policy=once)
    await publish(caller, "other.ping")
    await receiver.wait_for(len(waiting) + 1)
    assert [request.path for request in receiver.received[len(waiting) :]] == ["/hook/active"]
    rows = await database.rows("SELECT status, attempts FROM deliveries WHERE id = ANY(:ids)", ids=waiting)
    assert [(row.status, row.attempts) for row in rows] == [("pending", 1)] * len(waiting)

    receiver.respond = ok
    resumed = (await caller.ResumeWebhook(pb.ResumeWebhookRequest(id=hook.id))).webhook
    assert not resumed.HasField("paused_at")
    assert resumed.is_active
    assert resumed.consecutive_failures == 0

    await receiver.wait_for(2 * len(waiting) + 1)
    for delivery_id in waiting:
        assert (await recorded(database, delivery_id, 2)).status == "succeeded"
