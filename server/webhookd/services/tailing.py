"""Reading an append-only log by position: the backlog in batches, then live on notifications."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from webhookd.domain.errors import ResourceExhausted
from webhookd.domain.history import LogPosition, LogRead, server_shutting_down
from webhookd.observability.metrics import StreamMetrics
from webhookd.ports import Notifications, StreamLeases, Topic

T = TypeVar("T")

# Entries held per stream at once: the next batch is read only when this one is sent, so a slow
# reader slows its own reads instead of growing a buffer.
BATCH = 200
# Rows held back behind a still-running transaction need no NOTIFY to become readable: a follower
# whose last read held some back re-checks this often (an idle one waits for a notification).
RECHECK_SECONDS = 1.0
# An idle follower reads again this often all the same: an entry whose NOTIFY was lost (its writer
# killed between COMMIT and the notification it sends after) comes within this, not at the tenant's
# next write. 200 idle streams cost ~7 reads/s, where a re-check every second cost ~190.
IDLE_RECHECK_SECONDS = 30.0


class StreamSlots:
    """At most `per_tenant` open streams per tenant (log and inbound streams alike), counted across
    every process through `leases`; and the end of them all when the server stops (`close`)."""

    def __init__(self, leases: StreamLeases, per_tenant: int, *, metrics: StreamMetrics | None = None) -> None:
        self._leases = leases
        self._per_tenant = per_tenant
        self._metrics = metrics
        self._closing = asyncio.Event()

    def close(self) -> None:
        """Ends every open stream at its next entry or wake-up, UNAVAILABLE, and refuses new ones: a
        following stream never ends by itself, and the server's shutdown would wait all its grace for it."""
        self._closing.set()

    @contextlib.asynccontextmanager
    async def hold(self, tenant_id: str) -> AsyncIterator[asyncio.Event]:
        """Yields the event set once the streams must end (`tail`'s `closing`)."""
        if self._closing.is_set():
            raise server_shutting_down()
        lease = await self._leases.acquire(tenant_id, self._per_tenant)
        if lease is None:
            raise ResourceExhausted(
                f"at most {self._per_tenant} streams per tenant may be open at once", retry_after_seconds=5
            )
        try:
            if self._metrics is None:
                yield self._closing
            else:
                with self._metrics.open("grpc"):
                    yield self._closing
        finally:
            # Shielded: a stream ends by cancellation, and its place must still be given back.
            await asyncio.shield(self._leases.release(lease))


async def tail(
    read: Callable[[LogPosition | None, int], Awaitable[LogRead[T]]],
    position_of: Callable[[T], LogPosition],
    *,
    after: LogPosition | None,
    follow: bool,
    notifications: Notifications,
    topic: Topic,
    key: str,
    closing: asyncio.Event,
) -> AsyncIterator[T]:
    """Every entry after `after` in order; with `follow`, then new ones as they are written
    (`topic` is the notification their writers send, naming `key`: the tenant whose log this is).
    Ends UNAVAILABLE once `closing` is set."""
    if not follow:
        async for entry in _backlog(read, position_of, after):
            if closing.is_set():
                raise server_shutting_down()
            yield entry
        return
    held_back = False

    async def read_noting_held_back(position: LogPosition | None, limit: int) -> LogRead[T]:
        nonlocal held_back
        result = await read(position, limit)
        held_back = result.held_back  # the backlog's last read is the one that counts
        return result

    # Subscribed before the first read: a notification between a read and the wait is never missed.
    async with notifications.subscribe(topic, key) as wake:
        position = after
        while True:
            wake.clear()
            async for entry in _backlog(read_noting_held_back, position_of, position):
                if closing.is_set():
                    raise server_shutting_down()
                position = position_of(entry)
                yield entry
            # Otherwise every entry still to come is announced (its writer notifies once it commits),
            # unless its writer died before it could.
            recheck = RECHECK_SECONDS if held_back else IDLE_RECHECK_SECONDS
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(recheck):
                    await _first_set(wake, closing)
            if closing.is_set():
                raise server_shutting_down()


async def _first_set(*events: asyncio.Event) -> None:
    """Returns once any of `events` is set."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


async def _backlog(
    read: Callable[[LogPosition | None, int], Awaitable[LogRead[T]]],
    position_of: Callable[[T], LogPosition],
    after: LogPosition | None,
) -> AsyncIterator[T]:
    """Batch by batch; a full batch starts the read of the next before its entries are sent, so the
    database works while the reader is served (one read ahead at most: the batch bound holds)."""
    entries = (await read(after, BATCH)).entries
    while True:
        ahead = asyncio.ensure_future(read(position_of(entries[-1]), BATCH)) if len(entries) == BATCH else None
        try:
            for entry in entries:
                yield entry
        except BaseException:  # the reader stopped (GeneratorExit, cancelled): the read ahead is moot
            if ahead is not None:
                ahead.cancel()
                ahead.add_done_callback(_outcome_unwanted)
            raise
        if ahead is None:
            return
        entries = (await ahead).entries
        if not entries:
            return


def _outcome_unwanted(task: asyncio.Future[Any]) -> None:
    """Marks a dropped read's error as seen, so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()
