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
from collections import OrderedDict
from collections.abc import Callable

from webhookd.domain.event_schemas import CompiledSchema

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
        self._capacity = capacity
        self._ttl = ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[Key, tuple[CompiledSchema | None, float]] = OrderedDict()
        # Moves on every forgetting: a read that started before one may hold what it forgot.
        self.generation = 0

    def get(self, key: Key) -> tuple[bool, CompiledSchema | None]:
        """(True, what is kept) on a hit; (False, None) when the key must be read."""
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        schema, kept_at = entry
        if self._clock() - kept_at >= self._ttl:
            del self._entries[key]
            return False, None
        self._entries.move_to_end(key)
        return True, schema

    def put(self, key: Key, schema: CompiledSchema | None, *, read_at_generation: int) -> None:
        """Keeps what a read found, unless something was forgotten since the read began."""
        if read_at_generation != self.generation:
            return
        self._entries[key] = (schema, self._clock())
        self._entries.move_to_end(key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def changed(self, name: str | None) -> None:
        """A `Topic.EVENT_TYPES` notification: forget `name` in every scope; None forgets everything."""
        self.generation += 1
        if name is None:
            self._entries.clear()
            return
        for key in [key for key in self._entries if key[2] == name]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)
