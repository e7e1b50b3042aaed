"""Baseline: a bare grpc.aio server stream. The request says "<count> <size>"; the answer is `count`
messages of `size` bytes each, nothing else (no protobuf, no database, no auth).

Run: `python -m servers.stream` (from bench/); prints "listening on HOST:PORT", serves until SIGTERM.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from harness.lifetime import stop_event

HOST = "127.0.0.1"
SERVICE, METHOD = "bench.Stream", "Stream"
PATH = f"/{SERVICE}/{METHOD}"
MAX_COUNT = 10_000_000
MAX_SIZE = 1 << 20


async def _stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    count, size = (int(part) for part in request.split())
    message = b"x" * min(size, MAX_SIZE)
    for _ in range(min(count, MAX_COUNT)):
        yield message


async def main() -> None:
    stop = stop_event()
    server = grpc.aio.server()
    handler = grpc.unary_stream_rpc_method_handler(_stream)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {METHOD: handler}),))
    port = server.add_insecure_port(f"{HOST}:0")
    await server.start()
    print(f"listening on {HOST}:{port}", flush=True)
    await stop.wait()
    await server.stop(0)


if __name__ == "__main__":
    asyncio.run(main())
