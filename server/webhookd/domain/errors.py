"""Typed errors raised by the domain and the stores; each transport maps them once.

Every error carries its canonical code (a google.rpc.Code name, AIP-193): gRPC sends it as the
status, HTTP turns it into a status through one table (webhookd/http/errors.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

# The `domain` of every ErrorInfo this service sends, over gRPC and HTTP alike.
ERROR_DOMAIN = "integration.cpod.io"
# How much of a caller's value a message quotes: callers may send ids of megabytes.
QUOTED_MAX = 64


def quoted(value: str) -> str:
    """`value` as a message shows it: whole when short, else its start and its length."""
    if len(value) <= QUOTED_MAX:
        return value
    return f"{value[:QUOTED_MAX]}... ({len(value)} characters)"


# What an error carries at most, over every transport. A gRPC status travels in trailing metadata,
# which clients refuse past 16 KiB (the call then fails as RESOURCE_EXHAUSTED, its real status
# lost), and messages and violations quote what the caller sent: a body of many unknown fields
# would otherwise be answered ten times its size.
MESSAGE_MAX = 1024
VIOLATIONS_MAX = 40
# Room for the longest path a valid name makes, `webhook.headers["<64-character header name>"]` (83),
# so a client can match it to the entry; only names past their own limits are cut.
VIOLATION_FIELD_MAX = 96
VIOLATION_DESCRIPTION_MAX = 160


def bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


def bounded_violations(violations: Sequence[FieldViolation]) -> list[FieldViolation]:
    """The violations an error shows: the first VIOLATIONS_MAX, each cut to its limits."""
    return [
        FieldViolation(bounded(v.field, VIOLATION_FIELD_MAX), bounded(v.description, VIOLATION_DESCRIPTION_MAX))
        for v in violations[:VIOLATIONS_MAX]
    ]


class DomainError(Exception):
    """Base of every error a caller is meant to see. `reason` is a stable UPPER_SNAKE code.

    `message` is the whole story, for the log; `public_message` is what a caller reads (the same,
    unless the error says more than callers may know)."""

    reason = "ERROR"
    code: ClassVar[str] = "UNKNOWN"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.public_message = message
        if reason is not None:
            self.reason = reason


class NotFound(DomainError):
    reason = "NOT_FOUND"
    code = "NOT_FOUND"

    @classmethod
    def of(cls, kind: str, identifier: str) -> NotFound:
        """`<kind> <id> not found`, the id cut short when the caller sent a long one."""
        return cls(f"{kind} {quoted(identifier)} not found")


class AlreadyExists(DomainError):
    reason = "ALREADY_EXISTS"
    code = "ALREADY_EXISTS"


class Aborted(DomainError):
    """A precondition on the resource's version failed: re-read and retry."""

    reason = "VERSION_MISMATCH"
    code = "ABORTED"


class TransactionConflict(Aborted):
    """The database ended the call's transaction to settle a conflict with a concurrent one (a deadlock,
    a serialization failure): that transaction was rolled back, and the same call, sent again, may go
    through. ABORTED rather than UNAVAILABLE: the server answered at once and is not down (AIP-193)."""

    reason = "TRANSACTION_CONFLICT"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        # What it was (deadlock, serialization failure) is for the log.
        self.public_message = "a concurrent call conflicted with this one in the database: retry it"


class FailedPrecondition(DomainError):
    reason = "FAILED_PRECONDITION"
    code = "FAILED_PRECONDITION"


class Unauthenticated(DomainError):
    reason = "UNAUTHENTICATED"
    code = "UNAUTHENTICATED"


class PermissionDenied(DomainError):
    reason = "PERMISSION_DENIED"
    code = "PERMISSION_DENIED"


class ResourceExhausted(DomainError):
    reason = "RESOURCE_EXHAUSTED"
    code = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, *, retry_after_seconds: float | None = None, reason: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.retry_after_seconds = retry_after_seconds


class Unavailable(DomainError):
    """A dependency (the database, Vault) cannot be reached; the caller may retry.

    Given the `dependency`, callers read only "<dependency> unavailable: retry later": how it failed
    (hosts, ports, a driver's words) stays in `message`, for the log and /readyz."""

    reason = "UNAVAILABLE"
    code = "UNAVAILABLE"

    def __init__(
        self,
        message: str,
        *,
        retry_after_seconds: float | None = None,
        reason: str | None = None,
        dependency: str | None = None,
    ) -> None:
        super().__init__(message, reason=reason)
        self.retry_after_seconds = retry_after_seconds
        if dependency is not None:
            self.public_message = f"{dependency} unavailable: retry later"


class Invalid(DomainError):
    """Bad input, with one violation per offending field."""

    reason = "INVALID_ARGUMENT"
    code = "INVALID_ARGUMENT"

    def __init__(self, violations: list[FieldViolation], message: str | None = None) -> None:
        if not violations:
            raise ValueError("Invalid needs at least one violation")
        summary = message or "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(summary)
        self.violations = violations

    @classmethod
    def field(cls, field: str, description: str) -> Invalid:
        return cls([FieldViolation(field, description)])


class PayloadTooLarge(DomainError):
    """A request body over its limit (HTTP 413); the limit is in the message and `limit_bytes`."""

    reason = "REQUEST_TOO_LARGE"
    code = "INVALID_ARGUMENT"

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(f"Request body is larger than {limit_bytes} bytes")
        self.limit_bytes = limit_bytes
