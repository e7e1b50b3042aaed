"""Webhook rows: every query takes the caller's Scope and puts it in the WHERE clause."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import sqlalchemy as sa
from psycopg.types.json import Jsonb

from webhookd.domain.errors import Aborted, AlreadyExists, FailedPrecondition, NotFound
from webhookd.domain.idempotency import KeyedRequest
from webhookd.domain.lifecycle import HeldSettled, LifecycleChange
from webhookd.domain.scope import Scope
from webhookd.domain.secret_changes import change_under_way
from webhookd.domain.statuses import Outcome
from webhookd.domain.webhooks import (
    Backoff,
    Direction,
    Ordering,
    RetryPolicy,
    SignatureScheme,
    SourceType,
    Webhook,
    WebhookFilter,
    WebhookSpec,
)
from webhookd.store.database import Connection, Database
from webhookd.store.deliveries import held_back_due
from webhookd.store.lifecycle import record_change, settle_held
from webhookd.store.sql import TEXT_ARRAY, compiled, param, scope_params, scoped
from webhookd.store.tables import server_keys, webhooks

R = TypeVar("R")
_INDEX = {column.name: index for index, column in enumerate(webhooks.c)}
_SPEC_COLUMNS = (
    "name",
    "direction",
    "url",
    "event_types",
    "signature_scheme",
    "headers",
    "enabled",
    "retry_max_attempts",
    "retry_backoff",
    "retry_timeout_ms",
    "connector_id",
    "application_id",
    "tags",
    "source",
    "source_type",
    "channels",
    "rate_limit_per_second",
    "ordering",
)
_THE_WEBHOOK = sa.and_(scoped(webhooks), webhooks.c.id == param("id"))
_LIVE = webhooks.c.deleted_at.is_(None)

# A holder whose lease lapsed and was taken by another call (which read the record this one wrote).
_LEASE_LAPSED = (
    "webhook {webhook_id}'s secrets were changed by another call meanwhile (this one's lease on them lapsed):"
    " read it and retry"
)

_PAGE_TOKEN_KEY = compiled(sa.select(server_keys.c.key).where(server_keys.c.name == "page_token"))
# Every column is given, so the row is the webhook as given: nothing to read back.
_INSERT = compiled(webhooks.insert().values({c.name: param(c.name) for c in webhooks.c}))
_GET = compiled(sa.select(webhooks).where(_THE_WEBHOOK))
# A keyed create inserts nothing when its key is held in its scope already (webhooks_idempotency).
_INSERT_ONCE = (
    f"{_INSERT} ON CONFLICT (tenant_id, coalesce(app_id, ''), idempotency_key)"
    " WHERE idempotency_key IS NOT NULL DO NOTHING"
)
# Exactly the caller's scope, as the key is held (not `scoped`: a person's key is not an app's).
_KEY_HOLDER = sa.and_(
    webhooks.c.tenant_id == param("tenant_id", sa.Text),
    sa.func.coalesce(webhooks.c.app_id, "") == sa.func.coalesce(param("app_id", sa.Text), ""),
    webhooks.c.idempotency_key == param("idempotency_key", sa.Text),
)
_CREATED_WITH = compiled(sa.select(webhooks).where(_KEY_HOLDER))
_RELEASE_KEY = compiled(
    webhooks.update()
    .where(_KEY_HOLDER, webhooks.c.id == param("id"))
    .values(idempotency_key=None, idempotency_request=None)
)
_UPDATE_SPEC = compiled(
    webhooks.update()
    .where(_THE_WEBHOOK, webhooks.c.version == param("expected_version"), _LIVE)
    .values(
        {name: param(name) for name in _SPEC_COLUMNS}
        | {"updated_at": param("now"), "updated_by": param("person_id"), "version": webhooks.c.version + 1}
    )
    .returning(webhooks)
)
_SOFT_DELETE = compiled(
    webhooks.update()
    .where(
        _THE_WEBHOOK,
        _LIVE,
        sa.or_(param("expected_version", sa.BigInteger).is_(None), webhooks.c.version == param("expected_version")),
    )
    .values(
        deleted_at=param("now"),
        deleted_by=param("person_id"),
        updated_at=param("now"),
        updated_by=param("person_id"),
        version=webhooks.c.version + 1,
    )
    .returning(webhooks)
)
_UNDELETE = compiled(
    webhooks.update()
    .where(_THE_WEBHOOK, webhooks.c.deleted_at.is_not(None))
    .values(
        deleted_at=None,
        deleted_by=None,
        updated_at=param("now"),
        updated_by=param("person_id"),
        version=webhooks.c.version + 1,
    )
    .returning(webhooks)
)


def _server_side_change(*conditions: sa.ColumnElement[bool], **values: Any) -> str:
    """A server-side change of a live webhook: `values`, a new version, no version precondition (but
    any `conditions`)."""
    return compiled(
        webhooks.update()
        .where(_THE_WEBHOOK, _LIVE, *conditions)
        .values(**values, updated_at=param("now"), updated_by=param("person_id"), version=webhooks.c.version + 1)
        .returning(webhooks)
    )


# A change of the webhook's secret record in Vault holds the row's lease (migration 0018) from before it
# reads the record until the UPDATE that commits it: taken when nobody holds it or its holder's lapsed
# (database time, one clock for every process), so changes from any processes follow one another.
_TAKE_SECRET_LEASE = compiled(
    webhooks.update()
    .where(
        _THE_WEBHOOK,
        sa.or_(
            webhooks.c.secret_change_token.is_(None),
            webhooks.c.secret_change_until < sa.func.clock_timestamp(),
        ),
    )
    .values(
        secret_change_token=param("token"),
        secret_change_until=sa.func.clock_timestamp() + param("lasting", sa.Interval),
    )
    .returning(webhooks)
)
_HELD = webhooks.c.secret_change_token == param("token")
# A release first waits for whatever write holds the row: an UPDATE skips, without waiting, a row whose
# committed version does not match, so a release sent while its take's COMMIT was still pending (the take
# answered UNAVAILABLE, and carried out after all) found no lease and left it to lapse.
_LOCK_THE_WEBHOOK = compiled(sa.select(webhooks.c.id).where(_THE_WEBHOOK).with_for_update(key_share=True))
_RELEASE_SECRET_LEASE = compiled(
    webhooks.update().where(_THE_WEBHOOK, _HELD).values(secret_change_token=None, secret_change_until=None)
)
# Commits a change of the secret record only while its lease is still the caller's (a holder whose lease
# lapsed and was taken by another wrote a record the other has read and replaced since), and releases it.
# It marks the row due for the workers' sweep (services/ended_overlaps.py) at once: Vault's KV v2 keeps
# the record's earlier versions, where what the change replaced stays readable, until the sweep destroys
# them (it marks the row again for the overlap's end, if one is running).
_COMMITTED = {
    "secret_change_token": None,
    "secret_change_until": None,
    "secret_overlap_ends_at": param("now"),
}
# Only over the secret the rotation replaced, too: one committed meanwhile was left out of the record
# this one wrote, so committing over it would hand this caller's rival a secret that never signs.
_SET_FINGERPRINT = _server_side_change(
    _HELD,
    webhooks.c.secret_fingerprint == param("replacing"),
    secret_fingerprint=param("fingerprint"),
    **_COMMITTED,
)
# Only while the url is the one the credential was checked against: an update moving it to another
# origin meanwhile (allowed while the row named no credential) would otherwise take the credential along.
_SET_CREDENTIAL = _server_side_change(
    _HELD,
    webhooks.c.url == param("url"),
    credential_header=param("header"),
    credential_id=param("credential_id"),
    **_COMMITTED,
)
# Only a paused webhook: resuming another would note a change that did not happen, and its held
# deliveries (if any) are owed, not the pause's to discard (the held round sends them).
_RESUME = _server_side_change(webhooks.c.paused_at.is_not(None), paused_at=None, consecutive_failures=0)


def _spec_values(spec: WebhookSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "direction": spec.direction.value,
        "url": spec.url,
        "event_types": list(spec.event_types),
        "signature_scheme": spec.signature_scheme.value,
        "headers": Jsonb(dict(spec.headers)),
        "enabled": spec.enabled,
        "retry_max_attempts": spec.retry_policy.max_attempts,
        "retry_backoff": spec.retry_policy.backoff.value,
        "retry_timeout_ms": spec.retry_policy.timeout_ms,
        "connector_id": spec.connector_id,
        "application_id": spec.application_id,
        "tags": list(spec.tags),
        "source": spec.source,
        "source_type": spec.source_type.value,
        "channels": list(spec.channels),
        "rate_limit_per_second": spec.rate_limit_per_second,
        "ordering": spec.ordering.value,
    }


def webhook_from_row(row: Sequence[Any]) -> Webhook:
    """A `webhooks` row, its columns in table order, as the domain's Webhook."""
    i = _INDEX
    spec = WebhookSpec(
        name=row[i["name"]],
        url=row[i["url"]],
        direction=Direction(row[i["direction"]]),
        event_types=tuple(row[i["event_types"]]),
        signature_scheme=SignatureScheme(row[i["signature_scheme"]]),
        headers=row[i["headers"]],
        enabled=row[i["enabled"]],
        retry_policy=RetryPolicy(
            max_attempts=row[i["retry_max_attempts"]],
            backoff=Backoff(row[i["retry_backoff"]]),
            timeout_ms=row[i["retry_timeout_ms"]],
        ),
        connector_id=row[i["connector_id"]],
        application_id=row[i["application_id"]],
        tags=tuple(row[i["tags"]]),
        source=row[i["source"]],
        source_type=SourceType(row[i["source_type"]]),
        channels=tuple(row[i["channels"]]),
        rate_limit_per_second=row[i["rate_limit_per_second"]],
        ordering=Ordering(row[i["ordering"]]),
    )
    status = row[i["last_delivery_status"]]
    return Webhook(
        id=row[i["id"]],
        tenant_id=row[i["tenant_id"]],
        app_id=row[i["app_id"]],
        spec=spec,
        created_at=row[i["created_at"]],
        updated_at=row[i["updated_at"]],
        created_by=row[i["created_by"]],
        updated_by=row[i["updated_by"]],
        deleted_at=row[i["deleted_at"]],
        deleted_by=row[i["deleted_by"]],
        schema_version=row[i["schema_version"]],
        vault_path=row[i["vault_path"]],
        secret_fingerprint=row[i["secret_fingerprint"]],
        last_delivery_at=row[i["last_delivery_at"]],
        last_delivery_status=None if status is None else Outcome(status),
        consecutive_failures=row[i["consecutive_failures"]],
        paused_at=row[i["paused_at"]],
        version=row[i["version"]],
        credential_header=row[i["credential_header"]],
        credential_id=row[i["credential_id"]],
    )


