"""DeliveryLog flow control: listeners released on cancel, slow readers bounded, many followers, a cap.

The server runs in the test's process, so its subscribers (`service.core.notifications`) and its Python heap
(`tracemalloc`) are observable directly; PostgreSQL shows the LISTEN connection in pg_stat_activity.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from cpod.integration.v1 import webhook_service_pb2 as pb
from sqlalchemy import text
from ulid import ULID
from webhook_calls import rpc_error

from log_streams import Tail, until
from support import make_caller
from webhookd.ports import Topic

LISTENERS = (
    "SELECT count(*) AS n FROM pg_stat_activity"
    f" WHERE datname = current_database() AND query LIKE 'LISTEN {Topic.ATTEMPTS.value}%'"
)
# Rows with a 10 KB response excerpt each: 2,000 of them are 20 MB if a stream buffered them.
INSERT_ATTEMPTS = text(
    """
INSERT INTO attempts (id, tenant_id, app_id, delivery_id, event_id, event_type, webhook_id, attempt, outcome,
    http_status, latency_ms, error, response_excerpt, next_attempt_at, occurred_at)
SELECT 'att_' || :tag || n, :tenant, NULL, 'dlv_' || :tag || n, 'evt_' || :tag || n, 'flow.test', 'whk_sql', 1,
    'succeeded', 200, 7, '', repeat('x', :excerpt), NULL, clock_timestamp()
