"""Delivery: end-to-end throughput, publish-to-first-attempt latency, and fan-out enqueue time.

Run: `.venv/bin/python bench/delivery.py`. Everything lives in this process on loopback: the gRPC
service, the DeliveryWorkers and an aiohttp receiver that answers 200. Baselines are the bare
operations the service's path is built from, measured in the same run:
  (a) deliveries/s, publish to last recorded success vs a bare loop that signs and POSTs the bodies;
  (b) PublishEvent call start to the receiver getting the request vs a bare POST's start to the same;
  (c) PublishEvent fanned out to FANOUT webhooks (no workers running) vs a bare COPY of as many rows.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import TypeVar

import aiohttp
import common  # before anything that loads grpc: it sets gRPC's environment
import psycopg
from aiohttp import web
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import struct_pb2

from webhookd.app import DeliveryWorkers
from webhookd.domain import ids
from webhookd.domain.signing import sign_headers
from webhookd.domain.webhooks import SignatureScheme

CONCURRENCY = 64
HOOKS = 10
EVENTS = 100  # each fanned out to HOOKS webhooks
WARMUP_EVENTS = 10
LATENCY_SAMPLES = 200
LATENCY_PACE = 0.005
FANOUT = 10_000
FANOUT_REPEATS = 3
WAIT_LIMIT = 30.0
# The service's engine may open 40 connections and the workers' up to 2 x min(workers, 32):
# more than PostgreSQL's default of 100 at 64 workers.
MAX_CONNECTIONS = 200
T = TypeVar("T")
SIGNING_SECRET = "whsec_" + "YmVuY2gtc2lnbmluZy1zZWNyZXQtMzItYnl0ZXMhIQ=="


class Receiver:
    """Answers 200 to every POST and notes when each event id (the webhook-id header) first arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.changed = asyncio.Condition()
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{common.HOST}:{self.port}/hook"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, common.HOST, 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        self.arrived.setdefault(request.headers.get("webhook-id", ""), time.perf_counter())
        await request.read()
        async with self.changed:
            self.changed.notify_all()
        return web.Response(text="ok")

    async def wait_for(self, event_ids: Iterable[str]) -> None:
        """Until every one of `event_ids` has arrived; at most WAIT_LIMIT seconds."""
        wanted = set(event_ids)
        async with asyncio.timeout(WAIT_LIMIT), self.changed:
            await self.changed.wait_for(lambda: wanted <= self.arrived.keys())


def payload(n: int) -> struct_pb2.Struct:
    data = struct_pb2.Struct()
    data.update({"n": n, "rfp_id": f"rfp_{n:08d}", "title": "benchmark event", "amount": 1234.5})
    return data


async def publish(
    bench: common.Stack, n: int, metadata: Iterable[tuple[str, str]] | None = None, webhook_id: str = ""
) -> str:
    request = pb.PublishEventRequest(event_type="bench.created", payload=payload(n), webhook_id=webhook_id)
    response = await bench.stub.PublishEvent(request, metadata=metadata or bench.metadata)
    return str(response.event_id)


async def in_parallel(count: int, job: Callable[[T], Awaitable[object]], items: Iterator[T]) -> None:
    """Runs `job(item)` for every item, `count` at a time."""

    async def lane() -> None:
        for item in items:
            await job(item)

    await asyncio.gather(*(lane() for _ in range(count)))


async def succeeded(bench: common.Stack, webhook_ids: list[str]) -> tuple[int, datetime | None]:
    async with await psycopg.AsyncConnection.connect(bench.libpq_url, autocommit=True) as connection:
        cursor = await connection.execute(
            "SELECT count(*), max(completed_at) FROM deliveries WHERE webhook_id = ANY(%s) AND status = 'succeeded'",
            (webhook_ids,),
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0]), row[1]


async def wait_succeeded(bench: common.Stack, webhook_ids: list[str], count: int) -> tuple[int, datetime]:
    """(deliveries succeeded, when the last one was recorded) once `count` have, or at WAIT_LIMIT."""
    deadline = time.monotonic() + WAIT_LIMIT
    while True:
        done, last = await succeeded(bench, webhook_ids)
        if last is not None and (done >= count or time.monotonic() > deadline):
            return done, last
        if time.monotonic() > deadline:
            raise TimeoutError(f"no delivery succeeded within {WAIT_LIMIT:.0f} s")
        await asyncio.sleep(0.05)


