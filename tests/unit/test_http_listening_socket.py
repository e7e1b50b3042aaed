"""The HTTP transports' listening socket: what every connection it accepts is set to."""

from __future__ import annotations

import socket

import pytest

from webhookd.http.request_bounds import RequestBounds
from webhookd.http.server import listening_socket


def test_accepted_connections_send_small_responses_at_once() -> None:
    # Nagle's algorithm left on held a keep-alive connection's second response back until the
    # client's delayed ACK (40 ms a request): asyncio turns it off only on sockets whose proto is TCP.
    listener = listening_socket("127.0.0.1:0")
    try:
        listener.setblocking(True)
        with socket.create_connection(listener.getsockname()):
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.proto == socket.IPPROTO_TCP
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        listener.close()


def accepted_user_timeout_ms(listener: socket.socket) -> int:
    """TCP_USER_TIMEOUT of a connection `listener` accepts (Linux copies it from the listener)."""
    try:
        listener.setblocking(True)
        with socket.create_connection(listener.getsockname()):
            accepted, _ = listener.accept()
            with accepted:
                return accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)
    finally:
        listener.close()


def test_accepted_connections_end_once_their_data_goes_unacknowledged_as_long_as_keepalive_allows() -> None:
    # Keepalive probes only an idle connection: a stream writing heartbeats to a vanished client always
    # has data in flight, and without a user timeout only the kernel's retransmissions (~15 min) ended it.
    # The default keepalive finds a dead idle peer in 30 s idle + 3 probes 10 s apart = 60 s; the write
    # stall bound (65 s) is longer, and the kernel also ends a connection whose window stays shut this
    # long, so a reader the stall bound still allows is not cut sooner.
    assert accepted_user_timeout_ms(listening_socket("127.0.0.1:0")) == 65_000


@pytest.mark.parametrize(
    ("keepalive_seconds", "write_stall_seconds", "user_timeout_ms"),
    [
        (3.0, 1.0, 6_000),  # 3 s idle + 3 probes 1 s apart
        (3.0, 20.5, 20_500),  # a shut window is the stall bound's to end, not the kernel's sooner
    ],
)
def test_unacknowledged_data_ends_a_connection_after_keepalive_or_the_write_stall_bound_whichever_is_longer(
    keepalive_seconds: float, write_stall_seconds: float, user_timeout_ms: int
) -> None:
    bounds = RequestBounds(tcp_keepalive_seconds=keepalive_seconds, write_stall_seconds=write_stall_seconds)
    assert accepted_user_timeout_ms(listening_socket("127.0.0.1:0", bounds=bounds)) == user_timeout_ms
