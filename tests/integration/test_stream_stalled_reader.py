"""A reader that is alive but never reads (its pings answered, its window full) gives its stream's place
back once the stream could hand it nothing for `stream_stall_seconds`: gRPC, and the gateway's NDJSON."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator

import grpc
import pytest
from cpod.integration.v1 import webhook_service_pb2 as pb
from rest_calls import raw_follow_stream
from test_delivery_log_stream import committed_attempts
from test_inbound_consumers import sender_for

from log_streams import Tail
from support import JWT_SECRET, make_caller, new_tenant_id
from webhookd.app import Gateway, Service, open_service
from webhookd.auth.tokens import mint

LEASES = "SELECT count(*) FROM stream_leases WHERE tenant_id = :tenant_id"
# Entries are written a batch at a time until every buffer between the server and the reader is full.
BATCH = 200
MAX_BATCHES = 500  # a bound far past the ~25,000-37,000 entries seen written before the place was free
# The reader's window stays at HTTP/2's 64 KiB: with BDP probing it grows to hold some 24,000 entries.
SMALL_WINDOW = [("grpc.http2.bdp_probe", 0)]


@pytest.fixture(scope="module")
async def one_place(settings, backends) -> AsyncIterator[Service]:
    """A service whose tenants have one stream place each, and a short stall bound."""
    service = await open_service(settings.with_overrides(max_streams_per_tenant=1, stream_stall_seconds=0.3), backends)
    try:
        yield service
    finally:
        await service.stop(grace=0)


async def write_until_place_freed(database, tenant_id: str) -> int:
    """Writes entries a batch at a time until the tenant's one stream place is free; the entries written."""
    written = 0
    for _ in range(MAX_BATCHES):
        if await database.value(LEASES, tenant_id=tenant_id) == 0:
            return written
        await committed_attempts(database, tenant_id, count=BATCH)
        written += BATCH
    await database.wait_for(LEASES, lambda rows: rows[0]["count"] == 0, within=10, tenant_id=tenant_id)
    return written


async def test_a_grpc_reader_that_never_reads_gives_its_place_back(one_place, database) -> None:
    tenant_id = new_tenant_id()
    async with grpc.aio.insecure_channel(one_place.grpc_target, options=SMALL_WINDOW) as channel:
        caller = make_caller(channel, tenant_id, subject="person_1")
        stalled = caller.DeliveryLog(pb.DeliveryLogRequest(follow=True))  # never read until the end
        await database.wait_for(LEASES, lambda rows: rows[0]["count"] == 1, tenant_id=tenant_id)

        written = await write_until_place_freed(database, tenant_id)

        admitted = Tail(caller.DeliveryLog(pb.DeliveryLogRequest(follow=True)))
        await admitted.wait_for(1)
        await admitted.close()
        # What the stalled reader finds once it reads again: the entries sent, then why it ended.
        received = []
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async for response in stalled:
                received.append(response.entry)
        assert ended.value.code() == grpc.StatusCode.ABORTED
        assert "after the last cursor" in ended.value.details()
        assert 0 < len(received) < written


def last_line(sock: socket.socket) -> dict:
    """The last JSON line of the stream, read to its end (bounded by the socket's timeout)."""
    sock.settimeout(10)
    received = b""
    while not received.endswith(b"0\r\n\r\n"):  # the last chunk of a chunked body
        data = sock.recv(65536)
        if not data:
            break
        received += data
    lines = [line for line in received.split(b"\r\n") if line.startswith(b"{")]
    return json.loads(lines[-1])


async def test_a_rest_reader_that_never_reads_gives_its_place_back(settings, one_place, database) -> None:
    tenant_id = new_tenant_id()
    gateway = Gateway(settings, one_place.local_channel())
    await gateway.start()
    try:
        sock = raw_follow_stream(
            gateway.port, mint(JWT_SECRET, tenant_id=tenant_id), "application/x-ndjson", receive_buffer=4096
        )
        with contextlib.closing(sock):
            await database.wait_for(LEASES, lambda rows: rows[0]["count"] == 1, tenant_id=tenant_id)

            await write_until_place_freed(database, tenant_id)

            async with grpc.aio.insecure_channel(one_place.grpc_target) as channel:
                admitted = Tail(make_caller(channel, tenant_id).DeliveryLog(pb.DeliveryLogRequest(follow=True)))
                await admitted.wait_for(1)
                await admitted.close()
            # Read at last: what was sent, then the error line that ended the stream.
            error = (await asyncio.to_thread(last_line, sock))["error"]
            assert error["status"] == "ABORTED"
            assert "after the last cursor" in error["message"]
    finally:
        await gateway.stop()


