"""Load generator, the end-to-end baseline: a bare aiohttp loop that signs and POSTs `--count` bodies.

Each POST carries a `--body-bytes` JSON body (the size the service's deliveries had) under a fresh
webhook-id, signed with Standard Webhooks (HMAC-SHA256) at send time, `--concurrency` in flight (the
service's worker count) through one pooled session, to the same receiver the service delivers to;
with `--rate`, POST n starts no sooner than n / rate s after the first (a paced load, not a
saturating one). `--concurrency` warm-up POSTs open the connections first; touches `--started-file`
when timing starts.

Prints one JSON line: posts, seconds (first timed POST start -> last answer), errors, first_error.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import time
from pathlib import Path

import aiohttp

from harness import signing
from harness.lifetime import stop_event
from load.loop import emit


def body_of(size: int) -> bytes:
    empty = json.dumps({"type": "bench.created", "timestamp": "2025-01-01T00:00:00Z", "data": {"pad": ""}})
    padded = json.dumps(
        {"type": "bench.created", "timestamp": "2025-01-01T00:00:00Z", "data": {"pad": "x" * max(0, size - len(empty))}}
    )
    return padded.encode()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float, default=0.0, help="posts/s; 0: as fast as the answers come")
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--body-bytes", type=int, default=300)
    parser.add_argument("--limit", type=float, default=60.0)
    parser.add_argument("--started-file", default="")
    args = parser.parse_args()
    stop = stop_event()
    signing_key = signing.key(signing.SECRET)
    body = body_of(args.body_bytes)
    ids = (f"msg_bare_{os.getpid()}_{n}" for n in itertools.count())
    posted = errors = 0
    first_error = ""
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector, headers={"Content-Type": "application/json"}) as session:

        async def post() -> None:
            nonlocal posted, errors, first_error
            headers = signing.headers(signing_key, next(ids), body)
            try:
                async with session.post(args.url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"HTTP {response.status}")
                posted += 1
            except Exception as error:  # noqa: BLE001 - reported; the orchestrator fails the run
                errors += 1
                first_error = first_error or f"{type(error).__name__}: {error}"[:500]

        async def in_lanes(count: int, rate: float = 0.0) -> None:
            tickets = iter(range(count))  # shared: each lane takes the next one
            start = time.monotonic()

            async def lane() -> None:
                for n in tickets:
                    if stop.is_set():
                        return
                    if rate > 0:
                        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
                    await post()

            await asyncio.wait_for(asyncio.gather(*(lane() for _ in range(args.concurrency))), args.limit)

        await in_lanes(args.concurrency)  # warm-up: opens the connections
        posted = errors = 0
        if args.started_file:
            await asyncio.to_thread(Path(args.started_file).touch)
        started = time.monotonic()
        await in_lanes(args.count, args.rate)
        seconds = time.monotonic() - started
    emit({"posts": posted, "seconds": seconds, "errors": errors, "first_error": first_error})


if __name__ == "__main__":
    asyncio.run(main())
