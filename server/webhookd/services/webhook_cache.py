"""Recently read webhooks, so GetWebhook is answered without a database round trip.

What a write changes is seen at once: a write in this process puts its result here, and every
write notifies `Topic.WEBHOOKS`, which makes every other process forget that webhook: the use
cases with `<id>:<version>`, the attempt recorder with `<id>` for each webhook whose statistics
(`last_delivery_*`, `consecutive_failures`, `paused_at`) it changed. When a process's listener
(re)connects it forgets everything, since it may have missed a notification; and no entry is kept
longer than `ttl_seconds` in any case. A read that overlapped a notification of its webhook (or a
restart of listening) is not kept: it may hold what the notification made the cache forget. A caller
that must read the database asks for a fresh read.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from webhookd.domain.webhooks import Webhook
from webhookd.services.bounded_cache import BoundedCache

DEFAULT_CAPACITY = 10_000
DEFAULT_TTL_SECONDS = 5.0


class WebhookCache:
    def __init__(
        self,
        *,
        capacity: int = DEFAULT_CAPACITY,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: BoundedCache[str, Webhook] = BoundedCache(
            capacity=capacity, ttl_seconds=ttl_seconds, clock=clock
        )
        # Moves on every notification; a read notes it before it starts (`put`'s `read_at`).
        self.generation = 0
        # The generation each recently notified webhook was last forgotten at, oldest first, at most
        # `capacity` of them; a read that began before `_remembered_since` cannot be vouched for.
        self._forgotten_at: OrderedDict[str, int] = OrderedDict()
        self._capacity = capacity
        self._remembered_since = 0

    def get(self, webhook_id: str) -> Webhook | None:
        return self._entries.get(webhook_id)[1]

    def put(self, webhook: Webhook, *, read_at: int | None = None) -> None:
        """Keeps `webhook` unless a newer version of it is already kept. A read passes the generation
        it began at: what it read is dropped when its webhook was notified since (another process's
        write committed meanwhile, and its notification found nothing to forget yet)."""
        if read_at is not None and (
            read_at < self._remembered_since or self._forgotten_at.get(webhook.id, -1) > read_at
        ):
            return
        kept = self._entries.peek(webhook.id)
        if kept is None or kept.version <= webhook.version:
            self._entries.put(webhook.id, webhook)

    def changed(self, payload: str | None) -> None:
        """A `Topic.WEBHOOKS` notification: `<id>:<version>` forgets that webhook unless what is kept
        is already that version or newer, `<id>` forgets it; None (listening restarted) forgets
        everything."""
        self.generation += 1
        if payload is None:
            self._entries.clear()
            self._forgotten_at.clear()
            self._remembered_since = self.generation
            return
        webhook_id, _, version = payload.partition(":")
        self._note_forgotten(webhook_id)
        kept = self._entries.peek(webhook_id)
        if kept is not None and not (version.isdigit() and kept.version >= int(version)):
            self._entries.discard(webhook_id)

    def _note_forgotten(self, webhook_id: str) -> None:
        self._forgotten_at[webhook_id] = self.generation
        self._forgotten_at.move_to_end(webhook_id)
        while len(self._forgotten_at) > self._capacity:
            _, self._remembered_since = self._forgotten_at.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
