"""Compiled event type schemas, kept per process so a publish neither reads the catalog nor compiles.

Keyed by the publisher's scope and the type's name; what is kept is the compiled schema, or None for
"no entry, or an entry without a schema" (most types: they must cost a publish nothing). Every write
to the catalog notifies `Topic.EVENT_TYPES` with the entry's name, and every process forgets that name
(in every scope: names carry no spaces, tenants might). A read that overlapped such a notification is
not kept, so an entry written meanwhile is never shadowed by what was read before it. When a process's
listener (re)connects it forgets everything; `ttl_seconds` bounds any entry's age regardless.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from webhookd.domain.event_schemas import CompiledSchema
from webhookd.services.bounded_cache import BoundedCache

DEFAULT_CAPACITY = 10_000
DEFAULT_TTL_SECONDS = 60.0
# (tenant_id, app_id or "", name)
Key = tuple[str, str, str]


class EventSchemaCache:
    def __init__(
        self,
        *,
        capacity: int = DEFAULT_CAPACITY,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: BoundedCache[Key, CompiledSchema | None] = BoundedCache(
            capacity=capacity, ttl_seconds=ttl_seconds, clock=clock
        )
        # Moves on every forgetting: a read that started before one may hold what it forgot.
        self.generation = 0

    def get(self, key: Key) -> tuple[bool, CompiledSchema | None]:
        """(True, what is kept) on a hit; (False, None) when the key must be read."""
        return self._entries.get(key)

    def put(self, key: Key, schema: CompiledSchema | None, *, read_at_generation: int) -> None:
        """Keeps what a read found, unless something was forgotten since the read began."""
        if read_at_generation == self.generation:
            self._entries.put(key, schema)

    def changed(self, name: str | None) -> None:
        """A `Topic.EVENT_TYPES` notification: forget `name` in every scope; None forgets everything."""
        self.generation += 1
        if name is None:
            self._entries.clear()
            return
        for key in self._entries.kept_keys():
            if key[2] == name:
                self._entries.discard(key)

    def __len__(self) -> int:
        return len(self._entries)
