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
    progress = _Progress(after)
    if not follow:
        async for entry in _backlog(read, position_of, progress, closing):
            if closing.is_set():
                raise server_shutting_down()
            yield entry
        return
    # Subscribed before the first read: a notification between a read and the wait is never missed.
    async with notifications.subscribe(topic, key) as wake:
        while True:
            wake.clear()
            async for entry in _backlog(read, position_of, progress, closing):
                if closing.is_set():
                    raise server_shutting_down()
                yield entry
            # Otherwise every entry still to come is announced (its writer notifies once it commits),
            # unless its writer died before it could.
            recheck = RECHECK_SECONDS if progress.held_back else IDLE_RECHECK_SECONDS
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(recheck):
                    await _first_set(wake, closing)
            if closing.is_set():
                raise server_shutting_down()


class _Progress:
    """Where a reader of a log is: after its last entry, or after the last row its reads went through
    (`LogRead.scanned_to`), none of which it wants, so that its next read starts past them (a server's
    position only: a client's cursor is an entry's); and whether its last read held an entry back."""

    __slots__ = ("held_back", "position")

    def __init__(self, position: LogPosition | None) -> None:
        self.position = position
        self.held_back = False


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
    progress: _Progress,
    closing: asyncio.Event,
) -> AsyncIterator[T]:
    """Batch by batch from `progress`, moving it on; a full batch, or a read stopped at its bound of rows,
    starts the next read before its entries are sent, so the database works while the reader is served
    (one read ahead at most: the batch bound holds). A read that went through its bound of rows without
    a full batch is no end: it may have found none of the reader's, and the next starts where it stopped."""
    done = await read(progress.position, BATCH)
    while True:
        entries = done.entries
        full = len(entries) == BATCH
        scanned_to = None if full else done.scanned_to
        following = position_of(entries[-1]) if full else scanned_to if done.cut_short else None
        ahead = asyncio.ensure_future(read(following, BATCH)) if following is not None else None
        try:
            for entry in entries:
                progress.position = position_of(entry)
                yield entry
        except BaseException:  # the reader stopped (GeneratorExit, cancelled): the read ahead is moot
            if ahead is not None:
                ahead.cancel()
                ahead.add_done_callback(_outcome_unwanted)
            raise
        if scanned_to is not None:
            progress.position = scanned_to
        progress.held_back = done.held_back  # the backlog's last read is the one that counts
        if ahead is None:
            return
        if closing.is_set():  # reads that find none of the reader's entries send nothing to check it at
            ahead.cancel()
            ahead.add_done_callback(_outcome_unwanted)
            raise server_shutting_down()
        done = await ahead


def _outcome_unwanted(task: asyncio.Future[Any]) -> None:
    """Marks a dropped read's error as seen, so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()
