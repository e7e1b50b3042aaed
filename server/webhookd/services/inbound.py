"""Inbound webhooks: verify what an external system sends, store it before answering, and hand it
to internal consumers as a resumable stream.

The order of a receipt is the use case's, whatever transport carries it: an unknown, deleted,
disabled or outbound id is NotFound before anything is read; the per-webhook rate limit applies
before the body is read; the size limit while reading; then the signature; and the receipt is
committed before the caller is told it was accepted, so nothing acknowledged is ever lost.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from webhookd.domain import ids, signing
from webhookd.domain.errors import NotFound, ResourceExhausted, Unauthenticated, Unavailable
from webhookd.domain.history import LogPosition
from webhookd.domain.inbound import (
    InboundEvent,
    InboundTarget,
    Receipt,
    Received,
    consumer_name,
    meta_challenge,
    read_message,
    refuse_repeated,
    zoom_validation,
)
from webhookd.domain.log_cursors import INBOUND_EVENTS, LogCursors
from webhookd.domain.scope import Scope
from webhookd.domain.secret_rotation import active_secrets
from webhookd.domain.webhooks import SignatureScheme
from webhookd.ports import (
    Clock,
    InboundRepository,
    InboundRequest,
    Notifications,
    Topic,
    WebhookRepository,
    utc_now,
)
from webhookd.services.signing_secrets import SigningSecrets
from webhookd.services.tailing import StreamSlots, tail


class Inbound:
    def __init__(
        self,
        store: InboundRepository,
        secrets: SigningSecrets,
        webhooks: WebhookRepository,
        notifications: Notifications,
        *,
        rate_per_second: float,
        burst: int,
        stream_slots: StreamSlots,
        max_body_bytes: int,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._secrets = secrets
        self._webhooks = webhooks
        self._notifications = notifications
        self._rate_per_second = rate_per_second
        self._burst = burst
        self._stream_slots = stream_slots
        self._max_body_bytes = max_body_bytes
        self._now = clock

    async def receive(self, webhook_id: str, request: InboundRequest) -> Received:
        """Verifies and stores one request; Unauthenticated (after recording it) when it is not signed
        right, PayloadTooLarge past the limit, ResourceExhausted past the rate limit."""
        started = time.perf_counter()
        target = await self._admit(webhook_id)
        body = await request.read_body(self._max_body_bytes)
        record = await self._secret_record(target)
        now = self._now()
        headers = request.headers
        content_type = headers.get("content-type", "")
        message = read_message(target.signature_scheme, headers, body, content_type)

        def receipt(reason: str, kept_body: bytes | None, http_status: int) -> Receipt:
            return Receipt(
                message_id=message.message_id,
                accepted=kept_body is not None,
                reason=reason,
                event_type=message.event_type,
                content_type=content_type,
                body=kept_body,
                http_status=http_status,
                latency_ms=int((time.perf_counter() - started) * 1000),
                received_at=now,
            )

        called = f"{target.url}?{request.query}" if request.query else target.url
        try:
            refuse_repeated(request.repeated_headers)
            secrets = active_secrets(record, now, target.secret_fingerprint)
            signing.verify(target.signature_scheme, secrets, headers, body, int(now.timestamp()), url=called)
        except signing.SignatureError as error:
            await self._record(target, receipt(error.reason, None, 401))
            raise Unauthenticated(f"signature rejected: {error.reason}", reason="SIGNATURE_REJECTED") from None
        receipt_id = await self._record(target, receipt("", body, 200))
        if target.signature_scheme is SignatureScheme.ZOOM:
            answer = zoom_validation(message.challenge, secrets, headers, body, int(now.timestamp()))
            return Received(receipt_id, zoom_validation=answer)
        return Received(receipt_id, message.challenge, twiml=target.signature_scheme is SignatureScheme.TWILIO)

    async def confirm_subscription(self, webhook_id: str, query: str) -> str:
        """Meta's check of a callback URL (a GET, no body, no signature): the challenge to answer with.
        NotFound unless the webhook is a live meta one; Invalid or PermissionDenied (meta_challenge)
        when the query is not Meta's or names another Verify Token. Nothing is stored."""
        target = await self._admit(webhook_id)
        if target.signature_scheme is not SignatureScheme.META:
            raise NotFound.of("active meta inbound webhook", webhook_id)
        return meta_challenge(target.webhook_id, query)

    async def _admit(self, webhook_id: str) -> InboundTarget:
        """The live inbound webhook a request is for, within its rate limit: NotFound, or
        ResourceExhausted with the wait, before anything of the request is read."""
        # Anything but a webhook id (a NUL, 10,000 characters) is unknown without asking the database.
        if not ids.looks_like(ids.WEBHOOK_PREFIX, webhook_id):
            raise NotFound.of("active inbound webhook", webhook_id)
        admission = await self._store.admit(webhook_id, rate_per_second=self._rate_per_second, burst=self._burst)
        if admission.target is None:
            raise NotFound.of("active inbound webhook", webhook_id)
        if admission.retry_after_seconds is not None:
            wait = max(1.0, admission.retry_after_seconds)
            raise ResourceExhausted("too many requests for this webhook", retry_after_seconds=wait)
        return admission.target

    async def _secret_record(self, target: InboundTarget) -> dict[str, str]:
        """The webhook's secret record; Unavailable when Vault has none for a live webhook (a restore, an
        operator's slip): our fault, not the sender's, who retries (as a delivery waits, delivery/attempt.py)
        and reads nothing of the path, which names the tenant."""
        try:
            return await self._secrets.record(target.vault_path, target.secret_fingerprint, "", target.version)
        except NotFound as error:
            raise Unavailable(f"inbound webhook {target.webhook_id}: {error.message}", dependency="vault") from None

    async def _record(self, target: InboundTarget, receipt: Receipt) -> str | None:
        receipt_id = await self._store.record(target, receipt)
        if receipt_id is not None:
            self._notifications.notify(Topic.ATTEMPTS)
            if receipt.accepted:
                self._notifications.notify(Topic.INBOUND)
        return receipt_id

    async def stream(
        self, scope: Scope, *, consumer: str | None, webhook_id: str | None, after_cursor: str | None, follow: bool
    ) -> AsyncIterator[InboundEvent]:
        if consumer is not None:
            consumer_name(consumer)
        if webhook_id is not None:
            await self._webhooks.get(scope, webhook_id)  # NotFound for another tenant's webhook
        after: LogPosition | None = None
        if after_cursor:
            after = (await self.cursors(scope)).decode(after_cursor, field="after_cursor").position
        elif consumer is not None:
            after = await self._store.consumer_position(scope, consumer)

        async def read(position: LogPosition | None, limit: int) -> list[InboundEvent]:
            return await self._store.read(scope, webhook_id=webhook_id, after=position, limit=limit)

        async with self._stream_slots.hold(scope.tenant_id):
            events = tail(
                read,
                lambda event: event.position,
                after=after,
                follow=follow,
                notifications=self._notifications,
                topic=Topic.INBOUND,
            )
            async for event in events:
                yield event

    async def cursors(self, scope: Scope) -> LogCursors:
        """The cursors of the inbound stream as `scope` reads it: each event it is handed carries one."""
        return LogCursors(await self._webhooks.page_token_key(), INBOUND_EVENTS, scope)

    async def acknowledge(self, scope: Scope, consumer: str, cursor: str) -> str:
        """Returns the cursor of the consumer's position now, which never moves back."""
        consumer_name(consumer)
        cursors = await self.cursors(scope)
        given = cursors.decode(cursor, field="cursor")
        position = await self._store.acknowledge(
            scope, consumer, given.position, now=self._now(), handed_out=given.bound
        )
        return cursors.encode(position)
