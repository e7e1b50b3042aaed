"""A REST client whose host vanished gives its stream's place back: while its stream was idle (nothing is
written to an idle NDJSON stream, so only the kernel's keepalive probes find the connection dead), and
while the stream was writing to it (SSE heartbeats, NDJSON entries: data in flight, never acknowledged,
which keepalive does not probe, so only the connection's TCP user timeout finds it dead)."""

from __future__ import annotations

import asyncio
import ctypes
import socket
import struct
from collections.abc import AsyncIterator

import pytest
from rest_calls import raw_follow_stream
from test_delivery_log_stream import committed_attempts

from support import JWT_SECRET, new_tenant_id
from webhookd.app import Gateway
from webhookd.auth.tokens import mint
from webhookd.gateway.app import create_gateway_app
from webhookd.http.request_bounds import RequestBounds
from webhookd.http.server import HttpServer

LEASES = "SELECT count(*) FROM stream_leases WHERE tenant_id = :tenant_id"
# Linux's TCP_REPAIR: a socket closed in repair mode goes away without a FIN or a RST (CRIU uses it),
# as a connection does whose host crashed; the next segment to it is answered with a RST, as a host
# that came back answers. Needs CAP_NET_ADMIN.
TCP_REPAIR = 19
# A classic BPF program of one instruction, BPF_RET|BPF_K 0: every segment to the socket is dropped
# before TCP sees it, so it acknowledges nothing and sends nothing, as a host that lost its power or
# its network; unlike a close in repair mode, nothing answers with a RST later. No privilege needed.
SO_ATTACH_FILTER = 26
DROP_ALL = struct.pack("HBBI", 0x06, 0, 0, 0)


@pytest.fixture
async def probing_gateway(settings, service) -> AsyncIterator[Gateway]:
    """A gateway beside the session service whose connections are probed after 1 s idle."""
    gateway = Gateway(settings.with_overrides(http_tcp_keepalive_seconds=1.0), service.local_channel())
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


@pytest.fixture
async def writing_gateway(service) -> AsyncIterator[HttpServer]:
    """The gateway's app beside the session service: SSE heartbeats every 0.2 s, connections probed after
    2 s idle (dead after 3 probes 1 s apart), and a short write stall bound: data unacknowledged for 5 s
    ends a connection."""
    app = create_gateway_app(service.local_channel(), heartbeat_seconds=0.2)
    server = HttpServer(
        app,
        "127.0.0.1:0",
        bounds=RequestBounds(tcp_keepalive_seconds=2.0, write_stall_seconds=1.0),
        shutdown_grace_seconds=1.0,
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def response_head(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    received = b""
    while b"\r\n\r\n" not in received:
        data = sock.recv(4096)
        assert data, f"closed after {received!r}"
        received += data
    return received


def go_silent(sock: socket.socket) -> None:
    """`sock` takes in nothing more, and so acknowledges nothing, while the test still holds it."""
    program = ctypes.create_string_buffer(DROP_ALL)
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack("HL", 1, ctypes.addressof(program)))


def vanish(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
    except PermissionError:
        sock.close()
        pytest.skip("TCP_REPAIR needs CAP_NET_ADMIN")
    sock.close()


async def test_an_idle_ndjson_stream_whose_client_vanished_gives_its_place_back(probing_gateway, database) -> None:
    tenant_id = new_tenant_id()
    sock = raw_follow_stream(probing_gateway.port, mint(JWT_SECRET, tenant_id=tenant_id), "application/x-ndjson")
    await database.wait_for(LEASES, lambda rows: rows[0]["count"] == 1, tenant_id=tenant_id)
    # The head comes once the stream's first read has waited its grace: after it, nothing more is sent.
    assert (await asyncio.to_thread(response_head, sock)).startswith(b"HTTP/1.1 200 ")

    vanish(sock)

    await database.wait_for(LEASES, lambda rows: rows[0]["count"] == 0, within=15, tenant_id=tenant_id)


async def test_an_sse_stream_whose_client_vanished_gives_its_place_back_though_heartbeats_are_in_flight(
    writing_gateway, database
) -> None:
    tenant_id = new_tenant_id()
    with raw_follow_stream(writing_gateway.port, mint(JWT_SECRET, tenant_id=tenant_id), "text/event-stream") as sock:
        await database.wait_for(LEASES, lambda rows: rows[0]["count"] == 1, tenant_id=tenant_id)
        assert (await asyncio.to_thread(response_head, sock)).startswith(b"HTTP/1.1 200 ")

        go_silent(sock)  # the next heartbeat, 0.2 s on, is never acknowledged: keepalive never probes

        # Retransmitted for ~15 minutes (net.ipv4.tcp_retries2) without a user timeout.
        await database.wait_for(LEASES, lambda rows: rows[0]["count"] == 0, within=30, tenant_id=tenant_id)


async def test_an_ndjson_stream_whose_client_vanished_gives_its_place_back_though_entries_are_in_flight(
    writing_gateway, database
) -> None:
    tenant_id = new_tenant_id()
    with raw_follow_stream(writing_gateway.port, mint(JWT_SECRET, tenant_id=tenant_id), "application/x-ndjson") as sock:
        await database.wait_for(LEASES, lambda rows: rows[0]["count"] == 1, tenant_id=tenant_id)
        assert (await asyncio.to_thread(response_head, sock)).startswith(b"HTTP/1.1 200 ")

        go_silent(sock)
        await committed_attempts(database, tenant_id, count=3)  # written to the stream before it is idle 2 s

        await database.wait_for(LEASES, lambda rows: rows[0]["count"] == 0, within=30, tenant_id=tenant_id)
