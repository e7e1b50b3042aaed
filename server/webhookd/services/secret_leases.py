"""Holding a webhook's secret-change lease (domain/secret_changes.py) for a change, and giving it back.

A change that commits nothing gives its lease back, else the webhook's next change would be refused
until the lease lapses. A statement the database did not answer may still be carried out (a frozen
PostgreSQL resumes with it queued), so a take answered UNAVAILABLE may have taken the lease, and a
release answered UNAVAILABLE may have left it; and a release after a commit the database did not
answer would wait on that same database, holding up the UNAVAILABLE answer. Those leases are given
back in the background: tried again until a release is answered or the lease would have lapsed. A
release holds only while the lease is still this change's token, so it never frees another's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID, uuid4

from webhookd.domain.errors import Unavailable
from webhookd.domain.scope import Scope
from webhookd.domain.webhooks import Webhook
from webhookd.ports import WebhookRepository

log = logging.getLogger("webhookd.webhooks")

# Between tries of a release in the background; while the database is known to be away each fails at once.
RETRY_SECONDS = 0.5


@dataclass
class SecretLease:
    """A change's hold on a webhook's secret record: the row as the lease found it, and its token."""

    webhook: Webhook
    token: UUID
    committed: bool = False  # the commit released it
    unanswered: bool = False  # the database did not answer the commit: a release now would wait on it too


class SecretLeases:
    """Takes leases for changes and gives back those that committed nothing; owns the releases left to
    the background, which `close` stops (their leases then lapse by themselves)."""

    def __init__(self, store: WebhookRepository, *, lasting: timedelta) -> None:
        self._store = store
        self._lasting = lasting
        self._giving_back: set[asyncio.Task[None]] = set()

    @contextlib.asynccontextmanager
    async def held(self, scope: Scope, webhook_id: str) -> AsyncIterator[SecretLease]:
        """The webhook's row as it is once this call holds the lease. Aborted while another holds it.
        The commit releases it; a call that ends without one gives it back, even when its caller went
        away."""
        token = uuid4()
        lapses_at = asyncio.get_running_loop().time() + self._lasting.total_seconds()
        try:
            taken = await self._store.take_secret_lease(scope, webhook_id, token, lasting=self._lasting)
        except (Unavailable, asyncio.CancelledError):
            self._give_back_later(scope, webhook_id, token, lapses_at)  # the take may land all the same
            raise
        lease = SecretLease(taken, token)
        try:
            yield lease
        finally:
            if lease.unanswered:  # the caller's UNAVAILABLE answer does not wait on that database again
                self._give_back_later(scope, webhook_id, token, lapses_at)
            elif not lease.committed:
                await asyncio.shield(self._give_back(scope, webhook_id, token, lapses_at))

    async def close(self) -> None:
        for task in self._giving_back:
            task.cancel()
        await asyncio.gather(*self._giving_back, return_exceptions=True)

    async def _give_back(self, scope: Scope, webhook_id: str, token: UUID, lapses_at: float) -> None:
        """Releases the lease if `token` still holds it; left to the background if the database did not
        answer."""
        try:
            await self._store.release_secret_lease(scope, webhook_id, token)
        except Unavailable:
            self._give_back_later(scope, webhook_id, token, lapses_at)
        except Exception:
            # The lease lapses by itself; what the call failed with is what its caller must hear.
            log.warning("could not release a webhook's secret lease", extra={"webhook_id": webhook_id}, exc_info=True)

    def _give_back_later(self, scope: Scope, webhook_id: str, token: UUID, lapses_at: float) -> None:
        task = asyncio.get_running_loop().create_task(
            self._keep_giving_back(scope, webhook_id, token, lapses_at), name="secret-lease-give-back"
        )
        self._giving_back.add(task)
        task.add_done_callback(self._giving_back.discard)

    async def _keep_giving_back(self, scope: Scope, webhook_id: str, token: UUID, lapses_at: float) -> None:
        """Releases the lease if `token` still holds it, trying again while the database does not answer
        until the lease would have lapsed."""
        loop = asyncio.get_running_loop()
        while loop.time() < lapses_at:
            try:
                await self._store.release_secret_lease(scope, webhook_id, token)
                return
            except Unavailable:
                await asyncio.sleep(RETRY_SECONDS)
            except Exception:
                log.warning(
                    "could not release a webhook's secret lease", extra={"webhook_id": webhook_id}, exc_info=True
                )
                return
        log.warning("a webhook's secret lease was left to lapse", extra={"webhook_id": webhook_id})
