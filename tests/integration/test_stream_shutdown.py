"""A server that stops ends its open gRPC streams at once, UNAVAILABLE, and they resume after their last cursor."""

from __future__ import annotations

import asyncio

import grpc
from cpod.integration.v1 import webhook_service_pb2 as pb
from test_delivery_log_stream import committed_attempts

from log_streams import Tail, until
from support import make_caller, new_tenant_id
from webhookd.app import open_service
from webhookd.ports import Topic


async def test_open_streams_end_unavailable_when_the_server_stops_and_resume_after_their_cursor(
    settings, backends, database
) -> None:
    """A following stream never ends by itself: the server waited its whole shutdown grace for it, then
    cancelled it ("Cancelling all calls"). It ends as a REST stream does, at once, saying what to do."""
    # A grace longer than the bound below: a server that waits for its streams fails rather than passes.
    service = await open_service(settings.with_overrides(shutdown_grace_seconds=120.0), backends)
    tenant_id = new_tenant_id()
    stopped = False
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            caller = make_caller(channel, tenant_id, subject="person_1")
            written = await committed_attempts(database, tenant_id, count=2)
            log = Tail(caller.DeliveryLog(pb.DeliveryLogRequest(follow=True)))
            inbound = Tail(caller.StreamInboundEvents(pb.StreamInboundEventsRequest(follow=True)))
            await log.wait_for(2)
            await until(lambda: service.core.notifications.subscribers(Topic.INBOUND) >= 1)

            await asyncio.wait_for(service.stop(), 30)
            stopped = True

            for stream in (log, inbound):
                ended = await asyncio.gather(stream.ended(within=30), return_exceptions=True)
                error = ended[0]
                assert isinstance(error, grpc.aio.AioRpcError), error
                assert error.code() == grpc.StatusCode.UNAVAILABLE
                assert "shutting down" in (error.details() or "")
    finally:
        if not stopped:
            await service.stop(grace=0)

    later = await committed_attempts(database, tenant_id)
    restarted = await open_service(settings, backends)
    try:
        async with grpc.aio.insecure_channel(restarted.grpc_target) as channel:
            caller = make_caller(channel, tenant_id, subject="person_1")
            resumed = Tail(caller.DeliveryLog(pb.DeliveryLogRequest(after_cursor=log.entries[-1].cursor)))
            assert [entry.delivery_id for entry in await resumed.ended()] == later
    finally:
        await restarted.stop(grace=0)
    assert [entry.delivery_id for entry in log.entries] == written
