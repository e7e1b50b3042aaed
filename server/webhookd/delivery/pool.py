"""The worker pool: claims due deliveries and runs them on `workers` long-lived worker coroutines.

The claimer keeps more deliveries leased and queued than are being attempted: what the workers
finish in half a second at the current pace, at least `workers` and at most seven times that
(delivery/claim_ahead.py). It claims in batches: when a quarter of that room is free, or at once
when the queue has run dry and a worker waits. So a claim (the costliest statement, and serialised
across processes) serves many deliveries instead of one per finished POST.

A quiet webhook's new delivery does not wait for that claim: a notification naming a webhook this
process holds at most one of starts an express claim beside it, of those webhooks' oldest due
deliveries alone (a few rows, however deep the queue), even past the room, and leaves the claimer
asleep; what the express claim does not take (a failed claim, a capped or ordered webhook, names
past its room) is handed to the claimer. A notification naming no webhook (a wide fan-out) has the
claimer claim a few at once whatever the room. The queue hands out the least busy webhook's first,
so such a delivery starts when the next worker is free, even while other webhooks' backlogs fill the
queue. Busy webhooks' new deliveries wait for a batch's room like their backlog.

A worker takes one, signs and POSTs it, hands the result to the recorder and is free again at once.
The claimer wakes on a deliveries notification (publish, resume, redeliver, release, a FIFO head's
end) but for one whose webhooks all go to express claims, when a worker frees room, when the next
scheduled retry comes due, and at worst every `poll_seconds`. A recorded batch wakes it when it can
matter: it frees room under the caps, which matters unless the claimer's last look found nothing due
now, and a retry it scheduled may come due before the claimer would wake.

On stop it claims nothing more, lets what is running finish within the grace period, gives back
what is left (queued or cancelled) so another process takes it at once, and flushes the recorder.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta

from webhookd.delivery.attempt import Deliverer
from webhookd.delivery.batch_observer import EXPRESS_CLAIM, QUEUE_CLAIM, BatchObserver
from webhookd.delivery.claim_ahead import ClaimAhead
from webhookd.delivery.recorder import AttemptRecorder
from webhookd.domain.deliveries import ClaimedDelivery
from webhookd.domain.errors import TransactionConflict, Unavailable
from webhookd.domain.topics import NAMES_NOTHING
from webhookd.observability.log_throttle import ThrottledLog
from webhookd.ports import Clock, DeliveryQueue, Notifications, Topic, utc_now

log = logging.getLogger("webhookd.pool")
# At most this many per claim of the queue. The claim lock is held while a claim runs, and an express
# claim waits behind it: under the e2e load, 50 rather than 100 took the probe's publish -> first
# attempt p50 from 30.05 to 23.4 ms (medians of 8 alternating pairs of bench/delivery.py, lower in all 8),
# with e2e throughput and CPU per delivery unchanged (twice the claims of the queue, each half the size).
CLAIM_BATCH = 50
# How far past the room notifications of new deliveries may fill the queue (express claims, and
# the claimer's for a notification naming no webhook): enough for a few quiet webhooks' new
# deliveries to start without waiting for a batch's room.
FRESH_CLAIM = 8
# A webhook this process holds at most this many of (queued or running) is quiet: its new deliveries
# get express claims. One, not none: a webhook that gets a delivery every few tens of milliseconds
# often still has its last one running, and is no backlog to batch.
QUIET_AT_MOST = 1
# How many webhooks named by notifications one claim looks at first; names past that are dropped
# (their deliveries are still found by the claim's oldest and newest scans).
FRESH_WEBHOOKS_MAX = 64
CAPPED_RECHECK_SECONDS = 0.5
# A claimed delivery that waited longer than this for a worker is given back unattempted: its lease
# (the POST's timeout plus a 30 s margin, from the claim) must still cover its POST and the 25 s the
# recorder may retry its result (delivery/recorder.py). At the pace it was claimed for it waits about
# half a second; only a pace that fell sharply leaves one waiting this long (delivery/claim_ahead.py).
QUEUED_AT_MOST = timedelta(seconds=3)
# Due deliveries held back by their webhook's order or rate limit, moved out of the way per round.
HOLD_BACK_BATCH = 1000


def _batch_room(capacity: int) -> int:
    """The room worth a claim of its own: a quarter of the capacity."""
    return max(1, capacity // 4)


class DeliveryPool:
    def __init__(
        self,
        queue: DeliveryQueue,
        deliverer: Deliverer,
        recorder: AttemptRecorder,
        notifications: Notifications,
        *,
        workers: int,
        per_webhook: int,
        per_tenant: int,
        poll_seconds: float = 5.0,
        grace_seconds: float = 10.0,
        claim_ahead: ClaimAhead | None = None,
        observer: BatchObserver | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._queue = queue
        self._deliverer = deliverer
        self._recorder = recorder
        self._notifications = notifications
        self._workers = workers
        self._per_webhook = per_webhook
        self._per_tenant = per_tenant
        self._poll_seconds = poll_seconds
        self._grace_seconds = grace_seconds
        self._now = clock
        self._claim_ahead = claim_ahead or ClaimAhead(workers)
        self._observer = observer
        self._last_claim_short = False
        # While the claimer sleeps having found nothing due now: when it wakes by itself. None while it
        # claims, or sleeps with something due that caps hold back.
        self._idle_until: datetime | None = None
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._fresh = False  # a notification naming no webhook came since the last claim
        self._named_since_claim = False  # and some notification named webhooks
        self._fresh_webhooks: set[str] = set()  # named webhooks for the claimer's next claim to look at first
        self._express: set[str] = set()  # named quiet webhooks, for an express claim
        self._express_wake = asyncio.Event()
        # Claimed and waiting for a worker, least busy webhook first (_enqueue).
        # Each with when it was claimed (_worker gives back what waited too long).
        self._ready: asyncio.PriorityQueue[tuple[int, int, datetime, ClaimedDelivery]] = asyncio.PriorityQueue()
        self._sequence = itertools.count()
        self._held: Counter[str] = Counter()  # per webhook: how many are queued or running here
        # What each worker is attempting right now, so a cancelled one can be given back.
        self._running: dict[asyncio.Task[None], ClaimedDelivery] = {}
        self._claim_failures = ThrottledLog(log)

    @property
    def in_flight(self) -> int:
        """Claimed and not yet attempted or attempting."""
        return self._ready.qsize() + len(self._running)

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._express_wake.set()

    async def run(self) -> None:
        self._recorder.start()
        workers = [asyncio.create_task(self._worker(), name=f"delivery-worker-{n}") for n in range(self._workers)]
        self._recorder.on_recorded = self._recorded
        async with (
            self._notifications.subscribe(Topic.DELIVERIES, NAMES_NOTHING) as notified,
            self._notifications.follow(Topic.DELIVERIES, self._named),
        ):
            relay = asyncio.create_task(self._relay(notified), name="delivery-notifications")
            express = asyncio.create_task(self._express_loop(), name="delivery-express-claims")
            try:
                await self._claim_loop()
            finally:
                relay.cancel()
                leftovers = self._take_queued()  # before anything awaits: no worker may start these now
                self._express_wake.set()
                last_claim = (await asyncio.gather(express, return_exceptions=True))[0]
                leftovers += last_claim if isinstance(last_claim, list) else []  # claimed after the stop
                await self._drain(workers, leftovers)
                await self._recorder.stop()

    def _named(self, webhook_id: str | None) -> None:
        """A notification named this webhook (once per new delivery). A quiet one's delivery is the
        express claim's alone: woken for it too, the claimer's claims came back empty about once in 13
        deliveries at partial load. Anything else is the claimer's: a webhook this process holds more
        of, one already waiting for an express claim (which takes one delivery a webhook), names past
        the express claim's room."""
        if webhook_id is None:
            return  # listening (re)started: the relay wakes the claimer as for a notification naming none
        self._named_since_claim = True
        if self._quiet(webhook_id) and webhook_id not in self._express and len(self._express) < FRESH_WEBHOOKS_MAX:
            self._express.add(webhook_id)
            self._express_wake.set()
        else:
            self._to_claimer([webhook_id])

    def _to_claimer(self, webhook_ids: Iterable[str]) -> None:
        """Named webhooks the express claim does not take: the claimer's next claim looks at them first.
        Past FRESH_WEBHOOKS_MAX the claim's scans of the oldest and newest due find them."""
        for webhook_id in webhook_ids:
            if len(self._fresh_webhooks) < FRESH_WEBHOOKS_MAX:
                self._fresh_webhooks.add(webhook_id)
        self._wake.set()

    async def _relay(self, notified: asyncio.Event) -> None:
        """Notifications naming no webhook wake the claimer like local events do, and mark the wake-up as
        fresh work (named ones are _named's)."""
        notified.clear()  # set on subscribing, to look at once: the claim loop starts with a claim anyway
        while True:
            await notified.wait()
            notified.clear()
            self._fresh = True
            self._wake.set()

    async def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            # Cleared before claiming, never after: a wake-up that arrives while we claim or look
            # up the next due time must make the next wait return at once.
            self._wake.clear()
            self._idle_until = None
            # New deliveries that may be a quiet webhook's (a notification named none): claim a few
            # now, even past the batch threshold or the capacity, and they go ahead of the busy
            # webhooks' (_enqueue). Named quiet webhooks have express claims (_express_loop). Busy
            # webhooks' new deliveries wait for a batch's room like their backlog does: under a
            # steady publisher, claiming one or two for each notification kept the (serialised)
            # claim busy while the queue ran dry.
            urgent = self._fresh and not self._named_since_claim
            capacity = self._claim_ahead.capacity()
            room = capacity - self.in_flight
            if urgent:
                room = max(room, min(FRESH_CLAIM, capacity + FRESH_CLAIM - self.in_flight))
            if room < _batch_room(capacity) and not (room > 0 and (urgent or self._ready.empty())):
                # Workers are busy and have work queued: no query needed. A notification stays
                # pending (`_fresh`) for the claim that room allows (_freed).
                await self._wake.wait()
                continue
            self._fresh = self._named_since_claim = False
            wanted = min(room, CLAIM_BATCH)
            claimed: list[ClaimedDelivery] = []
            # Webhooks still waiting for an express claim are looked at too: whichever claim comes first takes theirs.
            fresh_webhooks = sorted(self._fresh_webhooks | self._express)
            self._fresh_webhooks = set()
            try:
                claimed = await self._queue.claim(
                    wanted, per_webhook=self._per_webhook, per_tenant=self._per_tenant, fresh_webhooks=fresh_webhooks
                )
            except (TransactionConflict, Unavailable) as error:
                self._claim_failed(error)
            except Exception:
                log.exception("claiming deliveries failed")
            else:
                self._claimed(QUEUE_CLAIM, claimed)
            self._last_claim_short = len(claimed) < wanted
            for delivery in claimed:
                self._enqueue(delivery)
            if self._stopping.is_set():
                break  # what was just claimed is given back, not started
            if claimed and len(claimed) == wanted:
                continue  # there may be more due right now
            if claimed:
                # Fewer than asked: the rest is capped (a recorded batch frees room and wakes us),
                # not due yet, or not there (a notification wakes us). The next due time is looked
                # up once a claim comes back empty.
                await self._wait(self._poll_seconds)
            else:
                await self._sleep()

    async def _express_loop(self) -> list[ClaimedDelivery]:
        """Claims what notifications brought for quiet webhooks (QUIET_AT_MOST), beside the
        claimer: a claim of the whole queue takes tens of milliseconds under load, and one of a few
        webhooks' oldest due delivery waits only for the claim holding the lock to end. At most
        FRESH_CLAIM past the room; a worker finishing makes room for the rest (_freed). Returns on
        stop, with what a claim brought back after it, to be given back."""
        while True:
            await self._express_wake.wait()
            self._express_wake.clear()
            if self._stopping.is_set():
                return []
            # A name whose webhook is no longer quiet: a claim took one of its deliveries meanwhile,
            # maybe not the named one.
            busy = {webhook_id for webhook_id in self._express if not self._quiet(webhook_id)}
            if busy:
                self._express.difference_update(busy)
                self._to_claimer(busy)
            room = self._claim_ahead.capacity() + FRESH_CLAIM - self.in_flight
            if not self._express or room <= 0:
                continue
            webhook_ids = sorted(self._express)[:room]
            self._express.difference_update(webhook_ids)
            if self._express:
                self._express_wake.set()  # the rest, in the next claim
                self._wake.set()  # or in the claimer's, if it has room first: it looks at them first
            try:
                claimed = await self._queue.claim_named(
                    webhook_ids, per_webhook=self._per_webhook, per_tenant=self._per_tenant
                )
            except (TransactionConflict, Unavailable) as error:
                self._claim_failed(error)
                self._to_claimer(webhook_ids)
                continue
            except Exception:
                log.exception("claiming deliveries failed")
                self._to_claimer(webhook_ids)
                continue
            self._claimed(EXPRESS_CLAIM, claimed)
            if self._stopping.is_set():
                return claimed
            for delivery in claimed:
                self._enqueue(delivery)
            # Not claimed: capped, a FIFO webhook's non-head, a rate-limited one's, or taken by another
            # claim. The claimer's claim and its look at what is due settle which, and when to retry.
            missed = set(webhook_ids).difference(delivery.webhook_id for delivery in claimed)
            if missed:
                self._to_claimer(missed)

    def _claimed(self, claim: str, claimed: list[ClaimedDelivery]) -> None:
        if self._observer is not None:
            self._observer.claimed(claim, len(claimed))

    def _claim_failed(self, error: TransactionConflict | Unavailable) -> None:
        """A claim the database rolled back to settle a conflict (each of the runs store/database.py gave
        it), or did not answer, claimed nothing; both are expected (under load, in an outage), and the
        next claim goes on. One line an interval, no traceback (kept for what is not expected): in an
        outage every claim fails alike, and store/database.py logs the database's own failure."""
        self._claim_failures.warning(
            ("claim", type(error).__name__),
            "claiming deliveries failed; the next claim takes them",
            {"reason": error.message},
        )

    def _quiet(self, webhook_id: str) -> bool:
        return self._held[webhook_id] <= QUIET_AT_MOST

    def _enqueue(self, delivery: ClaimedDelivery) -> None:
        """Queued behind what this process holds of other webhooks with as little in hand, and ahead
        of what it holds of busier ones: the claim's order (the least busy webhook first) carried on
        to the workers, so a quiet webhook's delivery is not queued behind a backlog claimed before."""
        rank = self._held[delivery.webhook_id]
        self._held[delivery.webhook_id] += 1
        self._ready.put_nowait((rank, next(self._sequence), self._now(), delivery))

    def _finished(self, delivery: ClaimedDelivery) -> None:
        self._held[delivery.webhook_id] -= 1
        if not self._held[delivery.webhook_id]:
            del self._held[delivery.webhook_id]

    def _freed(self) -> None:
        """A worker finished: wake the claimer if it waits for room in this process. After a claim
        that came back short there is nothing to claim until a notification, a recorded batch (it
        frees room under the webhooks' and tenants' caps) or the next due time wakes it anyway."""
        if self._stopping.is_set():
            self._wake.set()  # the drain counts finishing workers
            return
        capacity = self._claim_ahead.capacity()
        if self._express and self.in_flight < capacity + FRESH_CLAIM:
            self._express_wake.set()  # a quiet webhook's new delivery waits for one free place, not a batch's
        room = capacity - self.in_flight
        if not self._last_claim_short and (room >= _batch_room(capacity) or (room > 0 and self._ready.empty())):
            self._wake.set()

    async def _worker(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        while True:
            _, _, claimed_at, delivery = await self._ready.get()
            self._running[task] = delivery
            stale = self._now() - claimed_at > QUEUED_AT_MOST
            try:
                if stale:
                    await self._deliverer.release(delivery)
                else:
                    await self._deliverer.deliver(delivery)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery failed unexpectedly", extra={"delivery_id": delivery.delivery_id})
            finally:
                del self._running[task]
                if not stale:
                    self._claim_ahead.finished()  # the pace is of attempts
                self._finished(delivery)
                self._freed()

    def _recorded(self, retry_at: datetime | None) -> None:
        """A batch was recorded. Its ended leases free room under the webhooks' and tenants' caps, which
        matters only to something due now; when the last look found nothing due, only a retry the batch
        scheduled before the claimer would wake does (new deliveries and a FIFO head's successor are
        notified). Woken by every batch, the claimer's claims came back empty 6 times in 10 at partial load."""
        idle_until = self._idle_until
        if idle_until is None or (retry_at is not None and retry_at < idle_until):
            self._wake.set()

    async def _sleep(self) -> None:
        timeout = self._poll_seconds
        looked = True
        try:
            due_in = await self._queue.next_due_in()
        except Exception:  # noqa: BLE001 - fall back to the poll interval
            due_in, looked = None, False
        if due_in is not None and due_in <= timedelta(0):
            # Due but not claimed: a capped webhook, no free worker, or a FIFO or rate-limited webhook's
            # deliveries waiting their turn. The last are moved to when their turn can come.
            held_back = await self._hold_back()
            due_in = due_in if held_back is None else held_back
        if due_in is not None:
            timeout = min(timeout, max(0.0, due_in.total_seconds()))
        if timeout <= 0:
            # Due now but not claimable (capped, or no free worker): a recorded batch or a finishing
            # worker wakes us, this only in case neither comes.
            timeout = CAPPED_RECHECK_SECONDS
        elif looked:
            self._idle_until = self._now() + timedelta(seconds=timeout)
        await self._wait(timeout)

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _hold_back(self) -> timedelta | None:
        """How long until the next is due once held-back deliveries are moved; None when none were."""
        try:
            if not await self._queue.hold_back(HOLD_BACK_BATCH):
                return None
            return await self._queue.next_due_in()
        except Exception:
            log.warning("holding back deliveries failed", exc_info=True)
            return None

    def _take_queued(self) -> list[ClaimedDelivery]:
        taken: list[ClaimedDelivery] = []
        while not self._ready.empty():
            taken.append(self._ready.get_nowait()[3])
        return taken

    async def _drain(self, workers: list[asyncio.Task[None]], leftovers: list[ClaimedDelivery]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._grace_seconds
        while self._running and loop.time() < deadline:
            self._wake.clear()  # set by each worker as it finishes
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), deadline - loop.time())
        # Cancelled ones go back to the queue now instead of waiting out their lease; one whose
        # result was already handed to the recorder no longer holds the lease it would release.
        leftovers.extend(self._running.values())
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        for delivery in leftovers:
            try:
                await self._deliverer.release(delivery)
            except Exception:
                log.exception("could not release a delivery", extra={"delivery_id": delivery.delivery_id})
