"""The HTTP transports' listening socket: what every connection it accepts is set to."""

from __future__ import annotations

import socket

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
