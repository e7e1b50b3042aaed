"""Lifecycle changes of a webhook: the DeliveryLog entry each one writes, and the operational event
(`webhookd.webhook.<change>`) published about it to the tenant's other webhooks that subscribe.

Every change is recorded as it commits: pausing by the attempt recorder in the transaction that
records the attempts (store/deliveries.py); the others right after the change they describe.
The operational event's data is `{"id", "name", "url", "reason", "time"}` of the webhook it is about,
and it is never delivered to that webhook.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from webhookd.domain.event_types import SERVICE_NAMESPACE
from webhookd.domain.statuses import LogKind

# The event type a test send carries unless the caller names one.
PING_EVENT_TYPE = f"{SERVICE_NAMESPACE}.ping"

# Why the attempt recorder paused a webhook. `{n}` is the count of consecutive failures.
PAUSED_AFTER_FAILURES = "{n} consecutive failures"
PAUSED_GONE = "the endpoint answered 410 Gone"
DISABLED_BY_OWNER = "disabled by its owner"
ENABLED_BY_OWNER = "enabled by its owner"


def operational_event_type(kind: LogKind) -> str:
    """`webhookd.webhook.paused` for LogKind.PAUSED: the event published about a change."""
    if kind is LogKind.ATTEMPT:
        raise ValueError("an attempt is not a lifecycle change")
    return f"{SERVICE_NAMESPACE}.{kind.value}"


@dataclass(frozen=True)
class LifecycleChange:
    """One change of one webhook, as the log and the operational event tell it."""

    kind: LogKind
    webhook_id: str
    at: datetime
    reason: str = ""
    delivery_count: int = 0  # recovered: requeued; resumed: released or discarded

    @property
    def event_type(self) -> str:
        return operational_event_type(self.kind)


@dataclass(frozen=True)
class HeldSettled:
    """What resuming did with the deliveries held while the webhook was paused."""

    released: int
    discarded: int


def resumed_reason(settled: HeldSettled) -> str:
    if settled.discarded:
        return f"{settled.discarded} held deliveries discarded"
    if settled.released:
        return f"{settled.released} held deliveries released"
    return ""


def recovered_reason(count: int, since: datetime) -> str:
    return f"{count} deliveries queued again since {since.isoformat().replace('+00:00', 'Z')}"


def credential_reason(header: str) -> str:
    """What a credential change's entry says: the header, never its value."""
    return f"{header} is sent with every delivery" if header else "no credential is sent any more"


def rotated_reason(previous_expires_at: datetime) -> str:
    return f"the previous secret signs until {previous_expires_at.isoformat().replace('+00:00', 'Z')}"


def example_payload(webhook_id: str, event_type: str) -> str:
    """The data of a test event: JSON text (ids are validated, so they need no escaping)."""
    return f'{{"webhook_id":"{webhook_id}","test":true,"event_type":"{event_type}"}}'
