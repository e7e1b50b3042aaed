"""The worker pool: claims due deliveries and runs them, at most `workers` at a time.

It wakes on a deliveries notification (publish, resume, redeliver, release), when a slot frees up,
when the next scheduled retry comes due, and at worst every `poll_seconds`. On stop it claims
nothing more, lets in-flight deliveries finish within the grace period and gives the rest back to
the queue for another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from webhookd.delivery.attempt import Deliverer
from webhookd.domain.deliveries import ClaimedDelivery
from webhookd.ports import Clock, DeliveryQueue, Notifications, Topic, utc_now

log = logging.getLogger("webhookd.pool")
CLAIM_BATCH = 100
CAPPED_RECHECK_SECONDS = 0.5


class DeliveryPool:
    def __init__(
        self,
        queue: DeliveryQueue,
        deliverer: Deliverer,
        notifications: Notifications,
        *,
        workers: int,
        per_webhook: int,
        poll_seconds: float = 5.0,
        grace_seconds: float = 10.0,
        clock: Clock = utc_now,
    ) -> None:
        self._queue = queue
        self._deliverer = deliverer
        self._notifications = notifications
        self._workers = workers
        self._per_webhook = per_webhook
        self._poll_seconds = poll_seconds
        self._grace_seconds = grace_seconds
        self._now = clock
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._inflight: dict[asyncio.Task[None], ClaimedDelivery] = {}

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        async with self._notifications.subscribe(Topic.DELIVERIES) as notified:
            # Notifications and local wake-ups (a slot freed, stop) share one event.
            self._wake = notified
            if self._stopping.is_set():
                self._wake.set()
            try:
                await self._claim_loop()
            finally:
                await self._drain()

    async def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            # Cleared before claiming, never after: a wake-up that arrives while we claim or
            # look up the next due time must make the next wait return at once.
            self._wake.clear()
            free = self._workers - len(self._inflight)
            claimed: list[ClaimedDelivery] = []
            if free > 0:
                try:
                    claimed = await self._queue.claim(min(free, CLAIM_BATCH), per_webhook=self._per_webhook)
                except Exception:
                    log.exception("claiming deliveries failed")
            for delivery in claimed:
                task = asyncio.create_task(self._deliver(delivery))
                self._inflight[task] = delivery
            if claimed and len(claimed) == min(free, CLAIM_BATCH):
                continue  # there may be more due right now
            await self._sleep()

    async def _deliver(self, delivery: ClaimedDelivery) -> None:
        try:
            await self._deliverer.deliver(delivery)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivery failed unexpectedly", extra={"delivery_id": delivery.delivery_id})
        finally:
            self._inflight.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
            self._wake.set()

    async def _sleep(self) -> None:
        timeout = self._poll_seconds
        try:
            next_due = await self._queue.next_due_at()
        except Exception:  # noqa: BLE001 - fall back to the poll interval
            next_due = None
        if next_due is not None:
            timeout = min(timeout, max(0.0, (next_due - self._now()).total_seconds()))
        if timeout <= 0:
            # Due now but not claimable (per-webhook cap, or no free slot): a finishing delivery wakes us.
            timeout = CAPPED_RECHECK_SECONDS
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def _drain(self) -> None:
        if not self._inflight:
            return
        _, pending = await asyncio.wait(list(self._inflight), timeout=self._grace_seconds)
        leftovers = [self._inflight[task] for task in pending if task in self._inflight]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        # Cancelled ones go back to the queue now instead of waiting out their lease; one that was
        # recorded just before cancelling no longer holds the lease, so its release changes nothing.
        for delivery in leftovers:
            try:
                await self._deliverer.release(delivery, retry_at=self._now())
            except Exception:
                log.exception("could not release a delivery", extra={"delivery_id": delivery.delivery_id})
