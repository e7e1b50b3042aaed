"""Inbound webhooks: where external systems call, what a request becomes, and what consumers read."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import urllib.parse
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from webhookd.domain.errors import FieldViolation, Invalid, PermissionDenied
from webhookd.domain.forms import form_fields, is_form
from webhookd.domain.history import LogPosition
from webhookd.domain.signing import (
    GITHUB_PREVIOUS_SIGNATURE_HEADER,
    GITHUB_SIGNATURE_HEADER,
    GITLAB_TOKEN_HEADER,
    HUB_SIGNATURE_HEADER,
    ID_HEADER,
    SHOPIFY_SIGNATURE_HEADER,
    SLACK_SIGNATURE_HEADER,
    SLACK_TIMESTAMP_HEADER,
    STANDARD_PREFIX,
    STRIPE_SIGNATURE_HEADER,
    SVIX_PREFIX,
    TWILIO_SETTINGS_HEADER,
    TWILIO_SIGNATURE_HEADER,
    ZOOM_SIGNATURE_HEADER,
    ZOOM_TIMESTAMP_HEADER,
    SignatureError,
    signed_with,
    standard_header,
    zoom_encrypted_token,
)
from webhookd.domain.webhooks import SignatureScheme

# An inbound webhook's callback URL is the public base URL, this path and the webhook's id.
INBOUND_PATH_PREFIX = "/api/v1/integration/inbound/"
# GitHub's id of a message it may retry (Standard Webhooks' is `webhook-id`; the other senders':
# read_message).
GITHUB_DELIVERY_HEADER = "x-github-delivery"
# Twilio's: the same token on each retry of one request.
TWILIO_MESSAGE_ID_HEADER = "i-twilio-idempotency-token"
# GitLab's: the same key on each retry (GitLab 17.4 on). Not X-Gitlab-Event-UUID: every event that one
# API call sets off through other hooks ("recursive webhooks") carries the same one.
GITLAB_IDEMPOTENCY_HEADER = "idempotency-key"
GITLAB_EVENT_HEADER = "x-gitlab-event"
# What names the event: GitHub's header, else Bitbucket's (both sign as hmac-sha256).
HUB_EVENT_HEADERS = ("x-github-event", "x-event-key")
SHOPIFY_ID_HEADER = "x-shopify-webhook-id"
SHOPIFY_TOPIC_HEADER = "x-shopify-topic"
MAX_MESSAGE_ID_LENGTH = 255
_LONG_ID_MARK = "~sha256:"  # ends an id longer than that (_bounded_id)
# Every header a receipt is verified or identified by, in any scheme (lower case).
SENDER_HEADERS = frozenset(
    name.lower()
    for name in (
        *(prefix + field for prefix in (STANDARD_PREFIX, SVIX_PREFIX) for field in ("id", "timestamp", "signature")),
        GITHUB_SIGNATURE_HEADER,
        GITHUB_PREVIOUS_SIGNATURE_HEADER,
        HUB_SIGNATURE_HEADER,
        GITHUB_DELIVERY_HEADER,
        *HUB_EVENT_HEADERS,
        STRIPE_SIGNATURE_HEADER,
        SHOPIFY_SIGNATURE_HEADER,
        SHOPIFY_ID_HEADER,
        SHOPIFY_TOPIC_HEADER,
        SLACK_SIGNATURE_HEADER,
        SLACK_TIMESTAMP_HEADER,
        TWILIO_SIGNATURE_HEADER,
        TWILIO_SETTINGS_HEADER,
        TWILIO_MESSAGE_ID_HEADER,
        ZOOM_SIGNATURE_HEADER,
        ZOOM_TIMESTAMP_HEADER,
        GITLAB_TOKEN_HEADER,
        GITLAB_EVENT_HEADER,
        GITLAB_IDEMPOTENCY_HEADER,
    )
)


def refuse_repeated(repeated_headers: Collection[str]) -> None:
    """SignatureError when a header the receipt is verified or identified by came more than once:
    which copy a proxy in front checked, or a sender meant, is unknown, so none is chosen."""
    repeated = sorted(SENDER_HEADERS.intersection(repeated_headers))
    if repeated:
        raise SignatureError(SignatureError.REPEATED_HEADERS, ", ".join(repeated))


# Slack's handshake when an endpoint is set up: it is answered with the challenge it carries.
SLACK_URL_VERIFICATION = "url_verification"
MAX_CHALLENGE_LENGTH = 256
# Zoom's check of an endpoint, when it is set up and every 72 hours after: answered with its
# `plainToken` and that token's HMAC under the Secret Token (ZoomValidation).
ZOOM_URL_VALIDATION = "endpoint.url_validation"
# Meta's check of a callback URL, when a subscription is set up: a GET whose query carries these.
# It is answered with the challenge when the Verify Token given in Meta's dashboard is the webhook's
# id (the POSTs that follow are what the App Secret's signature guards).
META_MODE = "hub.mode"
META_CHALLENGE = "hub.challenge"
META_VERIFY_TOKEN = "hub.verify_token"
META_SUBSCRIBE = "subscribe"
# Meta's challenge is a number; an answer echoing the query's text must carry nothing a browser runs.
_META_CHALLENGE = re.compile(r"[0-9A-Za-z_-]+")
# Meta names no id it keeps across retries and signs no time, so a notification is known by its body's
# digest: a retry is stored once, and a replay of a captured one is a duplicate rather than a new event.
# Distinct notifications differ: each entry carries its id and time.
BODY_DIGEST_PREFIX = "sha256:"
# The type of a slash command Slack posts (its form names the command, not a type).
SLACK_SLASH_COMMAND = "slash_command"
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
    url: str = ""  # the callback URL handed out for it: twilio signs the URL it calls
    version: int = 0  # the row's: the secret record is cached under it (services/signing_secrets.py)


@dataclass(frozen=True)
class Stored:
    """What became of a receipt: its id once stored; None, with nothing written, when an accepted
    message with its id was stored before (a duplicate) or when `retry_after_seconds` says its bucket
    held no token."""

    receipt_id: str | None
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


# Twilio reads the answer to a webhook as TwiML, instructions for the message or call: an empty
# Response asks for nothing more, where an answer it cannot read is error 12300 in its console.
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


@dataclass(frozen=True)
class ZoomValidation:
    """The answer to Zoom's `endpoint.url_validation`, which Zoom waits for before it sends events."""

    plain_token: str
    encrypted_token: str  # signing.zoom_encrypted_token of plain_token


