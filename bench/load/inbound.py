"""Load generator: signed inbound POSTs in a closed loop (load.loop), to the service or the bare handler.

Each request carries a `--body-bytes` JSON body under a fresh webhook-id, signed with Standard Webhooks
with `--secret` at send time, so the service verifies and commits every one (never a duplicate). Only
a 200 whose body says "accepted" counts; anything else is an error.

Run: `python -m load.inbound --url http://127.0.0.1:8080/api/v1/integration/inbound/whk_... --secret whsec_...`
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os

import aiohttp

from harness import signing
from harness.lifetime import stop_event
from load.loop import closed_loop, emit


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--body-bytes", type=int, default=1024)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--max-ops", type=int, default=200_000)
    args = parser.parse_args()
    stop = stop_event()
    signing_key = signing.key(args.secret)
    empty = len(json.dumps({"type": "order.paid", "data": {"pad": ""}}))
    body = json.dumps({"type": "order.paid", "data": {"pad": "x" * max(0, args.body_bytes - empty)}}).encode()
    ids = (f"msg_{os.getpid()}_{n}" for n in itertools.count())
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector, headers={"Content-Type": "application/json"}) as session:

        async def post() -> None:
            async with session.post(args.url, data=body, headers=signing.headers(signing_key, next(ids), body)) as r:
                answer = await r.read()
                if r.status != 200 or b'"accepted"' not in answer:
                    raise RuntimeError(f"HTTP {r.status}: {answer[:200]!r}")

        result = await closed_loop(
            post,
            concurrency=args.concurrency,
            warmup=args.warmup,
            duration=args.seconds,
            max_ops=args.max_ops,
            stop=stop,
        )
    emit(result)


if __name__ == "__main__":
    asyncio.run(main())
