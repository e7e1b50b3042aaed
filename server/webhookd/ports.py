"""The ports: what the core (services/ and delivery/) needs from the world, as typing.Protocols.

The core depends only on these; store/ (PostgreSQL), secrets/ (Vault), delivery/http.py (aiohttp)
and store/notifications.py (LISTEN/NOTIFY) implement them, and tests/fakes.py implements them in
memory so service logic is tested in milliseconds. Adapters never import this module: a Protocol is
satisfied by shape, and mypy checks each adapter where app.py hands it to the core.

Every method that reads or writes a tenant's data takes the caller's Scope first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Protocol
from uuid import UUID

from webhookd.domain.credentials import Credential
from webhookd.domain.deliveries import (
    AttemptRecord,
    AttemptResult,
    ClaimedDelivery,
    Delivery,
    DeliveryFilter,
    RecordedBatch,
)
from webhookd.domain.event_catalog import EventType, EventTypeSpec
from webhookd.domain.events import EventFilter, NewEvent, Published, StoredEvent
from webhookd.domain.history import LogEntry, LogFilter, LogPosition, LogRead
from webhookd.domain.idempotency import KeyedRequest
from webhookd.domain.inbound import InboundEvent, InboundTarget, Receipt, Stored
from webhookd.domain.lifecycle import HeldSettled, LifecycleChange
from webhookd.domain.scope import Scope
from webhookd.domain.topics import Topic as Topic  # re-exported: the core takes it with the ports
from webhookd.domain.webhooks import Webhook, WebhookFilter, WebhookSpec

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class WebhookRepository(Protocol):
    async def page_token_key(self) -> bytes:
        """The key page tokens are signed with, shared by every process on the database."""

    async def insert(self, webhook: Webhook, *, keyed: KeyedRequest | None = None) -> bool:
        """Inserts the webhook; False, inserting nothing, when `keyed`'s key is held in its exact
        scope (tenant and app) already."""

    async def created_with(self, scope: Scope, key: str) -> tuple[Webhook, str] | None:
        """The webhook a create in exactly this scope made with idempotency `key` (deleted or not),
        with that create's request fingerprint."""

    async def release_key(self, scope: Scope, webhook_id: str, key: str) -> None:
        """The webhook no longer holds `key` in exactly this scope (its window is over: a new create
        may take it)."""

    async def get(self, scope: Scope, webhook_id: str) -> Webhook:
        """NotFound unless the webhook is in the caller's scope (deleted ones included)."""

    async def list(self, scope: Scope, query: WebhookFilter, *, after_id: str | None, limit: int) -> list[Webhook]:
        """At most `limit` webhooks with ids above `after_id`, in id order."""

    # A write that is a lifecycle change (`note`: enabled or disabled, deleted, undeleted, secret
    # rotated, resumed) records the change's log entry and operational event in the write's own
    # transaction (LifecycleRepository.record's work), and only when the write happens.

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
        """Writes spec if the webhook is live and still at expected_version; Aborted when someone
        wrote first, FailedPrecondition when it is deleted. With `routing_changed` (its ordering or
        rate limit), its deliveries held back under the old ones are due again, in the same write."""

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
        """Deleting a deleted webhook returns it unchanged (and notes nothing); a stale version is Aborted."""

    async def undelete(
        self,
        scope: Scope,
        webhook_id: str,
        *,
        person_id: str | None,
        now: datetime,
        note: LifecycleChange | None = None,
    ) -> Webhook:
        """AlreadyExists when the webhook is not deleted."""

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
        """Sets the fingerprint, marks the row due at `now` for the workers' sweep (SecretOverlaps: it
        destroys the record's earlier versions, which hold the replaced secret) and releases the secret
        lease `lease`, in one write; Aborted when the row's fingerprint is no longer `replacing` or the
        lease is no longer `lease` (it lapsed and another change took it)."""

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
        """The live webhook's credential header and id set (both '' to remove it), a new version, and
        `note` recorded, while its url is still `url` (the one the credential was checked against) and
        its secret lease still `lease` (Aborted when either is not), the lease released and the row
        marked due at `now` for the workers' sweep (as set_fingerprint) in the same write; NotFound
        outside the scope, FailedPrecondition once deleted."""

    async def take_secret_lease(self, scope: Scope, webhook_id: str, token: UUID, *, lasting: timedelta) -> Webhook:
        """The webhook (deleted or not) as it is once `token` holds the lease on changing its secret
        record, for `lasting` (domain/secret_changes.py); Aborted (`change_under_way`) while another
        holds it, NotFound outside the scope."""

    async def release_secret_lease(self, scope: Scope, webhook_id: str, token: UUID) -> None:
        """Gives the lease back if `token` still holds it (a change that committed nothing)."""

    async def resume(
        self, scope: Scope, webhook_id: str, *, person_id: str | None, note: LifecycleChange, discard_held: bool
    ) -> tuple[Webhook, HeldSettled | None]:
        """Clears an automatic pause and the failure count, and releases the deliveries held while it
        was paused in publish order (or discards them), noting the change with their count, in one
        transaction; FailedPrecondition when deleted. A webhook not paused is returned unchanged, with
        nothing settled or noted (None)."""


