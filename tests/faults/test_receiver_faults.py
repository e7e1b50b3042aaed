"""Receivers that misbehave on the first request: one hangs, one resets the connection, two trickle their
response a byte at a time (after a 200, after a 503), one sends 10 MB. Each attempt ends within the
webhook's timeout with the outcome it earned (recorded in the DeliveryLog; once the status has come it
decides), and a retry, made due, arrives with the same webhook-id and succeeds: at least once, never
lost. The 10 MB answer and the trickled 200 are successes read no further than the excerpt or the
timeout, delivered exactly once. Meanwhile a healthy webhook of the same tenant keeps being served.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb

from harness import record
from receivers import Receiver

pytestmark = pytest.mark.slow
TIMEOUT_MS = 1000
TEN_MB = 10 * 1024 * 1024
TRICKLE_PAUSE_SECONDS = 0.1  # a byte of the response every so often, far too slow to finish in time
EXCERPT_BYTES = 65536

Misbehaviour = Callable[[web.Request, asyncio.Event], Awaitable[web.StreamResponse]]


async def hang(request: web.Request, released: asyncio.Event) -> web.StreamResponse:
    await released.wait()  # until the test ends: long past the sender's timeout
    return web.Response(text="late")


async def reset(request: web.Request, released: asyncio.Event) -> web.StreamResponse:
    assert request.transport is not None
    sock = request.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
    request.transport.abort()
    return web.Response()


def trickle(status: int) -> Misbehaviour:
    async def respond(request: web.Request, released: asyncio.Event) -> web.StreamResponse:
        response = web.StreamResponse(status=status)
        await response.prepare(request)
        while not released.is_set():
            await response.write(b".")
            await asyncio.sleep(TRICKLE_PAUSE_SECONDS)
        return response

    return respond


async def ten_megabytes(request: web.Request, released: asyncio.Event) -> web.StreamResponse:
    return web.Response(body=b"x" * TEN_MB)


CASES: dict[str, tuple[Misbehaviour, list[str]]] = {
    "hangs": (hang, ["timed_out", "succeeded"]),
    "resets": (reset, ["connection_error", "succeeded"]),
    # Once the status has come it decides, whether or not the body arrives in time.
    "trickles a success": (trickle(200), ["succeeded"]),
    "trickles a failure": (trickle(503), ["failed", "succeeded"]),
    "sends 10 MB": (ten_megabytes, ["succeeded"]),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_misbehaving_receiver_costs_one_bounded_attempt_and_loses_nothing(
    caller, workers, receiver, database, case: str
) -> None:
    misbehave, outcomes = CASES[case]
    released = asyncio.Event()

    async def first_misbehaves(request: web.Request, count: int) -> web.StreamResponse:
        if count == 1:
            return await misbehave(request, released)
        return web.Response(text="ok")

    bad = await Receiver(respond=first_misbehaves).start()
    try:
        policy = wpb.RetryPolicy(timeout_ms=TIMEOUT_MS)
        for name, url, types in (("bad", bad.url, ["bad.*"]), ("good", receiver.url, ["good.*"])):
            await caller.CreateWebhook(
                pb.CreateWebhookRequest(webhook=wpb.Webhook(name=name, url=url, event_types=types, retry_policy=policy))
            )
        started = time.monotonic()
        published = await caller.PublishEvent(pb.PublishEventRequest(event_type="bad.thing"))
        [first] = await database.wait_for(
            "SELECT a.outcome, a.latency_ms, a.response_excerpt, d.id FROM attempts a"
            " JOIN deliveries d ON d.id = a.delivery_id WHERE a.event_id = :e",
            lambda rows: len(rows) == 1,
            e=published.event_id,
        )
        first_attempt_s = time.monotonic() - started
        # A healthy webhook of the tenant is served while (or after) the bad one misbehaved.
        await caller.PublishEvent(pb.PublishEventRequest(event_type="good.thing"))
        await receiver.wait_for(1)
        if len(outcomes) > 1:
            await database.wait_for("SELECT 1 FROM deliveries WHERE id = :d AND lease_token IS NULL", bool, d=first.id)
            assert await database.make_due(first.id) == 1  # the retry's wait, passed
        await database.wait_for(
            "SELECT 1 FROM deliveries WHERE id = :d AND status = 'succeeded'", bool, d=first.id, within=30
        )
        attempts = await database.rows(
            "SELECT outcome FROM attempts WHERE event_id = :e ORDER BY attempt", e=published.event_id
        )
    finally:
        released.set()
        await bad.stop()

    record(
        f"receiver that {case}",
        first_attempt_outcome=first.outcome,
        first_attempt_s=first_attempt_s,
        first_attempt_latency_ms=first.latency_ms,
        attempts=len(attempts),
        requests=len(bad.received),
    )
    assert [row.outcome for row in attempts] == outcomes
    assert len(first.response_excerpt.encode()) <= EXCERPT_BYTES
    # Every request carried the event's id: a receiver that dedupes on it sees one event.
    assert {request.headers["webhook-id"] for request in bad.received} == {published.event_id}
    assert len(bad.received) == len(outcomes)
