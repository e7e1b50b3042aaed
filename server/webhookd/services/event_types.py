"""Event type catalog use cases, and the schema a publish of a type is checked against."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager

from webhookd.domain import event_schemas, ids, page_tokens
from webhookd.domain.errors import Aborted, Invalid
from webhookd.domain.event_catalog import (
    EVENT_TYPE_PREFIX,
    SCHEMA_FIELD,
    EventType,
    EventTypePage,
    EventTypeSpec,
    validate_event_type_mask,
    validate_event_type_spec,
)
from webhookd.domain.event_schemas import CompiledSchema
from webhookd.domain.scope import Scope
from webhookd.domain.validation import validate_page_size
from webhookd.ports import Clock, EventTypeRepository, Notifications, Topic, WebhookRepository, utc_now
from webhookd.services.event_schema_cache import EventSchemaCache
from webhookd.services.to_its_end import to_its_end

# Turns validated update_mask paths into their new values (built by the transport from its message).
ChangesFor = Callable[[list[str]], Mapping[str, object]]


class EventTypes:
    def __init__(
        self,
        store: EventTypeRepository,
        webhooks: WebhookRepository,
        notifications: Notifications,
        *,
        cache: EventSchemaCache | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._webhooks = webhooks  # for the page-token key every process shares
        self._notifications = notifications
        self._cache = cache if cache is not None else EventSchemaCache()
        self._now = clock

    async def create(self, scope: Scope, spec: EventTypeSpec) -> EventType:
        spec = await _checked(spec)
        now = self._now()
        entry = EventType(
            id=ids.new_id(EVENT_TYPE_PREFIX),
            tenant_id=scope.tenant_id,
            app_id=scope.app_id,
            spec=spec,
            created_at=now,
            updated_at=now,
            created_by=scope.person_id,
            updated_by=scope.person_id,
            version=1,
        )
        return await self._write(self._store.insert(entry))

    async def get(self, scope: Scope, event_type_id: str) -> EventType:
        return await self._store.get(scope, event_type_id)

    async def list_page(
        self, scope: Scope, *, name_prefix: str | None, page_size: int, page_token: str
    ) -> EventTypePage:
        limit = validate_page_size(page_size)
        key = await self._webhooks.page_token_key()
        digest = page_tokens.query_digest("event_types", scope.tenant_id, scope.app_id, name_prefix)
        after = page_tokens.decode(key, page_token, digest) if page_token else None
        rows = await self._store.list(scope, name_prefix=name_prefix, after_id=after, limit=limit + 1)
        page, more = rows[:limit], len(rows) > limit
        return EventTypePage(page, page_tokens.encode(key, page[-1].id, digest) if more else "")

    async def update(
        self,
        scope: Scope,
        event_type_id: str,
        *,
        expected_version: int | None,
        paths: list[str],
        changes_for: ChangesFor,
        name: str | None = None,
    ) -> EventType:
        """Applies the masked changes; a version is a precondition (ABORTED when stale). `name`, when
        given, must be the stored one: it identifies the entry and never changes."""
        paths = validate_event_type_mask(paths)
        if not paths:
            raise Invalid.field("update_mask", "names no field to update")
        changes = changes_for(paths)
        current = await self._store.get(scope, event_type_id)
        if expected_version is not None and current.version != expected_version:
            raise Aborted(
                f"event type {event_type_id} is at version {current.version}, not {expected_version}: "
                "read it again and retry"
            )
        if name and name != current.spec.name:
            raise Invalid.field("event_type.name", f"is immutable: this entry stays {current.spec.name}")
        spec = await _checked(dataclasses.replace(current.spec, **changes))  # type: ignore[arg-type]
        updating = self._store.update(
            scope,
            event_type_id,
            spec,
            expected_version=current.version,
            person_id=scope.person_id,
            now=self._now(),
        )
        return await self._write(updating)

    async def delete(self, scope: Scope, event_type_id: str, *, expected_version: int | None) -> EventType:
        return await self._write(self._store.delete(scope, event_type_id, expected_version=expected_version))

    async def schema_for(self, scope: Scope, name: str) -> CompiledSchema | None:
        """The compiled schema a publish of `name` by `scope` must match; None when the scope's
        catalog has no entry for it or the entry has no schema. Read and compiled once per process
        and change (services/event_schema_cache.py)."""
        key = (scope.tenant_id, scope.app_id or "", name)
        found, schema = self._cache.get(key)
        if found:
            return schema
        generation = self._cache.generation
        entry = await self._store.find(scope, name)
        if entry is not None and entry.spec.schema_json is not None:
            schema = event_schemas.compile_schema(event_schemas.parse_json(entry.spec.schema_json, SCHEMA_FIELD))
        self._cache.put(key, schema, read_at_generation=generation)
        return schema

    async def example_for(self, scope: Scope, name: str) -> str | None:
        """The catalog's example data for `name` in the scope, as written: what SendTestEvent sends."""
        entry = await self._store.find(scope, name)
        return None if entry is None else entry.spec.example_json

    def follow_changes(self) -> AbstractAsyncContextManager[None]:
        """Keeps this process's schemas in step with every process's catalog writes while the block runs."""
        return self._notifications.follow(Topic.EVENT_TYPES, self._cache.changed)

    async def _write(self, writing: Awaitable[EventType]) -> EventType:
        """`writing`'s entry, and every process told of it; run to its end (services/to_its_end.py), as
        a write whose COMMIT was sent may land after its caller went away."""

        async def write_and_tell() -> EventType:
            entry = await writing
            self._cache.changed(entry.spec.name)
            self._notifications.notify(Topic.EVENT_TYPES, entry.spec.name)
            return entry

        return await to_its_end(write_and_tell())


async def _checked(spec: EventTypeSpec) -> EventTypeSpec:
    """validate_event_type_spec in a thread: the meta-schema, the probes and the example's validation
    are CPU work (seconds for a large schema), which would hold up every other call on the loop."""
    return await asyncio.to_thread(validate_event_type_spec, spec)
