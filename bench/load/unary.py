"""Load generator: unary calls in a closed loop, over gRPC or REST. Prints one JSON line (load.loop).

Kinds:
  echo      the bare echo server's method with a `--size`-byte payload
  get       GetWebhook over gRPC, cycling through `--ids`
  create    CreateWebhook over gRPC (an http:// URL nothing calls: nothing is published)
  rest-get  GET /api/v1/integration/webhooks/{id} on the gateway, cycling through `--ids`, JSON decoded

gRPC calls are spread over `--channels` channels (one connection each); REST calls go through one aiohttp
session holding `--concurrency` connections. A call that fails (non-OK status, non-200) is an error, not throughput.

Run: `python -m load.unary --kind get --target 127.0.0.1:50051 --token T --ids whk_a,whk_b`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
from collections.abc import Awaitable, Callable

import aiohttp
import grpc
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from cpod.integration.v1 import webhook_service_pb2_grpc as rpc

from harness.lifetime import stop_event
from load.channels import close_channels, open_channels
from load.loop import closed_loop, emit
from servers.echo import PATH as ECHO_PATH

Call = Callable[[], Awaitable[object]]
UNUSED_URL = "http://127.0.0.1:9/hook"
WEBHOOKS_PATH = "/api/v1/integration/webhooks"


def grpc_call(kind: str, channels: list[grpc.aio.Channel], args: argparse.Namespace) -> Call:
    metadata = (("authorization", f"Bearer {args.token}"),)
    if kind == "echo":
        payload = b"x" * args.size
        methods = itertools.cycle([channel.unary_unary(ECHO_PATH) for channel in channels])
        return lambda: next(methods)(payload)
    stubs = itertools.cycle([rpc.WebhookServiceStub(channel) for channel in channels])
    if kind == "get":
        requests = itertools.cycle([pb.GetWebhookRequest(id=webhook_id) for webhook_id in args.ids.split(",")])
        return lambda: next(stubs).GetWebhook(next(requests), metadata=metadata)
    numbers = itertools.count()
    prefix = f"bench-{os.getpid()}"

    def create() -> Awaitable[object]:
        webhook = wpb.Webhook(name=f"{prefix}-{next(numbers)}", url=UNUSED_URL, event_types=["bench.*"], tags=["b"])
        call: Awaitable[object] = next(stubs).CreateWebhook(pb.CreateWebhookRequest(webhook=webhook), metadata=metadata)
        return call

    return create


def rest_get(session: aiohttp.ClientSession, args: argparse.Namespace) -> Call:
    urls = itertools.cycle([f"{args.target}{WEBHOOKS_PATH}/{webhook_id}" for webhook_id in args.ids.split(",")])

    async def get() -> None:
        async with session.get(next(urls)) as response:
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {(await response.read())[:200]!r}")
            await response.json()

    return get


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", choices=["echo", "get", "create", "rest-get"], required=True)
    parser.add_argument("--target", required=True, help="host:port (gRPC) or http://host:port (REST)")
    parser.add_argument("--token", default="")
    parser.add_argument("--ids", default="")
    parser.add_argument("--size", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--max-ops", type=int, default=200_000)
    args = parser.parse_args()
    stop = stop_event()
    loop_args = {
        "concurrency": args.concurrency,
        "warmup": args.warmup,
        "duration": args.seconds,
        "max_ops": args.max_ops,
        "stop": stop,
    }
    if args.kind == "rest-get":
        connector = aiohttp.TCPConnector(limit=args.concurrency)
        headers = {"Authorization": f"Bearer {args.token}"}
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
            emit(await closed_loop(rest_get(session, args), **loop_args))
        return
    channels = await open_channels(args.target, args.channels)
    try:
        emit(await closed_loop(grpc_call(args.kind, channels, args), **loop_args))
    finally:
        await close_channels(channels)


if __name__ == "__main__":
    asyncio.run(main())