async def bare_posts(url: str, bodies: list[tuple[str, bytes]], concurrency: int) -> float:
    """Seconds to sign and POST every body, `concurrency` at a time, through one pooled session."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers={"Content-Type": "application/json"}) as session:

        async def post(item: tuple[str, bytes]) -> None:
            event_id, body = item
            headers = sign_headers(
                SignatureScheme.STANDARD_WEBHOOKS, [SIGNING_SECRET], event_id, int(time.time()), body
            )
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()

        await in_parallel(concurrency, post, iter(bodies[:concurrency]))  # warm the pool
        started = time.perf_counter()
        await in_parallel(concurrency, post, iter(bodies))
        return time.perf_counter() - started


async def event_bodies(bench: common.Stack, event_ids: list[str]) -> list[tuple[str, bytes]]:
    async with await psycopg.AsyncConnection.connect(bench.libpq_url, autocommit=True) as connection:
        cursor = await connection.execute("SELECT id, body FROM events WHERE id = ANY(%s)", (event_ids,))
        return [(event_id, bytes(body)) for event_id, body in await cursor.fetchall()]


async def throughput(bench: common.Stack, receiver: Receiver, webhook_ids: list[str]) -> tuple[float, float, str]:
    """(deliveries/s end to end, bare deliveries/s, a note on publishing and completeness)."""
    numbers = itertools.count()
    await in_parallel(CONCURRENCY, lambda _: publish(bench, next(numbers)), iter(range(WARMUP_EVENTS)))
    warm = WARMUP_EVENTS * len(webhook_ids)
    await wait_succeeded(bench, webhook_ids, warm)

    event_ids: list[str] = []

    async def publish_one(_: int) -> None:
        event_ids.append(await publish(bench, next(numbers)))

    started = time.time()
    await in_parallel(CONCURRENCY, publish_one, iter(range(EVENTS)))
    publishing = time.time() - started
    wanted = EVENTS * len(webhook_ids)
    done, last = await wait_succeeded(bench, webhook_ids, warm + wanted)
    e2e = (done - warm) / (last.timestamp() - started)

    bodies = await event_bodies(bench, event_ids)
    bare = len(webhook_ids) * len(bodies) / await bare_posts(receiver.url, bodies * len(webhook_ids), CONCURRENCY)
    note = f"publishing took {publishing:.2f} s = {EVENTS / publishing:,.0f} events/s"
    if done - warm < wanted:
        note += f"; only {done - warm} of {wanted} succeeded within {WAIT_LIMIT:.0f} s"
    return e2e, bare, note


async def latency(
    bench: common.Stack, receiver: Receiver, webhook_id: str
) -> tuple[list[float], list[float], list[float]]:
    """Milliseconds: PublishEvent call start to arrival at the receiver, the PublishEvent call alone, and
    a bare POST's start to its arrival."""
    published: dict[str, float] = {}
    calls: list[float] = []
    for n in range(LATENCY_SAMPLES):
        started = time.perf_counter()
        published[await publish(bench, n, webhook_id=webhook_id)] = started
        calls.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(LATENCY_PACE)
    await receiver.wait_for(published)
    via_service = [(receiver.arrived[event_id] - started) * 1000 for event_id, started in published.items()]

    bare: list[float] = []
    body = b'{"type":"bench.created","data":{}}'
    async with aiohttp.ClientSession(headers={"Content-Type": "application/json"}) as session:
        for n in range(LATENCY_SAMPLES + 10):
            event_id = f"bare_latency_{n}"
            started = time.perf_counter()
            headers = sign_headers(
                SignatureScheme.STANDARD_WEBHOOKS, [SIGNING_SECRET], event_id, int(time.time()), body
            )
            async with session.post(receiver.url, data=body, headers=headers) as response:
                await response.read()
            if n >= 10:  # the first few open the connection
                bare.append((receiver.arrived[event_id] - started) * 1000)
            await asyncio.sleep(LATENCY_PACE)
    return via_service, calls, bare


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind((common.HOST, 0))
        port: int = sock.getsockname()[1]
    return port


_FANOUT_WEBHOOKS = """
INSERT INTO webhooks (id, tenant_id, name, direction, url, event_types, signature_scheme, headers, enabled,
    retry_max_attempts, retry_backoff, retry_timeout_ms, connector_id, application_id, tags, source,
    source_type, vault_path, secret_fingerprint, created_at, updated_at, created_by, updated_by,
    schema_version, version, consecutive_failures)
SELECT 'whk_fanout' || lpad(g::text, 8, '0'), %(tenant)s, 'fanout ' || g, 'outbound', %(url)s, ARRAY['*'],
    'standard-webhooks', '{}'::jsonb, true, 8, 'exponential', 15000, '', '', ARRAY[]::text[], 'edm', 'api',
    'webhookd/tenants/' || %(tenant)s || '/webhooks/none', '', now(), now(), 'person_bench', 'person_bench',
    1, 1, 0
FROM generate_series(1, %(count)s) AS g
"""


