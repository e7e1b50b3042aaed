"""The event type catalog (ports.EventTypeRepository): every query takes the caller's Scope."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from webhookd.domain.errors import Aborted, AlreadyExists, NotFound
from webhookd.domain.event_catalog import EventType, EventTypeSpec
from webhookd.domain.scope import Scope
from webhookd.store.database import Connection, Database
from webhookd.store.sql import compiled, param, scope_params, scoped
from webhookd.store.tables import event_types

_COLUMNS = [column.name for column in event_types.c]
_INDEX = {name: index for index, name in enumerate(_COLUMNS)}
_THE_ENTRY = sa.and_(scoped(event_types), event_types.c.id == param("id"))
_SPEC = ("description", "schema_json", "example_json", "deprecated")

# A name is held once per tenant and app (unique index event_types_name); a second is no row.
_INSERT = compiled(
    sa.text(
        f"""
INSERT INTO event_types ({", ".join(_COLUMNS)}) VALUES ({", ".join(":" + name for name in _COLUMNS)})
ON CONFLICT (tenant_id, coalesce(app_id, ''), name) DO NOTHING
RETURNING {", ".join(_COLUMNS)}
"""
    )
)
_GET = compiled(sa.select(event_types).where(_THE_ENTRY))
# The entry of exactly the caller's scope: a person's publish follows the tenant's catalog, an app's
# its own (store/sql.py's `scoped` would let a person's lookup see every app's entries).
_FIND = compiled(
    sa.select(event_types).where(
        event_types.c.tenant_id == param("tenant_id"),
        sa.func.coalesce(event_types.c.app_id, "") == sa.func.coalesce(param("app_id", sa.Text), ""),
        event_types.c.name == param("name"),
    )
)
_LIST = compiled(
    sa.select(event_types)
    .where(
        scoped(event_types),
        sa.or_(param("after_id", sa.Text).is_(None), event_types.c.id > param("after_id", sa.Text)),
        sa.or_(param("prefix", sa.Text).is_(None), sa.func.starts_with(event_types.c.name, param("prefix", sa.Text))),
    )
    .order_by(event_types.c.id)
    .limit(param("limit"))
)
_UPDATE = compiled(
    event_types.update()
    .where(_THE_ENTRY, event_types.c.version == param("expected_version"))
    .values(
        {name: param(name) for name in _SPEC}
        | {"updated_at": param("now"), "updated_by": param("person_id"), "version": event_types.c.version + 1}
    )
    .returning(event_types)
)
_DELETE = compiled(
    event_types.delete()
    .where(
        _THE_ENTRY,
        sa.or_(
            param("expected_version", sa.BigInteger).is_(None),
            event_types.c.version == param("expected_version", sa.BigInteger),
        ),
    )
    .returning(event_types)
)


def _spec_values(spec: EventTypeSpec) -> dict[str, Any]:
    return {
        "description": spec.description,
        "schema_json": spec.schema_json,
        "example_json": spec.example_json,
        "deprecated": spec.deprecated,
    }


def _event_type(row: Sequence[Any]) -> EventType:
    i = _INDEX
    return EventType(
        id=row[i["id"]],
        tenant_id=row[i["tenant_id"]],
        app_id=row[i["app_id"]],
        spec=EventTypeSpec(
            name=row[i["name"]],
            description=row[i["description"]],
            schema_json=row[i["schema_json"]],
            example_json=row[i["example_json"]],
            deprecated=row[i["deprecated"]],
        ),
        created_at=row[i["created_at"]],
        updated_at=row[i["updated_at"]],
        created_by=row[i["created_by"]],
        updated_by=row[i["updated_by"]],
        version=row[i["version"]],
    )


class EventTypeStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def insert(self, event_type: EventType) -> EventType:
        values = _spec_values(event_type.spec) | {
            "id": event_type.id,
            "tenant_id": event_type.tenant_id,
            "app_id": event_type.app_id,
            "name": event_type.spec.name,
            "created_at": event_type.created_at,
            "updated_at": event_type.updated_at,
            "created_by": event_type.created_by,
            "updated_by": event_type.updated_by,
            "version": event_type.version,
        }
        row = await self._db.fetch_one(_INSERT, values)
        if row is None:
            raise AlreadyExists(f"event type {event_type.spec.name} is already in the catalog")
        return _event_type(row)

    async def get(self, scope: Scope, event_type_id: str) -> EventType:
        row = await self._db.fetch_one(_GET, scope_params(scope) | {"id": event_type_id})
        if row is None:
            raise NotFound.of("event type", event_type_id)
        return _event_type(row)

    async def find(self, scope: Scope, name: str) -> EventType | None:
        row = await self._db.fetch_one(_FIND, scope_params(scope) | {"name": name})
        return None if row is None else _event_type(row)

    async def list(self, scope: Scope, *, name_prefix: str | None, after_id: str | None, limit: int) -> list[EventType]:
        values = scope_params(scope) | {"after_id": after_id, "prefix": name_prefix, "limit": limit}
        return [_event_type(row) for row in await self._db.fetch_all(_LIST, values)]

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
        values = _spec_values(spec) | {"expected_version": expected_version, "person_id": person_id, "now": now}
        written, current = await self._write_or_read(scope, event_type_id, _UPDATE, values)
        if written is not None:
            return written
        raise _version_conflict(event_type_id, expected_version, current.version)

    async def delete(self, scope: Scope, event_type_id: str, *, expected_version: int | None) -> EventType:
        written, current = await self._write_or_read(
            scope, event_type_id, _DELETE, {"expected_version": expected_version}
        )
        if written is not None:
            return written
        raise _version_conflict(event_type_id, expected_version or 0, current.version)

    async def _write_or_read(
        self, scope: Scope, event_type_id: str, statement: str, values: dict[str, Any]
    ) -> tuple[EventType | None, EventType]:
        """A conditional write; when it changed nothing, the entry as it is (NotFound outside the scope)."""
        keys = scope_params(scope) | {"id": event_type_id}

        async def write(connection: Connection) -> tuple[Any, Any]:
            written = await (await connection.execute(statement, keys | values)).fetchone()
            if written is not None:
                return written, written
            return None, await (await connection.execute(_GET, keys)).fetchone()

        written, current = await self._db.transaction(write)
        if current is None:
            raise NotFound.of("event type", event_type_id)
        entry = _event_type(current)
        return (entry if written is not None else None), entry


def _version_conflict(event_type_id: str, expected: int, current: int) -> Aborted:
    return Aborted(f"event type {event_type_id} is at version {current}, not {expected}: read it again and retry")
