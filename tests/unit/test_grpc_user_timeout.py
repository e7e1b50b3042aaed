"""The TCP_USER_TIMEOUT gRPC core gives the connections the service's gRPC server accepts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

import grpc
import pytest

from webhookd.app import grpc_server_options
from webhookd.config import Settings


def user_timeout_of_accepted(local_port: int, peer_port: int) -> int | None:
    """TCP_USER_TIMEOUT of this process's socket connected from `local_port` to `peer_port`, if any."""
    for fd in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(int(fd)))
        except OSError:
            continue  # closed meanwhile
        with sock, contextlib.suppress(OSError):
            local, peer = sock.getsockname(), sock.getpeername()
            if isinstance(local, tuple) and local[1] == local_port and peer[1] == peer_port:
                return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)
    return None


async def accepted_user_timeout_ms(settings: Settings) -> int:
    server = grpc.aio.server(options=grpc_server_options(settings, reuse_port=False))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        with socket.create_connection(("127.0.0.1", port)) as client:
            for _ in range(500):  # gRPC core accepts on its own threads
                found = user_timeout_of_accepted(port, client.getsockname()[1])
                if found is not None:
                    return found
                await asyncio.sleep(0.01)
        raise AssertionError("the server's socket of the connection was not found")
    finally:
        await server.stop(0)


async def test_a_paused_reader_is_not_cut_by_the_kernel_before_the_stall_bound_ends_its_stream() -> None:
    # Linux ends a connection whose client keeps its window shut as long as the user timeout: at the
    # keepalive timeout gRPC core derives it from (30 s) it cut a reader the stall bound (60 s) allows.
    assert await accepted_user_timeout_ms(Settings()) == 65_000


@pytest.mark.parametrize(
    ("keepalive_seconds", "stall_seconds", "user_timeout_ms"),
    [
        (40.0, 10.0, 80_000),  # a ping, then as long for its answer
        (2.0, 20.5, 25_500),  # a shut window is the stall bound's to end, not the kernel's sooner
    ],
)
async def test_unacknowledged_data_ends_a_connection_after_keepalive_or_the_stall_bound_whichever_is_longer(
    keepalive_seconds: float, stall_seconds: float, user_timeout_ms: int
) -> None:
    settings = Settings(grpc_keepalive_seconds=keepalive_seconds, stream_stall_seconds=stall_seconds)
    assert await accepted_user_timeout_ms(settings) == user_timeout_ms


@pytest.mark.parametrize(
    ("keepalive_seconds", "stall_seconds", "ping_timeout_ms"),
    [
        (30.0, 60.0, 65_000),  # a paused reader's unanswered ping waits for the stall bound to end its stream
        (40.0, 10.0, 40_000),  # past the stall bound anyway: as long as the keepalive
    ],
)
def test_an_unanswered_ping_ends_a_connection_no_sooner_than_the_stall_bound_would_end_its_stream(
    keepalive_seconds: float, stall_seconds: float, ping_timeout_ms: int
) -> None:
    settings = Settings(grpc_keepalive_seconds=keepalive_seconds, stream_stall_seconds=stall_seconds)
    options = dict(grpc_server_options(settings, reuse_port=False))
    assert options["grpc.http2.ping_timeout_ms"] == ping_timeout_ms
