"""Load generator: a latency probe, from call start to the receiver getting the request.

  --mode publish  PublishEvent targeted at `--webhook` (which delivers to the receiver); the event id is
                  the delivery's webhook-id
  --mode post     a bare signed POST to `--url` (the receiver) under a fresh webhook-id

One call every `--pace` seconds, once `--wait-file` exists (so it runs with the load it probes), until
SIGTERM, `--max-samples` calls or `--limit` seconds. Then it asks the receiver when each webhook-id first
arrived (CLOCK_MONOTONIC, shared by every process on the machine), waiting up to `--settle` seconds for
stragglers. A probe that never arrives counts as taking until the wait ended (a lower bound).

Prints one JSON line: sent, missing, latencies_ms (start -> arrival, sorted), call_ms (the calls alone).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable

import aiohttp
from cpod.integration.v1 import webhook_service_pb2 as pb
from cpod.integration.v1 import webhook_service_pb2_grpc as rpc
from google.protobuf import struct_pb2

from harness import signing
from harness.lifetime import stop_event
from load.channels import close_channels, open_channels
from load.loop import emit

PROBE_EVENT_TYPE = "bench.probe"
Send = Callable[[int], Awaitable[str]]  # sends probe n, returns its webhook-id


async def wait_for_file(path: str, limit: float, stop: asyncio.Event) -> None:
    deadline = time.monotonic() + limit
    # Polled: another process creates the file, and that has no event to wait on.
    while path and not stop.is_set() and time.monotonic() < deadline:
        if await asyncio.to_thread(os.path.exists, path):
            return
        await asyncio.sleep(0.005)


async def arrivals(
    session: aiohttp.ClientSession, receiver: str, sent: dict[str, float], settle: float
) -> dict[str, float]:
    """{webhook-id: arrival} for the probes that arrived, waiting up to `settle` s for all of them."""
    deadline = time.monotonic() + settle
    while True:
        async with session.post(f"{receiver}/arrivals", json=list(sent)) as response:
            arrived: dict[str, float] = await response.json()
        if len(arrived) == len(sent) or time.monotonic() > deadline:
            return arrived
        await asyncio.sleep(0.1)


async def probe(send: Send, args: argparse.Namespace, stop: asyncio.Event) -> tuple[dict[str, float], list[float]]:
    await send(-1)  # warm: connections open, first-call costs paid
    await wait_for_file(args.wait_file, args.limit, stop)
    sent: dict[str, float] = {}
    calls: list[float] = []
    deadline = time.monotonic() + args.limit
    while not stop.is_set() and len(sent) < args.max_samples and time.monotonic() < deadline:
        started = time.monotonic()
        message_id = await send(len(sent))
        calls.append((time.monotonic() - started) * 1000)
        sent[message_id] = started
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), args.pace)
    return sent, calls


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["publish", "post"], required=True)
    parser.add_argument("--receiver", required=True, help="http://host:port of the receiver")
    parser.add_argument("--target", default="", help="publish: the service's gRPC host:port")
    parser.add_argument("--token", default="")
    parser.add_argument("--webhook", default="", help="publish: the probe webhook's id")
    parser.add_argument("--url", default="", help="post: where to POST")
    parser.add_argument("--pace", type=float, default=0.1)
    parser.add_argument("--max-samples", type=int, default=300)
    parser.add_argument("--limit", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--wait-file", default="")
    args = parser.parse_args()
    stop = stop_event()
    signing_key = signing.key(signing.SECRET)
    async with aiohttp.ClientSession() as session:
        if args.mode == "publish":
            channels = await open_channels(args.target, 1)
            stub = rpc.WebhookServiceStub(channels[0])
            metadata = (("authorization", f"Bearer {args.token}"),)

            async def send(n: int) -> str:
                payload = struct_pb2.Struct()
                payload.update({"probe": n})
                request = pb.PublishEventRequest(event_type=PROBE_EVENT_TYPE, payload=payload, webhook_id=args.webhook)
                return str((await stub.PublishEvent(request, metadata=metadata)).event_id)

            try:
                sent, calls = await probe(send, args, stop)
            finally:
                await close_channels(channels)
        else:
            body = b'{"type":"bench.probe","data":{"probe":0}}'

            async def send(n: int) -> str:
                message_id = f"msg_probe_{os.getpid()}_{n}"
                headers = {"Content-Type": "application/json", **signing.headers(signing_key, message_id, body)}
                async with session.post(args.url, data=body, headers=headers) as response:
                    await response.read()
                return message_id

            sent, calls = await probe(send, args, stop)
        arrived = await arrivals(session, args.receiver, sent, args.settle)
        gave_up = time.monotonic()
    latencies = sorted((arrived.get(key, gave_up) - started) * 1000 for key, started in sent.items())
    emit({"sent": len(sent), "missing": len(sent) - len(arrived), "latencies_ms": latencies, "call_ms": calls})


if __name__ == "__main__":
    asyncio.run(main())
