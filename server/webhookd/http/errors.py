"""Errors on their way out of every HTTP transport: gRPC status and domain errors → HTTP status and
the AIP-193 error body, from one table.

    {"error": {"code": 404, "message": "...", "status": "NOT_FOUND", "details": [{"@type": ...}]}}

Details are the google.rpc.Status details the server put in `grpc-status-details-bin`, rendered
with `json_format` (camelCase, as AIP-193 shows them: `fieldViolations`, `retryDelay`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from starlette.responses import JSONResponse

from webhookd.domain import errors as domain
from webhookd.domain.errors import ERROR_DOMAIN, MESSAGE_MAX, FieldViolation, bounded, bounded_violations
from webhookd.observability.log_throttle import ThrottledLog

STATUS_DETAILS_KEY = "grpc-status-details-bin"
log = logging.getLogger("webhookd.gateway")
# The gateway's one gRPC server is down for every call at once: a line an interval, per process.
_unreached = ThrottledLog(log)

# The one table. A gRPC code becomes the HTTP status given here (google.rpc.Code's own mapping)...
HTTP_STATUS_BY_CODE: Mapping[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.DATA_LOSS: 500,
}

# ...and the statuses only the HTTP layer can cause (routing, headers, the body's framing), each with
# the code whose HTTP class it refines. The error body names that code, so every (status, code) pair a
# caller can meet is a row of this table, read either way.
CODE_BY_HTTP_ONLY_STATUS: Mapping[int, grpc.StatusCode] = {
    405: grpc.StatusCode.UNIMPLEMENTED,  # the path exists, the method is not implemented there
    406: grpc.StatusCode.INVALID_ARGUMENT,  # Accept admits no media type the answer can be written in
    408: grpc.StatusCode.DEADLINE_EXCEEDED,  # the client did not send its whole request in time
    412: grpc.StatusCode.FAILED_PRECONDITION,  # If-Match names a version that is not current
    413: grpc.StatusCode.INVALID_ARGUMENT,  # the body is over the size limit
    415: grpc.StatusCode.INVALID_ARGUMENT,  # the body is not JSON
    431: grpc.StatusCode.INVALID_ARGUMENT,  # the request line and headers are over the size limit
}
PRECONDITION_FAILED = 412
# Retry-After of a 503 from a server the gateway could not reach, which says nothing itself.
UNREACHED_RETRY_AFTER_SECONDS = 1
RETRY_LATER = "temporarily unavailable: retry later"
SERVER_UNREACHED = "server unavailable: retry later"


@dataclass
class ApiError(Exception):
    """An error on its way to the caller, already in HTTP terms."""

    http_status: int
    status: str  # the google.rpc.Code name, e.g. "NOT_FOUND"
    message: str
    details: list[dict[str, Any]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.http_status,
                "message": self.message,
                "status": self.status,
                "details": self.details,
            }
        }


def http_status_for(code: grpc.StatusCode) -> int:
    return HTTP_STATUS_BY_CODE.get(code, 500)


def from_rpc_error(error: grpc.RpcError, *, precondition_from_header: bool = False) -> ApiError:
    code: grpc.StatusCode = error.code()
    message: str = error.details() or ""
    rich = rich_status(error.trailing_metadata())
    if rich is not None and rich.message:
        message = rich.message
    # A status that never reached the server (no connection, the gateway's deadline) has no
    # details; it still gets the ErrorInfo every error carries.
    details = [any_to_json(detail) for detail in rich.details] if rich is not None else [_error_info(code.name)]
    if rich is None and code == grpc.StatusCode.UNAVAILABLE:
        # The server was not reached, and gRPC's own words name its address: logged, not told.
        _unreached.warning(code.name, "grpc server not reached", {"reason": message})
        message = SERVER_UNREACHED
    http_status = http_status_for(code)
    if code == grpc.StatusCode.ABORTED and precondition_from_header:
        # The stale version came from If-Match: HTTP's precondition failed (a stale version in the
        # body stays 409 ABORTED).
        http_status = PRECONDITION_FAILED
        code = CODE_BY_HTTP_ONLY_STATUS[PRECONDITION_FAILED]
    headers: dict[str, str] = {}
    if http_status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if http_status in (429, 503) and rich is not None:
        retry_after = _retry_after_seconds(rich.details)
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
    elif code == grpc.StatusCode.UNAVAILABLE:
        # The server was not reached (a `webhookd gateway` whose server is down or restarting): come
        # back as soon as the server's own dependencies would say.
        headers["Retry-After"] = str(UNREACHED_RETRY_AFTER_SECONDS)
    return ApiError(http_status, code.name, message, details, headers)


def rich_status(trailing_metadata: Iterable[tuple[str, str | bytes]] | None) -> Any:
    """The google.rpc.Status from `grpc-status-details-bin`, or None. Decoded here rather than
    with grpc_status.rpc_status.from_call, which raises when the trailer's message differs from
    the status details: a detail we can still show is better than a 500."""
    for key, value in trailing_metadata or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            return status_pb2.Status.FromString(value)
    return None


def any_to_json(detail: any_pb2.Any) -> dict[str, Any]:
    try:
        return json_format.MessageToDict(detail)
    except (TypeError, KeyError, json_format.Error):
        # A detail type this process does not know still shows what it is.
        return {"@type": detail.type_url}


def _retry_after_seconds(details: Sequence[any_pb2.Any]) -> int | None:
    for detail in details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            delay: float = info.retry_delay.seconds + info.retry_delay.nanos / 1e9
            return max(0, math.ceil(delay))
    return None


# ------------------------------------------------------------------------- gateway-made errors


def _packed(message: Message) -> dict[str, Any]:
    packed = any_pb2.Any()
    packed.Pack(message)
    return any_to_json(packed)


def _error_info(reason: str, metadata: Mapping[str, str] | None = None) -> dict[str, Any]:
    return _packed(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata or {}))


def invalid_argument(violations: Sequence[FieldViolation], message: str | None = None) -> ApiError:
    """Bad input in the shape the server gives it (api/errors.py): ErrorInfo, then BadRequest, both
    within the same bounds."""
    shown = bounded_violations(violations)
    bad_request = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description) for v in shown
        ]
    )
    summary = message or "; ".join(f"{v.field}: {v.description}" if v.field else v.description for v in shown)
    details = [_error_info(domain.Invalid.reason), _packed(bad_request)]
    return ApiError(400, "INVALID_ARGUMENT", bounded(summary, MESSAGE_MAX), details)


def malformed_json(reason: str) -> ApiError:
    return ApiError(
        400, "INVALID_ARGUMENT", f"Request body is not valid JSON: {reason}", [_error_info("MALFORMED_JSON")]
    )


def malformed_request() -> ApiError:
    """A request the HTTP parser refused (no request line, a broken header or chunk): uvicorn's own answer
    is plain text."""
    return ApiError(400, "INVALID_ARGUMENT", "the request is not valid HTTP/1.1", [_error_info("MALFORMED_REQUEST")])


def unsupported_media_type(content_type: str) -> ApiError:
    message = f"Content-Type must be application/json, not {content_type or 'absent'}"
    return _http_only(415, message, [_error_info("UNSUPPORTED_MEDIA_TYPE")])


def unsupported_content_coding(coding: str) -> ApiError:
    """RFC 9110 15.5.16: 415, and Accept-Encoding names the coding that would have been accepted."""
    message = f"Content-Encoding must be identity, not {coding}: send the body uncompressed"
    return _http_only(415, message, [_error_info("UNSUPPORTED_MEDIA_TYPE")], **{"Accept-Encoding": "identity"})


def not_acceptable(available: Sequence[str]) -> ApiError:
    """RFC 9110 15.5.7: the Accept header admits none of the media types the answer can be written in.
    Said in JSON all the same, as every error: a client told nothing would not know what to ask for."""
    names = ", ".join(available)
    violation = error_details_pb2.BadRequest.FieldViolation(
        field="Accept", description=f"admits none of {names}: ask for one of them, or */*"
    )
    details = [
        _error_info("NOT_ACCEPTABLE", {"available": names}),
        _packed(error_details_pb2.BadRequest(field_violations=[violation])),
    ]
    return _http_only(406, f"Accept admits none of the media types this route answers in: {names}", details)


def request_timeout(seconds: float) -> ApiError:
    message = f"the request was not received in full within {seconds:g} s"
    return _http_only(408, message, [_error_info("REQUEST_TIMEOUT")])


def head_too_large(limit_bytes: int) -> ApiError:
    message = f"the request line and headers are over {limit_bytes // 1024} KiB"
    return _http_only(431, message, [_error_info("HEAD_TOO_LARGE", {"limit_bytes": str(limit_bytes)})])


def too_many_connections(limit: int) -> ApiError:
    """A connection past WEBHOOKD_HTTP_MAX_CONNECTIONS, answered before it sends anything."""
    message = f"the server holds as many connections as it takes ({limit} connections): retry later"
    info = _error_info("TOO_MANY_CONNECTIONS", {"limit": str(limit)})
    return ApiError(503, "UNAVAILABLE", message, [info], {"Retry-After": str(UNREACHED_RETRY_AFTER_SECONDS)})


def precondition_failed(message: str, *, reason: str) -> ApiError:
    return _http_only(PRECONDITION_FAILED, message, [_error_info(reason)])


def _http_only(http_status: int, message: str, details: list[dict[str, Any]], **headers: str) -> ApiError:
    return ApiError(http_status, CODE_BY_HTTP_ONLY_STATUS[http_status].name, message, details, dict(headers))


def from_domain_error(error: domain.DomainError) -> ApiError:
    """A domain error raised in this process (the inbound receiver, request bodies), in HTTP terms."""
    if isinstance(error, domain.Invalid):
        return invalid_argument(error.violations, error.message)
    if isinstance(error, domain.PayloadTooLarge):
        info = _error_info(error.reason, {"limit_bytes": str(error.limit_bytes)})
        return _http_only(413, error.message, [info])
    http_status = http_status_for(grpc.StatusCode[error.code])
    headers: dict[str, str] = {}
    if http_status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    retry_after = getattr(error, "retry_after_seconds", None)
    if retry_after:
        headers["Retry-After"] = str(math.ceil(retry_after))
    return ApiError(http_status, error.code, error.public_message, [_error_info(error.reason)], headers)


def retry_later(retry_after_seconds: float | None) -> ApiError:
    """503 for callers outside (inbound senders): which dependency failed, and how, is ours to log,
    not theirs to read (hosts, ports, libpq's words)."""
    seconds = max(UNREACHED_RETRY_AFTER_SECONDS, math.ceil(retry_after_seconds or 0))
    return ApiError(
        503, "UNAVAILABLE", RETRY_LATER, [_error_info(domain.Unavailable.reason)], {"Retry-After": str(seconds)}
    )


def route_not_found(method: str, path: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"No route for {method} {path}", [_error_info("ROUTE_NOT_FOUND")])


def method_not_allowed(method: str, path: str, allowed: Sequence[str]) -> ApiError:
    message = f"{method} is not allowed on {path}; use {', '.join(allowed)}"
    return _http_only(405, message, [_error_info("METHOD_NOT_ALLOWED")], Allow=", ".join(allowed))


def internal(request_id: str) -> ApiError:
    """An error we did not expect, as the server words it (api/errors.py): no internals, a request id
    to quote."""
    message = f"internal error; quote request id {request_id} when reporting it"
    return ApiError(500, "INTERNAL", message, [_error_info("INTERNAL", {"request_id": request_id})])


def status_name_for_http(http_status: int) -> str:
    """For HTTP errors that did not come from gRPC (Starlette's own 404/405, ...): the table read
    backwards, the first code of a status winning (400 is INVALID_ARGUMENT)."""
    if http_status in CODE_BY_HTTP_ONLY_STATUS:
        return str(CODE_BY_HTTP_ONLY_STATUS[http_status].name)
    for code, status in HTTP_STATUS_BY_CODE.items():
        if status == http_status:
            return str(code.name)
    return "UNKNOWN" if http_status < 500 else "INTERNAL"


def error_response(error: ApiError, *, request_id: str | None = None) -> JSONResponse:
    headers = dict(error.headers)
    if request_id:
        headers["X-Request-Id"] = request_id
    return JSONResponse(error.body(), status_code=error.http_status, headers=headers)
