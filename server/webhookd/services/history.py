"""Delivery history use cases: the streaming log and its consumers, listing, redeliver and recover."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

from webhookd.domain import event_types, page_tokens
from webhookd.domain.deliveries import MAX_RECOVER_WINDOW, Delivery, DeliveryFilter, DeliveryPage
from webhookd.domain.errors import FieldViolation, Invalid
from webhookd.domain.history import LogEntry, LogFilter, LogPosition, LogRead
from webhookd.domain.inbound import consumer_name
from webhookd.domain.lifecycle import LifecycleChange, recovered_reason
from webhookd.domain.log_cursors import DELIVERY_LOG, LogCursors
from webhookd.domain.scope import Scope
from webhookd.domain.statuses import LogKind
from webhookd.domain.validation import check_time_range, validate_page_size
from webhookd.domain.webhooks import check_requeues
from webhookd.ports import (
    Clock,
    HistoryRepository,
    LifecycleRepository,
    LogConsumers,
    Notifications,
    Topic,
    WebhookRepository,
    utc_now,
)
from webhookd.services.tailing import StreamSlots, tail
from webhookd.services.to_its_end import to_its_end


def check_event_types(values: tuple[str, ...], field: str) -> list[FieldViolation]:
    violations: list[FieldViolation] = []
    for index, value in enumerate(values):
        problem = event_types.validate_filter(value)
        if problem is not None:
            violations.append(FieldViolation(f"{field}[{index}]", problem))
    return violations


class History:
    def __init__(
        self,
        store: HistoryRepository,
        webhooks: WebhookRepository,
        notifications: Notifications,
        *,
        lifecycle: LifecycleRepository,
        consumers: LogConsumers,
        stream_slots: StreamSlots,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._webhooks = webhooks
        self._notifications = notifications
        self._lifecycle = lifecycle
        self._consumers = consumers
        self._stream_slots = stream_slots
        self._now = clock

    async def cursors(self, scope: Scope) -> LogCursors:
        """The cursors of the log as `scope` reads it: each entry it is handed carries one."""
        return LogCursors(await self._webhooks.page_token_key(), DELIVERY_LOG, scope)

    async def log(
        self,
        scope: Scope,
        query: LogFilter,
        *,
        after_cursor: str | None,
        since: datetime | None,
        follow: bool,
        consumer: str | None = None,
    ) -> AsyncIterator[LogEntry]:
        """With a `consumer` and no `after_cursor`, the stream starts after what that consumer acknowledged."""
        violations = check_event_types(query.event_types, "event_types")
        if violations:
            raise Invalid(violations)
        if consumer is not None:
            consumer_name(consumer)
        if query.webhook_id is not None:
            await self._webhooks.get(scope, query.webhook_id)  # NotFound for another tenant's webhook
        after: LogPosition | None = None
        if after_cursor:
            after = (await self.cursors(scope)).decode(after_cursor, field="after_cursor").position
        elif consumer is not None:
            after = await self._consumers.position(scope, consumer)

        # A filter of the whole stream, as the others are, so that what it hands out does not depend on where
        # its reads stopped (at a batch, at their bound of rows); a cursor's stream has none.
        since = since if after is None else None

        async def read(position: LogPosition | None, limit: int) -> LogRead[LogEntry]:
            return await self._store.read_log(scope, query, after=position, since=since, limit=limit)

        async with self._stream_slots.hold(scope.tenant_id) as closing:
            entries = tail(
                read,
                lambda entry: entry.position,
                after=after,
                follow=follow,
                notifications=self._notifications,
                topic=Topic.ATTEMPTS,
                key=scope.tenant_id,
                closing=closing,
            )
            async for entry in entries:
                yield entry

    async def acknowledge(self, scope: Scope, consumer: str, cursor: str) -> str:
        """The consumer has processed the log up to `cursor`; returns the cursor of its position now,
        which never moves back."""
        consumer_name(consumer)
        cursors = await self.cursors(scope)
        given = cursors.decode(cursor, field="cursor")
        position = await self._consumers.acknowledge(
            scope, consumer, given.position, now=self._now(), handed_out=given.bound
        )
        return cursors.encode(position)

    async def list_deliveries(
        self, scope: Scope, query: DeliveryFilter, *, page_size: int, page_token: str
    ) -> DeliveryPage:
        violations = check_event_types(query.event_types, "event_type") + check_time_range(
            query.start_time, query.end_time
        )
        if violations:
            raise Invalid(violations)
        limit = validate_page_size(page_size)
        if query.webhook_id is not None:
            await self._webhooks.get(scope, query.webhook_id)  # NotFound for another tenant's, as the log says
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
        queued, _ = await self._store.get_delivery(scope, delivery_id)
        # Queued for a deleted or disabled webhook, it would wait, answered as due now.
        check_requeues(await self._webhooks.get(scope, queued.webhook_id))

        async def redeliver_and_wake() -> Delivery:
            delivery = await self._store.redeliver(scope, delivery_id, now=self._now())
            self._notifications.notify(Topic.DELIVERIES)
            return delivery

        return await to_its_end(redeliver_and_wake())

    async def recover(self, scope: Scope, webhook_id: str, *, since: datetime | None) -> int:
        now = self._now()
        if since is None:
            raise Invalid.field("since", "is required: recover failed deliveries queued since when?")
        if since < now - MAX_RECOVER_WINDOW:
            raise Invalid.field("since", "must be within the last 14 days")
        if since > now:
            # Nothing can have failed yet: a mistaken time, which would still log a recovery of none.
            raise Invalid.field("since", "is in the future: recover failed deliveries queued since a time past")
        # Skipped deliveries are what a disabled webhook missed: replaying them needs it enabled.
        check_requeues(await self._webhooks.get(scope, webhook_id))

        async def recover_and_log() -> int:
            queued = await self._store.recover(scope, webhook_id, since=since, now=now)
            change = LifecycleChange(LogKind.RECOVERED, webhook_id, now, recovered_reason(queued, since), queued)
            operational = await self._lifecycle.record(scope, change)
            self._notifications.notify(Topic.ATTEMPTS, scope.tenant_id)
            if queued or operational:
                self._notifications.notify(Topic.DELIVERIES)
            return queued

        # Two writes: a caller gone after the first must not leave requeued deliveries without their entry.
        return await to_its_end(recover_and_log())
