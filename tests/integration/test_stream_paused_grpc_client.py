"""A gRPC client whose process stops reading its socket for a while (a stop-the-world collection, a host
short of CPU or memory) while its window is large: its stream is the stall bound's to end, ABORTED and
told why, and the connection holding the client's other calls stays up. Linux ends a connection whose
peer keeps its TCP window shut as long as its TCP_USER_TIMEOUT, which gRPC core sets from the keepalive
timeout; at 30 s by default, it cut such a client before the 60 s stall bound did. A client whose host is
gone (it acknowledges nothing) still gives its stream's place back."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import grpc
import pytest
from cpod.integration.v1 import webhook_service_pb2 as pb
from test_inbound_consumers import Sender, sender_for, take
from test_stream_vanished_rest_client import go_silent

from relays import Relay
from support import make_caller, new_tenant_id
from webhookd.app import Gateway, Service, open_service

LEASES = "SELECT count(*) FROM stream_leases WHERE tenant_id = :tenant_id"
LARGE_BODY = 200 * 1024
# Read as they come, these many large events let BDP probing grow the reader's window to megabytes,
# past what the sockets on the way hold: a paused reader then shuts its TCP window.
GROWING_EVENTS = 30
MAX_EVENTS = 200  # a bound far past the buffers between the server and the reader


class PausingRelay(Relay):
    """Relays loopback TCP to `port`; its socket to the server has a small receive buffer, and while paused
    it reads nothing from it: its kernel answers the server with a shut window, as a paused reader's does."""

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self._reading = asyncio.Event()
        self._reading.set()
        self.upstream: socket.socket | None = None

    def pause(self) -> None:
        self._reading.clear()

    def resume(self) -> None:
        self._reading.set()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        upstream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        upstream.setblocking(False)
        await asyncio.get_running_loop().sock_connect(upstream, ("127.0.0.1", self._port))
        self.upstream = upstream
        server_reader, server_writer = await asyncio.open_connection(sock=upstream, limit=4096)
        self._kept += [client_writer, server_writer]
        self._kept.append(asyncio.create_task(self._pipe(client_reader, server_writer)))
        self._kept.append(asyncio.create_task(self._pipe(server_reader, client_writer, pausing=True)))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, pausing: bool = False) -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                if pausing:
                    await self._reading.wait()
                data = await reader.read(4096)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        writer.close()  # the other side's end (a reset, a close) passed on


@pytest.fixture
async def short_bounds(settings, backends) -> AsyncIterator[tuple[Service, Gateway]]:
    """A service that pings each second and ends a stream whose reader takes nothing for 3 s, with the
    inbound receiver beside it."""
    service = await open_service(
        settings.with_overrides(grpc_keepalive_seconds=1.0, stream_stall_seconds=3.0), backends
    )
    gateway = Gateway(settings, service.local_channel(), extra_routes=service.http_routes())
    await gateway.start()
    try:
        yield service, gateway
    finally:
        await gateway.stop()
        await service.stop(grace=0)


@contextlib.asynccontextmanager
async def relayed_stream(
    service: Service, gateway: Gateway, tenant_id: str
) -> AsyncIterator[tuple[PausingRelay, Sender, grpc.aio.UnaryStreamCall]]:
    """A following StreamInboundEvents call through a PausingRelay, its window grown; with the relay and
    the sender of the events."""
    relay = PausingRelay(service.grpc_port)
    relay_port = await relay.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{relay_port}") as channel:
            caller = make_caller(channel, tenant_id, subject="person_1")
            sender = await sender_for(caller, f"http://127.0.0.1:{gateway.port}")
            call = caller.StreamInboundEvents(pb.StreamInboundEventsRequest(follow=True))
            for n in range(GROWING_EVENTS):
                await sender.send(n, padding=LARGE_BODY)
                await take(call, 1)
            yield relay, sender, call
    finally:
        await relay.close()


async def send_until_place_freed(sender: Sender, database, tenant_id: str) -> None:
    """Sends large events to the stream until its place is free (bounded in count, then in time)."""
    sent = GROWING_EVENTS
    while sent < GROWING_EVENTS + MAX_EVENTS and await database.value(LEASES, tenant_id=tenant_id) == 1:
        await sender.send(sent, padding=LARGE_BODY)
        sent += 1
    await database.wait_for(LEASES, lambda rows: rows[0]["count"] == 0, within=30, tenant_id=tenant_id)


async def test_a_paused_grpc_reader_is_ended_by_the_stall_bound_not_by_the_kernel(short_bounds, database) -> None:
    service, gateway = short_bounds
    tenant_id = new_tenant_id()
    async with relayed_stream(service, gateway, tenant_id) as (relay, sender, call):
        relay.pause()
        await send_until_place_freed(sender, database, tenant_id)  # the stall bound ended it, 3 s on
        relay.resume()

        # What the reader finds once it reads again: the events sent, then why its stream ended.
        ended = None
        try:
            async with asyncio.timeout(10):
                while await call.read() is not grpc.aio.EOF:
                    pass
        except grpc.aio.AioRpcError as error:
            ended = error
        assert ended is not None
        assert ended.code() == grpc.StatusCode.ABORTED, ended.details()
        assert "after the last cursor" in ended.details()


async def test_a_grpc_reader_whose_host_vanished_while_a_stream_wrote_to_it_gives_its_place_back(
    short_bounds, database
) -> None:
    service, gateway = short_bounds
    tenant_id = new_tenant_id()
    async with relayed_stream(service, gateway, tenant_id) as (relay, sender, _):
        assert relay.upstream is not None
        go_silent(relay.upstream)

        # In flight, never acknowledged: a ping that goes out finds it gone; once the server's socket is
        # full no ping goes out, and the user timeout does.
        await send_until_place_freed(sender, database, tenant_id)