async def fanout(bench: common.Stack) -> tuple[list[float], list[float]]:
    """Milliseconds to publish one event to FANOUT webhooks, and to COPY as many rows: FANOUT_REPEATS each."""
    tenant_id, metadata = common.new_tenant()
    async with await psycopg.AsyncConnection.connect(bench.libpq_url, autocommit=True) as connection:
        url = f"http://{common.HOST}:{closed_port()}/hook"
        await connection.execute(_FANOUT_WEBHOOKS, {"tenant": tenant_id, "url": url, "count": FANOUT})
        await connection.execute("CREATE TABLE bench_copy (LIKE deliveries INCLUDING DEFAULTS)")
        await connection.execute("ANALYZE webhooks")

        publish_ms: list[float] = []
        copy_ms: list[float] = []
        for n in range(FANOUT_REPEATS):
            started = time.perf_counter()
            event_id = await publish(bench, n, metadata)
            publish_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            await copy_rows(connection, tenant_id, event_id)
            copy_ms.append((time.perf_counter() - started) * 1000)
        cursor = await connection.execute("SELECT count(*) FROM deliveries WHERE tenant_id = %s", (tenant_id,))
        row = await cursor.fetchone()
        assert row is not None and row[0] == FANOUT * FANOUT_REPEATS, f"queued {row}"
    return publish_ms, copy_ms


async def copy_rows(connection: psycopg.AsyncConnection[object], tenant_id: str, event_id: str) -> None:
    """The baseline: FANOUT delivery-shaped rows in one COPY, built the way the publisher builds them."""
    now = datetime.now(UTC)
    columns = "id, tenant_id, app_id, event_id, webhook_id, status, attempts, next_attempt_at, created_at, updated_at"
    async with (
        connection.transaction(),
        connection.cursor() as cursor,
        cursor.copy(f"COPY bench_copy ({columns}) FROM STDIN") as copy,
    ):
        for n in range(FANOUT):
            row = (ids.new_id(ids.DELIVERY_PREFIX), tenant_id, None, event_id, f"whk_{n}", "pending", 0, now, now, now)
            await copy.write_row(row)


async def main() -> None:
    receiver = Receiver()
    await receiver.start()
    settings = {"workers": CONCURRENCY, "per_webhook_concurrency": CONCURRENCY, "allow_private_targets": True}
    try:
        async with common.stack(max_connections=MAX_CONNECTIONS, **settings) as bench:
            webhook_ids = []
            for n in range(HOOKS):
                webhook = wpb.Webhook(name=f"bench-{n}", url=receiver.url, event_types=["bench.*"])
                request = pb.CreateWebhookRequest(webhook=webhook, signing_secret=SIGNING_SECRET)
                webhook_ids.append((await bench.stub.CreateWebhook(request, metadata=bench.metadata)).webhook.id)
            workers = DeliveryWorkers(bench.settings, bench.backends)
            await workers.start()
            try:
                e2e, bare_rate, note = await throughput(bench, receiver, webhook_ids)
                via_service, calls, bare_latency = await latency(bench, receiver, webhook_ids[0])
            finally:
                await workers.stop()
            publish_ms, copy_ms = await fanout(bench)
    finally:
        await receiver.stop()

    common.header("webhookd delivery", f"{CONCURRENCY} workers, loopback; ratio = webhookd / baseline")
    common.rate_line(f"e2e deliveries ({EVENTS} events x {HOOKS} webhooks)", e2e, bare_rate)
    print(f"  ({note})")
    p50, p99 = common.percentile(via_service, 0.5), common.percentile(via_service, 0.99)
    b50, b99 = common.percentile(bare_latency, 0.5), common.percentile(bare_latency, 0.99)
    print(
        f"publish-to-first-attempt: p50 {p50:.2f} ms, p99 {p99:.2f} ms vs bare POST p50 {b50:.2f} ms,"
        f" p99 {b99:.2f} ms = ratio (p50) {p50 / b50:.1f}"
    )
    print(f"  (the PublishEvent call alone: p50 {common.percentile(calls, 0.5):.2f} ms)")
    common.time_line(
        f"enqueue 1 event x {FANOUT} webhooks (median of {FANOUT_REPEATS})",
        common.median(publish_ms),
        common.median(copy_ms),
    )


if __name__ == "__main__":
    asyncio.run(main())
