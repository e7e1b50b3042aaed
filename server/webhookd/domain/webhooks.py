"""The Webhook resource as the domain sees it, and the rules that need no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from webhookd.domain.errors import FailedPrecondition
from webhookd.domain.statuses import Outcome

SCHEMA_VERSION = 1
DEFAULT_SOURCE = "edm"
# A webhook is enabled unless its owner says otherwise, at creation and when an update resets the field.
DEFAULT_ENABLED = True


class Direction(StrEnum):
    OUTBOUND = "outbound"
    INBOUND = "inbound"


class SourceType(StrEnum):
    FRONTEND = "frontend"
    BACKEND = "backend"
    SERVER = "server"
    SYSTEM = "system"
    API = "api"


class Backoff(StrEnum):
    EXPONENTIAL = "exponential"
    FIXED = "fixed"


class SignatureScheme(StrEnum):
    STANDARD_WEBHOOKS = "standard-webhooks"
    HMAC_SHA256 = "hmac-sha256"
    # Standard Webhooks v1a: an ed25519 key pair; the private key signs, receivers hold the public one.
    ED25519 = "ed25519"
    # Inbound only: requests from Stripe, Shopify, Slack, Twilio, Zoom, GitLab and Meta, verified as each
    # signs them, with the secret each issues for the endpoint (Twilio's: the account's Auth Token or a
    # SharedKey secret; Zoom's: the app's Secret Token; GitLab's: the hook's secret token, which it
    # sends as it is; Meta's: the App Secret).
    STRIPE = "stripe"
    SHOPIFY = "shopify"
    SLACK = "slack"
    TWILIO = "twilio"
    ZOOM = "zoom"
    GITLAB = "gitlab"
    META = "meta"

    @property
    def asymmetric(self) -> bool:
        return self is SignatureScheme.ED25519

    @property
    def secret_from_sender(self) -> bool:
        """The sender issues the secret (webhookd cannot make one), and only verifies requests with it:
        an inbound scheme only."""
        return self in _SENDER_ISSUED


_SENDER_ISSUED = frozenset(
    (
        SignatureScheme.STRIPE,
        SignatureScheme.SHOPIFY,
        SignatureScheme.SLACK,
        SignatureScheme.TWILIO,
        SignatureScheme.ZOOM,
        SignatureScheme.GITLAB,
        SignatureScheme.META,
    )
)


class Ordering(StrEnum):
    UNORDERED = "unordered"
    # One delivery at a time, in publish order, across every process (see the claim, store/deliveries.py).
    FIFO = "fifo"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    backoff: Backoff = Backoff.EXPONENTIAL
    timeout_ms: int = 15_000


@dataclass(frozen=True)
class WebhookSpec:
    """The caller-writable part of a webhook: what Create takes and Update may change."""

    name: str
    url: str
    direction: Direction = Direction.OUTBOUND
    event_types: tuple[str, ...] = ("*",)
    signature_scheme: SignatureScheme = SignatureScheme.STANDARD_WEBHOOKS
    headers: Mapping[str, str] = field(default_factory=dict)
    enabled: bool = DEFAULT_ENABLED
    retry_policy: RetryPolicy = RetryPolicy()
    connector_id: str = ""
    application_id: str = ""
    tags: tuple[str, ...] = ()
    source: str = DEFAULT_SOURCE
    source_type: SourceType = SourceType.API
    # Empty: every event, whatever its channels; else only events carrying at least one of these.
    channels: tuple[str, ...] = ()
    # Sends per second for all processes together; 0: no limit.
    rate_limit_per_second: int = 0
    ordering: Ordering = Ordering.UNORDERED


# Field paths an update_mask may name. `direction` is fixed at creation; an inbound webhook's url is
# assigned by the server.
MUTABLE_FIELDS = frozenset(
    {
        "name",
        "url",
        "event_types",
        "signature_scheme",
        "headers",
        "enabled",
        "retry_policy",
        "retry_policy.max_attempts",
        "retry_policy.backoff",
        "retry_policy.timeout_ms",
        "connector_id",
        "application_id",
        "tags",
        "source",
        "source_type",
        "channels",
        "rate_limit_per_second",
        "ordering",
    }
)
# AIP-134's full replacement: the mask `*` names every updatable field, so what the message leaves
# unset goes back to its default, as in a PUT.
REPLACE_ALL = "*"
WHOLE_MUTABLE_FIELDS = frozenset(path for path in MUTABLE_FIELDS if "." not in path)
IMMUTABLE_FIELDS = frozenset({"direction"})
OUTPUT_ONLY_FIELDS = frozenset(
    {
        "id",
        "tenant_id",
        "app_id",
        "created_at",
        "updated_at",
        "created_by",
        "updated_by",
        "is_deleted",
        "deleted_at",
        "deleted_by",
        "schema_version",
        "vault_path",
        "last_delivery_at",
        "last_delivery_status",
        "consecutive_failures",
        "paused_at",
        "secret_fingerprint",
        "is_active",
        "credential_header",
    }
)


@dataclass(frozen=True)
class Webhook:
    """A stored webhook: the spec plus everything the server stamps."""

    id: str
    tenant_id: str
    app_id: str | None
    spec: WebhookSpec
    created_at: datetime
    updated_at: datetime
    created_by: str | None
    updated_by: str | None
    deleted_at: datetime | None
    deleted_by: str | None
    schema_version: int
    vault_path: str
    secret_fingerprint: str
    last_delivery_at: datetime | None
    last_delivery_status: Outcome | None
    consecutive_failures: int
    paused_at: datetime | None
    version: int
    # The delivery credential's header name and the random id it was last set under ('': none); the
    # value itself never leaves Vault but to be sent (domain/credentials.py).
    credential_header: str = ""
    credential_id: str = ""

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def is_active(self) -> bool:
        return self.spec.enabled and self.paused_at is None and not self.is_deleted


def check_sends(webhook: Webhook) -> None:
    """FailedPrecondition unless something can be sent to the webhook: a test event, a credential for
    its deliveries, a delivery queued again. A deleted one sends nothing (its deliveries wait for an
    undelete), and nothing is sent to an inbound one."""
    if webhook.is_deleted:
        raise FailedPrecondition(f"webhook {webhook.id} is deleted; undelete it first")
    if webhook.spec.direction is Direction.INBOUND:
        raise FailedPrecondition(f"webhook {webhook.id} is inbound: it receives, nothing is sent to it")


def check_requeues(webhook: Webhook) -> None:
    """FailedPrecondition unless a delivery queued again for the webhook (RedeliverDelivery,
    RecoverWebhook) is sent: one something is sent to, and enabled (a paused one sends what waited
    once resumed)."""
    check_sends(webhook)
    if not webhook.spec.enabled:
        raise FailedPrecondition(f"webhook {webhook.id} is disabled; enable it before sending its deliveries again")


@dataclass(frozen=True)
class WebhookFilter:
    """List filters; None (or empty) means no filter on that field."""

    show_deleted: bool = False
    direction: Direction | None = None
    enabled: bool | None = None
    # Every filter string that matches the wanted event type (see domain.event_types.matching_filters).
    event_type_filters: tuple[str, ...] = ()
    connector_id: str | None = None
    application_id: str | None = None
    tag: str | None = None
    name_contains: str | None = None


@dataclass(frozen=True)
class WebhookPage:
    webhooks: list[Webhook]
    next_page_token: str
