"""Inbound webhooks: where external systems call, what a request becomes, and what consumers read."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from webhookd.domain.errors import Invalid
from webhookd.domain.history import LogPosition
from webhookd.domain.webhooks import SignatureScheme

# An inbound webhook's callback URL is the public base URL, this path and the webhook's id.
INBOUND_PATH_PREFIX = "/api/v1/integration/inbound/"
# Where senders put the id of a message they may retry: Standard Webhooks, then GitHub.
MESSAGE_ID_HEADERS = ("webhook-id", "x-github-delivery")
MAX_MESSAGE_ID_LENGTH = 255
MAX_EVENT_TYPE_LENGTH = 128
_CONSUMER_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


def inbound_url(public_url: str, webhook_id: str) -> str:
    return f"{public_url.rstrip('/')}{INBOUND_PATH_PREFIX}{webhook_id}"


@dataclass(frozen=True)
class InboundTarget:
    """The live, enabled inbound webhook a request is addressed to."""

    webhook_id: str
    tenant_id: str
    app_id: str | None
    signature_scheme: SignatureScheme
    vault_path: str
    secret_fingerprint: str


@dataclass(frozen=True)
class Admission:
    """Whether a request to an inbound webhook may come in: None when there is no such (live,
    enabled, inbound) webhook; `retry_after_seconds` when its rate limit holds it back."""

    target: InboundTarget | None
    retry_after_seconds: float | None = None


@dataclass(frozen=True)
class Receipt:
    """One inbound request as it is stored: accepted with its body, or rejected without it."""

    message_id: str | None
    accepted: bool
    reason: str
    event_type: str
    content_type: str
    body: bytes | None
    http_status: int
    latency_ms: int
    received_at: datetime


@dataclass(frozen=True)
class Received:
    receipt_id: str | None  # None: a duplicate of a message already stored

    @property
    def duplicate(self) -> bool:
        return self.receipt_id is None


@dataclass(frozen=True)
class InboundEvent:
    """An accepted receipt as internal consumers read it, at its position in the stream."""

    position: LogPosition
    id: str
    webhook_id: str
    message_id: str | None
    event_type: str
    content_type: str
    body: bytes
    received_at: datetime


def event_type_of(body: bytes, content_type: str) -> str:
    """The `type` of a JSON object body (Standard Webhooks' shape), else empty."""
    if "json" not in content_type.lower():
        return ""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        return ""
    kind = parsed.get("type") if isinstance(parsed, dict) else None
    return kind[:MAX_EVENT_TYPE_LENGTH] if isinstance(kind, str) else ""


def message_id_of(headers: Mapping[str, str]) -> str | None:
    """The sender's message id, from headers with lower-case names."""
    for name in MESSAGE_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value[:MAX_MESSAGE_ID_LENGTH]
    return None


def consumer_name(value: str, field: str = "consumer") -> str:
    if not _CONSUMER_NAME.fullmatch(value):
        raise Invalid.field(field, "must be 1..64 characters of letters, digits, '.', '_' and '-'")
    return value
