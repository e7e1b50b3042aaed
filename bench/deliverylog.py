"""DeliveryLog: backlog replay rate against a bare grpc.aio stream, and live-tail latency.

Run: `.venv/bin/python bench/deliverylog.py`. The service, the bare server and every client live in
this process on loopback; attempt rows are written with plain SQL, as the workers would write them.
  (a) a stream without follow reading BACKLOG rows of one tenant vs a bare grpc.aio server-streaming
      RPC (generic handler, bytes in and out) sending as many messages of the same serialized size;
      the two take turns ROUNDS times so background noise lands on both alike;
  (b) with a follow stream open, LIVE rows committed one at a time PACE apart: commit returned to the
      entry received, p50/p99; the bare NOTIFY round trip (commit issued to notification received on a
      LISTEN connection) is printed beside it as the floor this path is built on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import common  # first: it sets gRPC's environment before grpc loads
import grpc
import psycopg
from cpod.integration.v1 import webhook_service_pb2 as pb
from ulid import ULID

from webhookd.ports import Topic

BACKLOG = 50_000
ROUNDS = 3
EXCERPT_BYTES = 200  # a short receiver answer, as most are
LIVE = 300
PACE = 0.005
WAIT_LIMIT = 30.0
BARE_METHOD = "/bench.Bare/Stream"

INSERT = """
INSERT INTO attempts (id, tenant_id, app_id, delivery_id, event_id, event_type, webhook_id, attempt, outcome,
    http_status, latency_ms, error, response_excerpt, next_attempt_at, occurred_at)
SELECT 'att_' || %(tag)s || n, %(tenant)s, NULL, 'dlv_' || %(tag)s || n, 'evt_' || %(tag)s || n, 'bench.event',
    'whk_bench', 1, 'succeeded', 200, 12, '', repeat('x', %(excerpt)s), NULL, clock_timestamp()
FROM generate_series(1, %(count)s) AS n
"""
INSERT_ONE = """
INSERT INTO attempts (id, tenant_id, app_id, delivery_id, event_id, event_type, webhook_id, attempt, outcome,
    http_status, latency_ms, error, response_excerpt, next_attempt_at, occurred_at)
VALUES ('att_' || %(delivery)s, %(tenant)s, NULL, %(delivery)s, 'evt_' || %(delivery)s, 'bench.event', 'whk_bench', 1,
    'succeeded', 200, 12, '', repeat('x', %(excerpt)s), NULL, clock_timestamp())
"""


def _identity(data: bytes) -> bytes:
    return data


async def bare_server(message: bytes, count: int) -> tuple[grpc.aio.Server, str]:
    """The baseline: one server-streaming method sending `count` copies of `message`, nothing else."""

    async def stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        for _ in range(count):
            yield message

    server = grpc.aio.server()
    handler = grpc.unary_stream_rpc_method_handler(
        stream, request_deserializer=_identity, response_serializer=_identity
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Bare", {"Stream": handler}),))
    port = server.add_insecure_port(f"{common.HOST}:0")
    await server.start()
    return server, f"{common.HOST}:{port}"


async def insert_rows(conninfo: str, tenant_id: str, count: int) -> list[str]:
    tag = f"{str(ULID()).lower()}_"
    async with await psycopg.AsyncConnection.connect(conninfo) as connection:
        await connection.execute(INSERT, {"tag": tag, "tenant": tenant_id, "excerpt": EXCERPT_BYTES, "count": count})
        await connection.execute(f"NOTIFY {Topic.ATTEMPTS.value}")
        await connection.commit()
    return [f"dlv_{tag}{n}" for n in range(1, count + 1)]


async def replay(bench: common.Stack) -> tuple[float, int]:
    """Seconds to read the whole backlog through DeliveryLog (no follow), and the first entry's size."""
    started = time.perf_counter()
    received = 0
    size = 0
    async for response in bench.stub.DeliveryLog(pb.DeliveryLogRequest(), metadata=bench.metadata):
        received += 1
        size = size or response.ByteSize()
    elapsed = time.perf_counter() - started
    assert received == BACKLOG, f"replayed {received} of {BACKLOG}"
    return elapsed, size


async def bare_replay(channel: grpc.aio.Channel) -> float:
    method = channel.unary_stream(BARE_METHOD, request_serializer=_identity, response_deserializer=_identity)
    started = time.perf_counter()
    received = 0
    async for _ in method(b""):
        received += 1
    elapsed = time.perf_counter() - started
    assert received == BACKLOG
    return elapsed


