"""Domain errors to gRPC status with rich details (AIP-193): the one place that mapping lives.

The interceptor wraps every call, so it also sets the call's request id and records the call's
final code and duration (metrics and one log line).
"""

from __future__ import annotations

import asyncio
import logging
import time
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
from webhookd.auth.interceptor import PUBLIC_SERVICES
from webhookd.domain import errors
from webhookd.observability.metrics import GrpcMetrics

ERROR_DOMAIN = "integration.cpod.io"
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
_CODE_NAMES: dict[type[errors.DomainError], str] = {kind: code_pb2.Code.Name(code) for kind, code in _CODES.items()}


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


def _code_name(error: errors.DomainError) -> str:
    return next(name for kind, name in _CODE_NAMES.items() if isinstance(error, kind))


def _aborted_code(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    code = context.code()
    return str(code.name) if isinstance(code, grpc.StatusCode) else "UNKNOWN"


@asynccontextmanager
async def _mapping_errors(
    context: grpc.aio.ServicerContext[Any, Any], method: str, metrics: GrpcMetrics | None
) -> AsyncIterator[None]:
    # Outermost wrapper: the request id it sets is visible to everything the call does and logs.
    request_token = request_id.set(metadata_value(context, "x-request-id") or str(ULID()))
    started = time.perf_counter()
    code = "OK"
    try:
        yield
    except errors.DomainError as error:
        code = _code_name(error)
        await context.abort_with_status(to_status(error))
    except grpc.aio.AbortError:
        code = _aborted_code(context)
        raise
    except (asyncio.CancelledError, GeneratorExit):
        code = "CANCELLED"
        raise
    except Exception:
        code = "INTERNAL"
        log.exception("unhandled error")
        await context.abort_with_status(_internal_status())
    finally:
        _observe(method, code, time.perf_counter() - started, metrics)
        request_id.reset(request_token)


def _observe(method: str, code: str, seconds: float, metrics: GrpcMetrics | None) -> None:
    if metrics is not None:
        metrics.observe(method, code, seconds)
    # Health checks and reflection are probes, not traffic: their lines only show at DEBUG.
    level = logging.DEBUG if method.startswith(PUBLIC_SERVICES) else logging.INFO
    if log.isEnabledFor(level):
        log.log(level, "rpc", extra={"rpc": method, "code": code, "duration_ms": round(seconds * 1000, 3)})


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, metrics: GrpcMetrics | None = None) -> None:
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method, metrics = handler_call_details.method, self._metrics
        return wrap_handler(handler, lambda context: _mapping_errors(context, method, metrics))
