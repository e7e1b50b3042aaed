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
# Where senders put the id of a message they may retry: Standard Webhooks, then GitHub (Stripe's and
# Shopify's: message_id_of).
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


def message_id_of(scheme: SignatureScheme, headers: Mapping[str, str], body: bytes, content_type: str) -> str | None:
    """The id the sender keeps when it retries a message (headers with lower-case names): Stripe's is
    the event's `id` in the body, Shopify's `X-Shopify-Webhook-Id`; else Standard Webhooks' or GitHub's
    header."""
    if scheme is SignatureScheme.STRIPE:
        value = _json_field(body, content_type, "id")
    elif scheme is SignatureScheme.SHOPIFY:
        value = headers.get("x-shopify-webhook-id", "")
    else:
        value = next((headers[name] for name in MESSAGE_ID_HEADERS if headers.get(name)), "")
    return value[:MAX_MESSAGE_ID_LENGTH] or None


def event_type_of(scheme: SignatureScheme, headers: Mapping[str, str], body: bytes, content_type: str) -> str:
    """What happened, as the sender names it: Shopify's topic header (`orders/create`), GitHub's event
    header (`push`, for hmac-sha256), else the `type` of a JSON object body (Standard Webhooks', Stripe's);
    empty when there is none."""
    header = {SignatureScheme.SHOPIFY: "x-shopify-topic", SignatureScheme.HMAC_SHA256: "x-github-event"}.get(scheme)
    named = headers.get(header, "") if header else ""
    return (named or _json_field(body, content_type, "type"))[:MAX_EVENT_TYPE_LENGTH]


def _json_field(body: bytes, content_type: str, name: str) -> str:
    """A string field of a JSON object body, else empty."""
    if "json" not in content_type.lower():
        return ""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        return ""
    value = parsed.get(name) if isinstance(parsed, dict) else None
    return value if isinstance(value, str) else ""


def consumer_name(value: str, field: str = "consumer") -> str:
    if not _CONSUMER_NAME.fullmatch(value):
        raise Invalid.field(field, "must be 1..64 characters of letters, digits, '.', '_' and '-'")
    return value
