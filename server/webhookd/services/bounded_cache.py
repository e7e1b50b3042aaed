"""The keeping that the per-process caches share: at most `capacity` entries, least recently used
out first, none older than `ttl_seconds`. What a cache keeps and when it forgets is each cache's own."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    def __init__(self, *, capacity: int, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._capacity = capacity
        self._ttl = ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[K, tuple[V, float]] = OrderedDict()

    def get(self, key: K) -> tuple[bool, V | None]:
        """(True, the value) while it is kept and younger than the TTL; (False, None) otherwise."""
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        value, kept_at = entry
        if self._clock() - kept_at >= self._ttl:
            del self._entries[key]
            return False, None
        self._entries.move_to_end(key)
        return True, value

    def peek(self, key: K) -> V | None:
        """The value kept under `key`, whatever its age, without touching its place."""
        entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def put(self, key: K, value: V) -> None:
        self._entries[key] = (value, self._clock())
        self._entries.move_to_end(key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def discard(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    def kept_keys(self) -> list[K]:
        """The keys kept now, a copy: the caller may discard while it goes through them."""
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