@dataclass(frozen=True)
class Received:
    receipt_id: str | None  # None: a duplicate of a message already stored
    challenge: str | None = None  # Slack's URL verification, answered with its challenge
    twiml: bool = False  # Twilio's request: answered with EMPTY_TWIML
    zoom_validation: ZoomValidation | None = None  # Zoom's URL validation: answered with this alone

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


@dataclass(frozen=True)
class SenderMessage:
    """What the sender says of a request: the id it keeps when it retries, the event's type (empty
    when none), and the challenge its handshake carries (Slack's URL verification, Zoom's URL
    validation's `plainToken`)."""

    message_id: str | None
    event_type: str
    challenge: str | None = None


def read_message(scheme: SignatureScheme, headers: Mapping[str, str], body: bytes, content_type: str) -> SenderMessage:
    """Each sender's own ids and types (headers with lower-case names): Stripe's event `id` and `type`;
    Shopify's `X-Shopify-Webhook-Id` and `X-Shopify-Topic`; Slack's `event_id` and the event's `type`
    (and the challenge of its `url_verification`), or for its form posts the interaction's `type` or
    `slash_command`; Twilio's `I-Twilio-Idempotency-Token` (its form posts name no type); Zoom's `event`
    (and the `plainToken` of its URL validation); GitLab's
    `Idempotency-Key` and `X-Gitlab-Event`; Meta's body digest (it keeps no id across retries) and its
    `object` and first change's `field` (`whatsapp_business_account.messages`); GitHub's
    `X-GitHub-Delivery` and `X-GitHub-Event` (hmac-sha256; Bitbucket's `X-Event-Key`, its requests naming
    no id kept across retries); Standard Webhooks' `webhook-id` (or Svix's
    `svix-id`) and the body's `type` (or `X-Gitlab-Event`, for GitLab's signing token).

    Where Zoom and Slack (its form posts) name no id, the signature is one: it covers the time and the
    body, so a request replayed within the 5 minutes its time is taken is a duplicate."""
    document = _json_object(body, content_type)
    message_id, event_type, challenge = "", _text(document.get("type")), None
    if scheme is SignatureScheme.STRIPE:
        message_id = _text(document.get("id"))
    elif scheme is SignatureScheme.SHOPIFY:
        message_id, event_type = headers.get(SHOPIFY_ID_HEADER, ""), headers.get(SHOPIFY_TOPIC_HEADER, "")
    elif scheme is SignatureScheme.SLACK:
        message_id = _text(document.get("event_id")) or headers.get(SLACK_SIGNATURE_HEADER.lower(), "")
        inner = document.get("event")
        event_type = _text(inner.get("type")) if isinstance(inner, dict) else event_type
        if event_type == SLACK_URL_VERIFICATION:
            challenge = _challenge(document.get("challenge"))
        elif not document:
            event_type = _slack_form_type(body, content_type)
    elif scheme is SignatureScheme.TWILIO:
        message_id = headers.get(TWILIO_MESSAGE_ID_HEADER, "")
    elif scheme is SignatureScheme.GITLAB:
        message_id = headers.get(GITLAB_IDEMPOTENCY_HEADER, "")
        event_type = headers.get(GITLAB_EVENT_HEADER, "") or _text(document.get("object_kind"))
    elif scheme is SignatureScheme.META:
        message_id, event_type = BODY_DIGEST_PREFIX + hashlib.sha256(body).hexdigest(), _meta_type(document)
    elif scheme is SignatureScheme.ZOOM:
        message_id, event_type = headers.get(ZOOM_SIGNATURE_HEADER, ""), _text(document.get("event"))
        payload = document.get("payload")
        if event_type == ZOOM_URL_VALIDATION and isinstance(payload, dict):
            challenge = _challenge(payload.get("plainToken"))
    else:
        message_id = standard_header(headers, ID_HEADER) or headers.get(GITHUB_DELIVERY_HEADER, "")
        if scheme is SignatureScheme.HMAC_SHA256:
            event_type = next(filter(None, (headers.get(name, "") for name in HUB_EVENT_HEADERS)), event_type)
        else:
            event_type = event_type or headers.get(GITLAB_EVENT_HEADER, "")
    return SenderMessage(_bounded_id(message_id) or None, event_type[:MAX_EVENT_TYPE_LENGTH], challenge)


