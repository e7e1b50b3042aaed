"""Baseline: a bare grpc.aio unary echo. One method, bytes in and the same bytes out: no protobuf, no
interceptor, no auth, no database. Async like webhookd's servicers (a sync handler would run in a pool).

Run: `python -m servers.echo` (from bench/); prints "listening on HOST:PORT", serves until SIGTERM.
"""

from __future__ import annotations

import asyncio

import grpc

from harness.lifetime import stop_event

HOST = "127.0.0.1"
SERVICE, METHOD = "bench.Echo", "Echo"
PATH = f"/{SERVICE}/{METHOD}"


async def _echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


async def main() -> None:
    stop = stop_event()
    server = grpc.aio.server()
    # No (de)serializers: the handler gets and returns the raw bytes.
    handler = grpc.unary_unary_rpc_method_handler(_echo)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {METHOD: handler}),))
    port = server.add_insecure_port(f"{HOST}:0")
    await server.start()
    print(f"listening on {HOST}:{port}", flush=True)
    await stop.wait()
    await server.stop(0)


if __name__ == "__main__":
    asyncio.run(main())