FROM generate_series(1, :count) AS n
"""
)


async def committed_attempts(database: Any, tenant_id: str, count: int = 1, *, excerpt: int = 2) -> list[str]:
    """Commits `count` attempt rows for the tenant in one transaction and wakes the followers."""
    tag = f"{str(ULID()).lower()}_"
    async with database.engine.begin() as connection:
        await connection.execute(INSERT_ATTEMPTS, {"tag": tag, "tenant": tenant_id, "excerpt": excerpt, "count": count})
    database.notify(Topic.ATTEMPTS)
    return [f"dlv_{tag}{n}" for n in range(1, count + 1)]


async def read_through(caller: Any, within: float = 60.0) -> int:
    """Reads the tenant's whole log once, without following, keeping nothing; returns how many entries.

    When it returns, the server has read every row from the database and sent it to a reader that reads:
    a stalled follower of the same rows has had as long to read (and, were it buffering, hold) them all."""

    async def count() -> int:
        return sum([1 async for _ in caller.DeliveryLog(pb.DeliveryLogRequest())])

    return await asyncio.wait_for(count(), within)


async def listeners(database: Any, *, becomes: int, within: float = 10.0) -> None:
    """Waits until PostgreSQL shows `becomes` LISTEN connections for the attempt log (bounded)."""
    await database.wait_for(LISTENERS, lambda rows: rows[0]["n"] == becomes, within=within)


@pytest.fixture
async def follow(service: Any) -> AsyncIterator[Callable[[Any], Tail]]:
    """Opens follow streams for the test, starting from a hub without subscribers so that counts are
    exact; whatever the test leaves open is cancelled after it."""
    await until(lambda: service.core.notifications.subscribers(Topic.ATTEMPTS) == 0)
    opened: list[Tail] = []

    def open_stream(caller: Any) -> Tail:
        opened.append(Tail(caller.DeliveryLog(pb.DeliveryLogRequest(follow=True))))
        return opened[-1]

    yield open_stream
    for tail in opened:
        await tail.close()


async def test_cancelled_streams_release_the_database_listener(follow, service, caller, database) -> None:
    tails = [follow(caller) for _ in range(3)]
    await until(lambda: service.core.notifications.subscribers(Topic.ATTEMPTS) == 3)
    assert service.core.notifications.listening(Topic.ATTEMPTS)
    await listeners(database, becomes=1)  # one connection, however many followers

    for tail in tails:
        await tail.close()
    await until(lambda: service.core.notifications.subscribers(Topic.ATTEMPTS) == 0, within=5)
    assert not service.core.notifications.listening(Topic.ATTEMPTS)
    await listeners(database, becomes=0, within=5)


@pytest.mark.slow
async def test_slow_reader_keeps_server_memory_bounded(follow, service, caller, database) -> None:
    await committed_attempts(database, caller.tenant_id)
    call = caller.DeliveryLog(pb.DeliveryLogRequest(follow=True))
    try:
        await asyncio.wait_for(call.read(), 15)
        gc.collect()
        tracemalloc.start()
        try:
            baseline, _ = tracemalloc.get_traced_memory()
            written = await committed_attempts(database, caller.tenant_id, 2000, excerpt=10_000)
            # The reader stalls while the server reads and sends what it may.
            assert await read_through(caller) == 1 + len(written)
            gc.collect()
            stalled, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        growth_mb = (stalled - baseline) / 1e6
        # A stream that buffered what its reader has not taken would hold 20 MB here.
        assert growth_mb < 8, f"the server holds {growth_mb:.1f} MB for a stalled reader"

        received = [(await asyncio.wait_for(call.read(), 15)).entry for _ in written]
        assert [entry.delivery_id for entry in received] == written
        assert all(len(entry.response_excerpt) == 10_000 for entry in received)
    finally:
        call.cancel()
    await until(lambda: service.core.notifications.subscribers(Topic.ATTEMPTS) == 0, within=5)


@pytest.mark.slow
async def test_cancelling_a_stalled_stream_releases_it_at_once(follow, service, caller, database) -> None:
    await committed_attempts(database, caller.tenant_id, 2000, excerpt=10_000)
    stalled = caller.DeliveryLog(pb.DeliveryLogRequest(follow=True))
    try:
        await asyncio.wait_for(stalled.read(), 15)
        # Once the same rows went through to a reader that reads, the server has sent the stalled one what
        # it may and is blocked on it.
        assert await read_through(caller) == 2000
        assert service.core.notifications.subscribers(Topic.ATTEMPTS) == 1
    finally:
        stalled.cancel()
    await until(lambda: service.core.notifications.subscribers(Topic.ATTEMPTS) == 0, within=5)
    await listeners(database, becomes=0, within=5)


async def test_hundred_followers_on_one_channel_all_receive_a_live_entry(follow, service, channel, database) -> None:
    callers = [make_caller(channel, subject="person_1") for _ in range(5)]
    tails = [follow(caller) for caller in callers for _ in range(20)]
    await until(lambda: service.core.notifications.subscribers(Topic.ATTEMPTS) == 100, within=20)
    written = {caller.tenant_id: await committed_attempts(database, caller.tenant_id) for caller in callers}
    for index, tail in enumerate(tails):
        [entry] = await tail.wait_for(1, within=20)
        assert entry.delivery_id == written[callers[index // 20].tenant_id][0]

    for tail in tails:
        await tail.close()
    await until(lambda: service.core.notifications.subscribers(Topic.ATTEMPTS) == 0, within=5)


async def test_streams_beyond_the_tenants_cap_are_resource_exhausted(
    follow, service, channel, settings, database
) -> None:
    cap = settings.max_streams_per_tenant
    caller = make_caller(channel, subject="person_1")
    tails = [follow(caller) for _ in range(cap)]
    await until(lambda: service.core.notifications.subscribers(Topic.ATTEMPTS) == cap)
    error = await rpc_error(caller.DeliveryLog(pb.DeliveryLogRequest(follow=True)).read())
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    # Another tenant is not held back by this one's streams.
    follow(make_caller(channel, subject="person_2"))
    await until(lambda: service.core.notifications.subscribers(Topic.ATTEMPTS) == cap + 1)
    # A closed stream gives its place back.
    await tails[0].close()
    # Its place is given back after it unsubscribes, by a statement of its own: waited for, not raced.
    places = "SELECT count(*) FROM stream_leases WHERE tenant_id = :tenant_id"
    await database.wait_for(places, lambda rows: rows[0]["count"] == cap - 1, tenant_id=caller.tenant_id)
    follow(caller)
    await until(lambda: service.core.notifications.subscribers(Topic.ATTEMPTS) == cap + 1)
