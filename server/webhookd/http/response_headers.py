"""Headers every answer of every HTTP server of ours carries unless its route set its own (the
Playground page sets a stricter policy of its own): the browser-facing defaults of an API.

- `X-Content-Type-Options: nosniff`: a JSON body (an error echoes the path it was asked for, a
  webhook carries a tenant's strings) is never sniffed into HTML or script.
- `Content-Security-Policy: default-src 'none'; frame-ancestors 'none'` and `X-Frame-Options: DENY`
  (browsers that predate frame-ancestors): a response opened as a document runs nothing and no other
  site frames it.
- `Referrer-Policy: no-referrer`.
- `Cache-Control: no-store`: an answer is one tenant's data, and some carry a secret (CreateWebhook's
  and RotateWebhookSecret's `signing_secret`): no browser or proxy cache keeps it. The Playground's
  own files say `no-cache` (revalidated by ETag) instead.

`http/server.py` wraps every app it serves in `DefaultHeaders` (the gateway with its inbound receiver,
a worker's /healthz /readyz /metrics), outside Starlette's ServerErrorMiddleware and outside
`UnexpectedErrors` (http/unexpected_errors.py), so an unexpected error's 500 carries them too; the
refusals written before any app sees a request (`http/request_bounds.py`: 400, 408, 431, 503) add
`DEFAULT_HEADERS` themselves.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class DefaultHeaders:
    """ASGI middleware: DEFAULT_HEADERS on every HTTP response that has not set them."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def send_with_defaults(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in DEFAULT_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self._app(scope, receive, send_with_defaults)
