"""Recently read webhooks, so GetWebhook is answered without a database round trip.

What a write changes is seen at once: a write in this process puts its result here, and every
write notifies `Topic.WEBHOOKS`, which makes every other process forget that webhook: the use
cases with `<id>:<version>`, the attempt recorder with `<id>` for each webhook whose statistics
(`last_delivery_*`, `consecutive_failures`, `paused_at`) it changed. When a process's listener
(re)connects it forgets everything, since it may have missed a notification; and no entry is kept
longer than `ttl_seconds` in any case. A caller that must read the database asks for a fresh read.
"""

from __future__ import annotations

import time
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

    def get(self, webhook_id: str) -> Webhook | None:
        return self._entries.get(webhook_id)[1]

    def put(self, webhook: Webhook) -> None:
        """Keeps `webhook` unless a newer version of it is already kept."""
        kept = self._entries.peek(webhook.id)
        if kept is None or kept.version <= webhook.version:
            self._entries.put(webhook.id, webhook)

    def changed(self, payload: str | None) -> None:
        """A `Topic.WEBHOOKS` notification: `<id>:<version>` forgets that webhook unless what is kept
        is already that version or newer, `<id>` forgets it; None (listening restarted) forgets
        everything."""
        if payload is None:
            self._entries.clear()
            return
        webhook_id, _, version = payload.partition(":")
        kept = self._entries.peek(webhook_id)
        if kept is not None and not (version.isdigit() and kept.version >= int(version)):
            self._entries.discard(webhook_id)

    def __len__(self) -> int:
        return len(self._entries)
