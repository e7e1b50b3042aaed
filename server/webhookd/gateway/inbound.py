"""The callback route external systems POST to: POST /api/v1/integration/inbound/{webhook_id}.

Order matters: an unknown webhook is 404 before anything is read, the rate limit applies before the
body is read, the size limit is enforced while reading (413), and 2xx is sent only after the receipt
is committed, so nothing acknowledged is ever lost.
"""

from __future__ import annotations

import math
import time

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from webhookd.domain import errors as domain
from webhookd.gateway.errors import ApiError, error_response, request_too_large
from webhookd.services.inbound import Inbound

INBOUND_PATH = "/api/v1/integration/inbound/{webhook_id}"

_HTTP: dict[type[domain.DomainError], tuple[int, str]] = {
    domain.NotFound: (404, "NOT_FOUND"),
    domain.Unauthenticated: (401, "UNAUTHENTICATED"),
    domain.ResourceExhausted: (429, "RESOURCE_EXHAUSTED"),
    domain.Unavailable: (503, "UNAVAILABLE"),
    domain.Invalid: (400, "INVALID_ARGUMENT"),
}


class _TooLarge(Exception):
    pass


def _api_error(error: domain.DomainError) -> ApiError:
    http_status, status = next((value for kind, value in _HTTP.items() if isinstance(error, kind)), (500, "INTERNAL"))
    headers: dict[str, str] = {}
    retry_after = getattr(error, "retry_after_seconds", None)
    if retry_after:
        headers["Retry-After"] = str(math.ceil(retry_after))
    details = [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": error.reason, "domain": "integration.cpod.io"}
    ]
    return ApiError(http_status, status, error.message, details, headers)


async def _read_capped(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def inbound_route(inbound: Inbound, *, max_body_bytes: int) -> Route:
    async def receive(request: Request) -> Response:
        started = time.perf_counter()
        try:
            target = await inbound.target(request.path_params["webhook_id"])
            inbound.check_rate(target)
            body = await _read_capped(request, max_body_bytes)
            headers = {name.lower(): value for name, value in request.headers.items()}
            received = await inbound.receive(
                target, headers, body, request.headers.get("content-type", ""), started=started
            )
        except _TooLarge:
            return error_response(request_too_large(max_body_bytes))
        except ClientDisconnect:
            return Response(status_code=400)
        except domain.DomainError as error:
            return error_response(_api_error(error))
        status = "duplicate" if received.duplicate else "accepted"
        return JSONResponse({"status": status, "id": received.receipt_id})

    return Route(INBOUND_PATH, receive, methods=["POST"])
