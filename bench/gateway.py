"""REST gateway throughput against gRPC: GetWebhook and CreateWebhook as HTTP/JSON through the
gateway (httpx) and as the same calls over gRPC (the generated stubs), in the same run.

Run: `.venv/bin/python bench/gateway.py`. The service, the gateway (as `webhookd serve` runs them,
one event loop, one metrics registry) and both clients live in this process on loopback, on an
embedded PostgreSQL and an ephemeral OpenBao in a temp dir. Each load keeps CONCURRENCY calls in
flight; the loads take turns (ROUNDS turns of SECONDS each after a short warm-up), so background
noise lands on a figure and its baseline alike. Ratio = REST / gRPC: the gateway's cost (JSON in and
out, one more hop, the HTTP server) shows as how far below 1 it is.

The REST load runs on HTTP_CLIENTS httpx clients of CONCURRENCY / HTTP_CLIENTS connections each:
httpx's pool does work per request in proportion to its connections, and one client holding all 64
measures mostly itself (GET /healthz through one such client is slower than a REST GetWebhook).
The /healthz line is that floor: the same clients and HTTP server, no RPC behind it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

import common
import grpc
import httpx
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from cpod.integration.v1 import webhook_service_pb2_grpc as rpc

from webhookd.app import Gateway

CONCURRENCY = 64
CHANNELS = 2
HTTP_CLIENTS = 8
ROUNDS = 5
SECONDS = 2.0
WARMUP = 0.5
MAX_OPS = 200_000
WEBHOOKS = "/api/v1/integration/webhooks"
TARGET_URL = "http://127.0.0.1:9/hook"  # never called: no workers run here

Call = Callable[[], Awaitable[object]]


def new_webhook(n: int) -> dict[str, object]:
    return {"name": f"bench-{n}", "url": TARGET_URL, "event_types": ["bench.*"], "tags": ["bench"]}


def grpc_calls(stack: common.Stack, channels: list[grpc.aio.Channel], ids: list[str]) -> tuple[Call, Call]:
    stubs = itertools.cycle([rpc.WebhookServiceStub(c) for c in channels])
    gets = itertools.cycle([pb.GetWebhookRequest(id=webhook_id) for webhook_id in ids])
    numbers = itertools.count(1_000_000)

    def get() -> Awaitable[object]:
        return next(stubs).GetWebhook(next(gets), metadata=stack.metadata)

    def create() -> Awaitable[object]:
        request = pb.CreateWebhookRequest(webhook=wpb.Webhook(**new_webhook(next(numbers))))
        return next(stubs).CreateWebhook(request, metadata=stack.metadata)

    return get, create


def rest_calls(clients: list[httpx.AsyncClient], ids: list[str]) -> tuple[Call, Call, Call]:
    rotation = itertools.cycle(clients)
    paths = itertools.cycle([f"{WEBHOOKS}/{webhook_id}" for webhook_id in ids])
    numbers = itertools.count(2_000_000)

    async def get() -> object:
        response = await next(rotation).get(next(paths))
        response.raise_for_status()  # a failed call must not count as throughput
        return response.json()

    async def create() -> object:
        response = await next(rotation).post(WEBHOOKS, json={"webhook": new_webhook(next(numbers))})
        response.raise_for_status()
        return response.json()

    async def health() -> object:
        response = await next(rotation).get("/healthz")
        response.raise_for_status()
        return response.json()

    return get, create, health


async def main() -> None:
    async with common.stack() as stack:
        gateway = Gateway(stack.settings, stack.service.local_channel(), metrics=stack.service.metrics)
        await gateway.start()
        created = [
            await stack.stub.CreateWebhook(
                pb.CreateWebhookRequest(webhook=wpb.Webhook(**new_webhook(n))),
                metadata=stack.metadata,
            )
            for n in range(CONCURRENCY)
        ]
        ids = [c.webhook.id for c in created]
        channels = [grpc.aio.insecure_channel(stack.service.grpc_target) for _ in range(CHANNELS)]
        per_client = CONCURRENCY // HTTP_CLIENTS
        clients = [
            httpx.AsyncClient(
                base_url=f"http://{common.HOST}:{gateway.port}",
                headers=dict(stack.metadata),
                limits=httpx.Limits(max_connections=per_client, max_keepalive_connections=per_client),
                timeout=30.0,
            )
            for _ in range(HTTP_CLIENTS)
        ]
        try:
            grpc_get, grpc_create = grpc_calls(stack, channels, ids)
            rest_get, rest_create, rest_health = rest_calls(clients, ids)
            rates = await common.alternating(
                {
                    "grpc_get": grpc_get,
                    "rest_get": rest_get,
                    "grpc_create": grpc_create,
                    "rest_create": rest_create,
                    "rest_health": rest_health,
                },
                rounds=ROUNDS,
                concurrency=CONCURRENCY,
                warmup=WARMUP,
                seconds=SECONDS,
                max_ops=MAX_OPS,
            )
        finally:
            for client in clients:
                await client.aclose()
            for channel in channels:
                await channel.close()
            await gateway.stop()
    common.header(
        "REST gateway vs gRPC",
        f"{CONCURRENCY} in flight ({HTTP_CLIENTS} httpx clients), {ROUNDS}x{SECONDS:.0f} s each, loopback, "
        "one process; "
        "baseline: the same call over gRPC (generated stubs); ratio = REST / gRPC",
    )
    common.rate_line("REST GetWebhook", rates["rest_get"], rates["grpc_get"])
    common.rate_line("REST CreateWebhook", rates["rest_create"], rates["grpc_create"])
    common.rate_line("HTTP floor: GET /healthz (no RPC) vs gRPC GetWebhook", rates["rest_health"], rates["grpc_get"])


if __name__ == "__main__":
    asyncio.run(main())
