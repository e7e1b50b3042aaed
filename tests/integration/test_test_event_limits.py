"""SendTestEvent's limit per webhook (domain/pings.py): a burst, then a steady rate, for every server
process together, refused as RESOURCE_EXHAUSTED (HTTP 429) with when to come back."""

from __future__ import annotations

import asyncio

import grpc
from cpod.integration.v1 import operations_pb2 as ops
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from history_rows import opened
from rest_calls import WEBHOOKS, rest_caller
from webhook_calls import create_webhook, error_info

from webhookd.domain import ids
from webhookd.domain.pings import PING_BURST, PINGS_PER_MINUTE, TOO_MANY_PINGS
from webhookd.store.ping_buckets import PingBucketStore

# More calls than a burst and what a minute refills: the limit must have refused one by then.
CALLS_MOST = PING_BURST + PINGS_PER_MINUTE


def retry_delay_seconds(error: grpc.aio.AioRpcError) -> int:
    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.seconds
    raise AssertionError(f"no RetryInfo detail in {error.code()}: {error.details()}")


async def test_test_events_past_the_limit_are_resource_exhausted_and_429_and_not_sent(
    caller, receiver, gateway
) -> None:
    hook = await create_webhook(caller, url=receiver.url, event_types=["rfp.*"])
    request = ops.SendTestEventRequest(webhook_id=hook.id)
    sent = 0
    refused = None
    while refused is None and sent < CALLS_MOST:
        try:
            await caller.SendTestEvent(request)
            sent += 1
        except grpc.aio.AioRpcError as error:
            refused = error

    assert refused is not None and refused.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert sent >= PING_BURST
    assert error_info(refused).reason == TOO_MANY_PINGS
    assert f"at most {PING_BURST} in a row and {PINGS_PER_MINUTE} a minute" in (refused.details() or "")
    assert retry_delay_seconds(refused) >= 1
    assert len(receiver.received) == sent  # the refused call posted nothing
    async with rest_caller(gateway.url, caller.tenant_id) as rest:
        response = await rest.post(f"{WEBHOOKS}/{hook.id}:sendTestEvent", json={})
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert len(receiver.received) == sent
    other = await create_webhook(caller, url=receiver.url, event_types=["rfp.*"])
    assert (await caller.SendTestEvent(ops.SendTestEventRequest(webhook_id=other.id))).outcome == "succeeded"


async def test_the_limit_holds_for_every_process_together(service, backends) -> None:
    """Two stores on pools of their own (two servers) taking at once share one bucket (the session
    service has migrated the database)."""
    webhook_id = ids.new_id(ids.WEBHOOK_PREFIX)
    slow = 1e-6  # no token comes back while the test runs
    async with opened(backends.database_url) as first, opened(backends.database_url) as second:
        stores = [PingBucketStore(first), PingBucketStore(second)]
        waits = await asyncio.gather(
            *[stores[n % 2].take(webhook_id, per_second=slow, burst=PING_BURST) for n in range(4 * PING_BURST)]
        )

    assert waits.count(None) == PING_BURST
    assert all(wait is not None and wait > 0 for wait in waits if wait is not None)