class EventTypeRepository(Protocol):
    async def insert(self, event_type: EventType) -> EventType:
        """AlreadyExists when the entry's scope (tenant and app) already has its name."""

    async def get(self, scope: Scope, event_type_id: str) -> EventType:
        """NotFound unless the entry is in the caller's scope."""

    async def find(self, scope: Scope, name: str) -> EventType | None:
        """The entry named `name` of exactly the caller's tenant and app (none for a person's call)."""

    async def list(self, scope: Scope, *, name_prefix: str | None, after_id: str | None, limit: int) -> list[EventType]:
        """At most `limit` entries with ids above `after_id`, in id order."""

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
        """Writes the spec's description, schema, example and deprecated flag if the entry is still at
        expected_version; Aborted when someone wrote first."""

    async def delete(self, scope: Scope, event_type_id: str, *, expected_version: int | None) -> EventType:
        """Removes the entry for good and returns it; a stale version is Aborted."""


class EventRepository(Protocol):
    async def publish(self, scope: Scope, event: NewEvent, matching_filters: list[str]) -> Published:
        """Stores the event and one delivery per live outbound webhook of the scope whose event_types
        overlap `matching_filters` and whose channels, when it has any, share one with the event's, in
        one transaction: pending for an active webhook, held for a paused one, skipped for a disabled
        one. With an idempotency key
        still held by an earlier event, returns that event instead (duplicate). NotFound when
        `event.target_webhook_id` names no webhook of the scope. Pending deliveries wake the workers
        once they are committed: a Topic.DELIVERIES notification saying
        `topics.new_deliveries_payload` of their webhooks."""


class HistoryRepository(Protocol):
    async def read_log(
        self, scope: Scope, query: LogFilter, *, after: LogPosition | None, since: datetime | None, limit: int
    ) -> LogRead[LogEntry]:
        """Settled log entries after `after` and from `since` (each when given) in position order, whether
        one was held back, and how far the read went when it ended before its `limit`-th entry."""

    async def list_deliveries(
        self, scope: Scope, query: DeliveryFilter, *, before: tuple[datetime, str] | None, limit: int
    ) -> list[Delivery]:
        """Newest first, strictly before the (created_at, id) keyset position."""

    async def get_delivery(self, scope: Scope, delivery_id: str) -> tuple[Delivery, list[LogEntry]]:
        """The delivery and its newest attempts (at most DELIVERY_ATTEMPTS_SHOWN), oldest first."""

    async def redeliver(self, scope: Scope, delivery_id: str, *, now: datetime) -> Delivery:
        """Makes the delivery pending and due now; FailedPrecondition while it is being attempted."""

    async def recover(self, scope: Scope, webhook_id: str, *, since: datetime, now: datetime) -> int:
        """Makes every failed or skipped delivery of the webhook created since `since` pending and due;
        how many."""


class InboundRepository(Protocol):
    async def target(self, webhook_id: str) -> InboundTarget | None:
        """The live, enabled inbound webhook with this id (the sender has no other key)."""

    async def record(self, target: InboundTarget, receipt: Receipt, *, rate_per_second: float, burst: int) -> Stored:
        """Takes a token from the webhook's bucket for an accepted receipt, from its refusals' bucket
        for a rejected one (`rate_per_second`, bursts of `burst`, for all processes together), and
        with it stores the receipt and its log line. Without a token, or for a message accepted
        before, nothing is written."""

    async def read(
        self, scope: Scope, *, webhook_id: str | None, after: LogPosition | None, limit: int
    ) -> LogRead[InboundEvent]:
        """Settled accepted receipts after `after` in position order, and whether one was held back."""

    async def consumer_position(self, scope: Scope, name: str) -> LogPosition | None: ...

    async def acknowledge(
        self, scope: Scope, name: str, position: LogPosition, *, now: datetime, handed_out: bool
    ) -> LogPosition:
        """Moves the named consumer forward to `position` (never back); returns where it is. Unless
        `handed_out` (its cursor is bound to this scope), Invalid when `position` is past the log's
        settled end, where no reader can have been handed it, or is no entry the scope reads."""


