"""The last answer to an exception no handler took: every HTTP server of ours serves its app inside
`UnexpectedErrors` (http/server.py), inside `DefaultHeaders`.

An app that raised before it started a response (a wrapper outside Starlette's error handling, an ASGI
app with none) left uvicorn to write its own plain-text 500, without our default headers and unlike
every other error we send. Here it is answered as the gateway answers an unexpected error
(http/errors.py `internal`: the JSON error body, a request id to quote, nothing of the exception),
and logged once, here, with that request id; uvicorn is not given it to log again. An exception
after a response was written whole (Starlette's own 500, which it raises again) is only logged; one
in the middle of a response is left to uvicorn, which logs it and closes the connection.
"""

from __future__ import annotations

import json
import logging

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webhookd.http.errors import internal
from webhookd.observability.request_ids import REQUEST_ID_HEADER, settle_request_id

log = logging.getLogger("webhookd.http")


class UnexpectedErrors:
    """ASGI middleware: an exception escaping the app is a JSON 500 when no response started yet."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = finished = False

        async def tracking_send(message: Message) -> None:
            nonlocal started, finished
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                finished = True
            await send(message)

        try:
            await self._app(scope, receive, tracking_send)
        except Exception:
            if started and not finished:
                raise
            # The id the request was served under (the gateway writes the one it settled on into the headers).
            rid = settle_request_id(Headers(scope=scope).get(REQUEST_ID_HEADER))
            log.exception("unexpected error serving a request", extra={"path": scope.get("path"), "request_id": rid})
            if not started:
                await _answer(send, rid)


async def _answer(send: Send, rid: str) -> None:
    body = json.dumps(internal(rid).body()).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (REQUEST_ID_HEADER.encode(), rid.encode()),
    ]
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": body})
