"""Load generator: read one server stream to its end and time it.

  --kind log   DeliveryLog without follow: the tenant's whole backlog, `--count` entries expected
  --kind bare  the bare stream server's method, asked for `--count` messages of `--size` bytes

Prints one JSON line shaped like load.loop's: ops (messages), seconds (call start -> last message),
calls, errors (1 when the stream ended short), first_error, and size (the first message's bytes).
"""

from __future__ import annotations

import argparse
import asyncio
import time

from cpod.integration.v1 import webhook_service_pb2 as pb
from cpod.integration.v1 import webhook_service_pb2_grpc as rpc

from harness.lifetime import stop_event
from load.channels import close_channels, open_channels
from load.loop import emit
from servers.stream import PATH as STREAM_PATH


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", choices=["log", "bare"], required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--token", default="")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--size", type=int, default=0)
    parser.add_argument("--limit", type=float, default=60.0)
    args = parser.parse_args()
    stop = stop_event()
    channels = await open_channels(args.target, 1)
    messages = size = 0
    try:
        if args.kind == "log":
            stub = rpc.WebhookServiceStub(channels[0])
            metadata = (("authorization", f"Bearer {args.token}"),)
            call = stub.DeliveryLog(pb.DeliveryLogRequest(), metadata=metadata, timeout=args.limit)
        else:
            method = channels[0].unary_stream(STREAM_PATH)
            call = method(f"{args.count} {args.size}".encode(), timeout=args.limit)
        started = time.perf_counter()
        async for message in call:
            messages += 1
            if not size:
                size = message.ByteSize() if args.kind == "log" else len(message)
            if stop.is_set():
                call.cancel()
                break
        seconds = time.perf_counter() - started
    finally:
        await close_channels(channels)
    short = "" if messages == args.count else f"read {messages} of {args.count} messages"
    emit(
        {
            "ops": messages,
            "seconds": seconds,
            "calls": messages,
            "errors": int(bool(short)),
            "first_error": short,
            "size": size,
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