class StreamLeases(Protocol):
    """Places for open streams, counted per tenant across every process."""

    async def acquire(self, tenant_id: str, limit: int) -> str | None:
        """A lease on one of the tenant's `limit` places, or None when they are all taken. A lease
        lives while its holder runs (the adapter renews it) and is released at the end."""

    async def release(self, lease_id: str) -> None: ...


class DeliveryQueue(Protocol):
    async def claim(
        self, limit: int, *, per_webhook: int, per_tenant: int, fresh_webhooks: Sequence[str] = ()
    ) -> list[ClaimedDelivery]:
        """Leases up to `limit` due deliveries of active webhooks, fairly across webhooks, with at
        most `per_webhook` in flight per webhook and `per_tenant` per tenant across every process.
        `fresh_webhooks` were just published to: their due deliveries are considered whatever
        else is due. A FIFO webhook's delivery goes only as its head, alone; a rate-limited webhook's only with a
        send slot (`send_at`) within the slot horizon (domain/routing.py)."""

    async def claim_named(
        self, webhook_ids: Sequence[str], *, per_webhook: int, per_tenant: int
    ) -> list[ClaimedDelivery]:
        """Leases the oldest due delivery of each of these webhooks, by `claim`'s rules and caps,
        without looking at the rest of the queue: a claim for webhooks just published to, as cheap
        as a handful of rows."""

    async def hold_back(self, limit: int) -> int:
        """Moves due deliveries that their webhook's order or rate limit keep from being claimed out
        of the claim's way (at most `limit` per webhook): behind a FIFO head until the head is due,
        past the rate limit's horizon until their slot. How many moved."""

    async def next_due_in(self) -> timedelta | None:
        """How long until the earliest pending delivery comes due by the queue's own clock, the one its
        claims compare with (None: nothing is pending; zero or less: due now)."""

    async def record(self, batch: Sequence[tuple[ClaimedDelivery, AttemptRecord]]) -> RecordedBatch:
        """Logs each attempt and moves its delivery and webhook on, in order; says which leases
        were lost (the attempt is logged all the same) and which webhook rows changed. One bad
        attempt does not stop the others from being recorded."""

    async def release(self, claimed: ClaimedDelivery, *, after: timedelta) -> None:
        """Gives a claimed delivery back without an attempt, due again `after` from now by the queue's own
        clock (next_due_in)."""


class SecretStore(Protocol):
    async def path_for(self, tenant_id: str, webhook_id: str) -> str:
        """Where a webhook's secrets live; Invalid when an id could escape its folder."""

    async def write(self, path: str, data: dict[str, str], *, replacing: int | None = None) -> None:
        """With `replacing`, only over that version of the secret (Vault's check-and-set): Aborted when
        another write got there first."""

    async def read(self, path: str) -> dict[str, str]:
        """NotFound when nothing is stored there; Unavailable when the store cannot be reached."""

    async def read_versioned(self, path: str) -> tuple[dict[str, str], int]:
        """The secret and its version, for a write that must replace just that one (as `read` fails)."""

    async def delete(self, path: str) -> None:
        """Removes every version; an absent secret is fine."""

    async def ping(self) -> None:
        """Unavailable unless the store answers and accepts our credentials."""

    async def tenants(self) -> list[str]:
        """The tenants that have webhook secrets, in order."""

    async def webhook_ids(self, tenant_id: str) -> list[str]:
        """The webhooks of `tenant_id` that have a secret, in order."""

    async def destroy_before(self, path: str, version: int) -> int:
        """Destroys for good every earlier version than `version` that the store still keeps of the secret
        at `path` (KV v2 keeps them, each readable as the current one is); how many it destroyed."""

    async def written_at(self, path: str) -> datetime | None:
        """When the secret at `path` was last written; None when nothing is stored there."""

    async def claim_prefix(self, deployment_id: str) -> str:
        """The deployment the prefix's marker names, written as `deployment_id` first when none does (a
        create-only write: of two deployments claiming at once, one wins)."""


class SecretOverlaps(Protocol):
    """The rows' marks of when their secret records next hold a previous secret whose overlap has ended
    (migration 0021), or a committed change's earlier versions, for the workers' sweep
    (services/ended_overlaps.py)."""

    async def claim_ended(self, now: datetime, *, limit: int, claim: timedelta) -> list[tuple[str, str]]:
        """Up to `limit` (tenant_id, webhook_id) whose mark is `now` or earlier, earliest first, each
        marked `now + claim` so that no other process's round takes it meanwhile (rows another process is
        claiming are skipped, not waited for)."""

    async def settle(self, scope: Scope, webhook_id: str, *, ends_at: datetime | None, lease: UUID) -> bool:
        """Marks the webhook `ends_at` and releases its secret lease in one write, while `lease` still
        holds it; False (nothing written) when it does not."""


