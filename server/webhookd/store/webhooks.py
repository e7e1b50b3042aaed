"""Webhook rows: every query takes the caller's Scope and puts it in the WHERE clause."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from webhookd.domain.errors import Aborted, AlreadyExists, FailedPrecondition, NotFound
from webhookd.domain.scope import Scope
from webhookd.domain.statuses import Outcome
from webhookd.domain.webhooks import (
    Backoff,
    Direction,
    RetryPolicy,
    SignatureScheme,
    SourceType,
    Webhook,
    WebhookFilter,
    WebhookSpec,
)
from webhookd.store.database import reader
from webhookd.store.scoping import scoped
from webhookd.store.tables import server_keys, webhooks


def _spec_columns(spec: WebhookSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "direction": spec.direction.value,
        "url": spec.url,
        "event_types": list(spec.event_types),
        "signature_scheme": spec.signature_scheme.value,
        "headers": dict(spec.headers),
        "enabled": spec.enabled,
        "retry_max_attempts": spec.retry_policy.max_attempts,
        "retry_backoff": spec.retry_policy.backoff.value,
        "retry_timeout_ms": spec.retry_policy.timeout_ms,
        "connector_id": spec.connector_id,
        "application_id": spec.application_id,
        "tags": list(spec.tags),
        "source": spec.source,
        "source_type": spec.source_type.value,
    }


def webhook_from_row(row: RowMapping | Mapping[str, Any]) -> Webhook:
    spec = WebhookSpec(
        name=row["name"],
        url=row["url"],
        direction=Direction(row["direction"]),
        event_types=tuple(row["event_types"]),
        signature_scheme=SignatureScheme(row["signature_scheme"]),
        headers=dict(row["headers"]),
        enabled=row["enabled"],
        retry_policy=RetryPolicy(
            max_attempts=row["retry_max_attempts"],
            backoff=Backoff(row["retry_backoff"]),
            timeout_ms=row["retry_timeout_ms"],
        ),
        connector_id=row["connector_id"],
        application_id=row["application_id"],
        tags=tuple(row["tags"]),
        source=row["source"],
        source_type=SourceType(row["source_type"]),
    )
    return Webhook(
        id=row["id"],
        tenant_id=row["tenant_id"],
        app_id=row["app_id"],
        spec=spec,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        created_by=row["created_by"],
        updated_by=row["updated_by"],
        deleted_at=row["deleted_at"],
        deleted_by=row["deleted_by"],
        schema_version=row["schema_version"],
        vault_path=row["vault_path"],
        secret_fingerprint=row["secret_fingerprint"],
        last_delivery_at=row["last_delivery_at"],
        last_delivery_status=_outcome(row["last_delivery_status"]),
        consecutive_failures=row["consecutive_failures"],
        paused_at=row["paused_at"],
        version=row["version"],
    )


def _outcome(value: str | None) -> Outcome | None:
    return None if value is None else Outcome(value)


class WebhookStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._reader = reader(engine)
        self._page_token_key: bytes | None = None

    async def page_token_key(self) -> bytes:
        if self._page_token_key is None:
            async with self._engine.connect() as connection:
                key = await connection.scalar(sa.select(server_keys.c.key).where(server_keys.c.name == "page_token"))
            if key is None:
                raise RuntimeError("server_keys has no page_token key: run `webhookd migrate`")
            self._page_token_key = bytes(key)
        return self._page_token_key

    async def insert(self, webhook: Webhook) -> Webhook:
        values = _spec_columns(webhook.spec) | {
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
        }
        async with self._engine.begin() as connection:
            row = (await connection.execute(webhooks.insert().values(values).returning(webhooks))).mappings().one()
        return webhook_from_row(row)

    async def get(self, scope: Scope, webhook_id: str) -> Webhook:
        async with self._reader.connect() as connection:
            return await self._get(connection, scope, webhook_id)

    async def list(self, scope: Scope, query: WebhookFilter, *, after_id: str | None, limit: int) -> list[Webhook]:
        conditions: list[sa.ColumnElement[bool]] = [scoped(webhooks, scope)]
        if not query.show_deleted:
            conditions.append(webhooks.c.deleted_at.is_(None))
        if query.direction is not None:
            conditions.append(webhooks.c.direction == query.direction.value)
        if query.enabled is not None:
            conditions.append(webhooks.c.enabled == query.enabled)
        if query.event_type_filters:
            conditions.append(webhooks.c.event_types.overlap(list(query.event_type_filters)))
        if query.connector_id:
            conditions.append(webhooks.c.connector_id == query.connector_id)
        if query.application_id:
            conditions.append(webhooks.c.application_id == query.application_id)
        if query.tag:
            conditions.append(webhooks.c.tags.contains([query.tag]))
        if query.name_contains:
            escaped = query.name_contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            conditions.append(webhooks.c.name.ilike(f"%{escaped}%", escape="\\"))
        if after_id is not None:
            conditions.append(webhooks.c.id > after_id)
        statement = sa.select(webhooks).where(*conditions).order_by(webhooks.c.id).limit(limit)
        async with self._reader.connect() as connection:
            rows = (await connection.execute(statement)).mappings().all()
        return [webhook_from_row(row) for row in rows]

    async def update_spec(
        self,
        scope: Scope,
        webhook_id: str,
        spec: WebhookSpec,
        *,
        expected_version: int,
        person_id: str | None,
        now: datetime,
    ) -> Webhook:
        """Writes spec if the row is still at expected_version; Aborted when someone wrote first."""
        statement = (
            webhooks.update()
            .where(
                scoped(webhooks, scope),
                webhooks.c.id == webhook_id,
                webhooks.c.version == expected_version,
                webhooks.c.deleted_at.is_(None),
            )
            .values(
                _spec_columns(spec) | {"updated_at": now, "updated_by": person_id, "version": webhooks.c.version + 1}
            )
            .returning(webhooks)
        )
        async with self._engine.begin() as connection:
            row = (await connection.execute(statement)).mappings().one_or_none()
            if row is not None:
                return webhook_from_row(row)
            current = await self._get(connection, scope, webhook_id)
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
    ) -> Webhook:
        conditions = [scoped(webhooks, scope), webhooks.c.id == webhook_id, webhooks.c.deleted_at.is_(None)]
        if expected_version is not None:
            conditions.append(webhooks.c.version == expected_version)
        statement = (
            webhooks.update()
            .where(*conditions)
            .values(
                deleted_at=now,
                deleted_by=person_id,
                updated_at=now,
                updated_by=person_id,
                version=webhooks.c.version + 1,
            )
            .returning(webhooks)
        )
        async with self._engine.begin() as connection:
            row = (await connection.execute(statement)).mappings().one_or_none()
            if row is not None:
                return webhook_from_row(row)
            current = await self._get(connection, scope, webhook_id)
        if expected_version is not None and current.version != expected_version:
            raise _version_conflict(webhook_id, expected_version, current.version)
        # Already deleted: deleting again is a no-op that returns the resource.
        return current

    async def undelete(self, scope: Scope, webhook_id: str, *, person_id: str | None, now: datetime) -> Webhook:
        statement = (
            webhooks.update()
            .where(scoped(webhooks, scope), webhooks.c.id == webhook_id, webhooks.c.deleted_at.is_not(None))
            .values(
                deleted_at=None,
                deleted_by=None,
                updated_at=now,
                updated_by=person_id,
                version=webhooks.c.version + 1,
            )
            .returning(webhooks)
        )
        async with self._engine.begin() as connection:
            row = (await connection.execute(statement)).mappings().one_or_none()
            if row is not None:
                return webhook_from_row(row)
            await self._get(connection, scope, webhook_id)
        raise AlreadyExists(f"webhook {webhook_id} is not deleted")

    async def set_fingerprint(
        self, scope: Scope, webhook_id: str, fingerprint: str, *, person_id: str | None, now: datetime
    ) -> Webhook:
        return await self._stamp(
            scope,
            webhook_id,
            {"secret_fingerprint": fingerprint, "updated_at": now, "updated_by": person_id},
        )

    async def resume(self, scope: Scope, webhook_id: str, *, person_id: str | None, now: datetime) -> Webhook:
        """Clears an automatic pause and the failure count."""
        values = {"paused_at": None, "consecutive_failures": 0, "updated_at": now, "updated_by": person_id}
        return await self._stamp(scope, webhook_id, values)

    async def _stamp(self, scope: Scope, webhook_id: str, values: dict[str, Any]) -> Webhook:
        """A server-side change of a live webhook: a new version, no version precondition."""
        statement = (
            webhooks.update()
            .where(scoped(webhooks, scope), webhooks.c.id == webhook_id, webhooks.c.deleted_at.is_(None))
            .values(values | {"version": webhooks.c.version + 1})
            .returning(webhooks)
        )
        async with self._engine.begin() as connection:
            row = (await connection.execute(statement)).mappings().one_or_none()
            if row is not None:
                return webhook_from_row(row)
            await self._get(connection, scope, webhook_id)
        raise FailedPrecondition(f"webhook {webhook_id} is deleted; undelete it first")

    async def _get(self, connection: AsyncConnection, scope: Scope, webhook_id: str) -> Webhook:
        statement = sa.select(webhooks).where(scoped(webhooks, scope), webhooks.c.id == webhook_id)
        row = (await connection.execute(statement)).mappings().one_or_none()
        if row is None:
            raise NotFound(f"webhook {webhook_id} not found")
        return webhook_from_row(row)


def _version_conflict(webhook_id: str, expected: int, current: int) -> Aborted:
    return Aborted(f"webhook {webhook_id} is at version {current}, not {expected}: read it again and retry")
