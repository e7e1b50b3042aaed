"""One delivery attempt: fetch the signing secrets, sign, POST, and record what happened."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

from webhookd.delivery.http import AttemptResult, Outcome, Sender
from webhookd.domain import retry, signing
from webhookd.domain.errors import NotFound, Unavailable
from webhookd.domain.secret_rotation import active_secrets
from webhookd.secrets.vault import VaultSecretStore
from webhookd.store.deliveries import AttemptRecord, ClaimedDelivery, DeliveryQueue

log = logging.getLogger("webhookd.delivery")
# Without a secret nothing can be signed; the endpoint is not at fault, so this is no attempt.
SECRET_UNAVAILABLE_RETRY = timedelta(seconds=15)


def next_attempt_at(claimed: ClaimedDelivery, result: AttemptResult, now: datetime) -> datetime | None:
    """When to try again, or None when the delivery is finished (succeeded or out of attempts)."""
    if result.outcome is Outcome.SUCCEEDED:
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
        secrets: VaultSecretStore,
        sender: Sender,
        observer: AttemptObserver | None = None,
    ) -> None:
        self._queue = queue
        self._secrets = secrets
        self._sender = sender
        self._observer = observer

    async def deliver(self, claimed: ClaimedDelivery) -> None:
        try:
            record = await self._secrets.read(claimed.vault_path)
        except (Unavailable, NotFound) as error:
            log.warning(
                "no signing secret; delivery postponed",
                extra={"delivery_id": claimed.delivery_id, "reason": error.message},
            )
            await self._queue.release(claimed, retry_at=datetime.now(UTC) + SECRET_UNAVAILABLE_RETRY)
            return
        now = datetime.now(UTC)
        headers = dict(claimed.headers)
        # Signature headers last: a static header can never replace them.
        headers.update(
            signing.sign_headers(
                claimed.signature_scheme,
                active_secrets(record, now),
                claimed.event_id,
                int(time.time()),
                claimed.body,
            )
        )
        result = await self._sender.send(
            claimed.url, body=claimed.body, headers=headers, timeout_ms=claimed.retry_policy.timeout_ms
        )
        finished_at = datetime.now(UTC)
        retry_at = next_attempt_at(claimed, result, finished_at)
        if self._observer is not None:
            self._observer.attempted(
                result.outcome.value,
                result.latency_ms,
                finished=retry_at is None,
                succeeded=result.outcome is Outcome.SUCCEEDED,
            )
        await self._queue.record(
            claimed,
            AttemptRecord(
                outcome=result.outcome.value,
                http_status=result.http_status,
                latency_ms=result.latency_ms,
                error=result.error,
                response_excerpt=result.response_excerpt,
                succeeded=result.outcome is Outcome.SUCCEEDED,
                gone=result.gone,
                next_attempt_at=retry_at,
                occurred_at=finished_at,
            ),
        )
