"""Inbound webhooks: accepted requests per second vs a bare Starlette handler on the same server stack.

Run: `.venv/bin/python bench/inbound.py`. Everything lives in this process on loopback: the gRPC service,
the REST gateway serving the inbound route as `webhookd serve` does (webhookd.app.Gateway with the
service's HTTP routes), and the baseline, a Starlette app whose one route reads the body and answers 200,
served by the same webhookd.http.server.HttpServer (uvicorn). One aiohttp session sends both loads
the same way: CONCURRENCY requests in flight, each a ~1 KiB JSON body signed with the Standard Webhooks
library under a fresh webhook-id, so every webhookd request is verified and committed, never a duplicate.
The rate limit is raised out of the way. The loads take turns (ROUNDS turns of SECONDS each after a
short warm-up), so background noise lands on a figure and its baseline alike.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import aiohttp
import common  # first: it sets gRPC's environment before grpc loads
import psycopg
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from standardwebhooks.webhooks import Webhook as StandardWebhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from webhookd.app import Gateway
from webhookd.http.server import HttpServer

CONCURRENCY = 64
ROUNDS = 3
SECONDS = 2.0
WARMUP = 1.0
MAX_OPS = 200_000
BODY = json.dumps({"type": "order.paid", "data": {"id": "ord_1", "lines": ["x" * 60] * 12}})

Call = Callable[[], Awaitable[object]]


async def _bare(request: Request) -> Response:
    await request.body()
    return Response(b'{"status":"accepted"}', media_type="application/json")


def bare_app() -> Starlette:
    return Starlette(routes=[Route("/api/v1/integration/inbound/{webhook_id}", _bare, methods=["POST"])])


def signed_post(session: aiohttp.ClientSession, url: str, secret: str) -> Call:
    """A POST of BODY to `url` under a new webhook-id each time; anything but 200 accepted stops the bench."""
    signer = StandardWebhook(secret)
    numbers = itertools.count()
    body = BODY.encode()

    async def post() -> None:
        message_id = f"msg_{next(numbers)}"
        now = datetime.now(UTC)
        headers = {
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signer.sign(message_id, now, BODY),
            "content-type": "application/json",
        }
        async with session.post(url, data=body, headers=headers) as response:
            answer = await response.read()
            if response.status != 200 or b'"accepted"' not in answer:
                raise RuntimeError(f"{url} answered {response.status}: {answer[:200]!r}")

    return post


async def stored(bench: common.Stack, webhook_id: str) -> int:
    async with await psycopg.AsyncConnection.connect(bench.libpq_url) as connection:
        cursor = await connection.execute(
            "SELECT count(*) FROM inbound_events WHERE webhook_id = %s AND status = 'accepted'", (webhook_id,)
        )
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def main() -> None:
    async with common.stack(inbound_rate_per_second=1e9, inbound_burst=1_000_000) as bench:
        created = await bench.stub.CreateWebhook(
            pb.CreateWebhookRequest(webhook=wpb.Webhook(name="bench-in", direction=wpb.DIRECTION_INBOUND)),
            metadata=bench.metadata,
        )
        service = bench.service
        routes = service.http_routes()
        gateway = Gateway(bench.settings, service.local_channel(), extra_routes=routes, metrics=service.metrics)
        baseline = HttpServer(bare_app(), f"{common.HOST}:0")
        await gateway.start()
        await baseline.start()
        path = f"/api/v1/integration/inbound/{created.webhook.id}"
        try:
            connector = aiohttp.TCPConnector(limit=CONCURRENCY)
            async with aiohttp.ClientSession(connector=connector) as session:
                secret = created.signing_secret
                rates = await common.alternating(
                    {
                        "bare": signed_post(session, f"http://{common.HOST}:{baseline.port}{path}", secret),
                        "inbound": signed_post(session, f"http://{common.HOST}:{gateway.port}{path}", secret),
                    },
                    rounds=ROUNDS,
                    concurrency=CONCURRENCY,
                    warmup=WARMUP,
                    seconds=SECONDS,
                    max_ops=MAX_OPS,
                )
            receipts = await stored(bench, created.webhook.id)
        finally:
            await baseline.stop()
            await gateway.stop()
    common.header(
        "webhookd inbound throughput",
        f"{CONCURRENCY} requests in flight (one aiohttp session), {len(BODY)} B signed bodies, "
        f"{ROUNDS}x{SECONDS:.0f} s each; baseline: bare Starlette handler answering 200 on the same "
        f"uvicorn HttpServer; ratio = webhookd / baseline",
    )
    common.rate_line("accepted inbound requests", rates["inbound"], rates["bare"])
    print(f"receipts committed: {receipts:,} (every 200 counted above is among them)")


if __name__ == "__main__":
    asyncio.run(main())