async def backlog_rates(bench: common.Stack) -> tuple[float, float, int]:
    """(webhookd entries/s, bare messages/s, message size): the best of ROUNDS alternating turns each."""
    await insert_rows(bench.libpq_url, bench.tenant_id, BACKLOG)
    _, size = await replay(bench)  # warm-up (caches, connections, the database's buffers) and the size
    server, target = await bare_server(b"x" * size, BACKLOG)
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            await bare_replay(channel)
            service_seconds, bare_seconds = [], []
            for _ in range(ROUNDS):
                service_seconds.append((await replay(bench))[0])
                bare_seconds.append(await bare_replay(channel))
    finally:
        await server.stop(None)
    return BACKLOG / min(service_seconds), BACKLOG / min(bare_seconds), size


async def live_tail_latencies(bench: common.Stack) -> list[float]:
    """Milliseconds from each row's commit returning to its entry arriving on a follow stream."""
    tenant_id, metadata = common.new_tenant()
    arrived: dict[str, float] = {}
    warm = asyncio.Event()
    done = asyncio.Event()

    async def follow() -> None:
        async for response in bench.stub.DeliveryLog(pb.DeliveryLogRequest(follow=True), metadata=metadata):
            arrived[response.entry.delivery_id] = time.perf_counter()
            warm.set()
            if len(arrived) == LIVE + 1:
                done.set()

    reader = asyncio.create_task(follow())
    committed: dict[str, float] = {}
    try:
        # One row first: the stream is open and following before anything is timed.
        await insert_rows(bench.libpq_url, tenant_id, 1)
        await asyncio.wait_for(warm.wait(), WAIT_LIMIT)
        async with await psycopg.AsyncConnection.connect(bench.libpq_url) as connection:
            for _ in range(LIVE):
                delivery_id = f"dlv_{str(ULID()).lower()}"
                await connection.execute(
                    INSERT_ONE, {"delivery": delivery_id, "tenant": tenant_id, "excerpt": EXCERPT_BYTES}
                )
                await connection.execute(f"NOTIFY {Topic.ATTEMPTS.value}")
                await connection.commit()
                committed[delivery_id] = time.perf_counter()
                await asyncio.sleep(PACE)
        await asyncio.wait_for(done.wait(), WAIT_LIMIT)
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    return [(arrived[key] - committed[key]) * 1000 for key in committed]


async def notify_latencies(conninfo: str) -> list[float]:
    """Milliseconds from a NOTIFY's commit being issued to a LISTEN connection receiving it."""
    arrived: dict[str, float] = {}
    committed: dict[str, float] = {}
    done = asyncio.Event()

    async def listen(connection: psycopg.AsyncConnection) -> None:
        async for notification in connection.notifies():
            arrived[notification.payload] = time.perf_counter()
            if len(arrived) == LIVE:
                done.set()

    async with (
        await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as listener,
        await psycopg.AsyncConnection.connect(conninfo) as sender,
    ):
        await listener.execute("LISTEN bench_round_trip")
        reader = asyncio.create_task(listen(listener))
        try:
            for n in range(LIVE):
                await sender.execute(f"NOTIFY bench_round_trip, '{n}'")
                # From the commit being issued: in one event loop the notification can be read before
                # the committing coroutine resumes, so "commit returned" would read as negative.
                committed[str(n)] = time.perf_counter()
                await sender.commit()
                await asyncio.sleep(PACE)
            await asyncio.wait_for(done.wait(), WAIT_LIMIT)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
    return [(arrived[key] - committed[key]) * 1000 for key in committed]


async def main() -> None:
    async with common.stack() as bench:
        service_rate, bare_rate, size = await backlog_rates(bench)
        tail = await live_tail_latencies(bench)
        notify = await notify_latencies(bench.libpq_url)
    common.header(
        "webhookd DeliveryLog",
        f"loopback, one process; backlog {BACKLOG:,} entries of {size} B, best of {ROUNDS}; "
        f"baseline: bare grpc.aio stream of the same size; ratio = webhookd / baseline",
    )
    common.rate_line("backlog replay (entries)", service_rate, bare_rate)
    print(
        f"live tail, commit returned -> entry received ({LIVE} rows, {PACE * 1000:.0f} ms apart): "
        f"p50 {common.percentile(tail, 0.5):.2f} ms, p99 {common.percentile(tail, 0.99):.2f} ms"
    )
    print(
        f"reference: bare NOTIFY, commit issued -> LISTEN received: p50 {common.percentile(notify, 0.5):.2f} ms, "
        f"p99 {common.percentile(notify, 0.99):.2f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
