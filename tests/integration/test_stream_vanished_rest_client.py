"""A REST client whose host vanished while its stream was idle gives the stream's place back: nothing is
written to an idle NDJSON stream, so only the kernel's keepalive probes find the connection dead."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from support import JWT_SECRET, new_tenant_id
from webhookd.app import Gateway
from webhookd.auth.tokens import mint

LEASES = "SELECT count(*) FROM stream_leases WHERE tenant_id = :tenant_id"
# Linux's TCP_REPAIR: a socket closed in repair mode goes away without a FIN or a RST (CRIU uses it),
# as a connection does whose host crashed; the next segment to it is answered with a RST, as a host
# that came back answers. Needs CAP_NET_ADMIN.
TCP_REPAIR = 19


@pytest.fixture
async def probing_gateway(settings, service) -> AsyncIterator[Gateway]:
    """A gateway beside the session service whose connections are probed after 1 s idle."""
    gateway = Gateway(settings.with_overrides(http_tcp_keepalive_seconds=1.0), service.local_channel())
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


def response_head(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    received = b""
    while b"\r\n\r\n" not in received:
        data = sock.recv(4096)
        assert data, f"closed after {received!r}"
        received += data
    return received


def vanish(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
    except PermissionError:
        sock.close()
        pytest.skip("TCP_REPAIR needs CAP_NET_ADMIN")
    sock.close()


async def test_an_idle_ndjson_stream_whose_client_vanished_gives_its_place_back(probing_gateway, database) -> None:
    tenant_id = new_tenant_id()
    sock = socket.create_connection(("127.0.0.1", probing_gateway.port))
    sock.sendall(
        (
            "GET /api/v1/integration/delivery-log?follow=true HTTP/1.1\r\nHost: test\r\n"
            f"Authorization: Bearer {mint(JWT_SECRET, tenant_id=tenant_id)}\r\nAccept: application/x-ndjson\r\n\r\n"
        ).encode()
    )
    await database.wait_for(LEASES, lambda rows: rows[0]["count"] == 1, tenant_id=tenant_id)
    # The head comes once the stream's first read has waited its grace: after it, nothing more is sent.
    assert (await asyncio.to_thread(response_head, sock)).startswith(b"HTTP/1.1 200 ")

    vanish(sock)

    await database.wait_for(LEASES, lambda rows: rows[0]["count"] == 0, within=15, tenant_id=tenant_id)
