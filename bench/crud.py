"""GetWebhook and CreateWebhook throughput, each against a bare grpc.aio echo of the same size.

Run: `.venv/bin/python bench/crud.py`. Both servers live in this process on loopback. Each load
keeps CONCURRENCY calls in flight over CHANNELS channels; the loads take turns (ROUNDS turns of
SECONDS each after a short warm-up), so background noise lands on a figure and its baseline alike.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

import common  # first: it sets gRPC's environment before grpc loads
import grpc
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from cpod.integration.v1 import webhook_service_pb2_grpc as rpc

CONCURRENCY = 64
CHANNELS = 2
ROUNDS = 5
SECONDS = 1.0
WARMUP = 0.25
MAX_OPS = 100_000
ECHO_METHOD = "/bench.Echo/Echo"
TARGET_URL = "http://127.0.0.1:9/hook"  # never called: no workers run here

Call = Callable[[], Awaitable[object]]


async def _echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    # async like webhookd's servicers: a sync handler would run in a thread pool instead.
    return request


def _identity(data: bytes) -> bytes:
    return data


async def echo_server() -> tuple[grpc.aio.Server, str]:
    """The baseline: one unary method that hands its bytes back, no interceptors, no protobuf."""
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(_echo, request_deserializer=_identity, response_serializer=_identity)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", {"Echo": handler}),))
    port = server.add_insecure_port(f"{common.HOST}:0")
    await server.start()
    return server, f"{common.HOST}:{port}"


def new_webhook(n: int) -> pb.CreateWebhookRequest:
    return pb.CreateWebhookRequest(
        webhook=wpb.Webhook(name=f"bench-{n}", url=TARGET_URL, event_types=["bench.*"], tags=["bench"])
    )


def echo_call(channels: list[grpc.aio.Channel], size: int) -> Call:
    payload = b"x" * size
    methods = itertools.cycle(
        [c.unary_unary(ECHO_METHOD, request_serializer=_identity, response_deserializer=_identity) for c in channels]
    )
    return lambda: next(methods)(payload)


def webhook_calls(bench: common.Stack, channels: list[grpc.aio.Channel], ids: list[str]) -> tuple[Call, Call]:
    stubs = itertools.cycle([rpc.WebhookServiceStub(c) for c in channels])
    gets = itertools.cycle([pb.GetWebhookRequest(id=webhook_id) for webhook_id in ids])
    numbers = itertools.count(len(ids))

    def get() -> Awaitable[object]:
        return next(stubs).GetWebhook(next(gets), metadata=bench.metadata)

    def create() -> Awaitable[object]:
        return next(stubs).CreateWebhook(new_webhook(next(numbers)), metadata=bench.metadata)

    return get, create


async def main() -> None:
    async with common.stack() as bench:
        created = [await bench.stub.CreateWebhook(new_webhook(n), metadata=bench.metadata) for n in range(CONCURRENCY)]
        ids = [c.webhook.id for c in created]
        sample = await bench.stub.GetWebhook(pb.GetWebhookRequest(id=ids[0]), metadata=bench.metadata)
        size = sample.ByteSize()
        server, echo_target = await echo_server()
        echo_channels = [grpc.aio.insecure_channel(echo_target) for _ in range(CHANNELS)]
        service_channels = [grpc.aio.insecure_channel(bench.service.grpc_target) for _ in range(CHANNELS)]
        try:
            get, create = webhook_calls(bench, service_channels, ids)
            rates = await common.alternating(
                {"echo": echo_call(echo_channels, size), "get": get, "create": create},
                rounds=ROUNDS,
                concurrency=CONCURRENCY,
                warmup=WARMUP,
                seconds=SECONDS,
                max_ops=MAX_OPS,
            )
        finally:
            for channel in echo_channels + service_channels:
                await channel.close()
            await server.stop(None)
    common.header(
        "webhookd CRUD throughput",
        f"{CONCURRENCY} in flight over {CHANNELS} channels, {ROUNDS}x{SECONDS:.0f} s each; "
        f"baseline: bare grpc.aio echo of {size} B; ratio = webhookd / baseline",
    )
    common.rate_line("GetWebhook", rates["get"], rates["echo"])
    common.rate_line("CreateWebhook", rates["create"], rates["echo"])


if __name__ == "__main__":
    asyncio.run(main())
