"""Cross-origin calls to the REST API (`/api/v1/integration/...`) from the browser apps of the origins
an operator allowed (`WEBHOOKD_CORS_ORIGINS`). Starlette's CORSMiddleware answers preflights and names
the origin; this module decides which requests it sees:

- only the API's routes: the inbound receiver's callbacks (under the same prefix) are posted by
  servers, not pages, and the Playground, manifest and operations routes are same-origin or not
  meant for browsers at all;
- only requests from an allowed origin: any other origin's request goes to the app untouched, so it
  carries no `Access-Control-*` header (CORSMiddleware would still add its exposed headers, and
  answer a preflight 400 in plain text) and its OPTIONS is the API's own 405.

Credentials are never allowed: the API authenticates with a bearer token the page sets in
`Authorization`, which is a request header a preflight allows, not a browser credential. No cookie
or HTTP authentication of ours exists for a page of another origin to ride on, so `*` (any origin)
gives a page nothing but what a token it already holds gives it.
"""

from __future__ import annotations

from collections.abc import Collection

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from webhookd.domain.inbound import INBOUND_PATH_PREFIX

API_PATH_PREFIX = "/api/v1/integration/"
ANY_ORIGIN = "*"
# The request headers the gateway reads (gateway/headers.py, gateway/calls.py, http/body.py);
# CORSMiddleware adds the safelisted ones (Accept, Content-Type, ...).
ALLOWED_HEADERS = (
    "Authorization",
    "Cache-Control",
    "Content-Type",
    "Idempotency-Key",
    "If-Match",
    "If-None-Match",
    "Last-Event-ID",
    "Webhook-Signing-Secret",
    "X-Request-Id",
)
# The response headers a client reads beyond the safelisted ones: the id to quote, the version a
# conditional write names, how long to wait, and how to authenticate.
EXPOSED_HEADERS = ("ETag", "Retry-After", "WWW-Authenticate", "X-Request-Id")
# How long a browser keeps a preflight's answer: a new origin list reaches pages within this.
PREFLIGHT_MAX_AGE_SECONDS = 600


class ApiCors:
    """ASGI middleware: CORS for the API's routes, for the allowed origins only."""

    def __init__(self, app: ASGIApp, origins: Collection[str], methods: Collection[str]) -> None:
        """origins: serialized origins (`https://app.example.com`), or `*` alone for any.
        methods: the HTTP methods the API's routes answer."""
        self._app = app
        self._any = ANY_ORIGIN in origins
        self._origins = frozenset(origins)
        self._cors = CORSMiddleware(
            app,
            allow_origins=tuple(origins),
            allow_methods=tuple(methods),
            allow_headers=ALLOWED_HEADERS,
            allow_credentials=False,
            expose_headers=EXPOSED_HEADERS,
            max_age=PREFLIGHT_MAX_AGE_SECONDS,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._applies(scope):
            await self._cors(scope, receive, send)
        else:
            await self._app(scope, receive, send)

    def _applies(self, scope: Scope) -> bool:
        path: str = scope["path"]
        if not path.startswith(API_PATH_PREFIX) or path.startswith(INBOUND_PATH_PREFIX):
            return False
        origin = Headers(scope=scope).get("origin")
        return origin is not None and (self._any or origin in self._origins)


def with_cors(app: ASGIApp, origins: Collection[str], methods: Collection[str]) -> ASGIApp:
    """`app` behind ApiCors, or `app` itself when no origin is allowed (no CORS header at all)."""
    return ApiCors(app, origins, methods) if origins else app
