"""Deliveries: one event owed to one webhook, what a worker claims of it, and what an attempt did."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from webhookd.domain.statuses import DeliveryStatus, Outcome
from webhookd.domain.webhooks import RetryPolicy, SignatureScheme

# RecoverWebhook reaches back at most this far: older failures are history, not a backlog.
MAX_RECOVER_WINDOW = timedelta(days=14)


@dataclass(frozen=True)
class Delivery:
    id: str
    event_id: str
    event_type: str
    webhook_id: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_outcome: Outcome | None
    last_http_status: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None


@dataclass(frozen=True)
class DeliveryFilter:
    webhook_id: str | None = None
    status: DeliveryStatus | None = None
    last_outcome: Outcome | None = None
    # Subscription-style filters (`rfp.created`, `rfp.*`, `*`).
    event_types: tuple[str, ...] = ()
    start_time: datetime | None = None
    end_time: datetime | None = None


@dataclass(frozen=True)
class DeliveryPage:
    deliveries: list[Delivery]
    next_page_token: str


@dataclass(frozen=True)
class ClaimedDelivery:
    """A due delivery a worker holds under a lease, with everything one attempt needs."""

    delivery_id: str
    lease_token: str
    attempt: int  # the number this attempt will have (1-based)
    tenant_id: str
    app_id: str | None
    event_id: str
    event_type: str
    body: bytes
    webhook_id: str
    url: str
    headers: dict[str, str]
    signature_scheme: SignatureScheme
    retry_policy: RetryPolicy
    vault_path: str
    # Which secret the webhook's row says is current: signing material is cached under it, so a
    # rotation committed before the claim is seen by this attempt whatever process runs it.
    secret_fingerprint: str
    # A rate-limited webhook's send slot: not sent before it, nor much after (domain/routing.py).
    send_at: datetime | None = None
    # Its webhook delivers in publish order, one at a time: recording it may let the next one go.
    fifo: bool = False
    # The delivery credential the row says is current ('' for none): with secret_fingerprint, what the
    # secret record is cached under (domain/credentials.py).
    credential_id: str = ""
    # The webhook row's version: the secret record is cached under it too (services/signing_secrets.py).
    webhook_version: int = 0


@dataclass(frozen=True)
class AttemptResult:
    """How one POST went, as the outbound HTTP step reports it."""

    outcome: Outcome
    http_status: int | None
    latency_ms: int
    # A short reason for people ('' on success); never request headers, signatures or secrets.
    error: str
    # The start of the response body (gzip and deflate decoded; a note for a body in another encoding
    # or not valid in its own), as UTF-8 with replacement.
    response_excerpt: str = ""
    # From Retry-After on 429/503, clamped; None otherwise.
    retry_after_seconds: float | None = None
    # 410 Gone: the receiver asks us to stop.
    gone: bool = False
    # What was sent and what came back, as (name, value) pairs: signatures are not secrets.
    request_headers: tuple[tuple[str, str], ...] = ()
    response_headers: tuple[tuple[str, str], ...] = ()

    @property
    def succeeded(self) -> bool:
        return self.outcome is Outcome.SUCCEEDED

    def with_headers(
        self, request_headers: tuple[tuple[str, str], ...], response_headers: tuple[tuple[str, str], ...]
    ) -> AttemptResult:
        """This result with these headers: dataclasses.replace's result in half its time (every attempt
        makes one). Every field is passed on: a field added above must be added here too."""
        return AttemptResult(
            self.outcome,
            self.http_status,
            self.latency_ms,
            self.error,
            self.response_excerpt,
            self.retry_after_seconds,
            self.gone,
            request_headers,
            response_headers,
        )


@dataclass(frozen=True)
class AttemptRecord:
    """An attempt as it is written back: the result, and when (if ever) to try again."""

    outcome: Outcome
    http_status: int | None
    latency_ms: int
    error: str
    response_excerpt: str
    gone: bool
    # None: no further attempt (succeeded, or attempts exhausted).
    next_attempt_at: datetime | None
    occurred_at: datetime
    request_headers: tuple[tuple[str, str], ...] = ()
    response_headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, result: AttemptResult, *, next_attempt_at: datetime | None, occurred_at: datetime) -> AttemptRecord:
        """What a POST's result is written back as."""
        return cls(
            outcome=result.outcome,
            http_status=result.http_status,
            latency_ms=result.latency_ms,
            error=result.error,
            response_excerpt=result.response_excerpt,
            gone=result.gone,
            next_attempt_at=next_attempt_at,
            occurred_at=occurred_at,
            request_headers=result.request_headers,
            response_headers=result.response_headers,
        )

    @property
    def succeeded(self) -> bool:
        return self.outcome is Outcome.SUCCEEDED

    @property
    def finished(self) -> bool:
        return self.next_attempt_at is None

    @property
    def delivery_status(self) -> DeliveryStatus:
        """Where the delivery stands after this attempt."""
        if self.succeeded:
            return DeliveryStatus.SUCCEEDED
        return DeliveryStatus.FAILED if self.finished else DeliveryStatus.PENDING


@dataclass(frozen=True)
class RecordedBatch:
    """What writing a batch of attempts back did."""

    kept: list[bool]  # per attempt, in order: False when its lease had been lost
    changed_webhooks: list[str]  # the webhooks whose row changed (statistics, or paused)
    paused_webhooks: list[str] = field(default_factory=list)  # paused by this batch (in `changed_webhooks` too)
    operational_queued: int = 0  # deliveries of `webhookd.webhook.paused` events queued by those pauses
    # FIFO webhooks whose head finished: how many of their next deliveries became due at once.
    fifo_next_due: int = 0


@dataclass(frozen=True)
class Backlog:
    """The queue as an operator sees it, across all tenants."""

    depth: int  # pending deliveries: in flight, due, waiting to retry, or held by an inactive webhook
    oldest_due_age_seconds: float  # how long the oldest claimable delivery has been due (0: none is)


@dataclass(frozen=True)
class SentTestEvent:
    """A test event sent to a webhook at once (SendTestEvent), and how the receiver answered."""

    event_id: str
    delivery_id: str
    result: AttemptResult
