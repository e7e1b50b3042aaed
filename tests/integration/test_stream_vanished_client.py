"""A gRPC client whose host vanished (no FIN, no RST) gives its stream's place back: the server's keepalive
pings go unanswered and it closes the connection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
from cpod.integration.v1 import webhook_service_pb2 as pb

from log_streams import Tail, until
from relays import Relay
from support import make_caller, new_tenant_id
from webhookd.app import open_service
from webhookd.ports import Topic

LEASES = "SELECT count(*) FROM stream_leases WHERE tenant_id = :tenant_id"
PING_FRAME_BYTES = 17  # an HTTP/2 PING: a 9-byte frame head and 8 bytes of payload


class FreezingRelay(Relay):
    """Relays loopback TCP to `port` until `freeze()`: then it reads, sends and closes nothing, as a
    peer whose host went away (a crashed VM, a pulled cable) looks to the server."""

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self._frozen = asyncio.Event()
        self.to_client = 0  # bytes the server sent

    def freeze(self) -> None:
        self._frozen.set()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self._port)
        self._kept += [client_writer, server_writer]
        self._kept.append(asyncio.create_task(self._pipe(client_reader, server_writer, downstream=False)))
        self._kept.append(asyncio.create_task(self._pipe(server_reader, client_writer, downstream=True)))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, downstream: bool) -> None:
        frozen = asyncio.ensure_future(self._frozen.wait())
        try:
            while True:
                read = asyncio.ensure_future(reader.read(65536))
                await asyncio.wait({read, frozen}, return_when=asyncio.FIRST_COMPLETED)
                if frozen.done():
                    read.cancel()
                    return
                data = read.result()
                if not data:
                    return
                if downstream:
                    self.to_client += len(data)
                writer.write(data)
                await writer.drain()
        finally:
            frozen.cancel()


@contextlib.asynccontextmanager
async def relayed(port: int) -> AsyncIterator[tuple[FreezingRelay, int]]:
    relay = FreezingRelay(port)
    relay_port = await relay.start()
    try:
        yield relay, relay_port
    finally:
        await relay.close()


async def test_a_vanished_clients_following_stream_gives_its_place_back(settings, backends, database) -> None:
    """It held its tenant's place until the kernel's two-hour keepalive: twenty such and the tenant
    could open no stream at all."""
    # Pings each second, an unanswered one waiting no longer than the (short) stall bound and its margin.
    service = await open_service(
        settings.with_overrides(grpc_keepalive_seconds=1.0, stream_stall_seconds=1.0), backends
    )
    tenant_id = new_tenant_id()
    try:
        async with relayed(service.grpc_port) as (relay, relay_port):
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{relay_port}")
            caller = make_caller(channel, tenant_id, subject="person_1")
            stream = Tail(caller.DeliveryLog(pb.DeliveryLogRequest(follow=True)))
            await until(lambda: service.core.notifications.subscribers(Topic.ATTEMPTS) == 1)
            assert await database.value(LEASES, tenant_id=tenant_id) == 1
            # An idle stream sends no data: its pings must go on past the first two all the same.
            idle_from = relay.to_client
            await until(lambda: relay.to_client >= idle_from + 3 * PING_FRAME_BYTES, within=30)

            relay.freeze()

            await until(lambda: service.core.notifications.subscribers(Topic.ATTEMPTS) == 0, within=30)
            await database.wait_for(LEASES, lambda rows: rows[0]["count"] == 0, within=30, tenant_id=tenant_id)
            await stream.close()
            await channel.close(grace=0)
    finally:
        await service.stop(grace=0)