class SecretOwners(Protocol):
    async def owned(self, candidates: Sequence[tuple[str, str]]) -> set[tuple[str, str]] | None:
        """The (tenant_id, webhook_id) pairs among `candidates` that have a webhook row (deleted ones
        included), or None while another process is reconciling."""

    async def deployment_id(self) -> str:
        """The id of the deployment this database is: made once, the same for every process on it."""


class Sender(Protocol):
    async def send(
        self,
        url: str,
        *,
        body: bytes,
        headers: Mapping[str, str],
        timeout_ms: int,
        credential: Credential | None = None,
    ) -> AttemptResult:
        """POSTs one signed body, with the delivery credential's header when there is one (recorded
        with its value redacted); never raises for what the network or the receiver did. Unavailable
        when webhookd's own way out failed (the delivery proxy down or refusing webhookd): the
        receiver was never asked, so no attempt of its is to be counted."""


class InboundRequest(Protocol):
    """An inbound HTTP request as the receiving use case sees it, whatever server carries it."""

    @property
    def headers(self) -> Mapping[str, str]:
        """Header names in lower case."""

    @property
    def repeated_headers(self) -> frozenset[str]:
        """The names (lower case) of headers sent more than once; `headers` holds one of each."""

    @property
    def query(self) -> str:
        """The query string as the sender sent it, without the `?` (a signature may cover it)."""

    async def read_body(self, limit: int) -> bytes:
        """The whole body; PayloadTooLarge as soon as it is known to exceed `limit` bytes."""


class Notifications(Protocol):
    def notify(self, topic: Topic, payload: str = "") -> None:
        """After a write has committed: tell the topic's listeners in every process. Never blocks;
        bursts are coalesced (their payloads kept), since listeners only need to know what is new."""

    def subscribe(self, topic: Topic, key: str | None = None) -> AbstractAsyncContextManager[asyncio.Event]:
        """An event set on every notification of `topic` while the block runs, and once when
        listening (re)starts, since notifications sent while not listening are lost. With a `key`,
        only on notifications whose payload names it or names nothing (a writer that did not say whose
        write it was): a tenant's stream is not woken by every other tenant's writes. With
        `topics.NAMES_NOTHING`, only on notifications that name nothing."""

    def follow(self, topic: Topic, on_payload: Callable[[str | None], None]) -> AbstractAsyncContextManager[None]:
        """`on_payload(payload)` for every payload of `topic` while the block runs, and
        `on_payload(None)` when listening (re)starts: anything may have been missed before."""


# -- operations: lifecycle changes, reading events back, log consumers, test events ----------------------


class LifecycleRepository(Protocol):
    async def record(self, scope: Scope, change: LifecycleChange) -> int:
        """Writes the change's DeliveryLog entry and publishes its operational event to the other
        outbound webhooks of the scope that subscribe to it (pending, held or skipped as a publish's
        deliveries), in one transaction; how many of those deliveries are pending. For changes that
        are no webhook write of their own: WebhookRepository records the others with their write."""


class EventHistory(Protocol):
    async def get_event(self, scope: Scope, event_id: str) -> tuple[StoredEvent, list[Delivery]]:
        """The event as published, with its deliveries; NotFound outside the scope."""

    async def list_events(
        self, scope: Scope, query: EventFilter, *, before_id: str | None, limit: int
    ) -> list[StoredEvent]:
        """Newest first, ids strictly below `before_id`."""


class LogConsumers(Protocol):
    """Named DeliveryLog readers' positions, each the scope's own (tenant and app)."""

    async def position(self, scope: Scope, name: str) -> LogPosition | None: ...

    async def acknowledge(
        self, scope: Scope, name: str, position: LogPosition, *, now: datetime, handed_out: bool
    ) -> LogPosition:
        """Moves the named consumer forward to `position` (never back); returns where it is. Unless
        `handed_out` (its cursor is bound to this scope), Invalid when `position` is past the log's
        settled end, where no reader can have been handed it, or is no entry the scope reads."""


class PingBuckets(Protocol):
    async def take(self, webhook_id: str, *, per_second: float, burst: int) -> float | None:
        """Takes one test send from the webhook's token bucket (bursts of `burst`, refilled at
        `per_second`, for all processes together): None when taken, else the seconds until one is."""


class PingRecords(Protocol):
    async def record(self, webhook: Webhook, event: NewEvent, delivery_id: str, record: AttemptRecord) -> None:
        """Keeps a test event sent at once (SendTestEvent) in history: the event, its finished
        delivery and its attempt, in one transaction."""
