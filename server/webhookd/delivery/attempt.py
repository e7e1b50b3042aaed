"""One delivery attempt: fetch the signing secrets, sign, POST, and hand the result to the recorder."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Protocol

from webhookd.delivery.recorder import AttemptRecorder
from webhookd.domain import retry, signing
from webhookd.domain.credentials import credential_of
from webhookd.domain.deliveries import AttemptRecord, AttemptResult, ClaimedDelivery
from webhookd.domain.errors import NotFound, Unavailable
from webhookd.domain.routing import RATE_SLOT_TOLERANCE
from webhookd.domain.secret_rotation import active_secrets
from webhookd.domain.statuses import Outcome
from webhookd.ports import Clock, DeliveryQueue, Notifications, Sender, Topic, utc_now
from webhookd.services.signing_secrets import SigningSecrets

log = logging.getLogger("webhookd.delivery")
# Without a secret nothing can be signed, and without the delivery proxy nothing goes out; the
# endpoint is not at fault, so neither is an attempt (none counted, none towards its auto-pause).
UNAVAILABLE_RETRY = timedelta(seconds=15)
INTERNAL_SEND_ERROR = "webhookd could not send it (an internal error; the worker's log has it)"


def next_attempt_at(claimed: ClaimedDelivery, result: AttemptResult, now: datetime) -> datetime | None:
    """When to try again, or None when the delivery is finished (succeeded or out of attempts)."""
    if result.succeeded:
        return None
    delay = retry.next_delay(claimed.retry_policy, claimed.attempt)
    if delay is None:
        return None
    if result.retry_after_seconds is not None:
        delay = max(delay, result.retry_after_seconds)
    return now + timedelta(seconds=delay)


class AttemptObserver(Protocol):
    """Told of every attempt right after its POST (metrics); it must neither block nor raise."""

    def attempted(self, outcome: str, latency_ms: int, *, finished: bool, succeeded: bool) -> None: ...


class Deliverer:
    def __init__(
        self,
        queue: DeliveryQueue,
        secrets: SigningSecrets,
        sender: Sender,
        recorder: AttemptRecorder,
        notifications: Notifications,
        *,
        observer: AttemptObserver | None = None,
        clock: Clock = utc_now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._queue = queue
        self._secrets = secrets
        self._sender = sender
        self._recorder = recorder
        self._notifications = notifications
        self._observer = observer
        self._now = clock
        self._sleep = sleep

    async def deliver(self, claimed: ClaimedDelivery) -> None:
        try:
            record = await self._secrets.record(
                claimed.vault_path, claimed.secret_fingerprint, claimed.credential_id, claimed.webhook_version
            )
        except (Unavailable, NotFound) as error:
            log.warning(
                "no signing secret; delivery postponed",
                extra={"delivery_id": claimed.delivery_id, "reason": error.message},
            )
            await self.release(claimed, after=UNAVAILABLE_RETRY)
            return
        if claimed.send_at is not None and not await self._wait_for_slot(claimed, claimed.send_at):
            return
        try:
            headers = signing.delivery_headers(
                claimed.headers,
                claimed.signature_scheme,
                active_secrets(record, self._now(), claimed.secret_fingerprint),
                claimed.event_id,
                int(time.time()),
                claimed.body,
            )
            result = await self._sender.send(
                claimed.url,
                body=claimed.body,
                headers=headers,
                timeout_ms=claimed.retry_policy.timeout_ms,
                credential=credential_of(record, claimed.credential_id),
            )
        except Unavailable as error:
            log.warning(
                "no way out; delivery postponed", extra={"delivery_id": claimed.delivery_id, "reason": error.message}
            )
            await self.release(claimed, after=UNAVAILABLE_RETRY)
            return
        except Exception:
            # A fault of ours, not an answer: it still ends as an attempt (in the log, retried on the
            # webhook's schedule, finished when they run out). Escaping, it left the delivery to come
            # round at every lease end, with nothing logged but this process's error.
            log.exception("sending failed unexpectedly", extra={"delivery_id": claimed.delivery_id})
            result = AttemptResult(Outcome.CONNECTION_ERROR, None, 0, INTERNAL_SEND_ERROR)
        finished_at = self._now()
        retry_at = next_attempt_at(claimed, result, finished_at)
        if self._observer is not None:
            self._observer.attempted(
                result.outcome.value, result.latency_ms, finished=retry_at is None, succeeded=result.succeeded
            )
        self._recorder.submit(claimed, AttemptRecord.of(result, next_attempt_at=retry_at, occurred_at=finished_at))

    async def _wait_for_slot(self, claimed: ClaimedDelivery, send_at: datetime) -> bool:
        """Waits for a rate-limited delivery's send slot; False when it is too late for it (a busy
        worker took it up late): sending then could exceed the limit, so it is given back, no attempt."""
        early = (send_at - self._now()).total_seconds()
        if early > 0:
            await self._sleep(early)
        elif -early > RATE_SLOT_TOLERANCE.total_seconds():
            log.info("missed its send slot; delivery given back", extra={"delivery_id": claimed.delivery_id})
            await self.release(claimed)
            return False
        return True

    async def release(self, claimed: ClaimedDelivery, *, after: timedelta = timedelta(0)) -> None:
        """Gives the delivery back without an attempt, due again `after` from now (at once by default);
        workers are woken, since it may be due now."""
        await self._queue.release(claimed, after=after)
        self._notifications.notify(Topic.DELIVERIES)
