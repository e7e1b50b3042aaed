"""Inbound webhooks: verify what an external system sends, store it before answering, and hand it
to internal consumers as a resumable stream.

The order of a receipt is the use case's, whatever transport carries it: an unknown, deleted,
disabled or outbound id is NotFound before anything is read; the size limit applies while reading;
then the signature; then the rate limit, and the receipt is committed before the caller is told it
was accepted, so nothing acknowledged is ever lost.

The rate limit comes after the signature so that whoever has the callback URL (it is handed to the
sender, and may leak) cannot spend the sender's tokens with requests it cannot sign: a correctly
signed request draws from the webhook's bucket (past it, ResourceExhausted, nothing stored), a
refused one from the webhook's refusals' bucket, the same size. A refusal is recorded (a receipt and
a log line) while that bucket has a token, and past it answered alike (Unauthenticated) but not
recorded: the answer is about the request, which no wait would make acceptable, and the sender whose
secret is wrong learns that, where a 429 would tell it to retry the same request. Verifying first
costs a body read (within the size limit) and an HMAC under the secret cached in the process.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from webhookd.domain import ids, signing
from webhookd.domain.errors import NotFound, ResourceExhausted, Unauthenticated, Unavailable
from webhookd.domain.history import LogPosition, LogRead
from webhookd.domain.inbound import (
    InboundEvent,
    InboundTarget,
    Receipt,
    Received,
    Stored,
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
        """Verifies and stores one request; Unauthenticated when it is not signed right (recorded
        while the refusals' bucket has a token), PayloadTooLarge past the size limit,
        ResourceExhausted past the rate limit of signed requests."""
        started = time.perf_counter()
        target = await self._target(webhook_id)
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
            await self._record(target, receipt(error.reason, None, 401))  # not stored past its bucket: alike
            raise Unauthenticated(f"signature rejected: {error.reason}", reason="SIGNATURE_REJECTED") from None
        stored = await self._record(target, receipt("", body, 200))
        if stored.retry_after_seconds is not None:
            wait = max(1.0, stored.retry_after_seconds)
            raise ResourceExhausted("too many requests for this webhook", retry_after_seconds=wait)
        if target.signature_scheme is SignatureScheme.ZOOM:
            answer = zoom_validation(message.challenge, secrets, headers, body, int(now.timestamp()))
            return Received(stored.receipt_id, zoom_validation=answer)
        return Received(stored.receipt_id, message.challenge, twiml=target.signature_scheme is SignatureScheme.TWILIO)

    async def confirm_subscription(self, webhook_id: str, query: str) -> str:
        """Meta's check of a callback URL (a GET, no body, no signature): the challenge to answer with.
        NotFound unless the webhook is a live meta one; Invalid or PermissionDenied (meta_challenge)
        when the query is not Meta's or names another Verify Token. Nothing is stored, and no bucket
        is drawn from: the Verify Token is the id in the URL, so the webhook's bucket would be anyone's
        to empty, and a token costs a write where the answer costs the one read that finds the webhook,
        as an unknown id's does."""
        target = await self._target(webhook_id)
        if target.signature_scheme is not SignatureScheme.META:
            raise NotFound.of("active meta inbound webhook", webhook_id)
        return meta_challenge(target.webhook_id, query)

    async def _target(self, webhook_id: str) -> InboundTarget:
        """The live inbound webhook a request is for; NotFound before anything of the request is read."""
        # Anything but a webhook id (a NUL, 10,000 characters) is unknown without asking the database.
        if not ids.looks_like(ids.WEBHOOK_PREFIX, webhook_id):
            raise NotFound.of("active inbound webhook", webhook_id)
        target = await self._store.target(webhook_id)
        if target is None:
            raise NotFound.of("active inbound webhook", webhook_id)
        return target

    async def _secret_record(self, target: InboundTarget) -> dict[str, str]:
        """The webhook's secret record; Unavailable when Vault has none for a live webhook (a restore, an
        operator's slip): our fault, not the sender's, who retries (as a delivery waits, delivery/attempt.py)
        and reads nothing of the path, which names the tenant."""
        try:
            return await self._secrets.record(target.vault_path, target.secret_fingerprint, "", target.version)
        except NotFound as error:
            raise Unavailable(f"inbound webhook {target.webhook_id}: {error.message}", dependency="vault") from None

    async def _record(self, target: InboundTarget, receipt: Receipt) -> Stored:
        stored = await self._store.record(target, receipt, rate_per_second=self._rate_per_second, burst=self._burst)
        if stored.receipt_id is not None:
            self._notifications.notify(Topic.ATTEMPTS, target.tenant_id)
            if receipt.accepted:
                self._notifications.notify(Topic.INBOUND, target.tenant_id)
        return stored

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

        async def read(position: LogPosition | None, limit: int) -> LogRead[InboundEvent]:
            return await self._store.read(scope, webhook_id=webhook_id, after=position, limit=limit)

        async with self._stream_slots.hold(scope.tenant_id) as closing:
            events = tail(
                read,
                lambda event: event.position,
                after=after,
                follow=follow,
                notifications=self._notifications,
                topic=Topic.INBOUND,
                key=scope.tenant_id,
                closing=closing,
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
