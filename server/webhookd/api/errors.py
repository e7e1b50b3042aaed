"""Domain errors to gRPC status with rich details (AIP-193): ErrorInfo always, BadRequest for bad
input, RetryInfo when the caller should come back later. The code is the error's own (domain/errors)."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from webhookd.domain import errors
from webhookd.domain.errors import ERROR_DOMAIN, MESSAGE_MAX, bounded, bounded_violations


def _packed(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def code_name(error: errors.DomainError) -> str:
    return error.code


def to_status(error: errors.DomainError) -> grpc.Status:
    details = [_packed(error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN))]
    if isinstance(error, errors.Invalid):
        violations = [
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in bounded_violations(error.violations)
        ]
        details.append(_packed(error_details_pb2.BadRequest(field_violations=violations)))
    if isinstance(error, errors.Unavailable | errors.ResourceExhausted) and error.retry_after_seconds:
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromSeconds(int(error.retry_after_seconds))
        details.append(_packed(retry))
    code = code_pb2.Code.Value(error.code)
    message = bounded(error.public_message, MESSAGE_MAX)
    return rpc_status.to_status(status_pb2.Status(code=code, message=message, details=details))


def internal_status(request_id: str) -> grpc.Status:
    """What the caller sees of an error we did not expect: no internals, a request id to quote."""
    info = error_details_pb2.ErrorInfo(reason="INTERNAL", domain=ERROR_DOMAIN, metadata={"request_id": request_id})
    message = f"internal error; quote request id {request_id} when reporting it"
    return rpc_status.to_status(status_pb2.Status(code=code_pb2.INTERNAL, message=message, details=[_packed(info)]))
