"""A loopback TCP relay the stream tests put between a gRPC client and the service, to play a peer the
network misbehaves for (tests/integration/test_stream_vanished_client.py, test_stream_paused_grpc_client.py)."""

from __future__ import annotations

import asyncio


class Relay:
    """Relays loopback TCP connections to `port`; how, a subclass's `_accept` says."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._kept: list[object] = []  # streams and tasks; a dropped writer would close its socket

    async def start(self) -> int:
        """Listens; the port to connect to."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        self._server.close()
        for kept in self._kept:
            if isinstance(kept, asyncio.Task):
                kept.cancel()
            elif isinstance(kept, asyncio.StreamWriter):
                kept.close()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError
