"""services/tailing.py: the backlog in batches, following on notifications, and the per-tenant stream cap."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from prometheus_client import CollectorRegistry

from fakes import FakeNotifications, FakeStreamLeases, Follower, until
from webhookd.domain.errors import ResourceExhausted, Unavailable
from webhookd.domain.history import LogPosition, LogRead
from webhookd.observability.metrics import StreamMetrics
from webhookd.ports import Topic
from webhookd.services import tailing
from webhookd.services.tailing import BATCH, StreamSlots, tail


class Source:
    """An append-only log whose entries are their own positions, read the way the stores read theirs."""

    def __init__(self, count: int = 0) -> None:
        self.entries: list[LogPosition] = []
        # Committed behind a transaction still running: not read yet, but the read says so.
        self.held: list[LogPosition] = []
        self.reads: list[tuple[LogPosition | None, int]] = []
        # Runs once, right after the next read: a write that commits just behind the reader.
        self.after_next_read: Callable[[], None] | None = None
        self.append(count)

    def append(self, count: int = 1) -> None:
        for _ in range(count):
            number = len(self.entries) + len(self.held) + 1
            self.entries.append(LogPosition(txid=number, seq=number))

    def hold_back(self) -> None:
        """An entry committed while an older transaction (which writes no entry) still runs."""
        number = len(self.entries) + len(self.held) + 1
        self.held.append(LogPosition(txid=number, seq=number))

    def settle(self) -> None:
        """That older transaction ends: no notification tells anyone."""
        self.entries += self.held
        self.held = []

    async def read(self, after: LogPosition | None, limit: int) -> LogRead[LogPosition]:
        self.reads.append((after, limit))
        batch = [entry for entry in self.entries if after is None or entry > after][:limit]
        hook, self.after_next_read = self.after_next_read, None
        if hook is not None:
            hook()
        return LogRead(batch, held_back=len(batch) < limit and bool(self.held))


def follow(
    source: Source | Filtered,
    notifications: FakeNotifications,
    after: LogPosition | None = None,
    closing: asyncio.Event | None = None,
) -> Follower[LogPosition]:
    entries = tail(
        source.read,
        lambda entry: entry,
        after=after,
        follow=True,
        notifications=notifications,
        topic=Topic.ATTEMPTS,
        key="tnt_a",
        closing=closing or asyncio.Event(),
    )
    return Follower(entries)


def backlog_of(
    read: Callable[[LogPosition | None, int], Awaitable[LogRead[LogPosition]]],
    after: LogPosition | None = None,
    closing: asyncio.Event | None = None,
) -> AsyncIterator[LogPosition]:
    """The backlog after `after` (no following), as a reader iterates it."""
    return tail(
        read,
        lambda entry: entry,
        after=after,
        follow=False,
        notifications=FakeNotifications(),
        topic=Topic.ATTEMPTS,
        key="tnt_a",
        closing=closing or asyncio.Event(),
    )


async def backlog(source: Source, after: LogPosition | None = None) -> list[LogPosition]:
    return [entry async for entry in backlog_of(source.read, after)]


@pytest.fixture
def only_notifications_wake(monkeypatch: pytest.MonkeyPatch) -> None:
    """No periodic re-check: a follower that reads again was woken by a notification."""
    monkeypatch.setattr(tailing, "RECHECK_SECONDS", 3600.0)
    monkeypatch.setattr(tailing, "IDLE_RECHECK_SECONDS", 3600.0)


@pytest.mark.parametrize(("size", "reads"), [(0, 1), (BATCH - 1, 1), (2 * BATCH, 3), (2 * BATCH + 50, 3)])
async def test_the_backlog_is_read_in_batches_until_a_short_one(size: int, reads: int) -> None:
    source = Source(size)

    entries = await backlog(source)

    assert entries == source.entries
    assert len(source.reads) == reads
    assert {limit for _, limit in source.reads} == {BATCH}
    assert [after for after, _ in source.reads] == [None, *(source.entries[BATCH * n - 1] for n in range(1, reads))]


async def test_the_next_batch_is_read_while_a_full_one_is_being_sent() -> None:
    source = Source(2 * BATCH + 1)
    entries = backlog_of(source.read)

    first = await anext(entries)
    await until(lambda: len(source.reads) == 2)  # the second batch is on its way; the first is not yet sent

    assert first == source.entries[0]
    assert source.reads[1] == (source.entries[BATCH - 1], BATCH)
    assert [first, *[entry async for entry in entries]] == source.entries


async def test_a_reader_that_stops_mid_batch_cancels_the_read_ahead() -> None:
    release = asyncio.Event()
    cancelled = asyncio.Event()
    source = Source(BATCH + 5)
    plain_read = source.read

    async def read(after: LogPosition | None, limit: int) -> LogRead[LogPosition]:
        if after is None:
            return await plain_read(after, limit)
        try:
            await release.wait()  # the read ahead: held until the reader has gone
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return await plain_read(after, limit)

    entries = backlog_of(read)
    assert await anext(entries) == source.entries[0]

    await entries.aclose()  # type: ignore[attr-defined]

    await asyncio.wait_for(cancelled.wait(), 5)


async def test_the_backlog_starts_after_the_given_position() -> None:
    source = Source(5)

    assert await backlog(source, after=LogPosition(3, 3)) == source.entries[3:]


@pytest.mark.usefixtures("only_notifications_wake")
async def test_a_follower_reads_again_when_notified() -> None:
    notifications = FakeNotifications()
    source = Source(2)
    follower = follow(source, notifications)
    assert await follower.read(2) == source.entries

    source.append()
    notifications.notify(Topic.ATTEMPTS)

    assert await follower.read(3) == source.entries
    assert source.reads[-1] == (source.entries[1], BATCH)  # continued from its position, not from the start
    await follower.close()


@pytest.mark.usefixtures("only_notifications_wake")
async def test_a_write_notified_during_a_read_is_not_missed() -> None:
    notifications = FakeNotifications()
    source = Source(1)

    def commit_behind_the_reader() -> None:
        source.append()
        notifications.notify(Topic.ATTEMPTS)

    source.after_next_read = commit_behind_the_reader
    follower = follow(source, notifications)

    assert await follower.read(2) == source.entries
    await follower.close()


async def test_a_follower_rechecks_for_an_entry_held_back_until_it_is_streamed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tailing, "RECHECK_SECONDS", 0.01)
    notifications = FakeNotifications()
    source = Source(1)
    source.hold_back()
    follower = follow(source, notifications)
    assert await follower.read(1) == source.entries
    await until(lambda: len(source.reads) >= 3)  # re-checking, with no notification

    source.settle()  # the older transaction ends; nothing is notified

    assert await follower.read(2) == source.entries
    await follower.close()


async def test_an_idle_follower_reads_again_only_when_woken_or_held_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """200 idle follow streams re-reading every second cost ~190 queries/s for nothing."""
    monkeypatch.setattr(tailing, "RECHECK_SECONDS", 0.01)
    monkeypatch.setattr(tailing, "IDLE_RECHECK_SECONDS", 3600.0)
    notifications = FakeNotifications()
    idle, held = Source(1), Source(1)
    held.hold_back()
    idle_follower, held_follower = follow(idle, notifications), follow(held, notifications)
    assert await idle_follower.read(1) == idle.entries

    await until(lambda: len(held.reads) >= 10)  # ten re-checks' time has passed for the one held back
    idle_reads = len(idle.reads)
    idle.append()
    notifications.notify(Topic.ATTEMPTS, "tnt_a")

    assert await idle_follower.read(2) == idle.entries
    assert idle_reads == 1
    await idle_follower.close()
    await held_follower.close()


async def test_an_idle_follower_gets_an_entry_whose_notification_was_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its writer was killed between COMMIT and the NOTIFY it sends after: nothing wakes the follower."""
    monkeypatch.setattr(tailing, "RECHECK_SECONDS", 3600.0)
    monkeypatch.setattr(tailing, "IDLE_RECHECK_SECONDS", 0.01)
    notifications = FakeNotifications()
    source = Source(1)
    follower = follow(source, notifications)
    assert await follower.read(1) == source.entries

    source.append()  # committed, never notified

    assert await follower.read(2) == source.entries
    await follower.close()


async def test_a_follower_stops_listening_when_its_caller_goes_away() -> None:
    notifications = FakeNotifications()
    follower = follow(Source(), notifications)
    await until(lambda: notifications.subscribers(Topic.ATTEMPTS) == 1)

    await follower.close()

    assert notifications.subscribers(Topic.ATTEMPTS) == 0


@pytest.mark.usefixtures("only_notifications_wake")
async def test_a_waiting_follower_ends_unavailable_when_the_streams_close() -> None:
    """A following stream never ends by itself: the server's shutdown waited all its grace for it."""
    notifications = FakeNotifications()
    slots = StreamSlots(FakeStreamLeases(), 2)
    async with slots.hold("tnt_a") as closing:
        source = Source(1)
        follower = follow(source, notifications, closing=closing)
        await follower.read(1)
        await until(lambda: notifications.subscribers(Topic.ATTEMPTS) == 1)

        slots.close()

        with pytest.raises(Unavailable, match="shutting down"):
            await follower.read(2)
    assert notifications.subscribers(Topic.ATTEMPTS) == 0


async def test_a_backlog_being_read_ends_unavailable_when_the_streams_close() -> None:
    slots = StreamSlots(FakeStreamLeases(), 2)
    async with slots.hold("tnt_a") as closing:
        entries = backlog_of(Source(BATCH * 2).read, closing=closing)
        first = await anext(entries)

        slots.close()

        with pytest.raises(Unavailable, match="shutting down"):
            await anext(entries)
    assert first == LogPosition(1, 1)