@functools.cache
def _list_statement(filters: frozenset[str]) -> str:
    """The list query with a condition for each filter in use, compiled once per combination."""
    conditions: list[sa.ColumnElement[bool]] = [scoped(webhooks)]
    if "show_deleted" not in filters:
        conditions.append(_LIVE)
    if "direction" in filters:
        conditions.append(webhooks.c.direction == param("direction"))
    if "enabled" in filters:
        conditions.append(webhooks.c.enabled == param("enabled"))
    if "event_type_filters" in filters:
        conditions.append(webhooks.c.event_types.overlap(param("event_type_filters", webhooks.c.event_types.type)))
    if "connector_id" in filters:
        conditions.append(webhooks.c.connector_id == param("connector_id"))
    if "application_id" in filters:
        conditions.append(webhooks.c.application_id == param("application_id"))
    if "tag" in filters:
        conditions.append(webhooks.c.tags.contains(param("tags", TEXT_ARRAY)))
    if "name_contains" in filters:
        conditions.append(webhooks.c.name.ilike(param("name_pattern"), escape="\\"))
    if "after_id" in filters:
        conditions.append(webhooks.c.id > param("after_id"))
    return compiled(sa.select(webhooks).where(*conditions).order_by(webhooks.c.id).limit(param("limit")))


