"""Delivery history use cases: the streaming log, listing, redeliver and recover."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from webhookd.domain import event_types, page_tokens
from webhookd.domain.errors import FieldViolation, Invalid
from webhookd.domain.history import (
    DELIVERY_STATUSES,
    MAX_RECOVER_WINDOW,
    OUTCOMES,
    Delivery,
    DeliveryFilter,
    LogEntry,
    LogFilter,
    LogPosition,
)
from webhookd.domain.scope import Scope
from webhookd.domain.validation import validate_page_size
from webhookd.services.tailing import StreamSlots, tail
from webhookd.store.history import HistoryStore
from webhookd.store.notifications import NotificationHub
from webhookd.store.webhooks import WebhookStore


@dataclass(frozen=True)
class DeliveryPage:
    deliveries: list[Delivery]
    next_page_token: str


def _check_filters(values: tuple[str, ...], allowed: tuple[str, ...], field: str) -> list[FieldViolation]:
    return [
        FieldViolation(f"{field}[{index}]", f"must be one of {', '.join(allowed)}")
        for index, value in enumerate(values)
        if value not in allowed
    ]


def _check_event_types(values: tuple[str, ...], field: str) -> list[FieldViolation]:
    violations: list[FieldViolation] = []
    for index, value in enumerate(values):
        problem = event_types.validate_filter(value)
        if problem is not None:
            violations.append(FieldViolation(f"{field}[{index}]", problem))
    return violations


class History:
    def __init__(
        self,
        store: HistoryStore,
        webhooks: WebhookStore,
        hub: NotificationHub,
        *,
        stream_slots: StreamSlots,
    ) -> None:
        self._store = store
        self._webhooks = webhooks
        self._hub = hub
        self._stream_slots = stream_slots

    @property
    def hub(self) -> NotificationHub:
        return self._hub

    async def log(
        self,
        scope: Scope,
        query: LogFilter,
        *,
        after: LogPosition | None,
        since: datetime | None,
        follow: bool,
    ) -> AsyncIterator[LogEntry]:
        violations = _check_filters(query.outcomes, OUTCOMES, "outcomes")
        violations += _check_event_types(query.event_types, "event_types")
        if violations:
            raise Invalid(violations)
        if query.webhook_id is not None:
            await self._webhooks.get(scope, query.webhook_id)  # NotFound for another tenant's webhook
        with self._stream_slots.hold(scope.tenant_id):
            async for entry in self._entries(scope, query, after=after, since=since, follow=follow):
                yield entry

    async def _entries(
        self, scope: Scope, query: LogFilter, *, after: LogPosition | None, since: datetime | None, follow: bool
    ) -> AsyncIterator[LogEntry]:
        async def read(position: LogPosition | None, limit: int) -> list[LogEntry]:
            return await self._store.read_log(scope, query, after=position, since=since, limit=limit)

        async for entry in tail(read, lambda entry: entry.position, after=after, follow=follow, hub=self._hub):
            yield entry

    async def list_deliveries(
        self, scope: Scope, query: DeliveryFilter, *, page_size: int, page_token: str
    ) -> DeliveryPage:
        violations: list[FieldViolation] = []
        if query.status is not None and query.status not in DELIVERY_STATUSES:
            violations.append(FieldViolation("status", f"must be one of {', '.join(DELIVERY_STATUSES)}"))
        if query.last_outcome is not None and query.last_outcome not in OUTCOMES:
            violations.append(FieldViolation("last_outcome", f"must be one of {', '.join(OUTCOMES)}"))
        violations += _check_event_types(query.event_types, "event_type")
        if violations:
            raise Invalid(violations)
        limit = validate_page_size(page_size)
        key = await self._webhooks.page_token_key()
        digest = page_tokens.query_digest("deliveries", scope.tenant_id, scope.app_id, query)
        before = None
        if page_token:
            created_at, _, delivery_id = page_tokens.decode(key, page_token, digest).partition("|")
            before = (datetime.fromisoformat(created_at), delivery_id)
        rows = await self._store.list_deliveries(scope, query, before=before, limit=limit + 1)
        page = rows[:limit]
        token = ""
        if len(rows) > limit:
            last = page[-1]
            token = page_tokens.encode(key, f"{last.created_at.isoformat()}|{last.id}", digest)
        return DeliveryPage(page, token)

    async def get_delivery(self, scope: Scope, delivery_id: str) -> tuple[Delivery, list[LogEntry]]:
        return await self._store.get_delivery(scope, delivery_id)

    async def redeliver(self, scope: Scope, delivery_id: str) -> Delivery:
        return await self._store.redeliver(scope, delivery_id, now=datetime.now(UTC))

    async def recover(self, scope: Scope, webhook_id: str, *, since: datetime | None) -> int:
        now = datetime.now(UTC)
        if since is None:
            raise Invalid.field("since", "is required: recover failed deliveries queued since when?")
        if since < now - MAX_RECOVER_WINDOW:
            raise Invalid.field("since", "must be within the last 14 days")
        return await self._store.recover(scope, webhook_id, since=since, now=now)