class Filtered:
    """A log read through a filter the way the stores read theirs (store/sql.py `settled_and_held_back`):
    each read goes through at most `scan` rows after its position, returns the wanted ones up to its
    limit, and, when it ends before its limit-th entry, says which row it went through last and whether
    it stopped there at its bound."""

    def __init__(self, scan: int) -> None:
        self.scan = scan
        self.rows: list[tuple[LogPosition, bool]] = []
        self.reads: list[LogPosition | None] = []

    def append(self, *wanted: bool) -> None:
        for each in wanted:
            number = len(self.rows) + 1
            self.rows.append((LogPosition(number, number), each))

    def wanted(self) -> list[LogPosition]:
        return [position for position, wanted in self.rows if wanted]

    async def read(self, after: LogPosition | None, limit: int) -> LogRead[LogPosition]:
        self.reads.append(after)
        scanned = [row for row in self.rows if after is None or row[0] > after][: self.scan]
        last = len(scanned) - 1
        output = [(row, index == last) for index, row in enumerate(scanned) if row[1] or index == last][:limit]
        marker = next((row for row, is_last in output if is_last), None)
        return LogRead(
            [position for (position, wanted), _ in output if wanted],
            scanned_to=None if marker is None else marker[0],
            cut_short=marker is not None and len(scanned) == self.scan,
        )


async def test_a_backlog_goes_on_past_reads_that_stopped_at_their_bound_of_rows() -> None:
    """A read that went through its bound of rows, none of them wanted, is not the end of the backlog."""
    source = Filtered(scan=4)
    source.append(*[False] * 30, True)

    assert [entry async for entry in backlog_of(source.read)] == source.wanted()
    assert len(source.reads) == 8  # 31 rows, 4 a read


@pytest.mark.usefixtures("only_notifications_wake")
async def test_a_follower_goes_on_after_the_rows_its_reads_went_through() -> None:
    """A follower whose filter matches nothing read every row since its position again at every wake."""
    notifications = FakeNotifications()
    source = Filtered(scan=4)
    source.append(*[False] * 10)
    follower = follow(source, notifications)
    await until(lambda: len(source.reads) == 3)  # 4 + 4 + 2 rows: at the end, waiting

    source.append(False, True)
    notifications.notify(Topic.ATTEMPTS, "tnt_a")

    assert await follower.read(1) == source.wanted()
    assert source.reads[3] == LogPosition(10, 10)  # after the last row it went through, not from the start
    await follower.close()


@pytest.mark.parametrize("seed", range(40))
async def test_bounded_reads_return_exactly_what_one_unbounded_read_returns(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the bound of rows a read goes through and the batch's size, the backlog, and a follower
    woken as rows are written, are every wanted entry once, in order."""
    chance = random.Random(seed)
    monkeypatch.setattr(tailing, "BATCH", chance.randint(1, 6))
    monkeypatch.setattr(tailing, "IDLE_RECHECK_SECONDS", 3600.0)
    source = Filtered(scan=chance.randint(1, 8))
    rate = chance.random()
    source.append(*(chance.random() < rate for _ in range(chance.randint(0, 60))))
    after = chance.choice([None, *(position for position, _ in source.rows)])
    unbounded = [position for position in source.wanted() if after is None or position > after]

    assert [entry async for entry in backlog_of(source.read, after)] == unbounded

    notifications = FakeNotifications()
    follower = follow(source, notifications, after=after)
    for _ in range(chance.randint(1, 5)):
        source.append(*(chance.random() < rate for _ in range(chance.randint(0, 20))))
        notifications.notify(Topic.ATTEMPTS, "tnt_a")
    source.append(True)  # a last entry: anything read twice, or skipped, shows before it
    notifications.notify(Topic.ATTEMPTS, "tnt_a")
    everything = [position for position in source.wanted() if after is None or position > after]
    assert await follower.read(len(everything)) == everything
    await follower.close()


async def test_no_stream_opens_once_the_streams_close() -> None:
    leases = FakeStreamLeases()
    slots = StreamSlots(leases, 2)
    slots.close()

    with pytest.raises(Unavailable, match="shutting down"):
        async with slots.hold("tnt_a"):
            pass
    assert leases.held == {}


async def test_a_tenant_may_open_only_so_many_streams_at_once() -> None:
    leases = FakeStreamLeases()
    slots = StreamSlots(leases, 2)

    async with slots.hold("tnt_a"), slots.hold("tnt_a"):
        with pytest.raises(ResourceExhausted) as raised:
            async with slots.hold("tnt_a"):
                pass
        async with slots.hold("tnt_b"):
            pass
    async with slots.hold("tnt_a"), slots.hold("tnt_a"):
        pass

    assert raised.value.retry_after_seconds == 5
    assert leases.held == {}  # every place was given back


async def test_open_streams_are_counted_while_they_are_held() -> None:
    registry = CollectorRegistry()
    slots = StreamSlots(FakeStreamLeases(), 2, metrics=StreamMetrics(registry))

    def open_streams() -> float | None:
        return registry.get_sample_value("webhookd_open_streams", {"transport": "grpc"})

    async with slots.hold("tnt_a"):
        assert open_streams() == 1
    assert open_streams() == 0