async def read_to_end(call: grpc.aio.UnaryStreamCall) -> tuple[int, grpc.aio.AioRpcError | None]:
    """The responses read and the error that ended `call`; None, and the call cancelled, when it has
    not ended within a bound far past a loopback stream's few buffers."""
    received = 0
    try:
        async with asyncio.timeout(10):
            async for _ in call:
                received += 1
    except grpc.aio.AioRpcError as error:
        return received, error
    except TimeoutError:
        call.cancel()
    return received, None


# Each event's body alone is past the reader's 64 KiB window: a few fill every buffer on the way.
LARGE_BODY = 200 * 1024
MAX_EVENTS = 200  # a bound far past the buffers between the server and the reader


async def handler_end(caplog: pytest.LogCaptureFixture, method: str, code: str) -> bool:
    """Whether the server's handler of a `method` call logged its end with `code` (waited for, bounded)."""
    for _ in range(200):
        if any(
            getattr(record, "rpc", "").endswith(method) and getattr(record, "code", "") == code
            for record in caplog.records
        ):
            return True
        await asyncio.sleep(0.05)
    return False


@contextlib.asynccontextmanager
async def stalled_inbound_reader(
    settings, service: Service, database
) -> AsyncIterator[tuple[grpc.aio.UnaryStreamCall, int]]:
    """A StreamInboundEvents call that never read while large events were sent until the stall bound
    gave its place to another stream; with the count of events sent."""
    tenant_id = new_tenant_id()
    # With the inbound receiver of the service under test.
    gateway = Gateway(settings, service.local_channel(), extra_routes=service.http_routes())
    await gateway.start()
    try:
        async with grpc.aio.insecure_channel(service.grpc_target, options=SMALL_WINDOW) as channel:
            caller = make_caller(channel, tenant_id, subject="person_1")
            sender = await sender_for(caller, f"http://127.0.0.1:{gateway.port}")
            stalled = caller.StreamInboundEvents(pb.StreamInboundEventsRequest(follow=True))  # read at the end
            await database.wait_for(LEASES, lambda rows: rows[0]["count"] == 1, tenant_id=tenant_id)

            sent = 0
            while sent < MAX_EVENTS and await database.value(LEASES, tenant_id=tenant_id) == 1:
                await sender.send(sent, padding=LARGE_BODY)
                sent += 1
            await database.wait_for(LEASES, lambda rows: rows[0]["count"] == 0, within=10, tenant_id=tenant_id)

            admitted = caller.StreamInboundEvents(pb.StreamInboundEventsRequest())
            assert len([response async for response in admitted]) == sent  # another stream has the place
            yield stalled, sent
    finally:
        await gateway.stop()


def grpc_log_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name.startswith("grpc")]


async def test_an_inbound_events_reader_that_never_reads_gives_its_place_back(
    settings, one_place, database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="webhookd.api")
    async with stalled_inbound_reader(settings, one_place, database) as (stalled, sent):
        # Read at last: what was sent, then why it ended; the write cut by the stall was the first
        # and held the stream's headers.
        received, ended = await read_to_end(stalled)
        assert ended is not None, f"still open after {received} events: its end never came"
        assert ended.code() == grpc.StatusCode.ABORTED
        assert "after the last cursor" in ended.details()
        assert 0 < received < sent
        # The server's side ended with it, and grpc.aio had no batch of its to refuse.
        assert await handler_end(caplog, "/StreamInboundEvents", "ABORTED")
        assert grpc_log_lines(caplog) == []


async def test_a_stalled_reader_that_leaves_ends_its_call_as_cancelled_without_an_error_logged(
    settings, one_place, database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="webhookd.api")
    async with stalled_inbound_reader(settings, one_place, database) as (stalled, _):
        stalled.cancel()  # the client leaves: the stall's status, queued behind a half-sent event, cannot follow
        assert await handler_end(caplog, "/StreamInboundEvents", "CANCELLED")
        assert grpc_log_lines(caplog) == []
