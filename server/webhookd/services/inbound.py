"""Inbound webhooks: verify what an external system sends, store it before answering, and hand it
to internal consumers as a resumable stream."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from webhookd.domain import signing
from webhookd.domain.errors import Invalid, NotFound, ResourceExhausted, Unauthenticated
from webhookd.domain.history import LogPosition, decode_cursor
from webhookd.domain.rate_limit import RateLimiter
from webhookd.domain.scope import Scope
from webhookd.domain.secret_rotation import active_secrets
from webhookd.secrets.vault import VaultSecretStore
from webhookd.services.tailing import StreamSlots, tail
from webhookd.store.inbound import InboundEvent, InboundStore, InboundTarget, Receipt
from webhookd.store.notifications import NotificationHub
from webhookd.store.webhooks import WebhookStore

MESSAGE_ID_HEADERS = ("webhook-id", "x-github-delivery")
MAX_MESSAGE_ID_LENGTH = 255
MAX_EVENT_TYPE_LENGTH = 128
_CONSUMER_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True)
class Received:
    receipt_id: str | None  # None: a duplicate of a message already stored

    @property
    def duplicate(self) -> bool:
        return self.receipt_id is None


def _event_type(body: bytes, content_type: str) -> str:
    """The `type` of a JSON object body (Standard Webhooks' shape), else empty."""
    if "json" not in content_type.lower():
        return ""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        return ""
    kind = parsed.get("type") if isinstance(parsed, dict) else None
    return kind[:MAX_EVENT_TYPE_LENGTH] if isinstance(kind, str) else ""


def _message_id(headers: Mapping[str, str]) -> str | None:
    for name in MESSAGE_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value[:MAX_MESSAGE_ID_LENGTH]
    return None


def consumer_name(value: str, field: str = "consumer") -> str:
    if not _CONSUMER_NAME.fullmatch(value):
        raise Invalid.field(field, "must be 1..64 characters of letters, digits, '.', '_' and '-'")
    return value


class Inbound:
    def __init__(
        self,
        store: InboundStore,
        secrets: VaultSecretStore,
        webhooks: WebhookStore,
        hub: NotificationHub,
        *,
        rate_limiter: RateLimiter,
        stream_slots: StreamSlots,
    ) -> None:
        self._stream_slots = stream_slots
        self._store = store
        self._secrets = secrets
        self._webhooks = webhooks
        self._hub = hub
        self._rate_limiter = rate_limiter

    async def target(self, webhook_id: str) -> InboundTarget:
        target = await self._store.target(webhook_id)
        if target is None:
            raise NotFound(f"no active inbound webhook {webhook_id}")
        return target

    def check_rate(self, target: InboundTarget) -> None:
        wait = self._rate_limiter.acquire(target.webhook_id)
        if wait is not None:
            raise ResourceExhausted("too many requests for this webhook", retry_after_seconds=max(1.0, wait))

    async def receive(
        self, target: InboundTarget, headers: Mapping[str, str], body: bytes, content_type: str, *, started: float
    ) -> Received:
        """Verifies and stores one request; Unauthenticated (after recording it) when it is not signed right.

        `headers` must have lower-case names.
        """
        record = await self._secrets.read(target.vault_path)
        now = datetime.now(UTC)
        message_id = _message_id(headers)
        event_type = _event_type(body, content_type)
        try:
            signing.verify(target.signature_scheme, active_secrets(record, now), headers, body, int(now.timestamp()))
        except signing.SignatureError as error:
            await self._store.record(
                target, self._receipt(message_id, error.reason, event_type, content_type, None, 401, started, now)
            )
            raise Unauthenticated(f"signature rejected: {error.reason}", reason="SIGNATURE_REJECTED") from None
        receipt_id = await self._store.record(
            target, self._receipt(message_id, "", event_type, content_type, body, 200, started, now)
        )
        return Received(receipt_id)

    @staticmethod
    def _receipt(
        message_id: str | None,
        reason: str,
        event_type: str,
        content_type: str,
        body: bytes | None,
        http_status: int,
        started: float,
        now: datetime,
    ) -> Receipt:
        return Receipt(
            message_id=message_id,
            accepted=body is not None,
            reason=reason,
            event_type=event_type,
            content_type=content_type,
            body=body,
            http_status=http_status,
            latency_ms=int((time.perf_counter() - started) * 1000),
            received_at=now,
        )

    async def stream(
        self, scope: Scope, *, consumer: str | None, webhook_id: str | None, after_cursor: str | None, follow: bool
    ) -> AsyncIterator[InboundEvent]:
        if consumer is not None:
            consumer_name(consumer)
        if webhook_id is not None:
            await self._webhooks.get(scope, webhook_id)  # NotFound for another tenant's webhook
        after: LogPosition | None = None
        if after_cursor:
            after = decode_cursor(after_cursor)
        elif consumer is not None:
            after = await self._store.consumer_position(scope, consumer)

        async def read(position: LogPosition | None, limit: int) -> list[InboundEvent]:
            return await self._store.read(scope, webhook_id=webhook_id, after=position, limit=limit)

        with self._stream_slots.hold(scope.tenant_id):
            async for event in tail(read, lambda event: event.position, after=after, follow=follow, hub=self._hub):
                yield event

    async def acknowledge(self, scope: Scope, consumer: str, cursor: str) -> LogPosition:
        consumer_name(consumer)
        position = decode_cursor(cursor, field="cursor")
        return await self._store.acknowledge(scope, consumer, position, now=datetime.now(UTC))
