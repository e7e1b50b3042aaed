"""One recorder per process writes attempts back in batches: a worker hands its result over and is
free for the next delivery at once.

Results queue up while a batch is being written and go together in the next (one transaction, one
round trip: see store/deliveries.py). When the database cannot be reached, or rolled the batch back
to settle a conflict (a deadlock), a batch is tried again until its leases would run out; after that
the deliveries come round again on their own (a lease that expires makes a delivery due), so an
attempt is never lost, at worst made once more. A batch tried again after a write that committed too
late to answer is logged and counted once (the store skips what is logged already).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime

from webhookd.delivery.batch_observer import BatchObserver
from webhookd.domain.deliveries import AttemptRecord, ClaimedDelivery
from webhookd.domain.errors import TransactionConflict, Unavailable
from webhookd.ports import DeliveryQueue, Notifications, Topic

log = logging.getLogger("webhookd.recorder")
MAX_BATCH = 200
RETRY_SECONDS = 0.5
# How long a batch is retried while the database is away: within the lease margin, so a lease is
# not taken over while its result may still be written.
GIVE_UP_SECONDS = 25.0


class AttemptRecorder:
    def __init__(
        self, queue: DeliveryQueue, notifications: Notifications, *, observer: BatchObserver | None = None
    ) -> None:
        self._queue = queue
        self._notifications = notifications
        self._observer = observer
        # Told after each batch is written (the leases it ended no longer count against any cap), with
        # the earliest retry it scheduled, if any.
        self.on_recorded: Callable[[datetime | None], None] = lambda retry_at: None
        self._pending: list[tuple[ClaimedDelivery, AttemptRecord]] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.lost_leases = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="attempt-recorder")

    def submit(self, claimed: ClaimedDelivery, record: AttemptRecord) -> None:
        """Queues a result for the next batch; never blocks."""
        self._pending.append((claimed, record))
        self._idle.clear()
        self._wake.set()

    async def flush(self) -> None:
        """Returns once everything submitted so far has been written (or given up on)."""
        await self._idle.wait()

    async def stop(self) -> None:
        await self.flush()
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            # No timer: what finishes while a batch is written makes up the next one, so batches grow
            # with the load and a result waits at most one write. (A fixed gathering delay held every
            # lease, and with it a slot under the webhook's and tenant's caps, that much longer.)
            await asyncio.sleep(0)  # results of this same turn of the loop go together
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                await self._write(batch)
            self._idle.set()

    async def _write(self, batch: list[tuple[ClaimedDelivery, AttemptRecord]]) -> None:
        deadline = time.monotonic() + GIVE_UP_SECONDS
        while True:
            try:
                recorded = await self._queue.record(batch)
            except (Unavailable, TransactionConflict) as error:
                if time.monotonic() >= deadline:
                    log.error("gave up recording attempts; their deliveries come round again", extra={"n": len(batch)})
                    return
                log.warning("attempt batch not written; retrying it", extra={"reason": error.message})
                await asyncio.sleep(RETRY_SECONDS)
                continue
            except Exception:
                log.exception("recording attempts failed; their deliveries come round again")
                return
            if self._observer is not None:
                self._observer.recorded(len(batch))
            self.lost_leases += recorded.kept.count(False)
            retries = [record.next_attempt_at for _, record in batch if record.next_attempt_at is not None]
            self.on_recorded(min(retries, default=None))
            for tenant_id in {claimed.tenant_id for claimed, _ in batch}:  # their followers, no one else's
                self._notifications.notify(Topic.ATTEMPTS, tenant_id)
            if recorded.operational_queued or recorded.fifo_next_due:
                # A pause published `webhookd.webhook.paused` to subscribers, or a FIFO head's end made
                # the next one due: wake every process's workers for them.
                self._notifications.notify(Topic.DELIVERIES)
            for webhook_id in recorded.changed_webhooks:
                self._notifications.notify(Topic.WEBHOOKS, webhook_id)
            return
