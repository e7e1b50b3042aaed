"""SendTestEvent: sign and POST a test event to a webhook now, and say what the receiver did.

It runs in the server process, which has no delivery workers: it uses the same signing (the
webhook's secrets, its scheme and static headers) and the same outbound sender, SSRF guard
included, as a worker's attempt, but outside the queue: whatever the webhook's event_types and
pause state, once, never retried. The exchange is then kept in history like any attempt. Its data
is the caller's event type catalog's example for the type when there is one, else a stand-in.
Each webhook's tests are rate limited across every process (domain/pings.py).
"""

from __future__ import annotations

from typing import Protocol

from webhookd.domain import ids, signing
from webhookd.domain.credentials import credential_of
from webhookd.domain.deliveries import AttemptRecord, SentTestEvent
from webhookd.domain.errors import Invalid
from webhookd.domain.event_types import validate_event_type
from webhookd.domain.events import NewEvent, event_body
from webhookd.domain.lifecycle import PING_EVENT_TYPE, example_payload
from webhookd.domain.pings import PING_BURST, PINGS_PER_SECOND, too_many_pings
from webhookd.domain.scope import Scope
from webhookd.domain.secret_rotation import active_secrets
from webhookd.domain.webhooks import check_sends
from webhookd.ports import Clock, Notifications, PingBuckets, PingRecords, Sender, Topic, WebhookRepository, utc_now
from webhookd.services.signing_secrets import SigningSecrets
from webhookd.services.to_its_end import to_its_end


class Examples(Protocol):
    """Where a test event finds its data (services/event_types.py)."""

    async def example_for(self, scope: Scope, name: str) -> str | None: ...


class Pings:
    def __init__(
        self,
        webhooks: WebhookRepository,
        secrets: SigningSecrets,
        sender: Sender,
        records: PingRecords,
        notifications: Notifications,
        *,
        buckets: PingBuckets,
        examples: Examples | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._webhooks = webhooks
        self._secrets = secrets
        self._sender = sender
        self._records = records
        self._notifications = notifications
        self._buckets = buckets
        self._examples = examples
        self._now = clock

    async def send(self, scope: Scope, webhook_id: str, *, event_type: str | None) -> SentTestEvent:
        event_type = event_type or PING_EVENT_TYPE
        problem = validate_event_type(event_type)
        if problem is not None:
            raise Invalid.field("event_type", problem)
        webhook = await self._webhooks.get(scope, webhook_id)
        check_sends(webhook)
        # Taken once the caller is known to own a webhook that sends: no one else can use its tests up.
        wait = await self._buckets.take(webhook.id, per_second=PINGS_PER_SECOND, burst=PING_BURST)
        if wait is not None:
            raise too_many_pings(wait)
        now = self._now()
        example = None if self._examples is None else await self._examples.example_for(scope, event_type)
        body = event_body(event_type, now, example or example_payload(webhook.id, event_type))
        event = NewEvent(ids.new_id(ids.EVENT_PREFIX), event_type, body, None, webhook.id, now)
        secret_record = await self._secrets.record(
            webhook.vault_path, webhook.secret_fingerprint, webhook.credential_id, webhook.version
        )
        headers = signing.delivery_headers(
            webhook.spec.headers,
            webhook.spec.signature_scheme,
            active_secrets(secret_record, now, webhook.secret_fingerprint),
            event.id,
            int(now.timestamp()),
            body,
        )

        async def send_and_keep() -> SentTestEvent:
            result = await self._sender.send(
                webhook.spec.url,
                body=body,
                headers=headers,
                timeout_ms=webhook.spec.retry_policy.timeout_ms,
                credential=credential_of(secret_record, webhook.credential_id),
            )
            attempt = AttemptRecord.of(result, next_attempt_at=None, occurred_at=self._now())  # never retried
            delivery_id = ids.new_id(ids.DELIVERY_PREFIX)
            await self._records.record(webhook, event, delivery_id, attempt)
            self._notifications.notify(Topic.ATTEMPTS, webhook.tenant_id)
            return SentTestEvent(event.id, delivery_id, result)

        # Once on its way the POST may reach the receiver: it is finished and logged (within the webhook's
        # timeout) even when the caller goes away, so the log shows every test event a receiver got.
        return await to_its_end(send_and_keep())
