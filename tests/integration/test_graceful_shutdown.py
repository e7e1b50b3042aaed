"""Stopping the server lets in-flight calls finish and refuses new ones."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import httpx
import pytest
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import field_mask_pb2
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from support import JWT_SECRET, make_caller, new_tenant_id
from webhookd.app import Gateway, open_service
from webhookd.auth.tokens import mint

# The server's write, waiting for the row lock the test holds.
WAITING_FOR_THE_ROW = (
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    " AND wait_event IN ('transactionid', 'tuple') AND query ILIKE '%webhooks%'"
)


async def until_refused(call: Callable[..., Awaitable[Any]], request: Any, within: float = 5.0) -> None:
    """Makes the call until one fails (bounded). Calls that reach the server before it starts stopping
    succeed, and one that races the moment it stops may end CANCELLED rather than refused."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            await call(request, timeout=within)
        except grpc.aio.AioRpcError:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"calls were still served {within}s after the server began stopping")


async def test_an_in_flight_call_completes_during_shutdown_and_new_calls_are_refused(
    settings, backends, database
) -> None:
    # The update waits on the row for as long as the test takes to stop the server and see it refuse
    # calls: a few seconds on a busy machine, which must not reach the database bound and end it early.
    service = await open_service(settings.with_overrides(database_timeout_seconds=60.0), backends)
    engine = create_async_engine(backends.database_url)
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            caller = make_caller(channel, subject="person_1")
            created = await caller.CreateWebhook(
                pb.CreateWebhookRequest(webhook=wpb.Webhook(name="before", url="https://example.test/h"))
            )
            update = pb.UpdateWebhookRequest(
                webhook=wpb.Webhook(id=created.webhook.id, name="after"),
                update_mask=field_mask_pb2.FieldMask(paths=["name"]),
            )
            async with engine.connect() as blocker:
                # Holding the row makes the update wait inside the server: it is in flight.
                await blocker.execute(
                    text("SELECT 1 FROM webhooks WHERE id = :id FOR UPDATE"), {"id": created.webhook.id}
                )
                in_flight = asyncio.ensure_future(caller.UpdateWebhook(update))
                await database.wait_for(WAITING_FOR_THE_ROW, bool)
                stopping = asyncio.create_task(service.stop(grace=10.0))
                get = pb.GetWebhookRequest(id=created.webhook.id)
                await until_refused(caller.GetWebhook, get)
                # The server takes no more calls: a new one is refused while the update is still in flight.
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await caller.GetWebhook(get, timeout=5)
                assert not in_flight.done()
                await blocker.rollback()
            updated = await asyncio.wait_for(in_flight, 10)
            await asyncio.wait_for(stopping, 15)
    finally:
        await engine.dispose()
    assert updated.webhook.name == "after"
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_following_rest_stream_ends_unavailable_when_the_gateway_stops(settings, service) -> None:
    """A following stream never ends by itself: uvicorn alone waited for the client to hang up, which
    kept the process past SIGTERM until it was killed. It ends as a gRPC one does, UNAVAILABLE."""
    gateway = Gateway(settings, service.local_channel(), extra_routes=service.http_routes(), metrics=service.metrics)
    await gateway.start()
    token = mint(JWT_SECRET, tenant_id=new_tenant_id())
    async with (
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}", timeout=60) as http,
        http.stream(
            "GET",
            "/api/v1/integration/delivery-log",
            params={"follow": "true"},
            headers={"Authorization": f"Bearer {token}"},
        ) as stream,
    ):
        assert stream.status_code == 200
        # Bounded, so the old behaviour fails rather than hangs: it waited for this client for ever.
        await asyncio.wait_for(gateway.stop(), 30)
        lines = (await asyncio.wait_for(stream.aread(), 30)).decode().splitlines()

    assert json.loads(lines[-1])["error"]["status"] == "UNAVAILABLE"