def _list_params(scope: Scope, query: WebhookFilter, after_id: str | None, limit: int) -> dict[str, Any]:
    values: dict[str, Any] = scope_params(scope) | {"limit": limit}
    if query.show_deleted:
        values["show_deleted"] = True
    if query.direction is not None:
        values["direction"] = query.direction.value
    if query.enabled is not None:
        values["enabled"] = query.enabled
    if query.event_type_filters:
        values["event_type_filters"] = list(query.event_type_filters)
    if query.connector_id:
        values["connector_id"] = query.connector_id
    if query.application_id:
        values["application_id"] = query.application_id
    if query.tag:
        values["tag"] = True
        values["tags"] = [query.tag]
    if query.name_contains:
        escaped = query.name_contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        values["name_contains"] = True
        values["name_pattern"] = f"%{escaped}%"
    if after_id is not None:
        values["after_id"] = after_id
    return values


class WebhookStore:
    """ports.WebhookRepository in PostgreSQL."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._page_token_key: bytes | None = None

    async def page_token_key(self) -> bytes:
        if self._page_token_key is None:
            row = await self._db.fetch_one(_PAGE_TOKEN_KEY)
            if row is None:
                raise RuntimeError("server_keys has no page_token key: run `webhookd migrate`")
            self._page_token_key = bytes(row[0])
        return self._page_token_key

    async def insert(self, webhook: Webhook, *, keyed: KeyedRequest | None = None) -> bool:
        values = _spec_values(webhook.spec) | {
            "id": webhook.id,
            "tenant_id": webhook.tenant_id,
            "app_id": webhook.app_id,
            "vault_path": webhook.vault_path,
            "secret_fingerprint": webhook.secret_fingerprint,
            "created_at": webhook.created_at,
            "updated_at": webhook.updated_at,
            "created_by": webhook.created_by,
            "updated_by": webhook.updated_by,
            "deleted_at": None,
            "deleted_by": None,
            "schema_version": webhook.schema_version,
            "version": webhook.version,
            "last_delivery_at": None,
            "last_delivery_status": None,
            "consecutive_failures": 0,
            "paused_at": None,
            "credential_header": webhook.credential_header,
            "credential_id": webhook.credential_id,
            "idempotency_key": None if keyed is None else keyed.key,
            "idempotency_request": None if keyed is None else keyed.request,
            "secret_change_token": None,
            "secret_change_until": None,
            "secret_overlap_ends_at": None,
        }
        # Never committed once its caller was told Unavailable, but for a lost answer to COMMIT itself:
        # a webhook that came alive afterwards would sign with a secret nobody was given.
        return await self._db.execute_unless_abandoned(_INSERT if keyed is None else _INSERT_ONCE, values) == 1

    async def created_with(self, scope: Scope, key: str) -> tuple[Webhook, str] | None:
        row = await self._db.fetch_one(_CREATED_WITH, scope_params(scope) | {"idempotency_key": key})
        return None if row is None else (webhook_from_row(row), row[_INDEX["idempotency_request"]])

    async def release_key(self, scope: Scope, webhook_id: str, key: str) -> None:
        await self._db.execute(_RELEASE_KEY, scope_params(scope) | {"id": webhook_id, "idempotency_key": key})

    async def get(self, scope: Scope, webhook_id: str) -> Webhook:
        row = await self._db.fetch_one(_GET, scope_params(scope) | {"id": webhook_id})
        if row is None:
            raise NotFound.of("webhook", webhook_id)
        return webhook_from_row(row)

    async def list(self, scope: Scope, query: WebhookFilter, *, after_id: str | None, limit: int) -> list[Webhook]:
        values = _list_params(scope, query, after_id, limit)
        statement = _list_statement(frozenset(values) - {"tenant_id", "app_id", "limit", "name_pattern", "tags"})
        return [webhook_from_row(row) for row in await self._db.fetch_all(statement, values)]

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
        """Writes spec if the row is still at expected_version; Aborted when someone wrote first. With
        `routing_changed`, what was held back under the old ordering or rate limit is due again."""

        async def release(connection: Connection) -> None:
            await held_back_due(connection, scope, webhook_id)

        values = _spec_values(spec) | {"expected_version": expected_version, "person_id": person_id, "now": now}
        then = release if routing_changed else None
        row, current, _ = await self._write_or_read(scope, webhook_id, _UPDATE_SPEC, values, note, then=then)
        if row is not None:
            return row
        if current.is_deleted:
            raise FailedPrecondition(f"webhook {webhook_id} is deleted; undelete it before updating it")
        raise _version_conflict(webhook_id, expected_version, current.version)

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
        values = {"expected_version": expected_version, "person_id": person_id, "now": now}
        row, current, _ = await self._write_or_read(scope, webhook_id, _SOFT_DELETE, values, note)
        if row is not None:
            return row
        if expected_version is not None and current.version != expected_version:
            raise _version_conflict(webhook_id, expected_version, current.version)
        # Already deleted: deleting again is a no-op that returns the resource.
        return current

    async def undelete(
        self,
        scope: Scope,
        webhook_id: str,
        *,
        person_id: str | None,
        now: datetime,
        note: LifecycleChange | None = None,
    ) -> Webhook:
        values = {"person_id": person_id, "now": now}
        row, _, _ = await self._write_or_read(scope, webhook_id, _UNDELETE, values, note)
        if row is not None:
            return row
        raise AlreadyExists(f"webhook {webhook_id} is not deleted")

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
        values = {
            "fingerprint": fingerprint,
            "replacing": replacing,
            "token": lease,
            "person_id": person_id,
            "now": now,
        }
        row, current, _ = await self._write_or_read(scope, webhook_id, _SET_FINGERPRINT, values, note)
        if row is None and not current.is_deleted:
            raise Aborted(_LEASE_LAPSED.format(webhook_id=webhook_id))
        return _stamped(webhook_id, row)

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
        """Aborted when the webhook's url is no longer `url`, or `lease` no longer holds its secrets."""
        values = {
            "header": header,
            "credential_id": credential_id,
            "url": url,
            "token": lease,
            "person_id": person_id,
            "now": now,
        }
        row, current, _ = await self._write_or_read(scope, webhook_id, _SET_CREDENTIAL, values, note)
        if row is None and not current.is_deleted:
            if current.spec.url != url:
                raise Aborted(
                    f"webhook {webhook_id}'s url changed while its credential was being set: read it and retry"
                )
            raise Aborted(_LEASE_LAPSED.format(webhook_id=webhook_id))
        return _stamped(webhook_id, row)

    async def take_secret_lease(self, scope: Scope, webhook_id: str, token: UUID, *, lasting: timedelta) -> Webhook:
        values = {"token": token, "lasting": lasting}
        row, _, _ = await self._write_or_read(scope, webhook_id, _TAKE_SECRET_LEASE, values)
        if row is None:
            raise change_under_way(webhook_id)
        return row

    async def release_secret_lease(self, scope: Scope, webhook_id: str, token: UUID) -> None:
        keys = scope_params(scope) | {"id": webhook_id}

        async def release(connection: Connection) -> None:
            await connection.execute(_LOCK_THE_WEBHOOK, keys)
            await connection.execute(_RELEASE_SECRET_LEASE, keys | {"token": token})

        await self._db.transaction(release)

    async def resume(
        self, scope: Scope, webhook_id: str, *, person_id: str | None, note: LifecycleChange, discard_held: bool
    ) -> tuple[Webhook, HeldSettled | None]:
        """Clears an automatic pause and the failure count, and settles what was held meanwhile; a
        webhook that is not paused is returned as it is, nothing settled (None)."""

        async def settle(connection: Connection) -> HeldSettled:
            return await settle_held(connection, scope, note, discard=discard_held)

        values = {"person_id": person_id, "now": note.at}
        row, current, settled = await self._write_or_read(scope, webhook_id, _RESUME, values, then=settle)
        if row is None and not current.is_deleted:
            return current, None
        return _stamped(webhook_id, row), settled

    async def _write_or_read(
        self,
        scope: Scope,
        webhook_id: str,
        statement: str,
        values: dict[str, Any],
        note: LifecycleChange | None = None,
        *,
        then: Callable[[Connection], Awaitable[R]] | None = None,
    ) -> tuple[Webhook | None, Webhook, R | None]:
        """Runs a conditional write of one webhook; when it changed nothing, reads the webhook as it
        is (in the same transaction) so the caller can say why. When it wrote, `note` is recorded and
        `then` runs, in its transaction, its result third (None when nothing was written). NotFound
        outside the scope. The transaction may run more than once (a conflict), so what it yields is
        returned from it, never gathered on the side."""
        keys = scope_params(scope) | {"id": webhook_id}

        async def write(connection: Connection) -> tuple[Any, Any, R | None]:
            written = await (await connection.execute(statement, keys | values)).fetchone()
            if written is None:
                return None, await (await connection.execute(_GET, keys)).fetchone(), None
            if note is not None:
                await record_change(connection, scope, note)
            return written, written, None if then is None else await then(connection)

        written, current, then_result = await self._db.transaction(write)
        if current is None:
            raise NotFound.of("webhook", webhook_id)
        webhook = webhook_from_row(current)
        return (webhook if written is not None else None), webhook, then_result


def _stamped(webhook_id: str, row: Webhook | None) -> Webhook:
    if row is None:
        raise FailedPrecondition(f"webhook {webhook_id} is deleted; undelete it first")
    return row


def _version_conflict(webhook_id: str, expected: int, current: int) -> Aborted:
    return Aborted(f"webhook {webhook_id} is at version {current}, not {expected}: read it again and retry")
