"""Reading events back as they were published: one with its deliveries, or the caller's page by page."""

from __future__ import annotations

from webhookd.domain import page_tokens
from webhookd.domain.deliveries import Delivery
from webhookd.domain.errors import Invalid
from webhookd.domain.events import EventFilter, EventPage, StoredEvent
from webhookd.domain.scope import Scope
from webhookd.domain.validation import check_time_range, validate_page_size
from webhookd.ports import EventHistory, WebhookRepository
from webhookd.services.history import check_event_types


class PublishedEvents:
    def __init__(self, store: EventHistory, webhooks: WebhookRepository) -> None:
        self._store = store
        self._webhooks = webhooks  # holds the page-token key every process shares

    async def get(self, scope: Scope, event_id: str) -> tuple[StoredEvent, list[Delivery]]:
        return await self._store.get_event(scope, event_id)

    async def list_page(self, scope: Scope, query: EventFilter, *, page_size: int, page_token: str) -> EventPage:
        violations = check_event_types(query.event_types, "event_type") + check_time_range(
            query.start_time, query.end_time
        )
        if violations:
            raise Invalid(violations)
        limit = validate_page_size(page_size)
        key = await self._webhooks.page_token_key()
        digest = page_tokens.query_digest("events", scope.tenant_id, scope.app_id, query)
        before = page_tokens.decode(key, page_token, digest) if page_token else None
        # One extra row tells whether another page exists without a COUNT.
        rows = await self._store.list_events(scope, query, before_id=before, limit=limit + 1)
        page = rows[:limit]
        token = page_tokens.encode(key, page[-1].id, digest) if len(rows) > limit else ""
        return EventPage(page, token)