def _bounded_id(message_id: str) -> str:
    """A sender's id within MAX_MESSAGE_ID_LENGTH: a longer one keeps its start and ends with the digest
    of the whole, since duplicates are found by it and a cut one would make two messages one."""
    if len(message_id) <= MAX_MESSAGE_ID_LENGTH:
        return message_id
    digest = _LONG_ID_MARK + hashlib.sha256(message_id.encode("utf-8", "surrogatepass")).hexdigest()
    return message_id[: MAX_MESSAGE_ID_LENGTH - len(digest)] + digest


def zoom_validation(
    plain_token: str | None, secrets: Sequence[str], headers: Mapping[str, str], body: bytes, now: int
) -> ZoomValidation | None:
    """The answer to a verified Zoom request that carries a URL validation's `plainToken`, else None:
    under the secret Zoom signed with, whichever of a rotation's two that is."""
    if plain_token is None:
        return None
    secret = signed_with(SignatureScheme.ZOOM, secrets, headers, body, now)
    return ZoomValidation(plain_token, zoom_encrypted_token(secret, plain_token))


def meta_challenge(webhook_id: str, query: str) -> str:
    """The challenge to answer Meta's subscription check with (`hub.mode=subscribe`, `hub.challenge`,
    `hub.verify_token` in the query): Invalid when it is not one, PermissionDenied when its Verify
    Token is not the webhook's id."""
    fields = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    violations = []
    if fields.get(META_MODE) != META_SUBSCRIBE:
        violations.append(FieldViolation(META_MODE, f"must be {META_SUBSCRIBE!r}"))
    challenge = fields.get(META_CHALLENGE, "")
    if not (len(challenge) <= MAX_CHALLENGE_LENGTH and _META_CHALLENGE.fullmatch(challenge)):
        violations.append(
            FieldViolation(
                META_CHALLENGE,
                f"must be 1 to {MAX_CHALLENGE_LENGTH} letters, digits, '-' and '_' (Meta sends a number)",
            )
        )
    if violations:
        raise Invalid(violations)
    token = fields.get(META_VERIFY_TOKEN, "").encode()
    if not hmac.compare_digest(token, webhook_id.encode()):
        raise PermissionDenied(
            f"{META_VERIFY_TOKEN} does not match: the Verify Token for this callback URL is the webhook's id",
            reason="VERIFY_TOKEN_MISMATCH",
        )
    return challenge


def _meta_type(document: Mapping[str, object]) -> str:
    """`object`, and `.field` of the first entry's first change when there is one."""
    kind = _text(document.get("object"))
    entries = document.get("entry")
    entry = entries[0] if isinstance(entries, list) and entries else None
    changes = entry.get("changes") if isinstance(entry, dict) else None
    change = changes[0] if isinstance(changes, list) and changes else None
    field = _text(change.get("field")) if isinstance(change, dict) else ""
    return f"{kind}.{field}" if kind and field else kind


def _slack_form_type(body: bytes, content_type: str) -> str:
    """What Slack posts as a form: an interaction (`payload`, JSON with its `type`: block_actions,
    view_submission, shortcut, ...) or a slash command (`command`); else no type."""
    if not is_form(content_type):
        return ""
    try:
        fields = dict(form_fields(body))
    except ValueError:  # not UTF-8
        return ""
    if "payload" in fields:
        return _text(_json_object(fields["payload"].encode(), "application/json").get("type"))
    return SLACK_SLASH_COMMAND if fields.get("command") else ""


def _json_object(body: bytes, content_type: str) -> dict[str, object]:
    """A JSON object body, else an empty one."""
    if "json" not in content_type.lower():
        return {}
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _challenge(value: object) -> str | None:
    """A handshake's challenge to answer with: text an answer can carry, bounded, else None (a cut one
    would be a wrong answer). JSON may spell a lone surrogate, which no UTF-8 answer can hold."""
    text = _text(value)
    if len(text) > MAX_CHALLENGE_LENGTH:
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return text or None


def consumer_name(value: str, field: str = "consumer") -> str:
    if not _CONSUMER_NAME.fullmatch(value):
        raise Invalid.field(field, "must be 1..64 characters of letters, digits, '.', '_' and '-'")
    return value
