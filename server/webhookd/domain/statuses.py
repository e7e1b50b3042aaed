"""Every status family in one place: what a delivery is, what one exchange came to, what a receipt is.

These words are stored in the database and shown to callers, so they are part of the API. The
migrations spell them in CHECK constraints and partial indexes; everything else names them here.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

from webhookd.domain.errors import FieldViolation, Invalid

E = TypeVar("E", bound=StrEnum)


class DeliveryStatus(StrEnum):
    """Where one delivery (an event for one webhook) stands. Only `pending` is ever claimed."""

    PENDING = "pending"  # waiting for its next attempt, or being attempted
    SUCCEEDED = "succeeded"  # a 2xx was received
    FAILED = "failed"  # its attempts ran out
    HELD = "held"  # published while its webhook was paused: ResumeWebhook releases or discards it
    SKIPPED = "skipped"  # published while its owner had the webhook disabled: RecoverWebhook requeues it
    DISCARDED = "discarded"  # held, then discarded on resume: kept as history, never sent


class LogKind(StrEnum):
    """What a DeliveryLog entry records: an attempt (or inbound receipt), or a change of a webhook."""

    ATTEMPT = "attempt"
    PAUSED = "webhook.paused"
    RESUMED = "webhook.resumed"
    DISABLED = "webhook.disabled"
    ENABLED = "webhook.enabled"
    SECRET_ROTATED = "webhook.secret_rotated"
    CREDENTIAL_CHANGED = "webhook.credential_changed"  # set, replaced or removed (SetWebhookCredential)
    RECOVERED = "webhook.recovered"
    DELETED = "webhook.deleted"
    UNDELETED = "webhook.undeleted"


class Outcome(StrEnum):
    """What one exchange came to: an outbound attempt, or an inbound request received."""

    SUCCEEDED = "succeeded"  # 2xx
    FAILED = "failed"  # any other HTTP status, redirects included
    TIMED_OUT = "timed_out"
    CONNECTION_ERROR = "connection_error"
    REFUSED = "refused"  # the SSRF guard refused the target
    RECEIVED = "received"  # an inbound request verified and stored
    REJECTED = "rejected"  # an inbound request whose signature failed


# The outcomes of an outbound attempt: what a webhook's `last_delivery_status` can say.
ATTEMPT_OUTCOMES = (Outcome.SUCCEEDED, Outcome.FAILED, Outcome.TIMED_OUT, Outcome.CONNECTION_ERROR, Outcome.REFUSED)


class ReceiptStatus(StrEnum):
    """An inbound request as stored: accepted (its body kept) or rejected (signature failed)."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"


class ReceiptAnswer(StrEnum):
    """What the inbound endpoint tells the sender about a request it stored."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # a retry of a message already accepted: acknowledged, stored once


def allowed_words(family: type[StrEnum]) -> str:
    """`pending, succeeded, failed`: for messages that list what a field may be."""
    return ", ".join(member.value for member in family)


def parse_words(family: type[E], values: tuple[str, ...] | list[str], field: str) -> tuple[E, ...]:
    """Each word as a member of `family`; Invalid naming every word that is not one (`field[i]`)."""
    members: list[E] = []
    violations: list[FieldViolation] = []
    for index, value in enumerate(values):
        try:
            members.append(family(value))
        except ValueError:
            violations.append(FieldViolation(f"{field}[{index}]", f"must be one of {allowed_words(family)}"))
    if violations:
        raise Invalid(violations)
    return tuple(members)


def parse_word(family: type[E], value: str, field: str) -> E:
    """`value` as a member of `family`; Invalid naming `field` when it is not one."""
    try:
        return family(value)
    except ValueError:
        raise Invalid.field(field, f"must be one of {allowed_words(family)}") from None
