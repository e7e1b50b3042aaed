"""In-memory fakes of the ports (webhookd/ports.py), so the core is unit-tested without PostgreSQL or Vault.

Each fake keeps the semantics its adapter gives the port, as the port's docstring states them: another
tenant's (or app's) rows are NotFound, a stale version is Aborted, a deleted webhook is FailedPrecondition,
idempotency keys and message ids dedupe, a lost lease cannot change a delivery, logs are read by position.
They are test doubles, not a second database: rows live in dicts and lists the tests may read, and the
integration tests prove the real adapters (store/, secrets/, delivery/http.py, store/notifications.py).
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar
from uuid import UUID

from webhookd.domain import event_types, idempotency, ids, routing
from webhookd.domain.credentials import Credential
from webhookd.domain.deliveries import (
    AttemptRecord,
    AttemptResult,
    ClaimedDelivery,
    Delivery,
    DeliveryFilter,
    RecordedBatch,
)
from webhookd.domain.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    Invalid,
    NotFound,
    PayloadTooLarge,
    Unavailable,
)
from webhookd.domain.event_catalog import EventType, EventTypeSpec
from webhookd.domain.events import (
    KEY_REUSED,
    EventFilter,
    NewEvent,
    Published,
    event_data,
    same_event,
)
from webhookd.domain.events import StoredEvent as PublishedEvent
from webhookd.domain.history import DELIVERY_ATTEMPTS_SHOWN, LogEntry, LogFilter, LogPosition, LogRead
from webhookd.domain.idempotency import KeyedRequest
from webhookd.domain.inbound import InboundEvent, InboundTarget, Receipt, Stored
from webhookd.domain.lifecycle import HeldSettled, LifecycleChange, resumed_reason
from webhookd.domain.scope import Scope
from webhookd.domain.secret_changes import change_under_way
from webhookd.domain.statuses import DeliveryStatus, Outcome
from webhookd.domain.topics import new_deliveries_payload
from webhookd.domain.webhooks import Direction, Ordering, Webhook, WebhookFilter, WebhookSpec
from webhookd.ports import Clock, Topic

T = TypeVar("T")


class FakeClock:
    """A ports.Clock whose time moves only when the test says so."""

    def __init__(self, now: datetime = datetime(2030, 1, 1, tzinfo=UTC)) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now


# -- webhooks ------------------------------------------------------------------------------------------


class FakeWebhooks:
    """ports.WebhookRepository as store/webhooks.py behaves; `rows` is the table, by id. A write's
    lifecycle note goes to `noted`, and to the FakeLifecycle made on this store's history, if any
    (there, as the real store does it in the write's transaction)."""

    def __init__(self) -> None:
        self.rows: dict[str, Webhook] = {}
        self.keys: dict[str, KeyedRequest] = {}  # by webhook id: the key its create held
        self.noted: list[LifecycleChange] = []
        self.lifecycle: FakeLifecycle | None = None
        # By webhook id: the token holding its secret lease and when the lease lapses, by `clock`
        # (the database's clock in store/webhooks.py).
        self.secret_leases: dict[str, tuple[UUID, datetime]] = {}
        self.clock: Clock = lambda: datetime.now(UTC)
        # By webhook id: when its secret record next holds an ended overlap (migration 0021), for FakeSecretOverlaps.
        self.overlap_ends: dict[str, datetime | None] = {}

    async def _note(self, scope: Scope, note: LifecycleChange | None) -> None:
        if note is None:
            return
        self.noted.append(note)
        if self.lifecycle is not None:
            await self.lifecycle.record(scope, note)

    async def page_token_key(self) -> bytes:
        return b"fake page token key, one per test"

    async def insert(self, webhook: Webhook, *, keyed: KeyedRequest | None = None) -> bool:
        if webhook.id in self.rows:
            raise RuntimeError(f"duplicate key value violates webhooks_pkey: {webhook.id}")
        if keyed is not None:
            if self._key_holder(webhook.tenant_id, webhook.app_id, keyed.key) is not None:
                return False
            self.keys[webhook.id] = keyed
        self.rows[webhook.id] = webhook
        return True

    async def created_with(self, scope: Scope, key: str) -> tuple[Webhook, str] | None:
        holder = self._key_holder(scope.tenant_id, scope.app_id, key)
        return None if holder is None else (self.rows[holder], self.keys[holder].request)

    async def release_key(self, scope: Scope, webhook_id: str, key: str) -> None:
        if self._key_holder(scope.tenant_id, scope.app_id, key) == webhook_id:
            del self.keys[webhook_id]

    def _key_holder(self, tenant_id: str, app_id: str | None, key: str) -> str | None:
        """Exactly that scope's (webhooks_idempotency: tenant and app, a person's apart from an app's)."""
        for webhook_id, keyed in self.keys.items():
            row = self.rows[webhook_id]
            if (row.tenant_id, row.app_id or "", keyed.key) == (tenant_id, app_id or "", key):
                return webhook_id
        return None

    async def get(self, scope: Scope, webhook_id: str) -> Webhook:
        row = self.rows.get(webhook_id)
        if row is None or not scope.owns(row.tenant_id, row.app_id):
            raise NotFound(f"webhook {webhook_id} not found")
        return row

    async def update_spec(
        self,
        scope: Scope,
        webhook_id: str,
        spec: WebhookSpec,
        *,
        expected_version: int,
        person_id: str | None,
        now: datetime,
        note: LifecycleChange | None = None,
        routing_changed: bool = False,
    ) -> Webhook:
        current = await self.get(scope, webhook_id)
        if current.is_deleted:
            raise FailedPrecondition(f"webhook {webhook_id} is deleted; undelete it before updating it")
        if current.version != expected_version:
            raise Aborted(f"webhook {webhook_id} is at version {current.version}, not {expected_version}")
        await self._note(scope, note)
        return self._write(current, spec=spec, updated_at=now, updated_by=person_id)

    async def soft_delete(
        self,
        scope: Scope,
        webhook_id: str,
        *,
        expected_version: int | None,
        person_id: str | None,
        now: datetime,
        note: LifecycleChange | None = None,
    ) -> Webhook:
        current = await self.get(scope, webhook_id)
        if expected_version is not None and current.version != expected_version:
            raise Aborted(f"webhook {webhook_id} is at version {current.version}, not {expected_version}")
        if current.is_deleted:
            return current
        await self._note(scope, note)
        return self._write(current, deleted_at=now, deleted_by=person_id, updated_at=now, updated_by=person_id)

    async def undelete(
        self,
        scope: Scope,
        webhook_id: str,
        *,
        person_id: str | None,
        now: datetime,
        note: LifecycleChange | None = None,
    ) -> Webhook:
        current = await self.get(scope, webhook_id)
        if not current.is_deleted:
            raise AlreadyExists(f"webhook {webhook_id} is not deleted")
        await self._note(scope, note)
        return self._write(current, deleted_at=None, deleted_by=None, updated_at=now, updated_by=person_id)

    async def set_fingerprint(
        self,
        scope: Scope,
        webhook_id: str,
        fingerprint: str,
        *,
        replacing: str,
        lease: UUID,
        person_id: str | None,
        now: datetime,
        note: LifecycleChange | None = None,
    ) -> Webhook:
        current = await self.get(scope, webhook_id)
        if not current.is_deleted and (current.secret_fingerprint != replacing or not self._holds(webhook_id, lease)):
            raise Aborted(f"webhook {webhook_id}'s secrets were changed by another call meanwhile")
        written = await self._stamp(
            scope, webhook_id, secret_fingerprint=fingerprint, updated_at=now, updated_by=person_id
        )
        self.overlap_ends[webhook_id] = now  # due for the sweep, as the commit marks it
        del self.secret_leases[webhook_id]  # released by the write that commits
        await self._note(scope, note)
        return written

    async def set_credential(
        self,
        scope: Scope,
        webhook_id: str,
        header: str,
        credential_id: str,
        *,
        url: str,
        lease: UUID,
        person_id: str | None,
        now: datetime,
        note: LifecycleChange | None = None,
    ) -> Webhook:
        current = await self.get(scope, webhook_id)
        if not current.is_deleted and current.spec.url != url:
            raise Aborted(f"webhook {webhook_id}'s url changed while its credential was being set")
        if not current.is_deleted and not self._holds(webhook_id, lease):
            raise Aborted(f"webhook {webhook_id}'s secrets were changed by another call meanwhile")
        written = await self._stamp(
            scope,
            webhook_id,
            credential_header=header,
            credential_id=credential_id,
            updated_at=now,
            updated_by=person_id,
        )
        self.overlap_ends[webhook_id] = now  # due for the sweep, as the commit marks it
        del self.secret_leases[webhook_id]  # released by the write that commits
        await self._note(scope, note)
        return written

    async def take_secret_lease(self, scope: Scope, webhook_id: str, token: UUID, *, lasting: timedelta) -> Webhook:
        current = await self.get(scope, webhook_id)
        held = self.secret_leases.get(webhook_id)
        if held is not None and held[1] >= self.clock():
            raise change_under_way(webhook_id)
        self.secret_leases[webhook_id] = (token, self.clock() + lasting)
        return current

    async def release_secret_lease(self, scope: Scope, webhook_id: str, token: UUID) -> None:
        await self.get(scope, webhook_id)
        if self._holds(webhook_id, token):
            del self.secret_leases[webhook_id]

    def _holds(self, webhook_id: str, token: UUID) -> bool:
        """Whether `token` still holds the webhook's secret lease: lapsed or not, while nobody took it."""
        held = self.secret_leases.get(webhook_id)
        return held is not None and held[0] == token

    async def resume(
        self, scope: Scope, webhook_id: str, *, person_id: str | None, note: LifecycleChange, discard_held: bool
    ) -> tuple[Webhook, HeldSettled | None]:
        current = await self.get(scope, webhook_id)
        if not current.is_deleted and current.paused_at is None:
            return current, None
        written = await self._stamp(
            scope, webhook_id, paused_at=None, consecutive_failures=0, updated_at=note.at, updated_by=person_id
        )
        if self.lifecycle is None:
            self.noted.append(note)
            return written, HeldSettled(released=0, discarded=0)
        settled, noted = await self.lifecycle.settle_held(scope, note, discard=discard_held)
        self.noted.append(noted)
        return written, settled

    async def _stamp(self, scope: Scope, webhook_id: str, **changes: Any) -> Webhook:
        """A server-side change of a live webhook: a new version, no version precondition."""
        current = await self.get(scope, webhook_id)
        if current.is_deleted:
            raise FailedPrecondition(f"webhook {webhook_id} is deleted; undelete it first")
        return self._write(current, **changes)

    def _write(self, current: Webhook, **changes: Any) -> Webhook:
        row = replace(current, version=current.version + 1, **changes)
        self.rows[row.id] = row
        return row

    # Last in the class: below it, `list` would name this method rather than the type.
    async def list(self, scope: Scope, query: WebhookFilter, *, after_id: str | None, limit: int) -> list[Webhook]:
        found = [
            row
            for webhook_id, row in sorted(self.rows.items())
            if scope.owns(row.tenant_id, row.app_id)
            and _listed(row, query)
            and (after_id is None or webhook_id > after_id)
        ]
        return found[:limit]


def _listed(row: Webhook, query: WebhookFilter) -> bool:
    spec = row.spec
    return (
        (query.show_deleted or not row.is_deleted)
        and query.direction in (None, spec.direction)
        and query.enabled in (None, spec.enabled)
        and (not query.event_type_filters or bool(set(query.event_type_filters) & set(spec.event_types)))
        and (not query.connector_id or spec.connector_id == query.connector_id)
        and (not query.application_id or spec.application_id == query.application_id)
        and (not query.tag or query.tag in spec.tags)
        and (not query.name_contains or query.name_contains.casefold() in spec.name.casefold())
    )


def receives(row: Webhook, matching_filters: list[str], channels: tuple[str, ...] = ()) -> bool:
    """Whether a publish makes a delivery for this webhook: live, outbound, subscribed to the type,
    and without channels or sharing one with the event (its status then says whether it is sent:
    new_delivery_status)."""
    return (
        row.spec.direction is Direction.OUTBOUND
        and not row.is_deleted
        and bool(set(row.spec.event_types) & set(matching_filters))
        and routing.receives_channels(row.spec.channels, channels)
    )


def new_delivery_status(row: Webhook) -> DeliveryStatus:
    """As store/events.py decides it: skipped while disabled, held while paused, else pending."""
    if not row.spec.enabled:
        return DeliveryStatus.SKIPPED
    return DeliveryStatus.HELD if row.paused_at is not None else DeliveryStatus.PENDING


# -- events ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredEvent:
    tenant_id: str
    app_id: str | None
    event: NewEvent
    webhook_ids: tuple[str, ...]  # one delivery for each
    statuses: tuple[DeliveryStatus, ...] = ()  # each delivery's, in webhook_ids' order


class FakeEvents:
    """ports.EventRepository as store/events.py behaves: an idempotency key is held per tenant and app
    for idempotency.WINDOW, the fan-out reads the webhooks of `webhooks`, and pending deliveries are
    notified on `notifications`."""

    def __init__(self, webhooks: FakeWebhooks, notifications: FakeNotifications) -> None:
        self._webhooks = webhooks
        self._notifications = notifications
        self.events: dict[str, StoredEvent] = {}
        self._keys: dict[tuple[str, str, str], str] = {}  # (tenant, app or '', key) -> event id

    async def publish(self, scope: Scope, event: NewEvent, matching_filters: list[str]) -> Published:
        key = None
        if event.idempotency_key is not None:
            key = (scope.tenant_id, scope.app_id or "", event.idempotency_key)
            earlier = self.events.get(self._keys.get(key, ""))
            if earlier is not None and idempotency.remembered(earlier.event.created_at, event.created_at):
                stored = earlier.event
                if not same_event(
                    event, stored.event_type, stored.body, stored.target_webhook_id, list(stored.channels)
                ):
                    raise Invalid.field("idempotency_key", KEY_REUSED)
                return Published(earlier.event.id, len(earlier.webhook_ids), duplicate=True)
        target = event.target_webhook_id
        if target is not None:
            row = self._webhooks.rows.get(target)
            found = row is not None and scope.owns(row.tenant_id, row.app_id)
            # NotFound / FailedPrecondition, and nothing is stored.
            routing.check_publish_target(
                target,
                found=found,
                deleted=found and row.is_deleted,
                inbound=found and row.spec.direction is Direction.INBOUND,
            )
        rows = [
            row
            for row in self._webhooks.rows.values()
            if scope.owns(row.tenant_id, row.app_id)
            and receives(row, matching_filters, event.channels)
            and target in (None, row.id)
        ]
        statuses = tuple(new_delivery_status(row) for row in rows)
        self.events[event.id] = StoredEvent(
            scope.tenant_id, scope.app_id, event, tuple(row.id for row in rows), statuses
        )
        if key is not None:
            self._keys[key] = event.id
        queued_for = tuple(
            row.id for row, status in zip(rows, statuses, strict=True) if status is DeliveryStatus.PENDING
        )
        if queued_for:
            self._notifications.notify(Topic.DELIVERIES, new_deliveries_payload(queued_for))
        return Published(
            event.id,
            statuses.count(DeliveryStatus.PENDING),
            duplicate=False,
            deliveries_held=statuses.count(DeliveryStatus.HELD),
            deliveries_skipped=statuses.count(DeliveryStatus.SKIPPED),
            queued_for=queued_for,
        )


# -- the event type catalog ------------------------------------------------------------------------------


class FakeEventTypes:
    """ports.EventTypeRepository as store/event_types.py behaves: a name once per tenant and app, entries
    outside the scope NotFound, a stale version Aborted, `find` in exactly the caller's scope."""

    def __init__(self) -> None:
        self.rows: dict[str, EventType] = {}
        self.finds = 0  # how often a publish had to read the catalog

    async def insert(self, event_type: EventType) -> EventType:
        if any(
            (row.tenant_id, row.app_id, row.spec.name)
            == (event_type.tenant_id, event_type.app_id, event_type.spec.name)
            for row in self.rows.values()
        ):
            raise AlreadyExists(f"event type {event_type.spec.name} is already in the catalog")
        self.rows[event_type.id] = event_type
        return event_type

    async def get(self, scope: Scope, event_type_id: str) -> EventType:
        row = self.rows.get(event_type_id)
        if row is None or not scope.owns(row.tenant_id, row.app_id):
            raise NotFound.of("event type", event_type_id)
        return row

    async def find(self, scope: Scope, name: str) -> EventType | None:
        self.finds += 1
        return next(
            (
                row
                for row in self.rows.values()
                if (row.tenant_id, row.app_id, row.spec.name) == (scope.tenant_id, scope.app_id, name)
            ),
            None,
        )

    async def update(
        self,
        scope: Scope,
        event_type_id: str,
        spec: EventTypeSpec,
        *,
        expected_version: int,
        person_id: str | None,
        now: datetime,
    ) -> EventType:
        current = await self.get(scope, event_type_id)
        if current.version != expected_version:
            raise Aborted(f"event type {event_type_id} is at version {current.version}, not {expected_version}")
        row = replace(current, spec=spec, updated_at=now, updated_by=person_id, version=current.version + 1)
        self.rows[row.id] = row
        return row

    async def delete(self, scope: Scope, event_type_id: str, *, expected_version: int | None) -> EventType:
        current = await self.get(scope, event_type_id)
        if expected_version is not None and current.version != expected_version:
            raise Aborted(f"event type {event_type_id} is at version {current.version}, not {expected_version}")
        return self.rows.pop(event_type_id)

    # Last in the class: below it, `list` would name this method rather than the type.
    async def list(self, scope: Scope, *, name_prefix: str | None, after_id: str | None, limit: int) -> list[EventType]:
        found = [
            row
            for entry_id, row in sorted(self.rows.items())
            if scope.owns(row.tenant_id, row.app_id)
            and (name_prefix is None or row.spec.name.startswith(name_prefix))
            and (after_id is None or entry_id > after_id)
        ]
        return found[:limit]


# -- history ---------------------------------------------------------------------------------------------


@dataclass
class DeliveryRow:
    tenant_id: str
    app_id: str | None
    delivery: Delivery
    in_flight: bool = False  # a worker holds its lease
    is_test: bool = False  # a test event's (SendTestEvent): recovery leaves it alone


@dataclass(frozen=True)
class LogRow:
    tenant_id: str
    app_id: str | None
    entry: LogEntry


class FakeHistory:
    """ports.HistoryRepository as store/history.py behaves. Every log entry here is settled (its writer
    committed); `add_delivery` and `append_log` put rows in, as publishing and attempts would."""

    def __init__(self, webhooks: FakeWebhooks) -> None:
        self.webhooks = webhooks
        self.deliveries: dict[str, DeliveryRow] = {}
        self.log: list[LogRow] = []

    def add_delivery(
        self,
        scope: Scope,
        *,
        webhook_id: str,
        created_at: datetime,
        status: DeliveryStatus = DeliveryStatus.PENDING,
        event_type: str = "orders.created",
        in_flight: bool = False,
        is_test: bool = False,
    ) -> Delivery:
        delivery = Delivery(
            id=ids.new_id(ids.DELIVERY_PREFIX),
            event_id=ids.new_id(ids.EVENT_PREFIX),
            event_type=event_type,
            webhook_id=webhook_id,
            status=status,
            attempts=1 if status in (DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED) else 0,
            next_attempt_at=created_at if status is DeliveryStatus.PENDING else None,
            last_outcome=None,
            last_http_status=None,
            last_error=None,
            created_at=created_at,
            updated_at=created_at,
            completed_at=created_at if status in (DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED) else None,
        )
        self.deliveries[delivery.id] = DeliveryRow(scope.tenant_id, scope.app_id, delivery, in_flight, is_test)
        return delivery

    def append_lifecycle(self, scope: Scope, change: LifecycleChange) -> LogEntry:
        """The next entry of the log: a lifecycle change, as store/lifecycle.py writes it."""
        number = len(self.log) + 1
        entry = LogEntry(
            position=LogPosition(txid=1000 + number, seq=number),
            delivery_id="",
            event_id=ids.new_id(ids.EVENT_PREFIX),
            event_type=change.event_type,
            webhook_id=change.webhook_id,
            attempt=0,
            outcome=None,
            http_status=None,
            latency_ms=0,
            error="",
            response_excerpt="",
            next_attempt_at=None,
            occurred_at=change.at,
            kind=change.kind,
            reason=change.reason,
            delivery_count=change.delivery_count,
        )
        self.log.append(LogRow(scope.tenant_id, scope.app_id, entry))
        return entry

    def append_log(
        self,
        scope: Scope,
        *,
        webhook_id: str,
        occurred_at: datetime,
        outcome: Outcome = Outcome.SUCCEEDED,
        event_type: str = "orders.created",
        delivery_id: str | None = None,
    ) -> LogEntry:
        """The next entry of the log, in position order: as if its writer committed just now."""
        number = len(self.log) + 1
        entry = LogEntry(
            position=LogPosition(txid=1000 + number, seq=number),
            delivery_id=delivery_id or ids.new_id(ids.DELIVERY_PREFIX),
            event_id=ids.new_id(ids.EVENT_PREFIX),
            event_type=event_type,
            webhook_id=webhook_id,
            attempt=1,
            outcome=outcome,
            http_status=200 if outcome is Outcome.SUCCEEDED else None,
            latency_ms=12,
            error="",
            response_excerpt="",
            next_attempt_at=None,
            occurred_at=occurred_at,
        )
        self.log.append(LogRow(scope.tenant_id, scope.app_id, entry))
        return entry

    async def read_log(
        self, scope: Scope, query: LogFilter, *, after: LogPosition | None, since: datetime | None, limit: int
    ) -> LogRead[LogEntry]:
        entries = [row.entry for row in self.log if scope.owns(row.tenant_id, row.app_id) and _logged(row.entry, query)]
        if after is not None:
            entries = [entry for entry in entries if entry.position > after]
        if since is not None:
            entries = [entry for entry in entries if entry.occurred_at >= since]
        return LogRead(sorted(entries, key=lambda entry: entry.position)[:limit])

    async def list_deliveries(
        self, scope: Scope, query: DeliveryFilter, *, before: tuple[datetime, str] | None, limit: int
    ) -> list[Delivery]:
        found = [
            row.delivery
            for row in self.deliveries.values()
            if scope.owns(row.tenant_id, row.app_id)
            and _listed_delivery(row.delivery, query)
            and (before is None or (row.delivery.created_at, row.delivery.id) < before)
        ]
        found.sort(key=lambda delivery: (delivery.created_at, delivery.id), reverse=True)
        return found[:limit]

    async def get_delivery(self, scope: Scope, delivery_id: str) -> tuple[Delivery, list[LogEntry]]:
        row = self._scoped(scope, delivery_id)
        attempts = sorted(
            (log.entry for log in self.log if log.entry.delivery_id == delivery_id), key=lambda entry: entry.position
        )
        return row.delivery, attempts[-DELIVERY_ATTEMPTS_SHOWN:]

    async def redeliver(self, scope: Scope, delivery_id: str, *, now: datetime) -> Delivery:
        row = self._scoped(scope, delivery_id)
        if row.in_flight:
            raise FailedPrecondition(f"delivery {delivery_id} is being attempted right now; try again shortly")
        row.delivery = _due_again(row.delivery, now)
        return row.delivery

    async def recover(self, scope: Scope, webhook_id: str, *, since: datetime, now: datetime) -> int:
        await self.webhooks.get(scope, webhook_id)  # NotFound for another scope's webhook
        failed = [
            row
            for row in self.deliveries.values()
            if scope.owns(row.tenant_id, row.app_id)
            and row.delivery.webhook_id == webhook_id
            and row.delivery.status in (DeliveryStatus.FAILED, DeliveryStatus.SKIPPED)
            and not row.is_test
            and row.delivery.created_at >= since
        ]
        for row in failed:
            row.delivery = _due_again(row.delivery, now)
        return len(failed)

    def _scoped(self, scope: Scope, delivery_id: str) -> DeliveryRow:
        row = self.deliveries.get(delivery_id)
        if row is None or not scope.owns(row.tenant_id, row.app_id):
            raise NotFound(f"delivery {delivery_id} not found")
        return row


def _matches_any(filters: tuple[str, ...], event_type: str) -> bool:
    # Reading filters as store/history.py does: `*` is everything there.
    return not filters or event_types.WILDCARD in filters or any(event_types.matches(f, event_type) for f in filters)


def _logged(entry: LogEntry, query: LogFilter) -> bool:
    # Outcomes select among attempts; a lifecycle entry stays only when `kinds` names it.
    outcome_ok = not query.outcomes or entry.outcome in query.outcomes or (bool(query.kinds) and entry.outcome is None)
    return (
        query.webhook_id in (None, entry.webhook_id)
        and (not query.kinds or entry.kind in query.kinds)
        and outcome_ok
        and _matches_any(query.event_types, entry.event_type)
    )


def _listed_delivery(delivery: Delivery, query: DeliveryFilter) -> bool:
    return (
        query.webhook_id in (None, delivery.webhook_id)
        and query.status in (None, delivery.status)
        and query.last_outcome in (None, delivery.last_outcome)
        and _matches_any(query.event_types, delivery.event_type)
        and (query.start_time is None or delivery.created_at >= query.start_time)
        and (query.end_time is None or delivery.created_at < query.end_time)
    )


def _due_again(delivery: Delivery, now: datetime) -> Delivery:
    return replace(delivery, status=DeliveryStatus.PENDING, next_attempt_at=now, completed_at=None, updated_at=now)


# -- operations: lifecycle changes, events read back, log consumers, test events -------------------------


class FakeLifecycle:
    """ports.LifecycleRepository as store/lifecycle.py behaves, on FakeHistory's rows: each change is the
    next log entry, and resuming releases (or discards) the webhook's held deliveries. Operational events
    are not fanned out here (`queued` says how many pending deliveries record() reports)."""

    def __init__(self, history: FakeHistory) -> None:
        self._history = history
        self.changes: list[LifecycleChange] = []
        self.queued = 0
        history.webhooks.lifecycle = self  # the webhook store records its writes' changes here

    async def record(self, scope: Scope, change: LifecycleChange) -> int:
        self.changes.append(change)
        self._history.append_lifecycle(scope, change)
        return self.queued

    async def settle_held(
        self, scope: Scope, change: LifecycleChange, *, discard: bool
    ) -> tuple[HeldSettled, LifecycleChange]:
        """What store/lifecycle.settle_held does in the resume's transaction: the held deliveries
        released (or discarded), and the change noted with their count."""
        held = sorted(
            (
                row
                for row in self._history.deliveries.values()
                if scope.owns(row.tenant_id, row.app_id)
                and row.delivery.webhook_id == change.webhook_id
                and row.delivery.status is DeliveryStatus.HELD
            ),
            key=lambda row: (row.delivery.created_at, row.delivery.id),
        )
        for n, row in enumerate(held, start=1):
            if discard:
                row.delivery = replace(
                    row.delivery, status=DeliveryStatus.DISCARDED, completed_at=change.at, updated_at=change.at
                )
            else:
                due = change.at + timedelta(microseconds=n)
                row.delivery = replace(row.delivery, status=DeliveryStatus.PENDING, next_attempt_at=due)
        done = HeldSettled(released=0 if discard else len(held), discarded=len(held) if discard else 0)
        noted = replace(change, reason=resumed_reason(done), delivery_count=len(held))
        await self.record(scope, noted)
        return done, noted


class FakeEventHistory:
    """ports.EventHistory over FakeEvents' events and FakeHistory's deliveries."""

    def __init__(self, events: FakeEvents, history: FakeHistory) -> None:
        self._events = events
        self._history = history

    async def get_event(self, scope: Scope, event_id: str) -> tuple[PublishedEvent, list[Delivery]]:
        stored = self._events.events.get(event_id)
        if stored is None or not scope.owns(stored.tenant_id, stored.app_id):
            raise NotFound(f"event {event_id} not found")
        made = sorted(
            (row.delivery for row in self._history.deliveries.values() if row.delivery.event_id == event_id),
            key=lambda delivery: delivery.id,
        )
        return _published_event(stored), made

    async def list_events(
        self, scope: Scope, query: EventFilter, *, before_id: str | None, limit: int
    ) -> list[PublishedEvent]:
        found = [
            _published_event(stored)
            for stored in self._events.events.values()
            if scope.owns(stored.tenant_id, stored.app_id)
            and _matches_any(query.event_types, stored.event.event_type)
            and (query.start_time is None or stored.event.created_at >= query.start_time)
            and (query.end_time is None or stored.event.created_at < query.end_time)
            and (before_id is None or stored.event.id < before_id)
        ]
        found.sort(key=lambda event: event.id, reverse=True)
        return found[:limit]


def _published_event(stored: StoredEvent) -> PublishedEvent:
    event = stored.event
    return PublishedEvent(
        id=event.id,
        event_type=event.event_type,
        payload_json=event_data(event.body),
        created_at=event.created_at,
        idempotency_key=event.idempotency_key,
        target_webhook_id=event.target_webhook_id,
    )


class FakeLogConsumers:
    """ports.LogConsumers as store/log_consumers.py behaves: per tenant and app, only forward."""

    def __init__(self) -> None:
        self.positions: dict[tuple[str, str, str], LogPosition] = {}  # (tenant, app or '', name)

    async def position(self, scope: Scope, name: str) -> LogPosition | None:
        return self.positions.get((scope.tenant_id, scope.app_id or "", name))

    async def acknowledge(
        self, scope: Scope, name: str, position: LogPosition, *, now: datetime, handed_out: bool
    ) -> LogPosition:
        key = (scope.tenant_id, scope.app_id or "", name)
        current = self.positions.get(key)
        if current is None or current < position:
            self.positions[key] = position
        return self.positions[key]


@dataclass(frozen=True)
class RecordedPing:
    webhook: Webhook
    event: NewEvent
    delivery_id: str
    record: AttemptRecord


class FakePingBuckets:
    """ports.PingBuckets: a token bucket per webhook on the test's clock, as store/ping_buckets.py keeps."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._now = clock
        self._buckets: dict[tuple[str, bool], tuple[float, datetime]] = {}  # (webhook, accepted) -> (tokens, as of)

    async def take(self, webhook_id: str, *, per_second: float, burst: int) -> float | None:
        now = self._now()
        tokens, as_of = self._buckets.get(webhook_id, (float(burst), now))
        tokens = min(float(burst), tokens + (now - as_of).total_seconds() * per_second)
        if tokens < 1.0:
            self._buckets[webhook_id] = (tokens, now)
            return (1.0 - tokens) / per_second
        self._buckets[webhook_id] = (tokens - 1.0, now)
        return None


class FakePingRecords:
    """ports.PingRecords: what would be kept in history, in `recorded`."""

    def __init__(self) -> None:
        self.recorded: list[RecordedPing] = []

    async def record(self, webhook: Webhook, event: NewEvent, delivery_id: str, record: AttemptRecord) -> None:
        self.recorded.append(RecordedPing(webhook, event, delivery_id, record))


# -- inbound ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredReceipt:
    id: str
    position: LogPosition
    target: InboundTarget
    receipt: Receipt  # its body is None unless it was accepted


class FakeInbound:
    """ports.InboundRepository as store/inbound.py behaves: targets are the live, enabled inbound webhooks
    of `webhooks`; a message id is stored once among accepted receipts; consumers move only forward.
    (The adapter also writes each receipt's DeliveryLog line; reading the log is FakeHistory's part.)"""

    def __init__(self, webhooks: FakeWebhooks, clock: Clock | None = None) -> None:
        self._webhooks = webhooks
        self._now = clock or FakeClock()
        self._buckets: dict[tuple[str, bool], tuple[float, datetime]] = {}  # (webhook, accepted) -> (tokens, as of)
        self.receipts: list[StoredReceipt] = []
        # (tenant, app or "", name): a consumer belongs to the caller's whole scope
        self.consumers: dict[tuple[str, str, str], LogPosition] = {}

    async def target(self, webhook_id: str) -> InboundTarget | None:
        return self._target(webhook_id)

    def _take(self, bucket: tuple[str, bool], rate_per_second: float, burst: int) -> float | None:
        """A token from `bucket`, or None: else the seconds until it holds one."""
        now = self._now()
        tokens, as_of = self._buckets.get(bucket, (float(burst), now))
        tokens = min(float(burst), tokens + (now - as_of).total_seconds() * rate_per_second)
        if tokens < 1.0:
            self._buckets[bucket] = (tokens, now)
            return (1.0 - tokens) / rate_per_second
        self._buckets[bucket] = (tokens - 1.0, now)
        return None

    def _target(self, webhook_id: str) -> InboundTarget | None:
        row = self._webhooks.rows.get(webhook_id)
        if row is None or row.spec.direction is not Direction.INBOUND or not row.spec.enabled or row.is_deleted:
            return None
        return InboundTarget(
            webhook_id=row.id,
            tenant_id=row.tenant_id,
            app_id=row.app_id,
            signature_scheme=row.spec.signature_scheme,
            vault_path=row.vault_path,
            secret_fingerprint=row.secret_fingerprint,
            url=row.spec.url,
            version=row.version,
        )

    async def record(self, target: InboundTarget, receipt: Receipt, *, rate_per_second: float, burst: int) -> Stored:
        # An accepted receipt draws from its webhook's bucket, a rejected one from its refusals' bucket.
        wait = self._take((target.webhook_id, receipt.accepted), rate_per_second, burst)
        if wait is not None:
            return Stored(None, retry_after_seconds=wait)
        if receipt.accepted and receipt.message_id is not None and self._accepted(target, receipt.message_id):
            return Stored(None)
        number = len(self.receipts) + 1
        stored = StoredReceipt(
            id=ids.new_id(ids.RECEIPT_PREFIX),
            position=LogPosition(txid=1000 + number, seq=number),
            target=target,
            receipt=replace(receipt, body=receipt.body if receipt.accepted else None),
        )
        self.receipts.append(stored)
        return Stored(stored.id)

    async def read(
        self, scope: Scope, *, webhook_id: str | None, after: LogPosition | None, limit: int
    ) -> LogRead[InboundEvent]:
        found = [
            _inbound_event(stored)
            for stored in self.receipts
            if stored.receipt.accepted
            and scope.owns(stored.target.tenant_id, stored.target.app_id)
            and webhook_id in (None, stored.target.webhook_id)
            and (after is None or stored.position > after)
        ]
        return LogRead(sorted(found, key=lambda event: event.position)[:limit])

    async def consumer_position(self, scope: Scope, name: str) -> LogPosition | None:
        return self.consumers.get((scope.tenant_id, scope.app_id or "", name))

    async def acknowledge(
        self, scope: Scope, name: str, position: LogPosition, *, now: datetime, handed_out: bool
    ) -> LogPosition:
        key = (scope.tenant_id, scope.app_id or "", name)
        current = self.consumers.get(key)
        if current is None or current < position:
            self.consumers[key] = position
        return self.consumers[key]

    def _accepted(self, target: InboundTarget, message_id: str) -> bool:
        return any(
            stored.receipt.accepted
            and stored.target.webhook_id == target.webhook_id
            and stored.receipt.message_id == message_id
            for stored in self.receipts
        )


def _inbound_event(stored: StoredReceipt) -> InboundEvent:
    receipt = stored.receipt
    return InboundEvent(
        position=stored.position,
        id=stored.id,
        webhook_id=stored.target.webhook_id,
        message_id=receipt.message_id,
        event_type=receipt.event_type,
        content_type=receipt.content_type,
        body=receipt.body or b"",
        received_at=receipt.received_at,
    )


class FakeInboundRequest:
    """ports.InboundRequest: header names in lower case, and PayloadTooLarge past the limit (http/body.py)."""

    def __init__(self, body: bytes, headers: Mapping[str, str], query: str = "") -> None:
        self.body = body
        self._headers = {name.lower(): value for name, value in headers.items()}
        self._query = query
        self.body_reads = 0
        self.repeated: frozenset[str] = frozenset()  # what repeated_headers says; a test sets it

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers

    @property
    def repeated_headers(self) -> frozenset[str]:
        return self.repeated

    @property
    def query(self) -> str:
        return self._query

    async def read_body(self, limit: int) -> bytes:
        self.body_reads += 1
        if len(self.body) > limit:
            raise PayloadTooLarge(limit)
        return self.body


# -- stream leases ---------------------------------------------------------------------------------------


class FakeStreamLeases:
    """ports.StreamLeases as store/stream_leases.py behaves: at most `limit` leases per tenant."""

    def __init__(self) -> None:
        self.held: dict[str, str] = {}  # lease -> tenant

    async def acquire(self, tenant_id: str, limit: int) -> str | None:
        if sum(1 for tenant in self.held.values() if tenant == tenant_id) >= limit:
            return None
        lease = ids.new_id("stl_")
        self.held[lease] = tenant_id
        return lease

    async def release(self, lease_id: str) -> None:
        self.held.pop(lease_id, None)


# -- the delivery queue ----------------------------------------------------------------------------------

# store/deliveries.py: beyond the HTTP timeout, how long a claimed delivery may take to be recorded,
# and how stale a healthy webhook's last_delivery_at may get before a success writes it again.
LEASE_MARGIN = timedelta(seconds=30)
STATS_RESOLUTION = timedelta(seconds=1)


@dataclass
class QueuedDelivery:
    id: str
    tenant_id: str
    app_id: str | None
    webhook_id: str
    event_id: str
    event_type: str
    body: bytes
    next_attempt_at: datetime | None
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: int = 0
    lease_token: str | None = None
    lease_expires_at: datetime | None = None
    last_outcome: Outcome | None = None
    fifo_seq: int | None = None  # its place in publish order, when its webhook was FIFO at publish
    retry_at: datetime | None = None  # its retry's time, which holding it back never moves


class FakeDeliveryQueue:
    """ports.DeliveryQueue as store/deliveries.py behaves: claims lease due deliveries of active webhooks
    (moving them to the lease's end) within the per-webhook cap; a FIFO webhook's only as its head and
    alone, a rate-limited webhook's with send slots 1/limit apart within the horizon; a lost lease cannot
    change a delivery; every attempt is logged in `attempts`, and moves the webhook's statistics (pausing
    it when due); a FIFO head's end makes the next one due."""

    def __init__(self, webhooks: FakeWebhooks, clock: Clock, *, pause_after_failures: int = 5) -> None:
        self._webhooks = webhooks
        self._now = clock
        self._pause_after_failures = pause_after_failures
        self.deliveries: dict[str, QueuedDelivery] = {}
        self.attempts: list[tuple[ClaimedDelivery, AttemptRecord]] = []
        self.releases: list[tuple[ClaimedDelivery, timedelta]] = []  # each with its delay
        self.claim_limits: list[int] = []
        self.claimed_fresh: list[list[str]] = []
        self.claimed_named: list[list[str]] = []
        self.held_back = 0
        self._next_slot: dict[str, datetime] = {}  # rate-limited webhook -> its next free send slot
        self._fifo_seq = 0
        # Set when the pool asks when to wake up next: it has claimed what it could and is about to wait.
        self.looked_ahead = asyncio.Event()

    def add(self, webhook: Webhook, *, body: bytes = b'{"type":"orders.created"}', due: datetime | None = None) -> str:
        """A pending delivery of a new event to `webhook`, due at `due` (now by default); its id."""
        delivery = QueuedDelivery(
            id=ids.new_id(ids.DELIVERY_PREFIX),
            tenant_id=webhook.tenant_id,
            app_id=webhook.app_id,
            webhook_id=webhook.id,
            event_id=ids.new_id(ids.EVENT_PREFIX),
            event_type="orders.created",
            body=body,
            next_attempt_at=due or self._now(),
        )
        if webhook.spec.ordering is Ordering.FIFO:
            self._fifo_seq += 1
            delivery.fifo_seq = self._fifo_seq
        self.deliveries[delivery.id] = delivery
        return delivery.id

    async def claim(
        self, limit: int, *, per_webhook: int, per_tenant: int, fresh_webhooks: Sequence[str] = ()
    ) -> list[ClaimedDelivery]:
        """Every due delivery is a candidate here, so `fresh_webhooks` changes nothing; kept to be seen."""
        self.claim_limits.append(limit)
        self.claimed_fresh.append(list(fresh_webhooks))
        return self._claim(limit, per_webhook, per_tenant)

    async def claim_named(
        self, webhook_ids: Sequence[str], *, per_webhook: int, per_tenant: int
    ) -> list[ClaimedDelivery]:
        self.claimed_named.append(list(webhook_ids))
        return self._claim(len(webhook_ids), per_webhook, per_tenant, only=set(webhook_ids))

    def _claim(
        self, limit: int, per_webhook: int, per_tenant: int, only: set[str] | None = None
    ) -> list[ClaimedDelivery]:
        """`only`: just the oldest due delivery of each of these webhooks."""
        now = self._now()
        leased = [
            delivery
            for delivery in self.deliveries.values()
            if delivery.lease_expires_at is not None and delivery.lease_expires_at > now
        ]
        in_flight = Counter(delivery.webhook_id for delivery in leased)
        tenant_in_flight = Counter(delivery.tenant_id for delivery in leased)
        due = sorted(
            (
                delivery
                for delivery in self.deliveries.values()
                if delivery.status is DeliveryStatus.PENDING
                and delivery.next_attempt_at is not None
                and delivery.next_attempt_at <= now
                and self._webhooks.rows[delivery.webhook_id].is_active
            ),
            key=lambda delivery: delivery.next_attempt_at or now,
        )
        if only is not None:
            due_ids = {delivery.id for delivery in due}
            oldest: dict[str, str] = {}  # webhook -> its oldest due delivery (the first added)
            for delivery in self.deliveries.values():
                if delivery.webhook_id in only and delivery.id in due_ids:
                    oldest.setdefault(delivery.webhook_id, delivery.id)
            due = [delivery for delivery in due if delivery.id in oldest.values()]
        token = secrets.token_hex(12)
        claimed: list[ClaimedDelivery] = []
        for delivery in due:
            if len(claimed) == limit:
                break
            webhook = self._webhooks.rows[delivery.webhook_id]
            fifo = webhook.spec.ordering is Ordering.FIFO
            cap = 1 if fifo else per_webhook
            if in_flight[delivery.webhook_id] >= cap or tenant_in_flight[delivery.tenant_id] >= per_tenant:
                continue
            if fifo and not self._is_head(delivery):
                continue
            send_at = self._slot(webhook, now)
            if send_at is not None and send_at >= now + routing.RATE_SLOT_HORIZON:
                continue
            if send_at is not None:
                self._next_slot[webhook.id] = send_at + timedelta(seconds=1 / webhook.spec.rate_limit_per_second)
            in_flight[delivery.webhook_id] += 1
            tenant_in_flight[delivery.tenant_id] += 1
            start = send_at or now
            lease_end = start + timedelta(milliseconds=webhook.spec.retry_policy.timeout_ms) + LEASE_MARGIN
            delivery.lease_token, delivery.lease_expires_at, delivery.next_attempt_at = token, lease_end, lease_end
            claimed.append(replace(_claimed(delivery, webhook, token), send_at=send_at, fifo=fifo))
        return claimed

    async def hold_back(self, limit: int) -> int:
        now = self._now()
        held = 0
        for webhook in self._webhooks.rows.values():
            due = sorted(
                (
                    delivery
                    for delivery in self.deliveries.values()
                    if delivery.webhook_id == webhook.id
                    and delivery.status is DeliveryStatus.PENDING
                    and delivery.next_attempt_at is not None
                    and delivery.next_attempt_at <= now
                ),
                key=lambda delivery: (delivery.next_attempt_at or now, delivery.id),
            )[:limit]
            if webhook.spec.ordering is Ordering.FIFO:
                head = self._head(webhook.id)
                for delivery in due:
                    if head is not None and delivery is not head and delivery.fifo_seq is not None:
                        head_due = max(now, head.next_attempt_at or now)
                        delivery.next_attempt_at = min(now + routing.FIFO_PARK_MAX, head_due)
                        held += 1
            elif webhook.spec.rate_limit_per_second:
                first = max(now, self._next_slot.get(webhook.id, now))
                for rank, delivery in enumerate(due):
                    slot = first + timedelta(seconds=rank / webhook.spec.rate_limit_per_second)
                    if slot >= now + routing.RATE_SLOT_HORIZON:
                        delivery.next_attempt_at = slot
                        held += 1
        self.held_back += held
        return held

    def _head(self, webhook_id: str) -> QueuedDelivery | None:
        ordered = [
            delivery
            for delivery in self.deliveries.values()
            if delivery.webhook_id == webhook_id
            and delivery.status is DeliveryStatus.PENDING
            and delivery.fifo_seq is not None
        ]
        return min(ordered, key=lambda delivery: delivery.fifo_seq or 0, default=None)

    def _is_head(self, delivery: QueuedDelivery) -> bool:
        head = self._head(delivery.webhook_id)
        return delivery.fifo_seq is None or head is None or head is delivery

    def _slot(self, webhook: Webhook, now: datetime) -> datetime | None:
        if not webhook.spec.rate_limit_per_second:
            return None
        return max(now, self._next_slot.get(webhook.id, now))

    async def next_due_in(self) -> timedelta | None:
        self.looked_ahead.set()
        due = [
            delivery.next_attempt_at
            for delivery in self.deliveries.values()
            if delivery.status is DeliveryStatus.PENDING and delivery.next_attempt_at is not None
        ]
        return None if not due else min(due) - self._now()

    async def record(self, batch: Sequence[tuple[ClaimedDelivery, AttemptRecord]]) -> RecordedBatch:
        kept = [self._record_one(claimed, record) for claimed, record in batch]
        changed: set[str] = set()
        paused: set[str] = set()
        for claimed, record in batch:
            was_paused = self._webhooks.rows[claimed.webhook_id].paused_at is not None
            if self._move_webhook_on(claimed.webhook_id, record):
                changed.add(claimed.webhook_id)
                if not was_paused and self._webhooks.rows[claimed.webhook_id].paused_at is not None:
                    paused.add(claimed.webhook_id)
        woken = 0
        for webhook_id in sorted({claimed.webhook_id for claimed, record in batch if claimed.fifo and record.finished}):
            following = self._head(webhook_id)
            now = self._now()
            if following is None or following.lease_token is not None:
                continue
            own_time = max(now, following.retry_at or now)
            if (following.next_attempt_at or now) > own_time:
                following.next_attempt_at = own_time
                woken += 1
        return RecordedBatch(kept, sorted(changed), sorted(paused), fifo_next_due=woken)

    def _record_one(self, claimed: ClaimedDelivery, record: AttemptRecord) -> bool:
        self.attempts.append((claimed, record))  # logged whether or not the lease still holds
        delivery = self.deliveries.get(claimed.delivery_id)
        if delivery is None or delivery.lease_token != claimed.lease_token:
            return False
        delivery.status = record.delivery_status
        delivery.attempts = claimed.attempt
        delivery.next_attempt_at = delivery.retry_at = record.next_attempt_at
        delivery.lease_token = delivery.lease_expires_at = None
        delivery.last_outcome = record.outcome
        return True

    async def release(self, claimed: ClaimedDelivery, *, after: timedelta) -> None:
        self.releases.append((claimed, after))
        retry_at = self._now() + after
        delivery = self.deliveries.get(claimed.delivery_id)
        if delivery is not None and delivery.lease_token == claimed.lease_token:
            delivery.next_attempt_at = delivery.retry_at = retry_at
            delivery.lease_token = delivery.lease_expires_at = None

    def _move_webhook_on(self, webhook_id: str, record: AttemptRecord) -> bool:
        """Whether the webhook's row changed. Statistics do not bump the version; pausing does (is_active
        changes). A success on a healthy webhook under STATS_RESOLUTION after the last one is not written."""
        webhook = self._webhooks.rows[webhook_id]
        last_at = webhook.last_delivery_at
        if (
            record.succeeded
            and webhook.consecutive_failures == 0
            and webhook.last_delivery_status is Outcome.SUCCEEDED
            and last_at is not None
            and last_at >= record.occurred_at - STATS_RESOLUTION
        ):
            return False
        failures = 0 if record.succeeded else webhook.consecutive_failures + 1
        pause_now = webhook.paused_at is None and (
            record.gone or (not record.succeeded and failures >= self._pause_after_failures)
        )
        self._webhooks.rows[webhook_id] = replace(
            webhook,
            last_delivery_at=record.occurred_at,
            last_delivery_status=record.outcome,
            consecutive_failures=failures,
            paused_at=record.occurred_at if pause_now else webhook.paused_at,
            version=webhook.version + 1 if pause_now else webhook.version,
        )
        return True


def _claimed(delivery: QueuedDelivery, webhook: Webhook, token: str) -> ClaimedDelivery:
    return ClaimedDelivery(
        delivery_id=delivery.id,
        lease_token=token,
        attempt=delivery.attempts + 1,
        tenant_id=delivery.tenant_id,
        app_id=delivery.app_id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        body=delivery.body,
        webhook_id=webhook.id,
        url=webhook.spec.url,
        headers=dict(webhook.spec.headers),
        signature_scheme=webhook.spec.signature_scheme,
        retry_policy=webhook.spec.retry_policy,
        vault_path=webhook.vault_path,
        secret_fingerprint=webhook.secret_fingerprint,
        credential_id=webhook.credential_id,
        webhook_version=webhook.version,
    )


# -- secrets, the outbound POST, notifications ------------------------------------------------------------

# secrets/vault.py: each id is one path segment, so none can reach outside its tenant's folder.
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_PATH_SEGMENT_RULE = "must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"


class FakeSecrets:
    """ports.SecretStore as secrets/vault.py behaves: server-chosen paths, NotFound where nothing is
    stored, and Unavailable for every call while `reachable` is False (Vault sealed or down). `written`
    is when each path was last written, by `clock`. While `answers_late`, a write lands but its caller
    is told Unavailable: a frozen Vault carrying out a queued write after the call gave up on it."""

    def __init__(self, clock: Clock = lambda: datetime.now(UTC)) -> None:
        self.records: dict[str, dict[str, str]] = {}
        self.versions: dict[str, int] = {}  # as KV v2 counts them: 1 for the first write
        # Every version each path still holds, as KV v2 keeps them until destroyed (`destroy_before`).
        self.history: dict[str, dict[int, dict[str, str]]] = {}
        self.written: dict[str, datetime] = {}
        self.reachable = True
        self.answers_late = False
        self.clock = clock
        self.prefix_owner: str | None = None  # the deployment the prefix's marker names

    async def path_for(self, tenant_id: str, webhook_id: str) -> str:
        for field, value in (("tenant_id", tenant_id), ("webhook_id", webhook_id)):
            if not _PATH_SEGMENT.fullmatch(value):
                raise Invalid.field(field, _PATH_SEGMENT_RULE)
        return f"webhookd/tenants/{tenant_id}/webhooks/{webhook_id}"

    async def write(self, path: str, data: dict[str, str], *, replacing: int | None = None) -> None:
        self._answer()
        if replacing is not None and self.versions.get(path, 0) != replacing:
            raise Aborted(f"the secret at {path} changed since version {replacing}")
        self.records[path] = dict(data)
        self.versions[path] = self.versions.get(path, 0) + 1
        self.history.setdefault(path, {})[self.versions[path]] = dict(data)
        self.written[path] = self.clock()
        if self.answers_late:
            raise Unavailable("vault unreachable: no answer in time")

    async def read(self, path: str) -> dict[str, str]:
        return (await self.read_versioned(path))[0]

    async def read_versioned(self, path: str) -> tuple[dict[str, str], int]:
        self._answer()
        if path not in self.records:
            raise NotFound(f"no secret at {path}")
        return dict(self.records[path]), self.versions[path]

    async def delete(self, path: str) -> None:
        self._answer()
        self.records.pop(path, None)
        self.versions.pop(path, None)
        self.history.pop(path, None)
        self.written.pop(path, None)

    async def destroy_before(self, path: str, version: int) -> int:
        self._answer()
        history = self.history.get(path, {})
        earlier = [held for held in history if held < version]
        for held in earlier:
            del history[held]
        return len(earlier)

    async def ping(self) -> None:
        self._answer()

    async def tenants(self) -> list[str]:
        self._answer()
        return sorted({path.split("/")[2] for path in self.records})

    async def webhook_ids(self, tenant_id: str) -> list[str]:
        self._answer()
        return sorted(path.split("/")[4] for path in self.records if path.split("/")[2] == tenant_id)

    async def written_at(self, path: str) -> datetime | None:
        self._answer()
        return self.written.get(path)

    async def claim_prefix(self, deployment_id: str) -> str:
        self._answer()
        if self.prefix_owner is None:
            self.prefix_owner = deployment_id
        return self.prefix_owner

    def _answer(self) -> None:
        if not self.reachable:
            raise Unavailable("vault unreachable: sealed or down (HTTP 503)")


class FakeSecretOverlaps:
    """ports.SecretOverlaps over FakeWebhooks' marks (`overlap_ends`) and secret leases."""

    def __init__(self, webhooks: FakeWebhooks) -> None:
        self.webhooks = webhooks

    async def claim_ended(self, now: datetime, *, limit: int, claim: timedelta) -> list[tuple[str, str]]:
        due = sorted(
            (ends_at, webhook_id)
            for webhook_id, ends_at in self.webhooks.overlap_ends.items()
            if ends_at is not None and ends_at <= now
        )[:limit]
        for _, webhook_id in due:
            self.webhooks.overlap_ends[webhook_id] = now + claim
        return [(self.webhooks.rows[webhook_id].tenant_id, webhook_id) for _, webhook_id in due]

    async def settle(self, scope: Scope, webhook_id: str, *, ends_at: datetime | None, lease: UUID) -> bool:
        await self.webhooks.get(scope, webhook_id)
        if not self.webhooks._holds(webhook_id, lease):
            return False
        self.webhooks.overlap_ends[webhook_id] = ends_at
        del self.webhooks.secret_leases[webhook_id]
        return True


class FakeSecretOwners:
    """ports.SecretOwners over FakeWebhooks' rows (deleted ones own their secret too); `locked` plays
    another process holding the reconciler's lock."""

    def __init__(self, webhooks: FakeWebhooks) -> None:
        self.webhooks = webhooks
        self.locked = False
        self.checked: list[list[tuple[str, str]]] = []

    async def owned(self, candidates: Sequence[tuple[str, str]]) -> set[tuple[str, str]] | None:
        if self.locked:
            return None
        self.checked.append(list(candidates))
        return {(row.tenant_id, row.id) for row in self.webhooks.rows.values()} & set(candidates)

    async def deployment_id(self) -> str:
        return "dep_this_database"


@dataclass(frozen=True)
class SentRequest:
    url: str
    body: bytes
    headers: Mapping[str, str]
    timeout_ms: int
    credential: Credential | None = None


ANSWERED_OK = AttemptResult(Outcome.SUCCEEDED, 200, latency_ms=7, error="")


class FakeSender:
    """ports.Sender: every POST is kept in `requests` and answered with `result` (or `results[url]`).
    Sends to a URL that is `hold`-ed wait until the test sets the returned event: deliveries in flight."""

    def __init__(self, result: AttemptResult = ANSWERED_OK) -> None:
        self.result = result
        self.results: dict[str, AttemptResult] = {}
        self.error: Exception | None = None  # raised instead of answering, when set
        self.requests: list[SentRequest] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._gates: dict[str, asyncio.Event] = {}
        self._arrived = asyncio.Event()

    def hold(self, url: str) -> asyncio.Event:
        return self._gates.setdefault(url, asyncio.Event())

    async def send(
        self,
        url: str,
        *,
        body: bytes,
        headers: Mapping[str, str],
        timeout_ms: int,
        credential: Credential | None = None,
    ) -> AttemptResult:
        self.requests.append(SentRequest(url, body, dict(headers), timeout_ms, credential))
        self._arrived.set()
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            gate = self._gates.get(url)
            if gate is not None:
                await gate.wait()
        finally:
            self.in_flight -= 1
        if self.error is not None:
            raise self.error
        return self.results.get(url, self.result)

    async def wait_for_requests(self, count: int) -> None:
        while len(self.requests) < count:
            self._arrived.clear()
            await self._arrived.wait()


class FakeNotifications:
    """ports.Notifications in one process: every notify is kept in `notified` and tells the topic's
    listeners at once (subscribers' events set, followers handed each payload). Subscribing or
    following starts the way listening (re)starts: the event set, the follower handed None."""

    def __init__(self) -> None:
        self.notified: list[tuple[Topic, str]] = []
        self._subscribers: dict[Topic, dict[asyncio.Event, str | None]] = {topic: {} for topic in Topic}
        self._followers: dict[Topic, list[Callable[[str | None], None]]] = {topic: [] for topic in Topic}

    def notify(self, topic: Topic, payload: str = "") -> None:
        self.notified.append((topic, payload))
        names = set(payload.split())
        for event, key in self._subscribers[topic].items():
            if key is None or not names or key in names:
                event.set()
        for part in payload.split():  # store/notifications.py joins a burst's payloads with spaces
            for follower in list(self._followers[topic]):
                follower(part)

    @asynccontextmanager
    async def subscribe(self, topic: Topic, key: str | None = None) -> AsyncIterator[asyncio.Event]:
        event = asyncio.Event()
        event.set()
        self._subscribers[topic][event] = key
        try:
            yield event
        finally:
            del self._subscribers[topic][event]

    @asynccontextmanager
    async def follow(self, topic: Topic, on_payload: Callable[[str | None], None]) -> AsyncIterator[None]:
        self._followers[topic].append(on_payload)
        on_payload(None)
        try:
            yield
        finally:
            self._followers[topic].remove(on_payload)

    def pending(self, topic: Topic) -> bool:
        """Whether a subscriber to `topic` has yet to take a notification (its event is still set)."""
        return any(event.is_set() for event in self._subscribers[topic])

    def count(self, topic: Topic) -> int:
        """How many times `topic` was notified."""
        return sum(1 for notified, _ in self.notified if notified is topic)

    def payloads(self, topic: Topic) -> list[str]:
        return [payload for notified, payload in self.notified if notified is topic]

    def subscribers(self, topic: Topic) -> int:
        return len(self._subscribers[topic])


# -- waiting on the fakes, in tests -------------------------------------------------------------------


async def within(awaitable: Awaitable[T], seconds: float = 5.0) -> T:
    """Awaits a positive signal, failing the test rather than hanging when it never comes."""
    return await asyncio.wait_for(awaitable, seconds)


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Lets the other tasks run until `condition` holds, failing the test rather than hanging."""

    async def reached() -> None:
        while not condition():  # noqa: ASYNC110 - the condition is the fakes' state, which no event signals
            await asyncio.sleep(0)

    await asyncio.wait_for(reached(), seconds)


class Follower(Generic[T]):
    """Reads a stream in a task of its own, as a streaming call does; `close` cancels it like a caller
    going away, which closes the stream's generators in that task."""

    def __init__(self, stream: AsyncIterator[T]) -> None:
        self.items: list[T] = []
        self._task = asyncio.create_task(self._read(stream))

    async def _read(self, stream: AsyncIterator[T]) -> None:
        async for item in stream:
            self.items.append(item)

    async def read(self, count: int) -> list[T]:
        """The first `count` items, once they have arrived."""
        await until(lambda: len(self.items) >= count or self._task.done())
        if self._task.done():
            self._task.result()  # the stream's error, if it failed
        return self.items[:count]

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
