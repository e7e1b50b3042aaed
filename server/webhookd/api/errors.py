"""Domain errors to gRPC status with rich details (AIP-193): the one place that mapping lives."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from ulid import ULID

from webhookd.api.handlers import metadata_value, wrap_handler
from webhookd.auth.context import request_id
from webhookd.domain import errors

ERROR_DOMAIN = "webhookd.cpod.io"
log = logging.getLogger("webhookd.api")

_CODES: dict[type[errors.DomainError], int] = {
    errors.Invalid: code_pb2.INVALID_ARGUMENT,
    errors.NotFound: code_pb2.NOT_FOUND,
    errors.AlreadyExists: code_pb2.ALREADY_EXISTS,
    errors.Aborted: code_pb2.ABORTED,
    errors.FailedPrecondition: code_pb2.FAILED_PRECONDITION,
    errors.Unauthenticated: code_pb2.UNAUTHENTICATED,
    errors.ResourceExhausted: code_pb2.RESOURCE_EXHAUSTED,
    errors.Unavailable: code_pb2.UNAVAILABLE,
}


def _packed(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def to_status(error: errors.DomainError) -> grpc.Status:
    code = next(code for kind, code in _CODES.items() if isinstance(error, kind))
    details = [_packed(error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN))]
    if isinstance(error, errors.Invalid):
        violations = [
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in error.violations
        ]
        details.append(_packed(error_details_pb2.BadRequest(field_violations=violations)))
    if isinstance(error, errors.Unavailable | errors.ResourceExhausted) and error.retry_after_seconds:
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromSeconds(int(error.retry_after_seconds))
        details.append(_packed(retry))
    return rpc_status.to_status(status_pb2.Status(code=code, message=error.message, details=details))


def _internal_status() -> grpc.Status:
    info = error_details_pb2.ErrorInfo(
        reason="INTERNAL", domain=ERROR_DOMAIN, metadata={"request_id": request_id.get()}
    )
    message = f"internal error; quote request id {request_id.get()} when reporting it"
    return rpc_status.to_status(status_pb2.Status(code=code_pb2.INTERNAL, message=message, details=[_packed(info)]))


@asynccontextmanager
async def _mapping_errors(context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
    # Outermost wrapper: the request id it sets is visible to everything the call does and logs.
    request_token = request_id.set(metadata_value(context, "x-request-id") or str(ULID()))
    try:
        yield
    except errors.DomainError as error:
        await context.abort_with_status(to_status(error))
    except (grpc.aio.AbortError, asyncio.CancelledError, GeneratorExit):
        raise
    except Exception:
        log.exception("unhandled error")
        await context.abort_with_status(_internal_status())
    finally:
        request_id.reset(request_token)


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        return wrap_handler(handler, _mapping_errors)
