"""Typed errors raised by the domain and the stores; one interceptor maps them to gRPC status."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class DomainError(Exception):
    """Base of every error a caller is meant to see. `reason` is a stable UPPER_SNAKE code."""

    reason = "ERROR"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class NotFound(DomainError):
    reason = "NOT_FOUND"


class AlreadyExists(DomainError):
    reason = "ALREADY_EXISTS"


class Aborted(DomainError):
    """A precondition on the resource's version failed: re-read and retry."""

    reason = "VERSION_MISMATCH"


class FailedPrecondition(DomainError):
    reason = "FAILED_PRECONDITION"


class Unauthenticated(DomainError):
    reason = "UNAUTHENTICATED"


class ResourceExhausted(DomainError):
    reason = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, *, retry_after_seconds: float | None = None, reason: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.retry_after_seconds = retry_after_seconds


class Unavailable(DomainError):
    """A dependency (the database, Vault) cannot be reached; the caller may retry."""

    reason = "UNAVAILABLE"

    def __init__(self, message: str, *, retry_after_seconds: float | None = None, reason: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.retry_after_seconds = retry_after_seconds


class Invalid(DomainError):
    """Bad input, with one violation per offending field."""

    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[FieldViolation], message: str | None = None) -> None:
        if not violations:
            raise ValueError("Invalid needs at least one violation")
        summary = message or "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(summary)
        self.violations = violations

    @classmethod
    def field(cls, field: str, description: str) -> Invalid:
        return cls([FieldViolation(field, description)])
