"""The inbound receiver: the route external systems POST to, `/api/v1/integration/inbound/{id}`
(and GET, for Meta's check of a callback URL).

A transport like the gRPC servicers: it turns the HTTP request into the use case's input, calls
services/inbound.py (which decides the order of the checks), and answers with the one error map.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from webhookd.domain.errors import DomainError, TransactionConflict, Unavailable
from webhookd.domain.inbound import EMPTY_TWIML, INBOUND_PATH_PREFIX
from webhookd.domain.statuses import ReceiptAnswer
from webhookd.http.body import read_body
from webhookd.http.errors import ApiError, error_response, from_domain_error, retry_later
from webhookd.http.media_types import PLAIN_TEXT_MEDIA_TYPE, TWIML_MEDIA_TYPE
from webhookd.observability.log_throttle import ThrottledLog
from webhookd.services.inbound import Inbound

INBOUND_ROUTE = INBOUND_PATH_PREFIX + "{webhook_id}"

log = logging.getLogger("webhookd.inbound")


class _StarletteRequest:
    """ports.InboundRequest over a Starlette request."""

    def __init__(self, request: Request) -> None:
        self._request = request
        self.headers: Mapping[str, str] = {name.lower(): value for name, value in request.headers.items()}
        names = Counter(name for name, _ in request.headers.items())  # Starlette's names are lower case
        self.repeated_headers = frozenset(name for name, count in names.items() if count > 1)
        self.query: str = request.url.query

    async def read_body(self, limit: int) -> bytes:
        return await read_body(self._request, limit)


def inbound_route(inbound: Inbound, *, failures: ThrottledLog | None = None) -> Route:
    unavailable = failures or ThrottledLog(log)

    async def receive(request: Request) -> Response:
        try:
            received = await inbound.receive(request.path_params["webhook_id"], _StarletteRequest(request))
        except ClientDisconnect:
            return Response(status_code=400)
        except DomainError as error:
            return error_response(_for_sender(error, unavailable))
        if received.twiml:
            return Response(EMPTY_TWIML, media_type=TWIML_MEDIA_TYPE)
        if received.zoom_validation is not None:
            # Zoom reads exactly these two fields.
            validation = received.zoom_validation
            return JSONResponse({"plainToken": validation.plain_token, "encryptedToken": validation.encrypted_token})
        answer = ReceiptAnswer.DUPLICATE if received.duplicate else ReceiptAnswer.ACCEPTED
        # Every field, null when unset, as the gateway writes them; the challenge is for Slack's URL verification.
        return JSONResponse({"status": answer.value, "id": received.receipt_id, "challenge": received.challenge})

    async def confirm(request: Request) -> Response:
        try:
            challenge = await inbound.confirm_subscription(request.path_params["webhook_id"], request.url.query)
        except DomainError as error:
            return error_response(_for_sender(error, unavailable))
        # Meta compares the body with the challenge it sent: the text alone (never sniffed as a page).
        return Response(challenge, media_type=PLAIN_TEXT_MEDIA_TYPE, headers={"X-Content-Type-Options": "nosniff"})

    async def endpoint(request: Request) -> Response:
        return await (receive(request) if request.method == "POST" else confirm(request))

    # GET only for Meta's subscription check (Inbound.confirm_subscription); one route, so a 405 names both.
    return Route(INBOUND_ROUTE, endpoint, methods=["POST", "GET"])


def _for_sender(error: DomainError, unavailable: ThrottledLog) -> ApiError:
    """The error as an external sender reads it; an outage's reason is logged here instead (once an
    interval per kind: senders retry, and every request of an outage fails alike). A database conflict
    is "retry later" too: a sender cannot read again as an API client told ABORTED can, and many
    senders give up on a 4xx where they retry a 503."""
    if isinstance(error, Unavailable | TransactionConflict):
        unavailable.warning(
            (error.code, error.public_message), "inbound request unavailable", {"reason": error.message}
        )
        return retry_later(error.retry_after_seconds if isinstance(error, Unavailable) else None)
    return from_domain_error(error)
